//! When the rollout gives up: plan-level triggers, watched throughout every stage that has
//! moved traffic, that send all traffic back to the legacy service.

use std::fmt;
use std::time::Duration;

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

/// How hard a trigger pulls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    /// Roll back at once, without asking: users are already hurt.
    Immediate,
    /// Roll back, and page the on-call to investigate: a degradation, not an outage.
    Planned,
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
