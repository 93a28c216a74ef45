//! The judge away from a run: `cargo xtask rollout judge` on two sample files, and `cargo xtask
//! rollout replay` of a stage's gates and rollback triggers against past data in Prometheus.

pub mod judge;
pub mod replay;
#[cfg(test)]
mod replay_tests;

use std::path::{Path, PathBuf};

use crate::rollout::{
    load,
    plan::{compare::Compare, Plan, Stage, Step},
};

/// The plan file: `--plan`, else `rollout/plan.yaml` in the workspace.
fn load_plan(file: Option<&Path>) -> anyhow::Result<Plan> {
    let file: PathBuf = file.map_or_else(crate::project::plan_path, Path::to_path_buf);
    Ok(load::load(&file)?)
}

/// The stage `id`, or an error naming the plan's stages.
fn stage<'p>(plan: &'p Plan, id: &str) -> anyhow::Result<&'p Stage> {
    plan.stages().iter().find(|s| s.id == id).ok_or_else(|| {
        let ids: Vec<&str> = plan.stages().iter().map(|s| s.id.as_str()).collect();
        anyhow::anyhow!("the plan has no stage `{id}` (it has {})", ids.join(", "))
    })
}

/// The first `compare:` of a gate in `stage` (or, without one, anywhere in the plan).
fn plan_compare(plan: &Plan, stage_id: Option<&str>) -> anyhow::Result<Option<Compare>> {
    let stages: Vec<&Stage> = match stage_id {
        Some(id) => vec![stage(plan, id)?],
        None => plan.stages().iter().collect(),
    };
    Ok(stages
        .iter()
        .flat_map(|s| &s.steps)
        .find_map(|step| match step {
            Step::SloCheck(s) => s.compare.clone(),
            Step::LoadTest(s) => s.compare.clone(),
            _ => None,
        }))
}
