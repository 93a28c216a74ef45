//! `cargo xtask workflows`: the GitHub workflows generated from the project's own models (today
//! `rollout.yml`, from the rollout plan), their staleness check, actionlint over every
//! workflow in `.github/workflows/`, `workflows run`, which executes one under act, and
//! `workflows environments`, which keeps the plan's GitHub environments protected as it says.

pub mod act;
pub mod credentials;
pub mod environments;
pub mod model;
pub mod rollout;

use std::path::{Path, PathBuf};

use anyhow::Context;
use xshell::{cmd, Shell};

use crate::{
    generated::{self, GeneratedFile},
    project, tools,
};

/// Flags of `cargo xtask workflows`.
#[derive(Debug, clap::Args)]
pub struct WorkflowsArgs {
    #[command(subcommand)]
    command: Option<WorkflowsCommand>,
    /// Fail, with a diff, when a committed workflow differs from what its source generates.
    #[arg(long)]
    check: bool,
    /// Also run actionlint over `.github/workflows/`.
    #[arg(long)]
    lint: bool,
    /// The rollout plan [default: rollout/plan.yaml in the workspace]
    #[arg(long, value_name = "PATH")]
    plan: Option<PathBuf>,
    /// The workflows folder [default: .github/workflows in the workspace]
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Subcommands of `cargo xtask workflows`.
#[derive(Debug, clap::Subcommand)]
enum WorkflowsCommand {
    /// Execute a workflow on this machine under act (host mode, the stand-ins of
    /// .github/stand-ins for the actions of github.com); prints `<job>: succeeded|failed|skipped`.
    Run(act::RunArgs),
    /// Compare the GitHub environments the plan's stages wait in with the repository's
    /// (reviewers, self-review, deployment branches); `--apply` creates or updates them.
    Environments(environments::EnvironmentsArgs),
}

/// Runs `cargo xtask workflows`.
pub fn run(sh: &Shell, args: &WorkflowsArgs) -> anyhow::Result<()> {
    match &args.command {
        Some(WorkflowsCommand::Run(run)) => return act::run(sh, run),
        Some(WorkflowsCommand::Environments(environments)) => {
            return environments::run(environments)
        }
        None => {}
    }
    let root = project::root();
    let plan = args.plan.clone().unwrap_or_else(project::plan_path);
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| root.join(".github").join("workflows"));
    let file = GeneratedFile {
        path: dir.join(rollout::FILE_NAME),
        contents: generate_rollout(&plan)?,
    };
    let shown = file.path.display().to_string();
    if args.check {
        generated::check(&root, std::slice::from_ref(&file), COMMAND)?;
        println!("{shown} is up to date with {}", plan.display());
    } else if generated::write(&root, std::slice::from_ref(&file))?.is_empty() {
        println!("{shown} is up to date");
    } else {
        println!("wrote {shown}");
    }
    if args.lint {
        lint(sh, &dir)?;
    }
    Ok(())
}

/// The CI step (for `cargo xtask ci`): the committed rollout workflow is current, and actionlint passes every workflow.
pub fn ci(sh: &Shell) -> anyhow::Result<()> {
    let root = project::root();
    let file = generated_rollout(&project::plan_path())?;
    generated::check(&root, &[file], COMMAND)?;
    lint(sh, &root.join(".github").join("workflows"))
}

/// The command that regenerates the rollout workflow.
pub const COMMAND: &str = "cargo xtask workflows";

/// `.github/workflows/rollout.yml` as the plan at `plan` generates it.
pub fn generated_rollout(plan: &Path) -> anyhow::Result<GeneratedFile> {
    Ok(GeneratedFile {
        path: Path::new(".github/workflows").join(rollout::FILE_NAME),
        contents: generate_rollout(plan)?,
    })
}

/// The rollout workflow the plan at `plan` generates.
fn generate_rollout(plan: &Path) -> anyhow::Result<String> {
    let loaded = crate::rollout::load::load(plan)?;
    let text = rollout::render(&loaded)
        .with_context(|| format!("generating a workflow from {}", plan.display()))?;
    // The generator splits and refuses by construction; reading its output back proves it.
    let uses = credentials::latest_uses(&loaded, &text).map_err(anyhow::Error::msg)?;
    if let Some(late) = uses
        .iter()
        .find(|u| u.minutes > rollout::CREDENTIAL_LIMIT_MINUTES)
    {
        anyhow::bail!(
            "generated job {} would use a credential in `{}` {} minutes after its start",
            late.job,
            late.step,
            late.minutes
        );
    }
    Ok(text)
}

/// Runs the pinned actionlint over every workflow in `dir`.
pub fn lint(sh: &Shell, dir: &Path) -> anyhow::Result<()> {
    let actionlint = tools::actionlint(sh)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yml" || ext == "yaml")
        })
        .collect();
    files.sort();
    anyhow::ensure!(!files.is_empty(), "no workflows in {}", dir.display());
    let count = files.len();
    // shellcheck and pyflakes are used when on PATH; actionlint's own checks always run.
    cmd!(sh, "{actionlint} -no-color {files...}")
        .run()
        .context("actionlint found problems in the workflows")?;
    println!("actionlint: {} workflows clean", count);
    Ok(())
}
