//! Load tests, and week 1's in particular: before the canary takes production traffic, the
//! load goes to the candidate (pinned with the canary header), so that Candle is load-tested
//! and judged at the stage's rate before users reach it.

use super::*;

impl Runner<'_> {
    /// Holds a load test of `duration` (resumable under `key`) and says which side to judge.
    /// At weight 0 the load is pinned to the canary for the hold and unpinned after it; a
    /// target that cannot pin loads, and is judged on, the stable side, and the audit log says
    /// so.
    pub(super) fn load_test(
        &mut self,
        duration: Duration,
        state: &mut RunState,
        key: &str,
    ) -> anyhow::Result<(Side, Option<StepEnd>)> {
        if state.weight != 0 {
            return Ok((Side::Canary, self.hold(duration, state, Some(key))?));
        }
        let stage = key.split('#').next().unwrap_or_default().to_string();
        let side = match self.act("pinning the load to the canary", |t| {
            t.pin_traffic_to_canary(true)
        })? {
            Outcome::Done(_) => Side::Canary,
            Outcome::Skipped(why) => {
                self.audit.record(
                    &stage,
                    "load_test",
                    "stable_side",
                    &format!("{why}: the load test measures the stable side"),
                )?;
                Side::Stable
            }
        };
        let end = self.hold(duration, state, Some(key));
        if side == Side::Canary {
            self.act("unpinning the load", |t| t.pin_traffic_to_canary(false))?;
        }
        Ok((side, end?))
    }

    /// Retires the legacy deployment: zero replicas, the grace period held (resumable under
    /// `key`) with the rollback triggers watched, then its resources go. A trigger that fires
    /// in the grace period brings one replica back first, so that the rollback has a stable
    /// side to send traffic to; the step then ends as the trigger says.
    pub(super) fn teardown(
        &mut self,
        deployment: &str,
        grace: Duration,
        state: &mut RunState,
        key: &str,
    ) -> anyhow::Result<Result<StepEnd, StepEnd>> {
        self.act(&format!("scaling {deployment} to 0"), |t| {
            t.scale(deployment, 0)
        })?;
        if let Some(end) = self.hold(grace, state, Some(key))? {
            if matches!(end, StepEnd::Triggered(..)) {
                self.act(&format!("scaling {deployment} back to 1"), |t| {
                    t.scale(deployment, 1)
                })?;
            }
            return Ok(Err(end));
        }
        Ok(Ok(outcome(
            self.act(&format!("retiring {deployment}"), |t| {
                t.teardown_legacy(deployment, Duration::ZERO)
            })?,
        )))
    }
}

/// A verdict on the candidate under week 1's pinned load, labelled as such for the report.
pub(super) fn candidate(verdict: Verdict) -> Verdict {
    let label = |d: String| format!("candidate (Candle, load pinned with X-Canary: always): {d}");
    match verdict {
        Verdict::Pass(d) => Verdict::Pass(label(d)),
        Verdict::Fail(d) => Verdict::Fail(label(d)),
        Verdict::Inconclusive(d) => Verdict::Inconclusive(label(d)),
    }
}
