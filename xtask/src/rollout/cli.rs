//! `cargo xtask rollout ...`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use xshell::Shell;

use super::plan::{Plan, TimeScale};
use super::{dry_run, load};

/// Arguments of `cargo xtask rollout`.
#[derive(Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    command: RolloutCommand,
}

#[derive(Subcommand)]
enum RolloutCommand {
    /// Check the plan: print a summary, or every broken rule with its line (and fail).
    Validate(PlanArgs),
    /// Dry run: print every action the runner would take, stage by stage, without doing any.
    Plan(PlanArgs),
    /// Run the whole plan on the local target.
    Run(PlanArgs),
}

/// Which plan, at which speed.
#[derive(Args)]
struct PlanArgs {
    /// The plan file [default: rollout/plan.yaml in the workspace]
    #[arg(long, value_name = "PATH")]
    plan: Option<PathBuf>,
    /// Override the plan's `time_scale`, e.g. 0.0001 to run the six weeks in minutes
    #[arg(long, value_name = "FACTOR", value_parser = parse_time_scale)]
    time_scale: Option<TimeScale>,
}

fn parse_time_scale(text: &str) -> Result<TimeScale, String> {
    text.parse()
}

impl PlanArgs {
    /// Loads and validates the plan, with the time scale overridden if asked.
    fn load(&self) -> anyhow::Result<(PathBuf, Plan)> {
        let file = match &self.plan {
            Some(file) => file.clone(),
            None => default_plan(),
        };
        let shown = shown_path(&file);
        let plan = load::load(&shown)?;
        let plan = match self.time_scale {
            Some(scale) => plan.with_time_scale(scale),
            None => plan,
        };
        Ok((shown, plan))
    }
}

/// `rollout/plan.yaml` in the workspace, wherever cargo was run from.
fn default_plan() -> PathBuf {
    crate::project::root().join("rollout").join("plan.yaml")
}

/// The path relative to the current folder when it lies below it, so messages stay short and
/// `file:line` stays clickable.
fn shown_path(file: &Path) -> PathBuf {
    let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let normal = absolute.canonicalize().unwrap_or(absolute);
    std::env::current_dir()
        .ok()
        .and_then(|cwd| normal.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or(normal)
}

/// Runs a rollout command.
pub fn run(_sh: &Shell, args: RolloutArgs) -> anyhow::Result<()> {
    match args.command {
        RolloutCommand::Validate(args) => {
            let (file, plan) = args.load()?;
            println!("OK {}: {}", file.display(), dry_run::summary(&plan));
            Ok(())
        }
        RolloutCommand::Plan(args) => {
            let (file, plan) = args.load()?;
            println!("Dry run of {} (nothing is executed)\n", file.display());
            print!("{}", dry_run::DryRun(&plan));
            Ok(())
        }
        RolloutCommand::Run(args) => {
            let (file, plan) = args
                .load()
                .context("the rollout runner only runs a valid plan")?;
            println!("OK {}: {}", file.display(), dry_run::summary(&plan));
            println!(
                "The rollout runner is not built yet. `cargo xtask rollout run` will execute \
                 rollout/plan.yaml on the local target: build the service, start the legacy \
                 stand-in, the Candle service, nginx (canary split) and Prometheus, then run each \
                 week's gated stage (load test, parity, canary 1% -> 10% -> 50% -> 100%, SLO \
                 checks, GA tag, Helm push, MLX teardown) with automatic rollback. \
                 `cargo xtask rollout plan` shows what it will do."
            );
            Ok(())
        }
    }
}
