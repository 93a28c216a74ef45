//! The runner: executes a plan's stages in order on a target, asks for approvals, evaluates
//! gates, watches the rollback triggers while traffic is shifted, rolls back on failure, and
//! persists every finished step so that `resume` never repeats one.
//!
//! One file per responsibility, each an `impl Runner` block: `lifecycle` (run, resume, stages),
//! `steps` (what each step kind does), `sample` (a gate's measurement), `triggers` (holds and
//! the rollback triggers), `rollback`, `approvals`. The verdict maths is `gate`.

mod approvals;
pub mod audit;
pub mod compare;
pub mod gate;
mod lifecycle;
mod load_test;
pub mod lock;
pub mod memory;
pub mod observe;
pub mod progress;
pub mod report;
pub mod retry;
mod rollback;
mod sample;
pub mod state;
mod steps;
pub mod timeline;
mod triggers;

pub use self::{approvals::approve, rollback::manual_rollback};

#[cfg(test)]
mod compare_tests;
#[cfg(test)]
mod failsafe_tests;
#[cfg(test)]
mod fake_target;
#[cfg(test)]
mod notify_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod trigger_tests;

use std::{
    collections::BTreeMap,
    io::IsTerminal,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

use self::{
    audit::AuditLog,
    gate::{judge, Verdict},
    lock::RunLock,
    retry::RetryPolicy,
    state::{Approval, GateRecord, RollbackRecord, RunState, RunStatus, FORMAT},
    timeline::Event,
};
use super::{
    plan::{
        rollback::RollbackCondition,
        slo::SloThresholds,
        step::{ParityReference, Step},
        Plan, Stage,
    },
    publish,
    targets::{Measurement, Outcome, Side, Target},
};

/// How a run was asked to behave.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Stages approved up front (`--approve STAGE`; `all` approves every stage).
    pub approve: Vec<String>,
    /// Make this stage's canary fail, to prove the automatic rollback.
    pub inject_fault: Option<String>,
    /// Run only up to and including this stage (`--stage`), as a CI job per stage does.
    pub stage: Option<String>,
    /// Upper bound on the traffic rate (small machines).
    pub max_rate: Option<u32>,
    /// Never prompt, even on a terminal.
    pub non_interactive: bool,
    /// Run the release steps (`ga_tag`, `helm_push`, `image_push`) for real; skipped otherwise.
    pub publish: bool,
    /// Pause before a stage's first release step, for a fresh job to publish with fresh
    /// credentials (`--stop-before-publish`).
    pub stop_before_publish: bool,
    /// Longest a gate waits for traffic when its window holds too few requests to judge
    /// (`--sample-wait`); zero judges at once.
    pub sample_wait: Duration,
    /// The plan's drill approves stages when no terminal asks (recorded as `drill`).
    pub drill_approvals: bool,
    /// Inside GitHub Actions: the run whose approvals on GitHub are the only ones that count.
    pub github: Option<crate::github::approvals::WorkflowRun>,
}

/// Files of a run, in one folder (`target/rollout/` by default).
#[derive(Clone, Debug)]
pub struct RunFiles {
    /// The folder.
    pub dir: PathBuf,
}

impl RunFiles {
    /// The state file.
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// The audit log.
    pub fn audit(&self) -> PathBuf {
        self.dir.join("audit.jsonl")
    }

    /// The timeline the HTML report draws.
    pub fn timeline(&self) -> PathBuf {
        self.dir.join("timeline.jsonl")
    }
}

/// Who is acting: the CI actor, else the operator's user name.
pub fn actor() -> String {
    std::env::var("GITHUB_ACTOR")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "operator".to_string())
}

/// SHA-256 of the plan file.
pub fn plan_digest(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(Sha256::digest(bytes)))
}

/// Fewest requests a rollback trigger judges.
const MIN_TRIGGER_REQUESTS: u64 = 20;
/// Shortest window a trigger looks at (Prometheus needs two scrapes).
const MIN_TRIGGER_WINDOW: Duration = Duration::from_secs(2);
/// Scrapes that may still carry traffic from before a shift.
const SCRAPE_MARGIN: Duration = Duration::from_secs(2);
/// Shortest window the memory-leak trigger judges growth over, whatever the time scale: a few
/// evaluations' worth, so that one reading is no leak. The canary warms up under week 1's load
/// test (all of it on Candle), before any trigger watches it.
const MIN_MEMORY_WINDOW: Duration = Duration::from_secs(15);
/// Longest time between two evaluations of the triggers that still counts as "at every
/// evaluation" for a pending trigger's `for`.
const MAX_EVALUATION_GAP: Duration = Duration::from_secs(5);
/// How often a hold writes the time it has held to the state.
const HOLD_SAVE_INTERVAL: Duration = Duration::from_secs(1);
/// Longest window a trigger widens to when traffic is sparse.
const MAX_TRIGGER_WINDOW: Duration = Duration::from_secs(16);
/// Longest a gate short of requests holds before it measures again.
const SAMPLE_RECHECK: Duration = Duration::from_secs(15);
/// Longest time a hold goes on while the rollback triggers cannot be evaluated (the metrics
/// system is unreachable): past it the canary is unwatched, and the stage pauses.
const BLIND_LIMIT: Duration = Duration::from_secs(10);

