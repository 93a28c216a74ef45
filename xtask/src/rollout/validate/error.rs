//! The one error type of the validator: every rule's violation, whatever its family.

use thiserror::Error;

use crate::rollout::plan::slo::SloMetric;
use crate::rollout::plan::Weight;

/// A rule of the plan that the file breaks.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum ValidationError {
    /// Nothing to roll out.
    #[error("the plan has no stages")]
    NoStages,
    /// A stage without an id cannot be needed or reported.
    #[error("a stage has an empty `id`")]
    EmptyStageId,
    /// Two stages share an id, so `needs` would be ambiguous.
    #[error("stage id `{id}` is used twice (first {})", at_line(*.first_line))]
    DuplicateStage {
        /// The id.
        id: String,
        /// Where it was first used.
        first_line: Option<usize>,
    },
    /// `needs` names no stage of the plan.
    #[error("stage `{stage}` needs `{need}`, which is not a stage of this plan")]
    UnknownNeed {
        /// The stage that needs it.
        stage: String,
        /// The missing stage.
        need: String,
    },
    /// The stages cannot be ordered.
    #[error("`needs` form a cycle: {} (each needs the next)", .cycle.join(" -> "))]
    NeedsCycle {
        /// The stages of the cycle, the first repeated at the end.
        cycle: Vec<String>,
    },
    /// A stage that does nothing.
    #[error("stage `{stage}` has no steps")]
    NoSteps {
        /// The stage.
        stage: String,
    },
    /// A gate without a threshold it needs and no plan default to fall back on.
    #[error(
        "{step} in stage `{stage}` has no `{metric}` threshold, and `slos` sets no default for it"
    )]
    MissingThreshold {
        /// The stage.
        stage: String,
        /// The gate's kind.
        step: &'static str,
        /// The missing threshold.
        metric: SloMetric,
    },
    /// A duration, rate or count that must be above zero is not.
    #[error("{step} in stage `{stage}`: `{field}` must be greater than zero")]
    NotPositive {
        /// The stage.
        stage: String,
        /// The step's kind.
        step: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A text field that says nothing.
    #[error("{step} in stage `{stage}`: `{field}` must not be empty")]
    EmptyField {
        /// The stage.
        stage: String,
        /// The step's kind.
        step: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A cosine bound no pair of vectors can meaningfully be held to.
    #[error("parity in stage `{stage}`: `min_cosine` {value} must be in (0, 1]")]
    MinCosineOutOfRange {
        /// The stage.
        stage: String,
        /// The bound.
        value: f64,
    },
    /// Traffic moved with nothing to judge whether it should stay moved.
    #[error(
        "stage `{stage}` sets the canary weight to {weight} without an slo_check after it in the \
         same stage (before the next canary step)"
    )]
    CanaryWithoutSloCheck {
        /// The stage.
        stage: String,
        /// The weight left unchecked.
        weight: Weight,
    },
    /// Production traffic moved without a person approving it.
    #[error("stage `{stage}` changes canary traffic but names no `environment` to approve it")]
    CanaryWithoutApproval {
        /// The stage.
        stage: String,
    },
    /// Two stages set the weight in no defined order.
    #[error(
        "stages `{first}` and `{second}` both set the canary weight but neither needs the other, \
         so the order of their weights is undefined"
    )]
    ConcurrentCanaryStages {
        /// The earlier one in file order.
        first: String,
        /// The later one.
        second: String,
    },
    /// A canary step that does not raise the weight.
    #[error(
        "stage `{stage}` sets the canary weight to {weight}, which does not raise the {previous} {}; \
         weights must strictly increase along `needs`",
        set_by(.previous_stage)
    )]
    WeightNotIncreasing {
        /// The stage.
        stage: String,
        /// The weight it sets.
        weight: Weight,
        /// The weight in force before.
        previous: Weight,
        /// The stage that set it, if any did.
        previous_stage: Option<String>,
    },
    /// A canary step beyond the plan's ceiling.
    #[error("stage `{stage}` sets the canary weight to {weight}, above `canary.max_weight` {max}")]
    WeightAboveMax {
        /// The stage.
        stage: String,
        /// The weight it sets.
        weight: Weight,
        /// The ceiling.
        max: Weight,
    },
    /// The rollout would report itself promoted while part of the traffic never moved.
    #[error(
        "the last canary step (stage `{stage}`) reaches {weight}, not `canary.max_weight` {max}: \
         the rollout would report promotion without promoting"
    )]
    FinalWeightNotMax {
        /// The stage of the last canary step.
        stage: String,
        /// The weight it reaches.
        weight: Weight,
        /// The weight it should reach.
        max: Weight,
    },
    /// A ceiling no step reaches because no step sets a weight.
    #[error("`canary.max_weight` is {max} but no stage has a canary step")]
    MaxWeightNeverReached {
        /// The ceiling.
        max: Weight,
    },
    /// A stage that says it promotes and does not.
    #[error(
        "stage `{stage}` is marked `promotion: true` but ends at canary weight {to}, not above the \
         {from} it starts from"
    )]
    PromotionDoesNotPromote {
        /// The stage.
        stage: String,
        /// The weight it starts from.
        from: Weight,
        /// The weight it ends at.
        to: Weight,
    },
    /// A stage that promotes without saying so.
    #[error(
        "stage `{stage}` raises the canary weight from {from} to {to} but is not marked \
         `promotion: true`"
    )]
    UnmarkedPromotion {
        /// The stage.
        stage: String,
        /// The weight it starts from.
        from: Weight,
        /// The weight it ends at.
        to: Weight,
    },
    /// Traffic moves with no way back.
    #[error("stages change canary traffic but `rollback` lists no trigger")]
    NoRollbackTriggers,
    /// A trigger that fires on any blip.
    #[error("rollback trigger `{trigger}`: its threshold (`above`) must be greater than zero")]
    RollbackThresholdNotPositive {
        /// The trigger's name.
        trigger: String,
    },
    /// A trigger without a window fires on a single sample.
    #[error("rollback trigger `{trigger}`: its window (`for`/`over`) must be greater than zero")]
    RollbackWindowNotPositive {
        /// The trigger's name.
        trigger: String,
    },
    /// A step that retires the legacy service or publishes the release while traffic could
    /// still need to go back.
    #[error(
        "{step} in stage `{stage}` {acts} before the cut-over is complete: the canary must first \
         reach weight {full} and pass a soak or slo_check there (in this stage or one it needs)"
    )]
    BeforeCutOver {
        /// The stage.
        stage: String,
        /// The step's kind.
        step: &'static str,
        /// What it does, e.g. "scales `akidb-mlx` to 0".
        acts: String,
        /// The weight that completes the cut-over.
        full: Weight,
    },
    /// Percentile thresholds that cannot all hold: a P95 below the P50 it contains.
    #[error("{at}: the percentiles contradict each other (need p50 <= p95 <= p99): {found}")]
    PercentilesOutOfOrder {
        /// Whose thresholds: `slos` or a gate.
        at: String,
        /// The three values as written.
        found: String,
    },
    /// A gate that accepts what a trigger rolls back, or a trigger that rolls back what the
    /// gates accept.
    #[error(
        "rollback trigger `{trigger}` fires above {trigger_value}, below the {metric} threshold \
         {gate_value} of {gate}: it rolls back a canary the gate would pass"
    )]
    TriggerTighterThanGate {
        /// The trigger's name.
        trigger: String,
        /// The metric both judge.
        metric: SloMetric,
        /// The trigger's threshold, as written.
        trigger_value: String,
        /// `slos` or the gate that sets the threshold.
        gate: String,
        /// The gate's threshold, as written.
        gate_value: String,
    },
    /// A window that reaches back before the traffic it should judge.
    #[error(
        "slo_check in stage `{stage}`: its window {window} is longer than the {held} the plan \
         holds the current canary weight before it, so it would judge an earlier split"
    )]
    WindowLongerThanHold {
        /// The stage.
        stage: String,
        /// The window, as written.
        window: String,
        /// The plan time held at this weight before the check.
        held: String,
    },
    /// A minimum the traffic the plan drives cannot reach.
    #[error(
        "slo_check in stage `{stage}`: `min_requests` {min_requests} cannot be reached: {expected}"
    )]
    MinRequestsUnreachable {
        /// The stage.
        stage: String,
        /// The minimum.
        min_requests: u64,
        /// The most requests the window can hold, and how that was worked out.
        expected: String,
    },
    /// A stage names an environment the plan's `environments` does not declare.
    #[error(
        "stage `{stage}`: environment `{name}` is not declared under `environments` (declare it \
         with its reviewers, or `reviewers: []` when the stage needs no approval)"
    )]
    UndeclaredEnvironment {
        /// The stage.
        stage: String,
        /// The environment.
        name: String,
    },
    /// A stage that moves traffic waits in an environment the plan says needs no approval.
    #[error(
        "stage `{stage}` changes canary traffic but its environment `{name}` has no reviewers"
    )]
    CanaryWithoutReviewers {
        /// The stage.
        stage: String,
        /// The environment.
        name: String,
    },
    /// An environment name GitHub refuses.
    #[error("stage `{stage}`: environment `{name}` is not a GitHub environment name: {reason}")]
    EnvironmentName {
        /// The stage.
        stage: String,
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A Deployment name the Kubernetes API refuses.
    #[error("{step} in stage `{stage}`: `{name}` is not a Kubernetes object name: {reason}")]
    KubernetesName {
        /// The stage.
        stage: String,
        /// The step's kind.
        step: &'static str,
        /// The name.
        name: String,
        /// What is wrong with it (RFC 1123).
        reason: &'static str,
    },
    /// A release tag that is not `v` + a semantic version.
    #[error(
        "ga_tag in stage `{stage}`: `{tag}` is not vMAJOR.MINOR.PATCH[-pre][+build]: {reason}"
    )]
    TagNotSemver {
        /// The stage.
        stage: String,
        /// The tag.
        tag: String,
        /// What the semver parser said.
        reason: String,
    },
    /// A release tag for another version than the one the workspace builds.
    #[error(
        "ga_tag in stage `{stage}`: `{tag}` does not match the workspace version {version} \
         (Cargo.toml `[workspace.package] version`)"
    )]
    TagNotWorkspaceVersion {
        /// The stage.
        stage: String,
        /// The tag.
        tag: String,
        /// The workspace's version.
        version: &'static str,
    },
    /// A registry or image reference no OCI client would push to.
    #[error("{step} in stage `{stage}`: {reason}")]
    OciReference {
        /// The stage.
        stage: String,
        /// The step's kind.
        step: &'static str,
        /// What the reference parser said.
        reason: String,
    },
}

fn at_line(line: Option<usize>) -> String {
    match line {
        Some(line) => format!("at line {line}"),
        None => "earlier".to_owned(),
    }
}

fn set_by(stage: &Option<String>) -> String {
    match stage {
        Some(stage) => format!("set by stage `{stage}`"),
        None => "the rollout starts from".to_owned(),
    }
}
