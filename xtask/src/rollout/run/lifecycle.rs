//! A run's lifecycle: start, resume, the stages in order and the steps of each.

use super::*;

impl Runner<'_> {
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
            held: BTreeMap::new(),
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
        self.observe(self.started(false));
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
        self.observe(self.started(true));
        self.execute(state)
    }

    pub(super) fn execute(&mut self, mut state: RunState) -> anyhow::Result<RunStatus> {
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
        self.observe(Event::Finished {
            status: status_label(&end).into(),
            detail: status_detail(&end),
        });
        report::write(&self.files.dir, self.plan, &state)?;
        self.target.stop()?;
        Ok(end)
    }

    pub(super) fn execute_stages(&mut self, state: &mut RunState) -> anyhow::Result<RunStatus> {
        let stages: Vec<&Stage> = self.plan.stages().iter().collect();
        let mut end = RunStatus::Completed;
        for stage in stages {
            if state.stage_done(&stage.id) {
                continue;
            }
            let started = Instant::now();
            self.observe(Event::Stage {
                stage: stage.id.clone(),
                name: stage.name.clone(),
                weight: state.weight,
            });
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

    pub(super) fn execute_stage(
        &mut self,
        stage: &Stage,
        state: &mut RunState,
    ) -> anyhow::Result<StageEnd> {
        for need in &stage.needs {
            if !state.stage_done(need) {
                bail!("stage {} needs {need}, which has not finished", stage.id);
            }
        }
        if let Some(reason) = self.approval(stage, state)? {
            self.audit.record(&stage.id, "approve", "paused", &reason)?;
            return Ok(StageEnd::Paused(reason));
        }
        for (index, step) in stage.steps.iter().enumerate() {
            if state.step_done(&stage.id, index) {
                continue;
            }
            let label = format!("{}#{index}", step.kind());
            if self.options.stop_before_publish && publish::publishes(step) {
                return Ok(StageEnd::Paused(format!(
                    "stage {} stopped before {label} as asked: a new job publishes with fresh \
                     credentials (resume with --publish)",
                    stage.id
                )));
            }
            self.audit.record(&stage.id, &label, "started", "")?;
            self.observe(Event::Step {
                stage: stage.id.clone(),
                index,
                kind: step.kind().into(),
                of: stage.steps.len(),
            });
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
}
