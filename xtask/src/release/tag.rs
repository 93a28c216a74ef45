//! The `ga_tag` action: the annotated release tag at HEAD, pushed, and its GitHub release, each
//! created only when missing so that a re-run (a resumed rollout) changes nothing.

use std::path::PathBuf;

use xshell::Shell;

use super::git::{self, GitError, Repo};
use crate::github::{
    releases::{NewRelease, Outcome, Releases},
    GitHubError, Repository,
};

/// Why the action failed.
#[derive(Debug, thiserror::Error)]
pub enum TagError {
    /// A git step.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The GitHub side.
    #[error(transparent)]
    GitHub(#[from] GitHubError),
    /// The release notes could not be read.
    #[error("reading the release notes {}: {source}", .path.display())]
    Notes {
        /// The notes' path.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// No async runtime.
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Everything the action needs.
pub struct GaTag {
    /// The repository's working tree.
    pub repo_dir: PathBuf,
    /// The tag, e.g. `v2.0.0`.
    pub tag: String,
    /// The annotated tag's message.
    pub message: String,
    /// The release body's file (RELEASE_NOTES.md).
    pub notes: PathBuf,
    /// The git remote to push to, when configured there.
    pub remote: String,
    /// `owner/name` on GitHub.
    pub repository: Repository,
    /// GitHub's REST API.
    pub api_url: String,
    /// A token with `contents: write`; `None` fails before anything changes.
    pub token: Option<String>,
    /// Print what would happen and change nothing.
    pub dry_run: bool,
    /// The workflow to start on the tag once its release exists (`release.yml`).
    pub dispatch: Option<String>,
}

impl GaTag {
    /// The action for `tag` with the rest from the environment, as on a CI runner:
    /// `GITHUB_REPOSITORY`, `GITHUB_TOKEN`, `GITHUB_API_URL` (else GitHub's), the workspace's
    /// repository and RELEASE_NOTES.md, and the `origin` remote.
    pub fn from_env(tag: &str, message: Option<&str>) -> Result<Self, TagError> {
        let root = crate::project::root();
        let repository = std::env::var("GITHUB_REPOSITORY")
            .unwrap_or_default()
            .parse()?;
        Ok(Self {
            notes: root.join("RELEASE_NOTES.md"),
            repo_dir: root,
            tag: tag.to_owned(),
            message: message.map_or_else(|| format!("Release {tag}"), str::to_owned),
            remote: "origin".to_owned(),
            repository,
            api_url: crate::github::api_url_from_env(),
            token: token_from_env(),
            dry_run: false,
            dispatch: Some(RELEASE_WORKFLOW.to_owned()),
        })
    }
}

/// The workflow that publishes a release's archives, image and chart.
pub const RELEASE_WORKFLOW: &str = "release.yml";

/// `GITHUB_TOKEN`, when set and not empty.
pub fn token_from_env() -> Option<String> {
    std::env::var("GITHUB_TOKEN")
        .ok()
        .filter(|token| !token.trim().is_empty())
}

/// What the action did (or, in a dry run, would do), one line per effect.
#[derive(Debug, Default)]
pub struct Report {
    /// In order.
    pub lines: Vec<String>,
}

impl Report {
    fn say(&mut self, line: String) {
        println!("release: {line}");
        self.lines.push(line);
    }
}

/// Runs the action. Nothing changes before the inputs (token, notes, repository) are checked.
pub fn run(sh: &Shell, action: &GaTag) -> Result<Report, TagError> {
    let notes = std::fs::read_to_string(&action.notes).map_err(|source| TagError::Notes {
        path: action.notes.clone(),
        source,
    })?;
    let token = match (&action.token, action.dry_run) {
        (Some(token), _) => Some(token.clone()),
        (None, true) => None,
        (None, false) => {
            return Err(GitHubError::MissingToken(action.repository.clone()).into());
        }
    };
    let repo = Repo::new(sh, &action.repo_dir);
    let head = repo.head()?;
    let tag = action.tag.as_str();
    let mut report = Report::default();
    let would = if action.dry_run { "would " } else { "" };

    if git::same_commit(tag, repo.tag_commit(tag)?.as_deref(), &head)? {
        report.say(format!("tag {tag} already at {head}"));
    } else {
        if !action.dry_run {
            repo.create_tag(tag, &head, &action.message)?;
        }
        report.say(format!("{would}create annotated tag {tag} at {head}"));
    }

    let remote = action.remote.as_str();
    if repo.has_remote(remote)? {
        let on_remote = repo.remote_tag_commit(remote, tag)?;
        match git::same_commit(tag, on_remote.as_deref(), &head) {
            Ok(true) => report.say(format!("remote {remote} already has {tag}")),
            Ok(false) => {
                if !action.dry_run {
                    repo.push_tag(remote, tag)?;
                }
                report.say(format!("{would}push {tag} to {remote}"));
            }
            Err(GitError::TagElsewhere { at, .. }) => {
                return Err(GitError::RemoteTagElsewhere {
                    remote: remote.to_owned(),
                    tag: tag.to_owned(),
                    at,
                    head,
                }
                .into())
            }
            Err(other) => return Err(other.into()),
        }
    } else {
        report.say(format!("no remote `{remote}`: the tag stays local"));
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(TagError::Runtime)?;
    let repository = &action.repository;
    runtime.block_on(async {
        let Some(token) = token else {
            report.say(format!(
                "{would}create the GitHub release of {tag} in {repository} unless it exists (GITHUB_TOKEN not set: not looked up)"
            ));
            return Ok(());
        };
        let releases = Releases::new(&action.api_url, repository.clone(), token)?;
        if action.dry_run {
            if let Some(workflow) = &action.dispatch {
                report.say(format!("would start {workflow} on {tag}"));
            }
            match releases.find(tag).await? {
                Some(release) => report.say(format!("release of {tag} exists: {}", release.html_url)),
                None => report.say(format!(
                    "would create the GitHub release of {tag} in {repository} with {} as its body",
                    action.notes.display()
                )),
            }
            return Ok(());
        }
        let new = NewRelease {
            tag,
            commit: &head,
            name: &action.message,
            body: &notes,
        };
        let (release, outcome) = releases.ensure(&new).await?;
        report.say(match outcome {
            Outcome::Created => format!("created release {tag}: {}", release.html_url),
            Outcome::Existing => format!("release of {tag} exists: {}", release.html_url),
        });
        if let Some(workflow) = &action.dispatch {
            // Publishing twice changes nothing (each step reuses what exists), so a re-run
            // dispatches again rather than guess whether the first dispatch ran.
            releases.dispatch(workflow, &format!("refs/tags/{tag}")).await?;
            report.say(format!("started {workflow} on {tag}"));
        }
        Ok::<_, TagError>(())
    })?;
    Ok(report)
}
