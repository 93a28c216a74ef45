//! GitHub's REST API through octocrab: the repository and its errors here; the releases and the
//! workflow dispatch of the GA tag (`releases`), a run's environment approvals (`approvals`),
//! and the environments the plan names (`environments`).

pub mod approvals;
pub mod environments;
pub mod fake;
pub mod releases;

use std::fmt;

use octocrab::Octocrab;

/// GitHub's public API.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// The API's base URL from the environment: `AKIDB_GITHUB_API_URL` (what `cargo xtask workflows
/// run` points at its fake, since act sets `GITHUB_API_URL` itself), else `GITHUB_API_URL`
/// (GitHub Enterprise), else [`DEFAULT_API_URL`]. Empty values count as unset.
pub fn api_url_from_env() -> String {
    ["AKIDB_GITHUB_API_URL", "GITHUB_API_URL"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|value| !value.is_empty())
        .unwrap_or_else(|| DEFAULT_API_URL.to_owned())
}

/// Why the release could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// No token in the environment.
    #[error("GITHUB_TOKEN is not set: the release needs a token with `contents: write` on {0}")]
    MissingToken(Repository),
    /// `--repository` / `GITHUB_REPOSITORY` is missing or not `owner/name`.
    #[error("{0}")]
    Repository(String),
    /// The client could not be built (a bad API URL).
    #[error("GitHub client for {api_url}: {source}")]
    Client {
        /// The API's base URL.
        api_url: String,
        /// octocrab's error.
        source: octocrab::Error,
    },
    /// GitHub answered with an error, or could not be reached.
    #[error("{what}: {}", describe(.source))]
    Api {
        /// The request.
        what: String,
        /// octocrab's error.
        source: octocrab::Error,
    },
}

/// `owner/name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repository {
    /// The account.
    pub owner: String,
    /// The repository.
    pub name: String,
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

impl std::str::FromStr for Repository {
    type Err = GitHubError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || {
            GitHubError::Repository(format!(
                "repository `{text}` is not `owner/name` (give --repository or GITHUB_REPOSITORY)"
            ))
        };
        let (owner, name) = text.split_once('/').ok_or_else(invalid)?;
        let fine = |part: &str| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        if fine(owner) && fine(name) {
            Ok(Self {
                owner: owner.to_owned(),
                name: name.to_owned(),
            })
        } else {
            Err(invalid())
        }
    }
}

/// GitHub's status and message, or the transport error.
pub(crate) fn describe(error: &octocrab::Error) -> String {
    match error {
        octocrab::Error::GitHub { source, .. } => {
            let mut text = format!("GitHub answered {}: {}", source.status_code, source.message);
            if let Some(errors) = &source.errors {
                for item in errors {
                    text.push_str(&format!(" {item}"));
                }
            }
            text
        }
        other => other.to_string(),
    }
}

/// The HTTP status of a GitHub error answer.
pub(crate) fn status(error: &octocrab::Error) -> Option<u16> {
    match error {
        octocrab::Error::GitHub { source, .. } => Some(source.status_code.as_u16()),
        _ => None,
    }
}

/// A client of `api_url` authenticated with `token`; must be called inside a tokio runtime.
pub fn client(api_url: &str, token: String) -> Result<Octocrab, GitHubError> {
    Octocrab::builder()
        .base_uri(api_url)
        .and_then(|builder| builder.personal_token(token).build())
        .map_err(|source| GitHubError::Client {
            api_url: api_url.to_owned(),
            source,
        })
}