/// What a stage's execution ended with.
enum StageEnd {
    Finished,
    Paused(String),
    RolledBack(String),
}

/// Executes a plan on a target.
pub struct Runner<'a> {
    plan: &'a Plan,
    target: &'a mut dyn Target,
    files: RunFiles,
    audit: AuditLog,
    options: RunOptions,
    /// The folder the plan's corpus paths are relative to (the repository root).
    corpus_root: PathBuf,
    fault_at: Option<Instant>,
    /// When the split last changed: triggers judge only traffic at the current split (earlier
    /// traffic, such as a parity check's direct requests, says nothing about it).
    shifted_at: Instant,
    /// How target actions are retried before a step gives up.
    retry: RetryPolicy,
    /// The canary's memory while traffic is shifted, for the memory-leak trigger.
    memory: memory::MemoryHistory,
    /// The timeline recorder and whoever watches the run.
    watch: observe::Watch,
    /// Each rollback trigger's `for:` state, in plan order.
    pending: Vec<super::plan::rollback::Pending>,
    /// When the triggers were last evaluated.
    last_evaluation: Option<Instant>,
}

impl<'a> Runner<'a> {
    /// A runner over `plan` and `target`, keeping its files in `files`.
    pub fn new(
        plan: &'a Plan,
        target: &'a mut dyn Target,
        files: RunFiles,
        options: RunOptions,
        corpus_root: PathBuf,
    ) -> Self {
        let audit = AuditLog::new(files.audit(), actor());
        let watch = observe::Watch::new(timeline::Timeline::new(files.timeline()));
        Self {
            watch,
            plan,
            target,
            files,
            audit,
            options,
            corpus_root,
            fault_at: None,
            shifted_at: Instant::now(),
            memory: memory::MemoryHistory::default(),
            pending: Vec::new(),
            last_evaluation: None,
            retry: RetryPolicy::default(),
        }
    }

    /// The same runner retrying target actions as `policy` says.
    #[cfg(test)]
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Records that the lock's last holder was a run that died without releasing it.
    pub(super) fn note_takeover(&self, lock: &RunLock) -> anyhow::Result<()> {
        match lock.took_over_from() {
            Some(pid) => self.audit.record(
                "",
                "lock",
                "taken_over",
                &format!("the run of pid {pid} ended without finishing (killed)"),
            ),
            None => Ok(()),
        }
    }

    /// Refuses to go on over an audit log that does not parse: appending to it would bury the
    /// damage. Returns its entries.
    pub(super) fn checked_audit(&self) -> anyhow::Result<Vec<audit::AuditEntry>> {
        self.audit.read().context(
            "the audit log is corrupt; the run does not go on without its history (inspect the \
             line named, repair or move the log away)",
        )
    }

    pub(super) fn save(&self, state: &RunState) -> anyhow::Result<()> {
        state.save(&self.files.state())
    }

    /// Runs `op` on the target with the run's retry policy.
    pub(super) fn act<T>(
        &mut self,
        what: &str,
        mut op: impl FnMut(&mut dyn Target) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let policy = self.retry;
        let target = &mut *self.target;
        Ok(policy.run(what, || op(&mut *target))?)
    }

    /// Brings the target up as the finished steps left it.
    pub(super) fn restore(&mut self, state: &RunState) -> anyhow::Result<()> {
        self.act("starting the target", |t| t.start())?;
        let weight = state.weight;
        self.act(&format!("restoring canary weight {weight}%"), |t| {
            t.set_canary_weight(weight)
        })?;
        self.shifted_at = Instant::now();
        if let Some(rate) = state.traffic_rate {
            let rate = self.capped(rate);
            self.act("restarting traffic", |t| t.start_traffic(rate))?;
        }
        Ok(())
    }

    pub(super) fn capped(&self, rate: u32) -> u32 {
        self.options.max_rate.map_or(rate, |max| rate.min(max))
    }
}

/// How one step ended.
enum StepEnd {
    Done(String),
    Skipped(String),
    Inconclusive(String),
    Failed(String),
    Triggered(String, Instant),
}

fn outcome(o: Outcome) -> StepEnd {
    match o {
        Outcome::Done(d) => StepEnd::Done(d),
        Outcome::Skipped(d) => StepEnd::Skipped(d),
    }
}

/// Short label of a status, for the audit log.
pub fn status_label(status: &RunStatus) -> &'static str {
    match status {
        RunStatus::Running => "running",
        RunStatus::Paused { .. } => "paused",
        RunStatus::RolledBack { .. } => "rolled_back",
        RunStatus::Completed => "completed",
    }
}

/// The reason of a status, if any.
pub fn status_detail(status: &RunStatus) -> String {
    match status {
        RunStatus::Paused { reason } | RunStatus::RolledBack { reason } => reason.clone(),
        _ => String::new(),
    }
}
