//! `cargo xtask release`: the GA tag and its GitHub release (the rollout's `ga_tag` step), and
//! the smoke of the cargo-dist archives the release workflow publishes.

pub mod dist;
pub mod git;
pub mod publish;
pub mod tag;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use xshell::Shell;

pub use tag::{GaTag, TagError};

/// Arguments of `cargo xtask release`.
#[derive(Args)]
pub struct ReleaseArgs {
    #[command(subcommand)]
    command: ReleaseCommand,
}

#[derive(Subcommand)]
enum ReleaseCommand {
    /// Create the annotated tag at HEAD, push it, and create its GitHub release (each only when
    /// missing).
    Tag(TagArgs),
    /// Build a target's cargo-dist archive (default: the host's) and check that it holds the
    /// binary and matches its .sha256: the release workflow's `dist` job.
    #[command(alias = "smoke")]
    Dist(DistArgs),
    /// The tag's GitHub release with its assets: each archive of a folder checked against its
    /// .sha256, a sha256.sum of them all, all attached (a same-named asset is replaced).
    Publish(PublishArgs),
}

/// Options of `release dist`.
#[derive(Args)]
struct DistArgs {
    /// The Rust target triple [default: the host's]
    #[arg(long)]
    target: Option<String>,
}

/// Options of `release publish`.
#[derive(Args)]
struct PublishArgs {
    /// The tag, e.g. v2.0.0.
    #[arg(long)]
    tag: String,
    /// The folder of the archives and their .sha256 files.
    #[arg(long, value_name = "DIR", default_value = "target/distrib")]
    assets: PathBuf,
    /// The release body, when the release is created [default: RELEASE_NOTES.md]
    #[arg(long, value_name = "FILE")]
    notes: Option<PathBuf>,
    /// GitHub's REST API [default: AKIDB_GITHUB_API_URL, else GITHUB_API_URL, else
    /// https://api.github.com]
    #[arg(long, value_name = "URL")]
    api_url: Option<String>,
    /// owner/name on GitHub.
    #[arg(long, value_name = "OWNER/NAME", env = "GITHUB_REPOSITORY")]
    repository: Option<String>,
}

/// Options of `release tag`.
#[derive(Args)]
struct TagArgs {
    /// The tag, e.g. v2.0.0.
    #[arg(long)]
    tag: String,
    /// The annotated tag's message and the release's title [default: "Release TAG"]
    #[arg(long)]
    message: Option<String>,
    /// Print what would be done; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// GitHub's REST API [default: AKIDB_GITHUB_API_URL, else GITHUB_API_URL, else
    /// https://api.github.com]
    #[arg(long, value_name = "URL")]
    api_url: Option<String>,
    /// owner/name on GitHub.
    #[arg(long, value_name = "OWNER/NAME", env = "GITHUB_REPOSITORY")]
    repository: Option<String>,
    /// The git remote to push the tag to (skipped when the repository has no such remote).
    #[arg(long, default_value = "origin")]
    remote: String,
    /// The repository's working tree [default: the workspace]
    #[arg(long, value_name = "DIR")]
    repo_dir: Option<PathBuf>,
    /// The release body [default: RELEASE_NOTES.md in the repository]
    #[arg(long, value_name = "FILE")]
    notes: Option<PathBuf>,
    /// Start this workflow on the tag once the release exists (a `workflow_dispatch`, which
    /// GitHub runs even when made with the workflow's own token), e.g. release.yml.
    #[arg(long, value_name = "WORKFLOW")]
    dispatch: Option<String>,
}

/// Runs a release command.
pub fn run(sh: &Shell, args: ReleaseArgs) -> anyhow::Result<()> {
    match args.command {
        ReleaseCommand::Tag(args) => {
            let repo_dir = args.repo_dir.unwrap_or_else(crate::project::root);
            let repository = args
                .repository
                .as_deref()
                .unwrap_or_default()
                .parse()
                .context("which GitHub repository to release in")?;
            let action = GaTag {
                notes: args
                    .notes
                    .unwrap_or_else(|| repo_dir.join("RELEASE_NOTES.md")),
                repo_dir,
                message: args
                    .message
                    .unwrap_or_else(|| format!("Release {}", args.tag)),
                tag: args.tag,
                remote: args.remote,
                repository,
                api_url: args.api_url.unwrap_or_else(crate::github::api_url_from_env),
                token: tag::token_from_env(),
                dry_run: args.dry_run,
                dispatch: args.dispatch,
            };
            if action.dry_run {
                println!("release: dry run, nothing is changed");
            }
            tag::run(sh, &action)?;
            Ok(())
        }
        ReleaseCommand::Dist(args) => dist::run(sh, args.target.as_deref()).map(drop),
        ReleaseCommand::Publish(args) => {
            let repository: crate::github::Repository = args
                .repository
                .as_deref()
                .unwrap_or_default()
                .parse()
                .context("which GitHub repository to release in")?;
            let token = tag::token_from_env()
                .ok_or_else(|| crate::github::GitHubError::MissingToken(repository.clone()))?;
            let publish = publish::Publish {
                tag: args.tag,
                assets: args.assets,
                notes: args
                    .notes
                    .unwrap_or_else(|| crate::project::root().join("RELEASE_NOTES.md")),
                repository,
                api_url: args.api_url.unwrap_or_else(crate::github::api_url_from_env),
                token,
            };
            for line in publish::run(&publish)? {
                println!("release publish: {line}");
            }
            Ok(())
        }
    }
}

/// The rollout's `ga_tag` step: tags HEAD of the workspace as `tag` and publishes its release,
/// with `GITHUB_TOKEN`, `GITHUB_REPOSITORY` and `GITHUB_API_URL` from the environment; returns
/// one line saying what was done.
pub fn ga_tag_step(sh: &Shell, tag: &str, message: Option<&str>) -> Result<String, TagError> {
    let action = GaTag::from_env(tag, message)?;
    let report = tag::run(sh, &action)?;
    Ok(report.lines.join("; "))
}
