//! The plan exactly as `rollout/plan.yaml` writes it: serde types with every key checked
//! (`deny_unknown_fields`), before any cross-field rule is applied. `validate` turns this into a
//! [`Plan`](super::Plan).

use std::{collections::BTreeMap, time::Duration};

use serde::Deserialize;

use super::compare::Compare;
use super::environment::Environment;
use super::rollback::RollbackTrigger;
use super::slo::ThresholdSpec;
use super::step::{Canary, GaTag, HelmPush, ImagePush, MlxTeardown, Notify, Parity, Scale, Wait};
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

/// A step as written: one key naming its kind, whose value holds its fields.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepSpec {
    /// See [`super::step::LoadTest`].
    LoadTest(LoadTestSpec),
    /// See [`Parity`].
    Parity(Parity),
    /// See [`Canary`].
    Canary(Canary),
    /// See [`super::step::SloCheck`].
    SloCheck(SloCheckSpec),
    /// See [`super::step::Soak`].
    Soak(SoakSpec),
    /// See [`Wait`].
    Wait(Wait),
    /// See [`Scale`].
    Scale(Scale),
    /// See [`GaTag`].
    GaTag(GaTag),
    /// See [`HelmPush`].
    HelmPush(HelmPush),
    /// See [`ImagePush`].
    ImagePush(ImagePush),
    /// See [`MlxTeardown`].
    MlxTeardown(MlxTeardown),
    /// See [`Notify`].
    Notify(Notify),
}

/// A load test as written.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadTestSpec {
    /// Requests per second.
    pub rate: u32,
    /// How long, in plan time.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Overrides of the plan's SLOs.
    #[serde(default)]
    pub thresholds: ThresholdSpec,
    /// The canary against the baseline over the same window.
    #[serde(default)]
    pub compare: Option<Compare>,
}

/// An SLO check as written.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloCheckSpec {
    /// How far back it looks, in plan time.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// The fewest requests the window must hold.
    pub min_requests: u64,
    /// Overrides of the plan's SLOs.
    #[serde(default)]
    pub thresholds: ThresholdSpec,
    /// The canary against the baseline over the same window.
    #[serde(default)]
    pub compare: Option<Compare>,
}

/// A soak as written.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoakSpec {
    /// How long, in plan time.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Overrides of the plan's SLOs.
    #[serde(default)]
    pub thresholds: ThresholdSpec,
}

impl StepSpec {
    /// The step's key in the YAML.
    pub fn kind(&self) -> &'static str {
        match self {
            StepSpec::LoadTest(_) => "load_test",
            StepSpec::Parity(_) => "parity",
            StepSpec::Canary(_) => "canary",
            StepSpec::SloCheck(_) => "slo_check",
            StepSpec::Soak(_) => "soak",
            StepSpec::Wait(_) => "wait",
            StepSpec::Scale(_) => "scale",
            StepSpec::GaTag(_) => "ga_tag",
            StepSpec::HelmPush(_) => "helm_push",
            StepSpec::ImagePush(_) => "image_push",
            StepSpec::MlxTeardown(_) => "mlx_teardown",
            StepSpec::Notify(_) => "notify",
        }
    }
}
