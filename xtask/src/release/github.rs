//! The GitHub release of a tag, through GitHub's REST API (octocrab): found when it exists,
//! created otherwise.

use std::fmt;

use octocrab::{models::repos::Release, Octocrab};

/// GitHub's public API.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

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
fn describe(error: &octocrab::Error) -> String {
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
fn status(error: &octocrab::Error) -> Option<u16> {
    match error {
        octocrab::Error::GitHub { source, .. } => Some(source.status_code.as_u16()),
        _ => None,
    }
}

/// What the release should be.
pub struct NewRelease<'a> {
    /// The tag it publishes.
    pub tag: &'a str,
    /// The commit (the tag is pushed first; GitHub uses it only if the tag is missing).
    pub commit: &'a str,
    /// The release's title.
    pub name: &'a str,
    /// Markdown body (RELEASE_NOTES.md).
    pub body: &'a str,
}

/// How the release came to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It was created now.
    Created,
    /// It existed and was reused.
    Existing,
}

/// A repository's releases.
pub struct Releases {
    client: Octocrab,
    repository: Repository,
}

impl Releases {
    /// A client of `api_url` acting on `repository` with `token`; must be called inside a tokio
    /// runtime.
    pub fn new(api_url: &str, repository: Repository, token: String) -> Result<Self, GitHubError> {
        let client = Octocrab::builder()
            .base_uri(api_url)
            .and_then(|builder| builder.personal_token(token).build())
            .map_err(|source| GitHubError::Client {
                api_url: api_url.to_owned(),
                source,
            })?;
        Ok(Self { client, repository })
    }

    /// The release of `tag`, if there is one.
    pub async fn find(&self, tag: &str) -> Result<Option<Release>, GitHubError> {
        let Repository { owner, name } = &self.repository;
        match self
            .client
            .repos(owner, name)
            .releases()
            .get_by_tag(tag)
            .await
        {
            Ok(release) => Ok(Some(release)),
            Err(error) if status(&error) == Some(404) => {
                // GitHub also answers 404 for a repository the token cannot see: tell them apart.
                self.client
                    .repos(owner, name)
                    .get()
                    .await
                    .map_err(|source| GitHubError::Api {
                        what: format!("reading repository {}", self.repository),
                        source,
                    })?;
                Ok(None)
            }
            Err(source) => Err(GitHubError::Api {
                what: format!("looking up the release of {tag} in {}", self.repository),
                source,
            }),
        }
    }

    /// The release of `new.tag`: the existing one, else a new one. A 422 on creation (the tag
    /// got a release meanwhile) is answered by reading that release.
    pub async fn ensure(&self, new: &NewRelease<'_>) -> Result<(Release, Outcome), GitHubError> {
        if let Some(release) = self.find(new.tag).await? {
            return Ok((release, Outcome::Existing));
        }
        let Repository { owner, name } = &self.repository;
        let created = self
            .client
            .repos(owner, name)
            .releases()
            .create(new.tag)
            .target_commitish(new.commit)
            .name(new.name)
            .body(new.body)
            .draft(false)
            .prerelease(false)
            .send()
            .await;
        match created {
            Ok(release) => Ok((release, Outcome::Created)),
            Err(error) if status(&error) == Some(422) => match self.find(new.tag).await? {
                Some(release) => Ok((release, Outcome::Existing)),
                None => Err(GitHubError::Api {
                    what: format!("creating the release of {} in {}", new.tag, self.repository),
                    source: error,
                }),
            },
            Err(source) => Err(GitHubError::Api {
                what: format!("creating the release of {} in {}", new.tag, self.repository),
                source,
            }),
        }
    }

    /// Starts `workflow` (a file of `.github/workflows/`) on `git_ref` with a
    /// `workflow_dispatch`. GitHub starts no workflow for a tag pushed with the workflow's own
    /// token, but it does run a dispatch made with it.
    pub async fn dispatch(&self, workflow: &str, git_ref: &str) -> Result<(), GitHubError> {
        let Repository { owner, name } = &self.repository;
        self.client
            .actions()
            .create_workflow_dispatch(owner, name, workflow, git_ref)
            .send()
            .await
            .map_err(|source| GitHubError::Api {
                what: format!("starting {workflow} on {git_ref} in {}", self.repository),
                source,
            })
    }
}
