//! `cargo xtask rollout ...`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use xshell::Shell;

use super::plan::{Plan, TimeScale};
use super::{
    drill, dry_run, load,
    run::{self, audit::AuditLog, state::RunState, state::RunStatus, RunFiles, RunOptions, Runner},
    targets::{
        kubernetes::{self, KubernetesOptions, KubernetesTarget},
        local::{LocalOptions, LocalTarget},
        Target,
    },
};

/// The local target, with the project's models, Python environment and service binary made
/// ready first, so that `cargo xtask rollout run` works on a fresh machine.
/// `AKIDB_EMBED_BIN` names a prebuilt service binary (tests run under `cargo test`, which holds
/// the build lock) and skips the build.
/// Prometheus keeps `retention` of data.
fn local_target(
    sh: &Shell,
    files: &RunFiles,
    retention: std::time::Duration,
) -> anyhow::Result<LocalTarget> {
    crate::models::fetch_all(sh)?;
    crate::python::ensure(sh)?;
    let root = crate::project::root();
    let mut options = LocalOptions::for_workspace(&root, &files.dir.join("local"));
    options.prometheus_retention = retention;
    match std::env::var_os("AKIDB_EMBED_BIN") {
        Some(binary) => options.service_binary = PathBuf::from(binary),
        None => xshell::cmd!(sh, "cargo build --quiet -p akidb-embed")
            .run()
            .context("building the service for the local target")?,
    }
    Ok(LocalTarget::new(options))
}

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
    /// Run the plan (by default the whole plan on the local target).
    Run(RunArgs),
    /// Continue an unfinished run where it stopped, without repeating finished steps.
    Resume(RunArgs),
    /// Show where the current run stands.
    Status(StateArgs),
    /// Approve a stage's environment for the current run.
    Approve {
        /// The stage id (e.g. week-2).
        stage: String,
        /// Why (recorded with the approver's git user name in the state and audit log).
        #[arg(long, value_name = "TEXT")]
        comment: Option<String>,
        #[command(flatten)]
        plan: PlanArgs,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Write the weekly status report (traffic split, error rate, latency, incidents,
    /// approvals, go/no-go decisions) as markdown.
    Report(crate::monitoring::weekly_report::ReportArgs),
    /// Judge a canary's samples against a baseline's offline, with the gates' statistics;
    /// exits 0 (pass), 1 (fail), 3 (inconclusive) or 2 (unusable input).
    Judge(super::offline::judge::JudgeArgs),
    /// Evaluate the rollback triggers (and a stage's gates) against past data in Prometheus.
    Replay(super::offline::replay::ReplayArgs),
    /// Send all traffic back to the stable side and mark the run rolled back.
    Rollback {
        #[command(flatten)]
        run: RunArgs,
        /// Why (recorded in the audit log).
        #[arg(long, default_value = "manual rollback")]
        reason: String,
    },
}

/// Where the run's state, audit log and report live.
#[derive(Args)]
struct StateArgs {
    /// Folder of state.json, audit.jsonl and the report [default: target/rollout]
    #[arg(long, value_name = "DIR", env = "AKIDB_ROLLOUT_DIR")]
    state_dir: Option<PathBuf>,
}

impl StateArgs {
    fn files(&self) -> RunFiles {
        RunFiles {
            dir: self
                .state_dir
                .clone()
                .unwrap_or_else(|| crate::project::root().join("target").join("rollout")),
        }
    }
}

/// The kinds of target.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum TargetKind {
    /// nginx, Prometheus, the legacy stand-in and the Candle service on this machine.
    Local,
    /// A Kubernetes cluster through its API.
    Kubernetes,
}

/// Options of `run`, `resume` and `rollback`.
#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    plan: PlanArgs,
    #[command(flatten)]
    state: StateArgs,
    /// Where the rollout acts.
    #[arg(long, value_enum, default_value = "local")]
    target: TargetKind,
    /// Run up to and including this stage, then pause (a CI job per stage uses this).
    #[arg(long, value_name = "STAGE")]
    stage: Option<String>,
    /// Approve a stage up front (repeatable; `all` approves every stage).
    #[arg(long, value_name = "STAGE")]
    approve: Vec<String>,
    /// Make this stage's canary fail, to prove the automatic rollback.
    #[arg(long, value_name = "STAGE")]
    inject_fault: Option<String>,
    /// Cap the traffic rate of load tests (req/s), for small machines.
    #[arg(long, value_name = "RATE", env = "AKIDB_ROLLOUT_MAX_RATE")]
    max_rate: Option<u32>,
    /// Never prompt for approvals; pause instead.
    #[arg(long)]
    non_interactive: bool,
    /// Run the plan as written (its own time scale, no traffic cap, no drill approvals), not
    /// the plan's `drill:` of the local target.
    #[arg(long)]
    no_drill: bool,
    /// Run the release steps for real (`ga_tag`: git tag + GitHub release; `helm_push`,
    /// `image_push`: OCI registries, the image from AKIDB_IMAGE_ARCHIVE). Skipped without it.
    #[arg(long)]
    publish: bool,
    /// Pause before the stage's first release step, so that a new job with fresh credentials
    /// publishes (the rollout workflow splits a long stage this way).
    #[arg(long, conflicts_with = "publish")]
    stop_before_publish: bool,
    /// Longest a gate waits for more traffic when its window holds too few requests to judge
    /// every percentile (P99 needs 100), before it is inconclusive and the stage pauses.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    sample_wait: u64,
    #[command(flatten, next_help_heading = "Kubernetes target (--target kubernetes)")]
    kubernetes: Box<KubernetesOptions>,
}

