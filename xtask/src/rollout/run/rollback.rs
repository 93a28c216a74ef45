//! Rolling back: all traffic to stable, recorded with why and how fast.

use super::*;

impl Runner<'_> {
    pub(super) fn roll_back(
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
        self.observe(Event::Rollback {
            stage: stage.id.clone(),
            reason: reason.into(),
        });
        // Told after traffic is safe, so a slow or broken webhook never delays the rollback.
        if let Some(channel) = crate::rollout::notify::rollback_channel(self.plan, stage) {
            let text = format!("Rolled back in stage {}: {reason}", stage.id);
            let delivery = crate::rollout::notify::Notifier::from_env().deliver(channel, &text);
            let detail = format!("{channel}: {text} ({delivery})");
            self.audit
                .record(&stage.id, "notify", delivery.result(), &detail)?;
        }
        Ok(())
    }
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
