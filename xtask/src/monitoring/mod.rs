//! `cargo xtask monitoring`: Prometheus rules, Alertmanager routing and Grafana dashboards,
//! generated from the plan's SLOs and rollback triggers (`rollout/plan.yaml`) and the alerts
//! of `rollout/monitoring/alerts.yaml`, so that gates, pages and dashboards agree.
//!
//! `alerts` is the alert model, `promql` the queries, `rules`, `rule_tests`, `alertmanager`
//! and `grafana` the files' types, `files` what each file holds (`crate::generated` checks
//! and writes them), `verify` the checks `ci` runs.
//! It does not deploy anything: the chart and the operators' Prometheus pick the files up.

pub mod alertmanager;
pub mod alerts;
pub mod files;
pub mod grafana;
pub mod promql;
pub mod rule_tests;
pub mod rules;
pub mod verify;
pub mod weekly_report;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use xshell::Shell;

use crate::{
    generated::{self, GeneratedFile},
    project,
};

/// The alerts written by hand, relative to the workspace root.
pub const ALERTS_FILE: &str = "rollout/monitoring/alerts.yaml";

/// Arguments of `cargo xtask monitoring`.
#[derive(Args)]
pub struct MonitoringArgs {
    /// Write nothing; fail, naming each file, when a generated file is out of date.
    #[arg(long, conflicts_with = "verify")]
    check: bool,
    /// `--check`, then promtool (rules and their unit tests), amtool, the dashboards' queries,
    /// and every metric they read against a scrape of the running service.
    #[arg(long)]
    verify: bool,
    /// The service binary `--verify` scrapes [default: target/debug/akidb-embed]
    #[arg(long, value_name = "PATH", env = "AKIDB_EMBED_BIN")]
    service_binary: Option<PathBuf>,
}

/// The command that regenerates the files.
pub const COMMAND: &str = "cargo xtask monitoring";

/// The generated files and the rules they hold, from the checked-in plan and alerts.
pub fn generate() -> anyhow::Result<(Vec<GeneratedFile>, rules::RuleFile)> {
    generate_for(&crate::project::plan_path())
}

/// The generated files and the rules they hold, from the plan at `plan` and the checked-in
/// alerts.
pub fn generate_for(plan: &Path) -> anyhow::Result<(Vec<GeneratedFile>, rules::RuleFile)> {
    let root = project::root();
    let plan = crate::rollout::load::load(plan)?;
    let spec = alerts::load(&root.join(ALERTS_FILE))?;
    let alerts = alerts::resolve(&spec, &plan)?;
    let rules = rules::rule_file(&plan.slos, &alerts);
    Ok((files::generate(&plan, &alerts)?, rules))
}

/// Runs `cargo xtask monitoring`.
pub fn run(sh: &Shell, args: MonitoringArgs) -> anyhow::Result<()> {
    let root = project::root();
    let (generated, rules) = generate()?;
    if args.verify {
        let options = verify::VerifyOptions {
            service_binary: args
                .service_binary
                .unwrap_or_else(|| root.join("target/debug/akidb-embed")),
            work_dir: verify::default_work_dir(&root),
            root,
        };
        return verify::verify(sh, &options, &generated, &rules);
    }
    if args.check {
        generated::check(&root, &generated, COMMAND)?;
        println!(
            "monitoring: {} generated files are current",
            generated.len()
        );
        return Ok(());
    }
    let written = generated::write(&root, &generated).context("writing the monitoring files")?;
    for path in &written {
        println!("wrote {}", path.display());
    }
    println!(
        "monitoring: {} files, {} changed",
        generated.len(),
        written.len()
    );
    Ok(())
}

/// The ci step: build the service as the end-to-end tests do (a no-op after them), then
/// `--verify`.
pub fn ci(sh: &Shell) -> anyhow::Result<()> {
    let root = project::root();
    let (generated, rules) = generate()?;
    let options = verify::VerifyOptions {
        service_binary: root.join("target/debug/akidb-embed"),
        work_dir: verify::default_work_dir(&root),
        root,
    };
    xshell::cmd!(sh, "cargo build --workspace --locked --bins").run()?;
    verify::verify(sh, &options, &generated, &rules)
}
