//! The runner: executes a plan's stages in order on a target, asks for approvals, evaluates
//! gates, watches the rollback triggers while traffic is shifted, rolls back on failure, and
//! persists every finished step so that `resume` never repeats one.

pub mod audit;
pub mod gate;
pub mod lock;
pub mod memory;
pub mod report;
pub mod retry;
pub mod state;

#[cfg(test)]
mod failsafe_tests;
#[cfg(test)]
mod fake_target;

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
};
use super::{
    plan::{
        rollback::RollbackCondition,
        slo::SloThresholds,
        step::{ParityReference, Step},
        Plan, Stage,
    },
    publish,
    target::{Measurement, Outcome, Side, Target},
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
    /// Longest a gate waits for traffic when its window holds too few requests to judge
    /// (`--sample-wait`); zero judges at once.
    pub sample_wait: Duration,
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

/// Environments GitHub Actions has approved for this job (the rollout workflow sets
/// `AKIDB_ROLLOUT_APPROVED` to the job's environment, which GitHub only runs once approved).
fn ci_approved() -> Vec<String> {
    std::env::var("AKIDB_ROLLOUT_APPROVED")
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Fewest requests a rollback trigger judges.
const MIN_TRIGGER_REQUESTS: u64 = 20;
/// Shortest window a trigger looks at (Prometheus needs two scrapes).
const MIN_TRIGGER_WINDOW: Duration = Duration::from_secs(2);
/// Scrapes that may still carry traffic from before a shift.
const SCRAPE_MARGIN: Duration = Duration::from_secs(2);
/// Shortest window the memory-leak trigger judges growth over, whatever the time scale: a
/// service's memory rises for minutes as load and batch sizes rise, and in a plan compressed to
/// minutes that warm-up would read as a leak.
const MIN_MEMORY_WINDOW: Duration = Duration::from_secs(300);
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
        Self {
            plan,
            target,
            files,
            audit,
            options,
            corpus_root,
            fault_at: None,
            shifted_at: Instant::now(),
            memory: memory::MemoryHistory::default(),
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
    fn note_takeover(&self, lock: &RunLock) -> anyhow::Result<()> {
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
    fn checked_audit(&self) -> anyhow::Result<Vec<audit::AuditEntry>> {
        self.audit.read().context(
            "the audit log is corrupt; the run does not go on without its history (inspect the \
             line named, repair or move the log away)",
        )
    }

    /// Starts a new run (refused when an unfinished one exists: use `resume`).
    pub fn run(&mut self, plan_path: &Path) -> anyhow::Result<RunStatus> {
        let lock = RunLock::acquire(&self.files.dir)?;
        let history = self.checked_audit()?;
        self.note_takeover(&lock)?;
        let existing = RunState::load(&self.files.state())?;
        if existing.is_none() {
            if let Some(last) = audit::unfinished_run(&history) {
                bail!(
                    "{} is missing, but {} says a run is unfinished (last: {} {} at {}); \
                     refusing to start over from zero: restore the state file, or roll the \
                     run back with `cargo xtask rollout rollback`",
                    self.files.state().display(),
                    self.files.audit().display(),
                    last.step,
                    last.result,
                    last.time
                );
            }
        }
        if let Some(existing) = existing {
            if matches!(
                existing.status,
                RunStatus::Running | RunStatus::Paused { .. }
            ) {
                bail!(
                    "a run of `{}` is unfinished ({:?}); continue it with `cargo xtask rollout \
                     resume`, or roll it back with `cargo xtask rollout rollback`",
                    existing.plan,
                    existing.status
                );
            }
        }
        let state = RunState {
            format: FORMAT,
            plan: self.plan.name.clone(),
            plan_sha256: plan_digest(plan_path)?,
            target: self.target.name().to_string(),
            time_scale: self.plan.time_scale().factor(),
            status: RunStatus::Running,
            weight: 0,
            traffic_rate: None,
            stages: BTreeMap::new(),
            approvals: BTreeMap::new(),
            inject_fault: self.options.inject_fault.clone(),
            rollback: None,
        };
        state.save(&self.files.state())?;
        self.audit.record(
            "",
            "run",
            "started",
            &format!(
                "plan {} on target {}, time scale {}",
                self.plan.name,
                self.target.name(),
                self.plan.time_scale().factor()
            ),
        )?;
        self.execute(state)
    }

    /// Continues an unfinished run where it stopped.
    pub fn resume(&mut self, plan_path: &Path) -> anyhow::Result<RunStatus> {
        let lock = RunLock::acquire(&self.files.dir)?;
        self.checked_audit()?;
        self.note_takeover(&lock)?;
        let Some(mut state) = RunState::load(&self.files.state())? else {
            bail!(
                "no run to resume in {} (start one with `cargo xtask rollout run`)",
                self.files.dir.display()
            );
        };
        if state.plan_sha256 != plan_digest(plan_path)? {
            bail!(
                "{} changed since this run started; a resumed run must execute the plan it began \
                 with (roll back, then start a new run)",
                plan_path.display()
            );
        }
        match &state.status {
            RunStatus::Completed => bail!("the run already completed"),
            RunStatus::RolledBack { reason } => {
                bail!("the run was rolled back ({reason}); start a new run")
            }
            _ => {}
        }
        state.status = RunStatus::Running;
        if state.inject_fault.is_none() {
            state.inject_fault = self.options.inject_fault.clone();
        }
        self.audit.record(
            "",
            "resume",
            "started",
            &format!("weight {}%", state.weight),
        )?;
        self.execute(state)
    }

    fn save(&self, state: &RunState) -> anyhow::Result<()> {
        state.save(&self.files.state())
    }

    /// Runs `op` on the target with the run's retry policy.
    fn act<T>(
        &mut self,
        what: &str,
        mut op: impl FnMut(&mut dyn Target) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let policy = self.retry;
        let target = &mut *self.target;
        Ok(policy.run(what, || op(&mut *target))?)
    }

    /// Brings the target up as the finished steps left it.
    fn restore(&mut self, state: &RunState) -> anyhow::Result<()> {
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

    fn execute(&mut self, mut state: RunState) -> anyhow::Result<RunStatus> {
        let end = match self.restore(&state) {
            Ok(()) => self.execute_stages(&mut state)?,
            Err(error) => {
                self.audit
                    .record("", "start", "failed", &format!("{error:#}"))?;
                RunStatus::Paused {
                    reason: format!("the target could not be brought up: {error:#}"),
                }
            }
        };
        state.status = end.clone();
        self.save(&state)?;
        self.audit
            .record("", "run", status_label(&end), &status_detail(&end))?;
        report::write(&self.files.dir, self.plan, &state)?;
        self.target.stop()?;
        Ok(end)
    }

    fn execute_stages(&mut self, state: &mut RunState) -> anyhow::Result<RunStatus> {
        let stages: Vec<&Stage> = self.plan.stages().iter().collect();
        let mut end = RunStatus::Completed;
        for stage in stages {
            if state.stage_done(&stage.id) {
                continue;
            }
            let started = Instant::now();
            let _ = self.target.take_traffic()?;
            let result = self.execute_stage(stage, state);
            let traffic = self.target.take_traffic().unwrap_or_default();
            let record = state.stage(&stage.id);
            state::merge(&mut record.traffic, &traffic);
            if let Some(after) = record.after_shift.as_mut() {
                state::merge(after, &traffic);
            }
            record.seconds += started.elapsed().as_secs_f64();
            let failed = record.traffic.failed;
            if let Some(rollback) = state.rollback.as_mut().filter(|r| r.stage == stage.id) {
                rollback.failed_requests = failed;
            }
            match result {
                Ok(StageEnd::Finished) => {
                    let weight = state.weight;
                    let record = state.stage(&stage.id);
                    record.finished = true;
                    record.weight = weight;
                    self.save(state)?;
                    self.audit.record(
                        &stage.id,
                        "stage",
                        "ok",
                        &format!("canary at {}%", state.weight),
                    )?;
                    if self.options.stage.as_deref() == Some(stage.id.as_str()) {
                        end = RunStatus::Paused {
                            reason: format!("ran up to stage {} as asked", stage.id),
                        };
                        break;
                    }
                }
                Ok(StageEnd::Paused(reason)) => {
                    end = RunStatus::Paused { reason };
                    break;
                }
                Ok(StageEnd::RolledBack(reason)) => {
                    end = RunStatus::RolledBack { reason };
                    break;
                }
                Err(error) => {
                    // An action failed after its retries (tool down, API error): pause with the
                    // split as the state records it; the failed step is not marked done, so
                    // `resume` runs it again once the cause is fixed.
                    self.save(state)?;
                    self.audit
                        .record(&stage.id, "stage", "paused", &format!("{error:#}"))?;
                    end = RunStatus::Paused {
                        reason: format!("stage {} failed: {error:#}", stage.id),
                    };
                    break;
                }
            }
        }
        Ok(end)
    }

    fn capped(&self, rate: u32) -> u32 {
        self.options.max_rate.map_or(rate, |max| rate.min(max))
    }

    fn approved(&mut self, stage: &Stage, state: &mut RunState) -> anyhow::Result<bool> {
        let Some(environment) = &stage.environment else {
            return Ok(true);
        };
        if state.approvals.contains_key(&stage.id) {
            return Ok(true);
        }
        let via = if self
            .options
            .approve
            .iter()
            .any(|a| a == &stage.id || a == "all")
        {
            Some("--approve")
        } else if ci_approved().iter().any(|e| e == environment) {
            Some("CI environment")
        } else if !self.options.non_interactive && std::io::stdin().is_terminal() {
            use std::io::Write;
            print!(
                "Approve stage {} (environment `{environment}`)? [y/N] ",
                stage.id
            );
            std::io::stdout().flush()?;
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer)?;
            answer.trim().eq_ignore_ascii_case("y").then_some("prompt")
        } else {
            None
        };
        let Some(via) = via else {
            return Ok(false);
        };
        state.approvals.insert(
            stage.id.clone(),
            Approval {
                actor: self.audit.actor().to_string(),
                via: via.to_string(),
                time: audit::now(),
            },
        );
        self.save(state)?;
        self.audit.record(
            &stage.id,
            "approve",
            "approved",
            &format!("environment {environment} via {via}"),
        )?;
        Ok(true)
    }

    fn execute_stage(&mut self, stage: &Stage, state: &mut RunState) -> anyhow::Result<StageEnd> {
        for need in &stage.needs {
            if !state.stage_done(need) {
                bail!("stage {} needs {need}, which has not finished", stage.id);
            }
        }
        if !self.approved(stage, state)? {
            let env = stage.environment.as_deref().unwrap_or_default();
            let reason = format!(
                "stage {} waits for approval of environment `{env}`: run `cargo xtask rollout \
                 approve {}` (or pass --approve {}), then `cargo xtask rollout resume`",
                stage.id, stage.id, stage.id
            );
            self.audit.record(&stage.id, "approve", "paused", &reason)?;
            return Ok(StageEnd::Paused(reason));
        }
        for (index, step) in stage.steps.iter().enumerate() {
            if state.step_done(&stage.id, index) {
                continue;
            }
            let label = format!("{}#{index}", step.kind());
            self.audit.record(&stage.id, &label, "started", "")?;
            let end = match self.execute_step(stage, index, step, state) {
                Ok(end) => end,
                Err(error) => {
                    self.audit
                        .record(&stage.id, &label, "error", &format!("{error:#}"))?;
                    return Err(error.context(label));
                }
            };
            match end {
                StepEnd::Done(detail) => {
                    state.stage(&stage.id).done.push(index);
                    self.save(state)?;
                    self.audit.record(&stage.id, &label, "ok", &detail)?;
                }
                StepEnd::Skipped(detail) => {
                    state.stage(&stage.id).done.push(index);
                    self.save(state)?;
                    self.audit.record(&stage.id, &label, "skipped", &detail)?;
                }
                StepEnd::Inconclusive(detail) => {
                    self.audit
                        .record(&stage.id, &label, "inconclusive", &detail)?;
                    self.save(state)?;
                    return Ok(StageEnd::Paused(format!(
                        "{label} of stage {} was inconclusive ({detail}); the stage does not \
                         promote: fix the measurement, then resume",
                        stage.id
                    )));
                }
                StepEnd::Failed(detail) => {
                    self.audit.record(&stage.id, &label, "failed", &detail)?;
                    let reason = format!("{label} of stage {} failed: {detail}", stage.id);
                    self.roll_back(stage, state, &reason, None)?;
                    return Ok(StageEnd::RolledBack(reason));
                }
                StepEnd::Triggered(trigger, detected) => {
                    let reason = format!("rollback trigger {trigger} fired in stage {}", stage.id);
                    self.audit.record(&stage.id, &label, "failed", &reason)?;
                    self.roll_back(stage, state, &reason, Some(detected))?;
                    return Ok(StageEnd::RolledBack(reason));
                }
            }
        }
        Ok(StageEnd::Finished)
    }

    /// `window`, cut to the traffic since the split last changed (less the scrapes that may
    /// still hold earlier traffic): a gate judges the split it is about.
    fn at_current_split(&self, window: Duration) -> Duration {
        window
            .min(self.shifted_at.elapsed().saturating_sub(SCRAPE_MARGIN))
            .max(MIN_TRIGGER_WINDOW)
    }

    /// A gate's verdict, overruled by a failure rate at the front door above the gate's
    /// threshold: requests the canary never answered are missing from its own metrics.
    fn with_front_door(
        &self,
        verdict: Verdict,
        window: Duration,
        thresholds: &SloThresholds,
    ) -> Verdict {
        if matches!(verdict, Verdict::Fail(_)) {
            return verdict;
        }
        match self.target.front_door(Side::Canary, window) {
            Ok((answered, failed)) if answered > 0 => {
                let rate = 100.0 * failed as f64 / answered as f64;
                if gate::error_rate_breached(answered, failed, thresholds.error_rate.value()) {
                    Verdict::Fail(format!(
                        "front door: {failed} of {answered} canary requests failed ({rate:.3}% >= {})",
                        thresholds.error_rate
                    ))
                } else {
                    verdict
                }
            }
            _ => verdict,
        }
    }

    fn gate(
        &mut self,
        stage: &Stage,
        index: usize,
        kind: &str,
        verdict: Verdict,
        state: &mut RunState,
    ) -> StepEnd {
        state.stage(&stage.id).gates.push(GateRecord {
            step: index,
            kind: kind.to_string(),
            verdict: verdict.label().to_string(),
            detail: verdict.detail().to_string(),
        });
        match verdict {
            Verdict::Pass(d) => StepEnd::Done(d),
            Verdict::Fail(d) => StepEnd::Failed(d),
            Verdict::Inconclusive(d) => StepEnd::Inconclusive(d),
        }
    }

    fn execute_step(
        &mut self,
        stage: &Stage,
        index: usize,
        step: &Step,
        state: &mut RunState,
    ) -> anyhow::Result<StepEnd> {
        let scale = self.plan.time_scale();
        Ok(match step {
            Step::LoadTest(s) => {
                let rate = self.capped(s.rate);
                state.traffic_rate = Some(s.rate);
                self.save(state)?;
                self.act(&format!("starting traffic at {rate} req/s"), |t| {
                    t.start_traffic(rate)
                })?;
                let duration = scale.apply(s.duration);
                if let Some(end) = self.hold(duration, state)? {
                    return Ok(end);
                }
                // Week 1 sends no production traffic to the canary, so the load test is judged
                // on what served it; once the canary takes traffic, on the canary.
                let side = if state.weight == 0 {
                    Side::Stable
                } else {
                    Side::Canary
                };
                let min = scale
                    .apply_count(u64::from(s.rate) * s.duration.as_secs() / 2)
                    .min(u64::from(rate));
                let verdict = match self.measure(side, self.at_current_split(duration)) {
                    Ok(m) => judge(&m, &s.thresholds, min),
                    Err(error) => gate::unmeasurable(&error),
                };
                self.gate(stage, index, "load_test", verdict, state)
            }
            Step::Parity(s) => {
                let corpus = self.corpus_root.join(&s.corpus);
                let against = s.against;
                let report = self.act(&format!("parity check on {}", corpus.display()), |t| {
                    t.parity(&corpus, against)
                })?;
                let detail = format!(
                    "{} texts vs {}: min cosine {:.7}, token-count mismatches {}",
                    report.texts,
                    match s.against {
                        ParityReference::Legacy => "the legacy service",
                        ParityReference::Golden => "the reference vectors",
                    },
                    report.min_cosine,
                    report.token_mismatches
                );
                let verdict = if report.texts == 0 {
                    Verdict::Inconclusive(format!("{}: no texts", corpus.display()))
                } else if report.min_cosine >= s.min_cosine && report.token_mismatches == 0 {
                    Verdict::Pass(detail)
                } else {
                    Verdict::Fail(format!("{detail} (need cosine >= {})", s.min_cosine))
                };
                self.gate(stage, index, "parity", verdict, state)
            }
            Step::Canary(s) => {
                let weight = s.weight.percent();
                let before = self.target.take_traffic()?;
                self.act(&format!("setting canary weight {weight}%"), |t| {
                    t.set_canary_weight(weight)
                })?;
                self.shifted_at = Instant::now();
                state.weight = weight;
                let record = state.stage(&stage.id);
                state::merge(&mut record.traffic, &before);
                record.after_shift = Some(Default::default());
                self.save(state)?;
                if self.options.inject_fault.as_deref() == Some(stage.id.as_str())
                    || state.inject_fault.as_deref() == Some(stage.id.as_str())
                {
                    self.target.inject_fault()?;
                    self.fault_at = Some(Instant::now());
                    self.audit.record(
                        &stage.id,
                        "inject_fault",
                        "ok",
                        "every canary request fails from now on",
                    )?;
                }
                StepEnd::Done(format!("canary weight {weight}%"))
            }
            Step::SloCheck(s) => {
                let window = scale.apply(s.window);
                // The plan's minimum assumes the plan's traffic; a run capped by --max-rate
                // sends proportionally less, so it expects proportionally fewer requests.
                let planned = scale.apply_count(s.min_requests);
                let min_requests = match (state.traffic_rate, self.options.max_rate) {
                    (Some(rate), Some(max)) if max < rate && rate > 0 => {
                        (planned * u64::from(max)).div_ceil(u64::from(rate)).max(1)
                    }
                    _ => planned,
                };
                let verdict = match self.sample(
                    &stage.id,
                    Side::Canary,
                    window,
                    gate::sample_needed(min_requests),
                    &s.thresholds,
                    state,
                )? {
                    Sample::Measured(m) => judge(&m, &s.thresholds, min_requests),
                    Sample::Unmeasurable(error) => gate::unmeasurable(&error),
                    Sample::Ended(end) => return Ok(end),
                };
                let verdict = self.with_front_door(verdict, window, &s.thresholds);
                self.gate(stage, index, "slo_check", verdict, state)
            }
            Step::Soak(s) => {
                let duration = scale.apply(s.duration);
                if let Some(end) = self.hold(duration, state)? {
                    return Ok(end);
                }
                let side = if state.weight == 0 {
                    Side::Stable
                } else {
                    Side::Canary
                };
                let mut verdict = match self.sample(
                    &stage.id,
                    side,
                    duration,
                    gate::sample_needed(1),
                    &s.thresholds,
                    state,
                )? {
                    Sample::Measured(m) => judge(&m, &s.thresholds, 1),
                    Sample::Unmeasurable(error) => gate::unmeasurable(&error),
                    Sample::Ended(end) => return Ok(end),
                };
                if side == Side::Canary {
                    verdict = self.with_front_door(verdict, duration, &s.thresholds);
                }
                self.gate(stage, index, "soak", verdict, state)
            }
            Step::Wait(s) => match self.hold(scale.apply(s.duration), state)? {
                Some(end) => return Ok(end),
                None => StepEnd::Done(format!("waited {:?}", scale.apply(s.duration))),
            },
            Step::Scale(s) => outcome(self.act(
                &format!("scaling {} to {}", s.deployment, s.replicas),
                |t| t.scale(&s.deployment, s.replicas),
            )?),
            Step::MlxTeardown(s) => {
                let grace = scale.apply(s.grace_period);
                outcome(self.act(&format!("retiring {}", s.deployment), |t| {
                    t.teardown_legacy(&s.deployment, grace)
                })?)
            }
            Step::Notify(s) => StepEnd::Done(format!("{}: {}", s.channel, s.message)),
            Step::GaTag(s) => outcome(publish::ga_tag(s, self.options.publish)?),
            Step::HelmPush(s) => outcome(publish::helm_push(s, self.options.publish)?),
            Step::ImagePush(s) => outcome(publish::image_push(s, self.options.publish)?),
        })
    }

    /// A gate's measurement of `side` over the trailing `window`, with at least `needed`
    /// requests in it where traffic allows. A window that holds fewer is widened back to the
    /// last weight shift (the same split), then the runner holds on, watching the rollback
    /// triggers, while traffic comes in, for at most `--sample-wait`. What it has then is
    /// judged, which is inconclusive when it is still too small.
    fn sample(
        &mut self,
        stage: &str,
        side: Side,
        window: Duration,
        needed: u64,
        thresholds: &SloThresholds,
        state: &RunState,
    ) -> anyhow::Result<Sample> {
        let deadline = Instant::now() + self.options.sample_wait;
        let mut window = self.at_current_split(window);
        let mut widened = false;
        let mut waited = false;
        loop {
            let m = match self.measure(side, window) {
                Ok(m) => m,
                Err(error) => return Ok(Sample::Unmeasurable(error)),
            };
            if m.requests >= needed {
                return Ok(Sample::Measured(m));
            }
            let since_shift = self.at_current_split(Duration::MAX);
            if !widened && window < since_shift {
                widened = true;
                window = since_shift;
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.errors_breach(side, &m, window, thresholds) {
                return Ok(Sample::Measured(m));
            }
            // Hold for about the time the missing requests take at the window's rate, at most
            // SAMPLE_RECHECK at a time: the rate of a short window is a rough guess.
            let rate = m.requests as f64 / window.as_secs_f64().max(1.0);
            let missing = (needed - m.requests) as f64;
            let expected = if rate > 0.0 {
                Duration::from_secs_f64(1.1 * missing / rate)
            } else {
                SAMPLE_RECHECK
            };
            let hold = expected
                .max(Duration::from_secs(1))
                .min(SAMPLE_RECHECK)
                .min(left);
            if !waited {
                waited = true;
                self.audit.record(
                    stage,
                    "sample_wait",
                    "waiting",
                    &format!(
                        "{} requests on the {side:?} side since the last shift, {needed} needed \
                         to judge: waiting up to {:.0}s for more traffic",
                        m.requests,
                        left.as_secs_f64()
                    ),
                )?;
            }
            if let Some(end) = self.hold(hold, state)? {
                return Ok(Sample::Ended(end));
            }
            window = self.at_current_split(Duration::MAX);
        }
    }

    /// Whether the errors already seen breach the error-rate threshold, in the side's own
    /// metrics or, for the canary, at the front door (a canary that answers nothing has no
    /// requests of its own): errors are judged on any sample, so a breach waits for no more
    /// traffic.
    fn errors_breach(
        &self,
        side: Side,
        m: &Measurement,
        window: Duration,
        thresholds: &SloThresholds,
    ) -> bool {
        let limit = thresholds.error_rate.value();
        gate::error_rate_breached(m.requests, m.errors, limit)
            || (side == Side::Canary
                && self
                    .target
                    .front_door(Side::Canary, window)
                    .is_ok_and(|(answered, failed)| {
                        gate::error_rate_breached(answered, failed, limit)
                    }))
    }

    /// A server-side measurement, retried as the run's policy says.
    fn measure(&mut self, side: Side, window: Duration) -> anyhow::Result<Measurement> {
        self.act(&format!("measuring the {side:?} side"), |t| {
            t.measure(side, window)
        })
    }

    /// Waits `duration`, checking the rollback triggers while the canary takes traffic.
    /// Ends early with the trigger that fired, or inconclusive when the triggers could not be
    /// evaluated for [`BLIND_LIMIT`] or at all during the hold: an unwatched canary does not
    /// go on.
    fn hold(&mut self, duration: Duration, state: &RunState) -> anyhow::Result<Option<StepEnd>> {
        let until = Instant::now() + duration;
        let poll = Duration::from_millis(500);
        let mut blind: Option<Instant> = None;
        let mut watched = false;
        let mut last_reason = String::new();
        while Instant::now() < until {
            std::thread::sleep(poll.min(until.saturating_duration_since(Instant::now())));
            if state.weight == 0 {
                continue;
            }
            match self.check_triggers() {
                TriggerCheck::Fired(name) => {
                    return Ok(Some(StepEnd::Triggered(name, Instant::now())))
                }
                TriggerCheck::TooSoon => {}
                TriggerCheck::Quiet => {
                    watched = true;
                    blind = None;
                }
                TriggerCheck::Blind(reason) => {
                    let since = *blind.get_or_insert_with(Instant::now);
                    if since.elapsed() >= BLIND_LIMIT {
                        return Ok(Some(StepEnd::Inconclusive(blind_reason(
                            since.elapsed(),
                            &reason,
                        ))));
                    }
                    last_reason = reason;
                }
            }
        }
        match blind {
            Some(since) if !watched => Ok(Some(StepEnd::Inconclusive(blind_reason(
                since.elapsed(),
                &last_reason,
            )))),
            _ => Ok(None),
        }
    }

    /// The rollback triggers judged on the current traffic.
    fn check_triggers(&mut self) -> TriggerCheck {
        if self.shifted_at.elapsed() < MIN_TRIGGER_WINDOW {
            return TriggerCheck::TooSoon;
        }
        match self.fired_trigger() {
            Ok(Some(name)) => TriggerCheck::Fired(name),
            Ok(None) => TriggerCheck::Quiet,
            Err(error) => TriggerCheck::Blind(format!("{error:#}")),
        }
    }

    /// The first rollback trigger whose condition holds now, by its name; an error when the
    /// canary cannot be measured at all.
    fn fired_trigger(&mut self) -> anyhow::Result<Option<String>> {
        let scale = self.plan.time_scale();
        for trigger in &self.plan.rollback {
            // A scaled window may hold only a request or two (the traffic rate is not scaled),
            // and one slow request is not a sustained breach: widen the window until it holds
            // enough requests to judge, and judge nothing on less.
            let mut window = scale.apply(trigger.when.window()).max(MIN_TRIGGER_WINDOW);
            let since_shift = self.shifted_at.elapsed();
            if since_shift < MIN_TRIGGER_WINDOW {
                // Too soon after a shift to have traffic at the new split.
                return Ok(None);
            }
            window = window.min(since_shift);
            let widest = MAX_TRIGGER_WINDOW.min(since_shift);
            let m = loop {
                match self.target.measure(Side::Canary, window) {
                    Ok(m) if m.requests >= MIN_TRIGGER_REQUESTS => break Some(m),
                    Ok(_) if window < widest => window = (window * 2).min(widest),
                    // Too few requests to judge: not a reason to roll back, and the gate after
                    // the hold is inconclusive on them.
                    Ok(_) => break None,
                    // Unmeasurable: not a reason to roll back either, but the hold must know
                    // that nothing watches the canary.
                    Err(error) => return Err(error.context("evaluating the rollback triggers")),
                }
            };
            // The front door sees what the canary's own metrics cannot: requests it never
            // answered. An error-rate trigger fires on either view.
            if let RollbackCondition::ErrorRate(sustained) = &trigger.when {
                if let Ok((answered, failed)) = self.target.front_door(Side::Canary, window) {
                    if answered >= MIN_TRIGGER_REQUESTS
                        && 100.0 * failed as f64 / answered as f64 > sustained.above.value()
                    {
                        return Ok(Some(format!("{} (seen at the front door)", trigger.name)));
                    }
                }
            }
            let Some(m) = m else { continue };
            let fired = match &trigger.when {
                RollbackCondition::ErrorRate(s) => {
                    m.requests > 0 && 100.0 * m.errors as f64 / m.requests as f64 > s.above.value()
                }
                RollbackCondition::P95Latency(s) => m.p95.is_some_and(|p| p > s.above.0),
                RollbackCondition::MemoryGrowth(growth) => {
                    let Some(bytes) = m.memory_bytes else {
                        continue;
                    };
                    self.memory.record(Instant::now(), bytes);
                    self.memory
                        .growth(scale.apply(growth.over).max(MIN_MEMORY_WINDOW))
                        .is_some_and(|percent| percent > growth.above.value())
                }
            };
            if fired {
                return Ok(Some(trigger.name.clone()));
            }
        }
        Ok(None)
    }

    fn roll_back(
        &mut self,
        stage: &Stage,
        state: &mut RunState,
        reason: &str,
        detected: Option<Instant>,
    ) -> anyhow::Result<()> {
        let detected = detected.unwrap_or_else(Instant::now);
        self.act("rolling back to canary weight 0%", |t| {
            t.set_canary_weight(0)
        })?;
        state.weight = 0;
        let stable_at = Instant::now();
        let origin = self.fault_at.unwrap_or(detected);
        state.rollback = Some(RollbackRecord {
            stage: stage.id.clone(),
            reason: reason.to_string(),
            detection_seconds: self
                .fault_at
                .map(|f| detected.duration_since(f).as_secs_f64()),
            recovery_seconds: stable_at.duration_since(origin).as_secs_f64(),
            failed_requests: 0,
        });
        self.save(state)?;
        self.audit.record(
            &stage.id,
            "rollback",
            "rolled_back",
            &format!("{reason}; all traffic on stable"),
        )?;
        Ok(())
    }
}

/// What the rollback triggers said at one poll.
enum TriggerCheck {
    /// Too soon after a shift for traffic at the new split.
    TooSoon,
    /// None fired (or too little traffic to judge).
    Quiet,
    /// This one fired.
    Fired(String),
    /// The canary could not be measured, and why.
    Blind(String),
}

fn blind_reason(for_: Duration, reason: &str) -> String {
    format!(
        "the rollback triggers could not be evaluated for {:.1}s ({reason}); an unwatched \
         canary does not go on",
        for_.as_secs_f64()
    )
}

/// How one step ended.
/// What a gate's sampling ended with.
enum Sample {
    /// A measurement to judge.
    Measured(Measurement),
    /// The metrics could not be read.
    Unmeasurable(anyhow::Error),
    /// A rollback trigger fired, or the canary went unwatched, while waiting for traffic.
    Ended(StepEnd),
}

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

/// Records an approval for `stage` in an existing run (`cargo xtask rollout approve`).
pub fn approve(files: &RunFiles, plan: &Plan, stage: &str) -> anyhow::Result<()> {
    let _lock = RunLock::acquire(&files.dir)?;
    let Some(found) = plan.stages().iter().find(|s| s.id == stage) else {
        bail!("the plan has no stage {stage}");
    };
    let Some(mut state) = RunState::load(&files.state())? else {
        bail!(
            "no run in {}: start one with `cargo xtask rollout run`",
            files.dir.display()
        );
    };
    let audit = AuditLog::new(files.audit(), actor());
    state.approvals.insert(
        stage.to_string(),
        Approval {
            actor: actor(),
            via: "approve command".into(),
            time: audit::now(),
        },
    );
    state.save(&files.state())?;
    audit.record(
        stage,
        "approve",
        "approved",
        &format!(
            "environment {}",
            found.environment.as_deref().unwrap_or("(none)")
        ),
    )
}

/// Marks a run rolled back after sending all traffic to stable on `target`.
pub fn manual_rollback(
    files: &RunFiles,
    target: &mut dyn Target,
    reason: &str,
) -> anyhow::Result<()> {
    let _lock = RunLock::acquire(&files.dir)?;
    let Some(mut state) = RunState::load(&files.state())? else {
        bail!("no run in {}", files.dir.display());
    };
    target.start()?;
    target.set_canary_weight(0)?;
    target.stop()?;
    state.weight = 0;
    state.status = RunStatus::RolledBack {
        reason: reason.to_string(),
    };
    state.save(&files.state())?;
    AuditLog::new(files.audit(), actor()).record("", "rollback", "rolled_back", reason)
}
