//! The plan exactly as `rollout/plan.yaml` writes it: serde types with every key checked
//! (`deny_unknown_fields`), before any cross-field rule is applied. `validate` turns this into a
//! [`Plan`](super::Plan).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::environment::Environment;
use super::rollback::RollbackTrigger;
use super::slo::ThresholdSpec;
use super::step::Step;
use super::units::{TimeScale, Weight};

/// The whole file.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanSpec {
    /// The rollout's name.
    pub name: String,
    /// Plan time against wall-clock time; the CLI's `--time-scale` overrides it.
    #[serde(default)]
    pub time_scale: TimeScale,
    /// How a flagless `rollout run` drills the plan on the local target.
    #[serde(default)]
    pub drill: Option<super::drill::Drill>,
    /// The default thresholds of every gate.
    #[serde(default)]
    pub slos: ThresholdSpec,
    /// Plan-wide canary settings.
    #[serde(default)]
    pub canary: CanarySpec,
    /// What rolls everything back.
    #[serde(default)]
    pub rollback: Vec<RollbackTrigger>,
    /// The GitHub environments the stages name, as GitHub must protect them.
    #[serde(default)]
    pub environments: BTreeMap<String, Environment>,
    /// The stages, in any order; `needs` orders them.
    pub stages: Vec<StageSpec>,
}

/// Plan-wide canary settings.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanarySpec {
    /// The weight the last canary step must reach exactly: a plan that stops short would report
    /// a finished rollout while part of the traffic still goes to the legacy service.
    #[serde(default)]
    pub max_weight: Option<Weight>,
}

/// A stage as written.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Unique within the plan; what `needs` refers to.
    pub id: String,
    /// A title for people.
    pub name: String,
    /// Stages that must have finished first.
    #[serde(default)]
    pub needs: Vec<String>,
    /// The GitHub environment whose approval the stage waits for.
    #[serde(default)]
    pub environment: Option<String>,
    /// Whether the stage exists to raise the canary weight.
    #[serde(default)]
    pub promotion: bool,
    /// What the stage does, in order.
    pub steps: Vec<StepSpec>,
}

/// A step as written: its gate thresholds are overrides of the plan's SLOs.
pub type StepSpec = Step<ThresholdSpec>;
