//! The plan's drill: how `cargo xtask rollout run`, given no flags, runs the whole plan on the
//! local target in minutes (time scale, traffic cap, approvals). It never applies to another
//! target: a cluster runs the plan as written.

use std::num::NonZeroU32;

use serde::Deserialize;

use super::units::TimeScale;

/// The `drill:` block of a plan.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drill {
    /// The only target a drill runs on.
    pub target: DrillTarget,
    /// Plan time against wall-clock time during the drill.
    pub time_scale: TimeScale,
    /// Cap on the traffic rate (req/s), so that one small machine serves both sides.
    #[serde(default)]
    pub max_rate: Option<NonZeroU32>,
    /// Who approves the stages with an environment when nobody is at a terminal.
    pub approvals: DrillApprovals,
}

/// Where a drill runs: the local target only (nothing about a cluster becomes automatic).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillTarget {
    /// nginx, Prometheus and both services on this machine.
    Local,
}

/// How a drill's approvals are given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrillApprovals {
    /// With no terminal, the drill approves each stage itself, recorded as `drill` in the audit
    /// log and the state; on a terminal the operator is still asked.
    Drill,
    /// Approvals are asked for, or the run pauses, as without a drill.
    Ask,
}