impl RunArgs {
    fn options(&self, settings: &drill::Settings) -> anyhow::Result<RunOptions> {
        Ok(RunOptions {
            approve: self.approve.clone(),
            inject_fault: self.inject_fault.clone(),
            stage: self.stage.clone(),
            max_rate: settings.max_rate,
            non_interactive: self.non_interactive,
            publish: self.publish,
            stop_before_publish: self.stop_before_publish,
            sample_wait: std::time::Duration::from_secs(self.sample_wait),
            drill_approvals: settings.drill_approvals,
            // The drill (local target only) approves on its own even inside a GitHub job: it
            // touches no production system. Any other run inside one takes GitHub's reviews.
            github: if settings.drill_approvals {
                None
            } else {
                crate::github::approvals::WorkflowRun::from_env()?
            },
        })
    }

    /// The run's settings: the flags given, the plan's drill for the rest (local target only).
    fn settings(&self, plan: &Plan) -> drill::Settings {
        drill::settings(
            plan.drill.as_ref(),
            drill::Asked {
                local: matches!(self.target, TargetKind::Local),
                no_drill: self.no_drill,
                time_scale: self.plan.time_scale,
                max_rate: self.max_rate,
                non_interactive: self.non_interactive,
            },
        )
    }

    /// The target; a local one keeps metrics for `plan`'s longest window (at its time scale).
    fn target(
        &self,
        sh: &Shell,
        files: &RunFiles,
        plan: Option<&Plan>,
    ) -> anyhow::Result<Box<dyn Target>> {
        let longest = plan.map_or(std::time::Duration::ZERO, |p| p.scaled(p.longest_window()));
        let retention = crate::stack::prometheus::retention(longest);
        match self.target {
            TargetKind::Local => Ok(Box::new(local_target(sh, files, retention)?)),
            TargetKind::Kubernetes => {
                Ok(Box::new(KubernetesTarget::new(*self.kubernetes.clone())?))
            }
        }
    }

    /// Refuses options that do not fit the target before anything is touched.
    fn check(&self) -> anyhow::Result<()> {
        match self.target {
            TargetKind::Local => anyhow::ensure!(
                !self.kubernetes.dry_run,
                "--dry-run prints the Kubernetes API calls of --target kubernetes; for the local \
                 target's actions use `cargo xtask rollout plan`"
            ),
            TargetKind::Kubernetes => anyhow::ensure!(
                self.inject_fault.is_none(),
                "--inject-fault breaks the canary on purpose: not on a cluster (prove the \
                 rollback with --target local)"
            ),
        }
        Ok(())
    }
}

/// `run --target kubernetes --dry-run`: the plan's cluster actions, printed, none made.
fn dry_run_kubernetes(args: &RunArgs) -> anyhow::Result<()> {
    let (file, plan) = args.plan.load()?;
    println!(
        "Dry run of {} on the kubernetes target (no API call is made)",
        file.display()
    );
    let mut target = KubernetesTarget::new(*args.kubernetes.clone())?;
    let calls = kubernetes::dry_run::walk(&plan, &mut target)?;
    println!("\n{calls} API calls printed, none made");
    Ok(())
}

