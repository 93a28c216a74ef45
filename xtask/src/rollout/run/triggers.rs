//! Holds, and the rollback triggers watched through them.

use super::*;
use crate::rollout::{
    plan::rollback::{Pending, CONDITION_RANGE},
    targets::histogram::Against,
};

impl Runner<'_> {
    /// Waits `duration`, checking the rollback triggers while the canary takes traffic.
    /// Ends early with the trigger that fired, or inconclusive when the triggers could not be
    /// evaluated for [`BLIND_LIMIT`] or at all during the hold: an unwatched canary does not
    /// go on. With a `progress` key (`stage#step`), the time held is kept in the state as it
    /// passes, and a resumed run holds only what is left.
    pub(super) fn hold(
        &mut self,
        duration: Duration,
        state: &mut RunState,
        progress: Option<&str>,
    ) -> anyhow::Result<Option<StepEnd>> {
        let already = progress
            .and_then(|key| state.held.get(key))
            .map_or(Duration::ZERO, |s| Duration::from_secs_f64(s.max(0.0)));
        let started = Instant::now();
        let until = started + duration.saturating_sub(already);
        let mut saved = started;
        let poll = Duration::from_millis(500);
        let mut blind: Option<Instant> = None;
        let mut watched = false;
        let mut last_reason = String::new();
        while Instant::now() < until {
            std::thread::sleep(poll.min(until.saturating_duration_since(Instant::now())));
            self.tick(
                until.saturating_duration_since(Instant::now()),
                duration,
                state.weight,
            );
            if let Some(key) = progress {
                if saved.elapsed() >= HOLD_SAVE_INTERVAL || Instant::now() >= until {
                    saved = Instant::now();
                    let held = already + started.elapsed();
                    state.held.insert(key.to_string(), held.as_secs_f64());
                    self.save(state)?;
                }
            }
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

    /// Evaluates every rollback trigger once, on the current traffic, and returns the first
    /// one that acts (by its name): an immediate trigger once its condition holds, a planned
    /// one once it has held at every evaluation throughout its `for` (plan time, scaled), as
    /// Prometheus's `for:` does. An error when the canary cannot be measured at all.
    pub(super) fn fired_trigger(&mut self) -> anyhow::Result<Option<String>> {
        let scale = self.plan.time_scale();
        let since_shift = self.shifted_at.elapsed();
        if since_shift < MIN_TRIGGER_WINDOW {
            // Too soon after a shift to have traffic at the new split.
            return Ok(None);
        }
        let now = Instant::now();
        // Time nobody evaluated (a step that does not hold, a restart) is no evidence that a
        // condition held throughout: pending triggers start over.
        if self
            .last_evaluation
            .is_some_and(|last| now.duration_since(last) > MAX_EVALUATION_GAP)
        {
            self.pending
                .iter_mut()
                .for_each(|p| *p = Pending::default());
        }
        self.last_evaluation = Some(now);
        let evidence = self.trigger_evidence(since_shift)?;
        if let Some(bytes) = evidence.measured.as_ref().and_then(|m| m.memory_bytes) {
            self.memory.record(now, bytes);
        }
        self.pending
            .resize(self.plan.rollback.len(), Pending::default());
        for (n, trigger) in self.plan.rollback.iter().enumerate() {
            let (holds, how) = self.condition(&trigger.when, &evidence);
            let hold = scale.apply(trigger.hold());
            let alert = self.pending[n].evaluate(now, holds, hold);
            if Pending::acts(trigger.urgency, alert) {
                return Ok(Some(format!(
                    "{} ({}{})",
                    trigger.name,
                    trigger.urgency,
                    how.map(|h| format!(": {h}")).unwrap_or_default()
                )));
            }
        }
        Ok(None)
    }

    /// What every trigger judges at one evaluation: the canary's metrics and the front door's
    /// view over the condition's range (at the run's time scale), widened while it holds too
    /// few requests to judge.
    fn trigger_evidence(&mut self, since_shift: Duration) -> anyhow::Result<Evidence> {
        let scale = self.plan.time_scale();
        // A scaled range may hold only a request or two (the traffic rate is not scaled), and
        // one slow request is not a sustained breach: widen the window until it holds enough
        // requests to judge, and judge nothing on less.
        let mut window = scale
            .apply(CONDITION_RANGE)
            .max(MIN_TRIGGER_WINDOW)
            .min(since_shift);
        let widest = MAX_TRIGGER_WINDOW.min(since_shift);
        let measured = loop {
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
        let door = self
            .target
            .front_door(Side::Canary, window)
            .ok()
            .filter(|(answered, _)| *answered >= MIN_TRIGGER_REQUESTS);
        Ok(Evidence { measured, door })
    }

    /// Whether `condition` holds on `evidence`, and what was seen when it does.
    fn condition(
        &self,
        condition: &RollbackCondition,
        evidence: &Evidence,
    ) -> (bool, Option<String>) {
        let scale = self.plan.time_scale();
        let m = evidence.measured.as_ref();
        match condition {
            RollbackCondition::ErrorRate(s) => {
                let limit = s.above.value();
                let ratio = |n: u64, failed: u64| 100.0 * failed as f64 / n as f64;
                // The front door sees what the canary's own metrics cannot: requests it never
                // answered. The condition holds on either view.
                if let Some((answered, failed)) = evidence.door {
                    if ratio(answered, failed) > limit {
                        return (
                            true,
                            Some(format!(
                                "{failed} of {answered} canary requests failed, seen at the front door"
                            )),
                        );
                    }
                }
                match m {
                    Some(m) if ratio(m.requests, m.errors) > limit => (
                        true,
                        Some(format!(
                            "error rate {:.2}% > {}",
                            ratio(m.requests, m.errors),
                            s.above
                        )),
                    ),
                    _ => (false, None),
                }
            }
            RollbackCondition::P95Latency(s) => {
                let bounds = m.and_then(|m| gate::quantile_bounds(m, 0.95, m.p95));
                match bounds {
                    Some(b) if b.against(s.above.0) == Against::Above => (
                        true,
                        Some(format!(
                            "P95 above {:.1}ms > {}",
                            b.lower.as_secs_f64() * 1000.0,
                            s.above
                        )),
                    ),
                    _ => (false, None),
                }
            }
            RollbackCondition::MemoryGrowth(growth) => {
                let span = scale.apply(growth.over).max(MIN_MEMORY_WINDOW);
                match self.memory.growth(span) {
                    Some(percent) if percent > growth.above.value() => (
                        true,
                        Some(format!(
                            "memory grew {percent:.1}% in {:.0}s > {}",
                            span.as_secs_f64(),
                            growth.above
                        )),
                    ),
                    _ => (false, None),
                }
            }
        }
    }
}

/// What the triggers judge at one evaluation.
struct Evidence {
    /// The canary's metrics, when the window held enough requests.
    measured: Option<Measurement>,
    /// (answered, failed) at the front door, when enough were answered.
    door: Option<(u64, u64)>,
}

/// What the rollback triggers said at one poll.
pub(super) enum TriggerCheck {
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
