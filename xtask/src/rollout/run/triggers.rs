//! Holds, and the rollback triggers watched through them.

use super::*;

impl Runner<'_> {
    /// Waits `duration`, checking the rollback triggers while the canary takes traffic.
    /// Ends early with the trigger that fired, or inconclusive when the triggers could not be
    /// evaluated for [`BLIND_LIMIT`] or at all during the hold: an unwatched canary does not
    /// go on.
    pub(super) fn hold(
        &mut self,
        duration: Duration,
        state: &RunState,
    ) -> anyhow::Result<Option<StepEnd>> {
        let until = Instant::now() + duration;
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