/// Runs `run` or `resume` and reports how it ended; a rollback or a pause is a non-zero exit.
/// Whether `a` and `b` name the same file.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn drive(sh: &Shell, args: &RunArgs, resume: bool) -> anyhow::Result<()> {
    args.check()?;
    if args.kubernetes.dry_run {
        return dry_run_kubernetes(args);
    }
    let (file, plan) = args
        .plan
        .load()
        .context("the rollout runner only runs a valid plan")?;
    // The project's own plan: the workflow and the monitoring files must say what it says,
    // or GitHub and the alerts would act on another plan than this run.
    if same_file(&file, &crate::project::plan_path()) {
        crate::generated::plan_outputs_current(&file).with_context(|| {
            format!(
                "the files generated from {} are stale: the runner refuses to act on a plan \
                 that the workflow and the alerts do not follow",
                file.display()
            )
        })?;
    }
    let settings = args.settings(&plan);
    let plan = match settings.time_scale {
        Some(scale) => plan.with_time_scale(scale),
        None => plan,
    };
    if settings.drilling {
        println!(
            "rollout: drill of the whole plan on the local target (the plan's `drill:`): time \
             scale {}, {} of holds, traffic capped at {}; approvals {} (`--no-drill` runs the \
             plan as written)",
            plan.time_scale(),
            humantime::format_duration(std::time::Duration::from_secs(
                plan.scaled(plan.critical_path()).as_secs()
            )),
            settings
                .max_rate
                .map_or("no cap".into(), |r| format!("{r} req/s")),
            if settings.drill_approvals {
                "asked on a terminal, else given by the drill"
            } else {
                "asked on a terminal, else the run pauses"
            }
        );
    }
    if let Some(stage) = &args.inject_fault {
        anyhow::ensure!(
            plan.stages().iter().any(|s| &s.id == stage),
            "--inject-fault {stage}: the plan has no such stage"
        );
    }
    let files = args.state.files();
    std::fs::create_dir_all(&files.dir)?;
    let mut target = args.target(sh, &files, Some(&plan))?;
    let progress = run::progress::Progress::new(&plan);
    let mut runner = Runner::new(
        &plan,
        target.as_mut(),
        files.clone(),
        args.options(&settings)?,
        crate::project::root(),
    )
    .with_observer(Box::new(progress));
    let status = if resume {
        runner.resume(&file)?
    } else {
        runner.run(&file)?
    };
    println!(
        "rollout: {} (report: {}, charts: {})",
        match &status {
            RunStatus::Completed => "completed".to_string(),
            other => format!(
                "{}: {}",
                run::status_label(other),
                run::status_detail(other)
            ),
        },
        files.dir.join("report.md").display(),
        files.dir.join("report.html").display()
    );
    match status {
        RunStatus::Completed => Ok(()),
        RunStatus::Paused { .. } if args.stage.is_some() => Ok(()),
        RunStatus::Paused { .. } => std::process::exit(3),
        _ => std::process::exit(2),
    }
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
    crate::project::plan_path()
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
pub fn run(sh: &Shell, args: RolloutArgs) -> anyhow::Result<()> {
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
        RolloutCommand::Run(args) => drive(sh, &args, false),
        RolloutCommand::Resume(args) => drive(sh, &args, true),
        RolloutCommand::Status(args) => {
            let files = args.files();
            match RunState::load(&files.state())? {
                None => println!("no run in {}", files.dir.display()),
                Some(state) => {
                    println!(
                        "plan {} on {}: {} (canary weight {}%)",
                        state.plan,
                        state.target,
                        run::status_label(&state.status),
                        state.weight
                    );
                    let detail = run::status_detail(&state.status);
                    if !detail.is_empty() {
                        println!("  {detail}");
                    }
                    for (id, record) in &state.stages {
                        println!(
                            "  {id}: {} steps done{}",
                            record.done.len(),
                            if record.finished { ", finished" } else { "" }
                        );
                    }
                    let entries = AuditLog::new(files.audit(), run::actor()).read()?;
                    println!("last actions ({}):", files.audit().display());
                    for e in entries.iter().rev().take(5).rev() {
                        println!(
                            "  {} [{}] {} {} by {}: {}",
                            e.time, e.stage, e.step, e.result, e.actor, e.detail
                        );
                    }
                }
            }
            Ok(())
        }
        RolloutCommand::Approve {
            stage,
            comment,
            plan,
            state,
        } => {
            let (_, plan) = plan.load()?;
            run::approve(&state.files(), &plan, &stage, comment.as_deref())
        }
        RolloutCommand::Report(args) => crate::monitoring::weekly_report::run(args),
        RolloutCommand::Judge(args) => super::offline::judge::run(args),
        RolloutCommand::Replay(args) => super::offline::replay::run(args),
        RolloutCommand::Rollback { run: args, reason } => {
            args.check()?;
            anyhow::ensure!(
                !args.kubernetes.dry_run,
                "a rollback is one weight change; --dry-run does not apply"
            );
            let files = args.state.files();
            let mut target = args.target(sh, &files, None)?;
            run::manual_rollback(&files, target.as_mut(), &reason)
        }
    }
}
