//! How a stage becomes jobs: one job, or two when its holds before the first release step
//! outlast a credential; their ids, the artifacts their state travels in, and the job before each.

use super::CREDENTIAL_LIMIT_MINUTES;
use crate::rollout::{
    plan::{step::Step as PlanStep, Plan, Stage},
    publish,
};

/// The part of a stage one job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Every step.
    Whole,
    /// The steps before the first release step (the runner's `--stop-before-publish`).
    BeforePublish,
    /// The rest, from the first release step: a fresh job, so fresh credentials.
    Publish,
}

/// The jobs of `stage`: one, or two when its holds before the first release step outlast a
/// credential ([`CREDENTIAL_LIMIT_MINUTES`]).
pub fn parts(plan: &Plan, stage: &Stage) -> Vec<Part> {
    match first_publish(stage) {
        Some(first) if minutes(plan, &stage.steps[..first]) > CREDENTIAL_LIMIT_MINUTES => {
            vec![Part::BeforePublish, Part::Publish]
        }
        _ => vec![Part::Whole],
    }
}

/// The index of the stage's first release step.
pub fn first_publish(stage: &Stage) -> Option<usize> {
    stage.steps.iter().position(publish::publishes)
}

/// The plan steps a part runs.
pub fn steps_of(stage: &Stage, part: Part) -> &[PlanStep] {
    let first = first_publish(stage).unwrap_or(stage.steps.len());
    match part {
        Part::Whole => &stage.steps,
        Part::BeforePublish => &stage.steps[..first],
        Part::Publish => &stage.steps[first..],
    }
}

/// The scaled holds of `steps`, in whole minutes.
pub(super) fn minutes(plan: &Plan, steps: &[PlanStep]) -> u32 {
    let hold: std::time::Duration = steps.iter().map(PlanStep::hold).sum();
    u32::try_from(plan.scaled(hold).as_secs().div_ceil(60)).unwrap_or(u32::MAX)
}

/// The job id of a stage's part.
pub fn job_id(stage: &Stage, part: Part) -> String {
    match part {
        Part::Publish => format!("{}-publish", stage.id),
        _ => stage.id.clone(),
    }
}

/// The artifact a stage's part leaves its state in.
pub(super) fn artifact(stage: &Stage, part: Part) -> String {
    match part {
        Part::BeforePublish => format!("rollout-state-{}-before-publish", stage.id),
        _ => format!("rollout-state-{}", stage.id),
    }
}

/// The job that finishes `stage` (the one later stages need).
pub(super) fn last_job(plan: &Plan, stage: &Stage) -> String {
    let parts = parts(plan, stage);
    job_id(stage, *parts.last().unwrap_or(&Part::Whole))
}

/// The job before this one: in the same stage, or the last of the stage before.
#[derive(Clone, Copy)]
pub(super) enum Previous<'a> {
    /// The first job of the first stage.
    None,
    /// The last job of the stage before (this run's, or `state_from_run`'s).
    Stage(&'a Stage),
    /// The part before, in the same stage and run.
    Part(&'a Stage, Part),
}
