//! A gate's measurement: the window at the current split, waiting for enough traffic, and
//! the front door's view of what the canary never answered.

use super::*;

/// What a gate's sampling ended with.
pub(super) enum Sample {
    /// A measurement to judge.
    Measured(Measurement),
    /// The metrics could not be read.
    Unmeasurable(anyhow::Error),
    /// A rollback trigger fired, or the canary went unwatched, while waiting for traffic.
    Ended(StepEnd),
}

impl Runner<'_> {
    /// `window`, cut to the traffic since the split last changed (less the scrapes that may
    /// still hold earlier traffic): a gate judges the split it is about.
    pub(super) fn at_current_split(&self, window: Duration) -> Duration {
        window
            .min(self.shifted_at.elapsed().saturating_sub(SCRAPE_MARGIN))
            .max(MIN_TRIGGER_WINDOW)
    }

    /// A gate's verdict, overruled by a failure rate at the front door above the gate's
    /// threshold: requests the canary never answered are missing from its own metrics.
    pub(super) fn with_front_door(
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

    /// A gate's measurement of `side` over the trailing `window`, with at least `needed`
    /// requests in it where traffic allows. A window that holds fewer is widened back to the
    /// last weight shift (the same split), then the runner holds on, watching the rollback
    /// triggers, while traffic comes in, for at most `--sample-wait`. What it has then is
    /// judged, which is inconclusive when it is still too small.
    pub(super) fn sample(
        &mut self,
        stage: &str,
        side: Side,
        window: Duration,
        needed: u64,
        thresholds: &SloThresholds,
        state: &mut RunState,
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
            if let Some(end) = self.hold(hold, state, None)? {
                return Ok(Sample::Ended(end));
            }
            window = self.at_current_split(Duration::MAX);
        }
    }

    /// Whether the errors already seen breach the error-rate threshold, in the side's own
    /// metrics or, for the canary, at the front door (a canary that answers nothing has no
    /// requests of its own): errors are judged on any sample, so a breach waits for no more
    /// traffic.
    pub(super) fn errors_breach(
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
    pub(super) fn measure(&mut self, side: Side, window: Duration) -> anyhow::Result<Measurement> {
        self.act(&format!("measuring the {side:?} side"), |t| {
            t.measure(side, window)
        })
    }
}
