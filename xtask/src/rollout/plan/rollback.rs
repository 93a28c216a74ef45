//! When the rollout gives up: plan-level triggers, watched throughout every stage that has
//! moved traffic, that send all traffic back to the legacy service.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::units::Percent;

/// A condition that rolls the rollout back.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackTrigger {
    /// A short name for logs and alerts.
    pub name: String,
    /// Which of the seed's two classes of trigger this is.
    pub urgency: Urgency,
    /// What has to be observed.
    pub when: RollbackCondition,
}

/// How hard a trigger pulls: when the runner acts on its condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    /// Users are already hurt: the runner rolls back at the first evaluation at which the
    /// condition holds (the alert is pending), without waiting for `for`; the page follows
    /// once the condition has held for `for`.
    Immediate,
    /// A degradation, not an outage: the runner rolls back when the alert fires, once the
    /// condition has held at every evaluation throughout `for`.
    Planned,
}

/// The range each evaluation of a trigger's condition covers (error rate and P95 over the last
/// 5 minutes, in plan time): the rate window of the generated alert rules and of the runner.
pub const CONDITION_RANGE: Duration = Duration::from_secs(300);

impl RollbackTrigger {
    /// Prometheus's `for:` of the trigger, in plan time: how long its condition must hold at
    /// every evaluation before it fires (zero for memory growth, which is judged over its own
    /// window). The generated alert rules and the runner both take it from here.
    pub fn hold(&self) -> Duration {
        match &self.when {
            RollbackCondition::ErrorRate(sustained) => sustained.duration,
            RollbackCondition::P95Latency(sustained) => sustained.duration,
            RollbackCondition::MemoryGrowth(_) => Duration::ZERO,
        }
    }
}

/// Prometheus's `for:` as a state machine, fed one evaluation at a time: pending from the first
/// evaluation at which the condition holds, firing once it has held at every evaluation for
/// the hold; any evaluation at which it does not hold (or cannot be judged: no data is an
/// empty expression) resets it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    since: Option<Instant>,
}

/// Where a trigger stands after an evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertState {
    /// The condition does not hold.
    Inactive,
    /// It holds, not yet for the whole hold.
    Pending,
    /// It has held at every evaluation throughout the hold.
    Firing,
}

impl Pending {
    /// Records the evaluation at `now` (`holds`: whether the condition held) and says where the
    /// trigger stands for a hold of `hold`.
    pub fn evaluate(&mut self, now: Instant, holds: bool, hold: Duration) -> AlertState {
        if !holds {
            self.since = None;
            return AlertState::Inactive;
        }
        let since = *self.since.get_or_insert(now);
        if now.saturating_duration_since(since) >= hold {
            AlertState::Firing
        } else {
            AlertState::Pending
        }
    }

    /// Whether `urgency` acts on `state`: an immediate trigger on a pending alert, a planned
    /// one only on a firing one.
    pub fn acts(urgency: Urgency, state: AlertState) -> bool {
        matches!(
            (urgency, state),
            (_, AlertState::Firing) | (Urgency::Immediate, AlertState::Pending)
        )
    }
}

impl fmt::Display for Urgency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Urgency::Immediate => "immediate",
            Urgency::Planned => "planned",
        })
    }
}

/// What a trigger watches.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackCondition {
    /// The error rate stays above a share for a while.
    ErrorRate(Sustained<Percent>),
    /// The 95th percentile latency stays above a bound for a while.
    P95Latency(Sustained<LatencyBound>),
    /// Memory grows by more than a share within a window: the signature of a leak.
    MemoryGrowth(MemoryGrowth),
}

impl RollbackCondition {
    /// Whether the threshold is above zero (a zero threshold fires on the first error).
    pub fn threshold_is_positive(&self) -> bool {
        match self {
            RollbackCondition::ErrorRate(sustained) => sustained.above.value() > 0.0,
            RollbackCondition::P95Latency(sustained) => !sustained.above.0.is_zero(),
            RollbackCondition::MemoryGrowth(growth) => growth.above.value() > 0.0,
        }
    }

    /// How long the condition must hold, in plan time.
    pub fn window(&self) -> Duration {
        match self {
            RollbackCondition::ErrorRate(sustained) => sustained.duration,
            RollbackCondition::P95Latency(sustained) => sustained.duration,
            RollbackCondition::MemoryGrowth(growth) => growth.over,
        }
    }
}

/// A value above `above` for at least `for`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sustained<T> {
    /// The bound.
    pub above: T,
    /// How long it must be exceeded, in plan time.
    #[serde(rename = "for", with = "humantime_serde")]
    pub duration: Duration,
}

/// A latency written as a duration (`100ms`).
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct LatencyBound(#[serde(with = "humantime_serde")] pub Duration);

impl fmt::Display for LatencyBound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// Memory growing by more than `above` over `over`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryGrowth {
    /// The growth that counts as a leak.
    pub above: Percent,
    /// The window the growth is measured over, in plan time.
    #[serde(with = "humantime_serde")]
    pub over: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn for_means_true_at_every_evaluation_throughout_it() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let hold = Duration::from_secs(10);
        let mut p = Pending::default();
        assert_eq!(p.evaluate(at(0), true, hold), AlertState::Pending);
        assert_eq!(p.evaluate(at(5), true, hold), AlertState::Pending);
        // One evaluation without the condition starts the wait over.
        assert_eq!(p.evaluate(at(6), false, hold), AlertState::Inactive);
        assert_eq!(p.evaluate(at(7), true, hold), AlertState::Pending);
        assert_eq!(p.evaluate(at(16), true, hold), AlertState::Pending);
        assert_eq!(p.evaluate(at(17), true, hold), AlertState::Firing);
        // A zero hold fires at the first evaluation, as `for: 0s` does.
        let mut q = Pending::default();
        assert_eq!(q.evaluate(at(0), true, Duration::ZERO), AlertState::Firing);
    }

    #[test]
    fn immediate_acts_on_pending_and_planned_only_on_firing() {
        let acts = Pending::acts;
        assert!(acts(Urgency::Immediate, AlertState::Pending));
        assert!(!acts(Urgency::Planned, AlertState::Pending));
        assert!(acts(Urgency::Planned, AlertState::Firing));
        assert!(!acts(Urgency::Immediate, AlertState::Inactive));
    }
}
