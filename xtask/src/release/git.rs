//! The release tag in the repository, with the real git: find it, create it annotated, push it.

use std::path::{Path, PathBuf};

use xshell::{cmd, Shell};

/// Why a git step failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// git itself failed.
    #[error("`{command}` failed: {source}")]
    Command {
        /// What was run.
        command: String,
        /// xshell's error (exit status, stderr shown above it).
        source: xshell::Error,
    },
    /// The tag exists, on another commit.
    #[error("tag {tag} already exists at {at}, not at HEAD {head}: a release tag is never moved (delete it by hand if it is wrong)")]
    TagElsewhere {
        /// The tag.
        tag: String,
        /// The commit it points to.
        at: String,
        /// The commit being released.
        head: String,
    },
    /// The remote has the tag, on another commit.
    #[error(
        "remote {remote} has tag {tag} at {at}, not at HEAD {head}: a release tag is never moved"
    )]
    RemoteTagElsewhere {
        /// The remote.
        remote: String,
        /// The tag.
        tag: String,
        /// The commit it points to there.
        at: String,
        /// The commit being released.
        head: String,
    },
}

/// A repository on disk.
pub struct Repo<'a> {
    sh: &'a Shell,
    dir: PathBuf,
}

impl<'a> Repo<'a> {
    /// The repository whose working tree is `dir`.
    pub fn new(sh: &'a Shell, dir: &Path) -> Self {
        Self {
            sh,
            dir: dir.to_path_buf(),
        }
    }

    fn read(&self, command: xshell::Cmd<'_>) -> Result<String, GitError> {
        let text = command.to_string();
        command.quiet().read().map_err(|source| GitError::Command {
            command: text,
            source,
        })
    }

    /// The commit HEAD points to.
    pub fn head(&self) -> Result<String, GitError> {
        let dir = &self.dir;
        let head = "HEAD^{commit}";
        self.read(cmd!(self.sh, "git -C {dir} rev-parse --verify {head}"))
    }

    /// The commit `tag` points to, if the tag exists.
    pub fn tag_commit(&self, tag: &str) -> Result<Option<String>, GitError> {
        let dir = &self.dir;
        let reference = format!("refs/tags/{tag}^{{commit}}");
        // `--quiet --verify` prints nothing and exits 1 for a missing ref.
        let command = cmd!(
            self.sh,
            "git -C {dir} rev-parse --quiet --verify {reference}"
        )
        .quiet()
        .ignore_status();
        let text = command.to_string();
        let output = command.output().map_err(|source| GitError::Command {
            command: text,
            source,
        })?;
        let commit = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        Ok((output.status.success() && !commit.is_empty()).then_some(commit))
    }

    /// Whether `remote` is configured.
    pub fn has_remote(&self, remote: &str) -> Result<bool, GitError> {
        let dir = &self.dir;
        let remotes = self.read(cmd!(self.sh, "git -C {dir} remote"))?;
        Ok(remotes.lines().any(|line| line.trim() == remote))
    }

    /// The commit `tag` points to on `remote`, if the remote has it.
    pub fn remote_tag_commit(&self, remote: &str, tag: &str) -> Result<Option<String>, GitError> {
        let dir = &self.dir;
        let plain = format!("refs/tags/{tag}");
        let peeled = format!("{plain}^{{}}");
        let listing = self.read(cmd!(
            self.sh,
            "git -C {dir} ls-remote --tags {remote} {plain} {peeled}"
        ))?;
        let mut direct = None;
        for line in listing.lines() {
            let mut fields = line.split_whitespace();
            match (fields.next(), fields.next()) {
                // An annotated tag: the peeled line names the commit.
                (Some(sha), Some(name)) if name == peeled => return Ok(Some(sha.to_owned())),
                (Some(sha), Some(name)) if name == plain => direct = Some(sha.to_owned()),
                _ => {}
            }
        }
        Ok(direct)
    }

    /// Creates the annotated `tag` at `commit`. Without a configured identity (a CI runner), the
    /// tagger is GitHub Actions' bot.
    pub fn create_tag(&self, tag: &str, commit: &str, message: &str) -> Result<(), GitError> {
        let dir = &self.dir;
        let configured = cmd!(self.sh, "git -C {dir} config user.email")
            .quiet()
            .ignore_stdout()
            .run()
            .is_ok();
        let identity: Vec<&str> = if configured {
            Vec::new()
        } else {
            vec![
                "-c",
                "user.name=github-actions[bot]",
                "-c",
                "user.email=41898282+github-actions[bot]@users.noreply.github.com",
            ]
        };
        self.read(cmd!(
            self.sh,
            "git -C {dir} {identity...} tag --annotate --message {message} {tag} {commit}"
        ))
        .map(drop)
    }

    /// Pushes `tag` to `remote`.
    pub fn push_tag(&self, remote: &str, tag: &str) -> Result<(), GitError> {
        let dir = &self.dir;
        let refspec = format!("refs/tags/{tag}:refs/tags/{tag}");
        self.read(cmd!(
            self.sh,
            "git -C {dir} push --quiet {remote} {refspec}"
        ))
        .map(drop)
    }
}

/// Fails unless `found` (where the tag points, if anywhere) is `head`.
pub fn same_commit(tag: &str, found: Option<&str>, head: &str) -> Result<bool, GitError> {
    match found {
        None => Ok(false),
        Some(at) if at == head => Ok(true),
        Some(at) => Err(GitError::TagElsewhere {
            tag: tag.to_owned(),
            at: at.to_owned(),
            head: head.to_owned(),
        }),
    }
}
