//! The fixed vocabulary of steps a stage may take, defined once: as written in the plan
//! ([`StepSpec`](super::spec::StepSpec), gate thresholds as overrides of the plan's SLOs) and as
//! run ([`Step`], thresholds resolved) are the same enum. A new kind of action is a new variant
//! here, its checks in `validate::structure` and its execution in `run::steps`; the YAML cannot
//! name anything else.

use std::time::Duration;

use serde::Deserialize;

use super::compare::Compare;
use super::slo::SloThresholds;
use super::units::Weight;

/// One action of a stage. `T` holds its gate thresholds: resolved against the plan's SLOs
/// ([`SloThresholds`], the default: what runs) or as written (the plan's `ThresholdSpec`
/// overrides, [`StepSpec`](super::spec::StepSpec)). In YAML, one key names the kind and its value
/// holds the fields.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(
    rename_all = "snake_case",
    bound(deserialize = "T: Deserialize<'de> + Default")
)]
pub enum Step<T = SloThresholds> {
    /// Drive a steady request rate at the service and gate on the SLOs.
    LoadTest(LoadTest<T>),
    /// Compare Candle's embeddings with a reference on a corpus.
    Parity(Parity),
    /// Route a share of production traffic to Candle.
    Canary(Canary),
    /// Gate on the SLOs measured over a trailing window.
    SloCheck(SloCheck<T>),
    /// Hold the current traffic split while watching the SLOs.
    Soak(Soak<T>),
    /// Hold without a gate of its own (rollback triggers still apply).
    Wait(Wait),
    /// Set a deployment's replica count.
    Scale(Scale),
    /// Tag the GA release.
    GaTag(GaTag),
    /// Publish the Helm chart.
    HelmPush(HelmPush),
    /// Publish the container image.
    ImagePush(ImagePush),
    /// Scale the legacy MLX service to zero, wait out a grace period, then delete it.
    MlxTeardown(MlxTeardown),
    /// Tell people.
    Notify(Notify),
}

impl<T> Step<T> {
    /// The step's key in the YAML.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::LoadTest(_) => "load_test",
            Step::Parity(_) => "parity",
            Step::Canary(_) => "canary",
            Step::SloCheck(_) => "slo_check",
            Step::Soak(_) => "soak",
            Step::Wait(_) => "wait",
            Step::Scale(_) => "scale",
            Step::GaTag(_) => "ga_tag",
            Step::HelmPush(_) => "helm_push",
            Step::ImagePush(_) => "image_push",
            Step::MlxTeardown(_) => "mlx_teardown",
            Step::Notify(_) => "notify",
        }
    }

    /// How long the step keeps the rollout where it is, in plan time; zero for steps that only
    /// act or measure.
    pub fn hold(&self) -> Duration {
        match self {
            Step::LoadTest(step) => step.duration,
            Step::Soak(step) => step.duration,
            Step::Wait(step) => step.duration,
            Step::MlxTeardown(step) => step.grace_period,
            _ => Duration::ZERO,
        }
    }
}

/// Drive `rate` requests per second for `duration` and gate on `thresholds`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadTest<T = SloThresholds> {
    /// Requests per second.
    pub rate: u32,
    /// How long to keep the rate up, in plan time.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// What the service must stay below while loaded.
    #[serde(default)]
    pub thresholds: T,
    /// How the canary must compare with the baseline over the same window, when set.
    #[serde(default)]
    pub compare: Option<Compare>,
}

/// Embed every text of `corpus` with Candle and with the reference; each pair of vectors must
/// reach `min_cosine`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Parity {
    /// The texts, as a golden-vector file relative to the repository root (`tests/golden/`).
    pub corpus: String,
    /// What Candle is compared with.
    pub against: ParityReference,
    /// The lowest cosine similarity any text may reach.
    pub min_cosine: f64,
}

/// What a parity check compares Candle's vectors with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParityReference {
    /// The running legacy service, asked for the same texts.
    Legacy,
    /// The vectors stored in the corpus file.
    Golden,
}

/// Set the canary's share of traffic.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Canary {
    /// The new share.
    pub weight: Weight,
}

/// Gate on the SLOs over the trailing `window`, which must have seen at least `min_requests`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloCheck<T = SloThresholds> {
    /// How far back the check looks, in plan time.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Fewer requests than this in the window fails the check rather than passing it vacuously.
    pub min_requests: u64,
    /// What the window must stay below.
    #[serde(default)]
    pub thresholds: T,
    /// How the canary must compare with the baseline over the same window, when set.
    #[serde(default)]
    pub compare: Option<Compare>,
}

/// Hold the current split for `duration`, failing as soon as `thresholds` are breached.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Soak<T = SloThresholds> {
    /// How long to hold, in plan time.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// What the service must stay below throughout.
    #[serde(default)]
    pub thresholds: T,
}

/// Hold for `duration`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wait {
    /// How long, in plan time.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

/// Set `deployment` to `replicas`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    /// The deployment's name.
    pub deployment: String,
    /// The replica count; zero stops it.
    pub replicas: u32,
}

/// Create the release tag.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GaTag {
    /// The tag, e.g. `v2.0.0`.
    pub tag: String,
    /// The annotated tag's message.
    #[serde(default)]
    pub message: Option<String>,
}

/// Package and push a Helm chart.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelmPush {
    /// The chart's folder, relative to the workspace root.
    pub chart: String,
    /// The OCI registry, e.g. `oci://ghcr.io/akidb/charts`.
    pub registry: String,
}

/// Push a container image.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePush {
    /// The image with its tag, e.g. `akidb/embedding:v2.0.0`.
    pub image: String,
    /// The registry host, e.g. `ghcr.io`.
    pub registry: String,
}

/// Retire the legacy MLX service.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlxTeardown {
    /// The legacy deployment.
    pub deployment: String,
    /// How long it stays at zero replicas before its resources are deleted, in plan time: the
    /// last moment a rollback to it is still cheap.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
}

/// Post a message.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// Where, e.g. `#akidb-rollout`.
    pub channel: String,
    /// What.
    pub message: String,
}
