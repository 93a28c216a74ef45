//! The plan model: *what* the rollout does, validated and in dependency order. It knows nothing
//! of how a step touches the world (that is the targets') nor of when it runs (the runner's).
//!
//! YAML is read with `serde_yaml_ng`, a maintained fork of the deprecated `serde_yaml` with the
//! same API: the serde derives here are the schema, and its errors carry a line and column.
//! `serde_norway` is an equivalent fork; `serde_yaml_ng` won because it builds on the widely used
//! `unsafe-libyaml` rather than on a fork of it.

pub mod compare;
pub mod drill;
pub mod environment;
pub mod rollback;
pub mod slo;
pub mod source_map;
pub mod spec;
pub mod step;
pub mod units;
pub mod windows;

use std::{collections::BTreeMap, time::Duration};

pub use rollback::RollbackTrigger;
pub use slo::ThresholdSpec;
pub use step::Step;
pub use units::{TimeScale, Weight};

/// A validated rollout plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The rollout's name.
    pub name: String,
    /// The plan's default gate thresholds, as written.
    pub slos: ThresholdSpec,
    /// The weight the last canary step reaches, when the plan pins it.
    pub max_weight: Option<Weight>,
    /// What rolls everything back.
    pub rollback: Vec<RollbackTrigger>,
    /// The GitHub environments the stages name, as GitHub must protect them (may be empty:
    /// then every stage with an environment needs an approval).
    pub environments: BTreeMap<String, environment::Environment>,
    /// Plan time against wall-clock time; read it with [`Plan::time_scale`].
    pub(crate) time_scale: TimeScale,
    /// How a flagless run drills the plan on the local target, when the plan says.
    pub drill: Option<drill::Drill>,
    /// In dependency order: every stage comes after all it needs, ties kept in file order.
    pub(crate) stages: Vec<Stage>,
}

impl Plan {
    /// The stages in the order the runner takes them: each after everything it needs.
    pub fn stages(&self) -> &[Stage] {
        &self.stages
    }

    /// How plan time maps to wall-clock time.
    pub fn time_scale(&self) -> TimeScale {
        self.time_scale
    }

    /// The environments the stages name, in stage order, each once.
    pub fn environment_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for name in self.stages.iter().filter_map(|s| s.environment.as_deref()) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    /// Whether a stage in `environment` waits for an approval: unless the plan declares the
    /// environment without reviewers.
    pub fn needs_approval(&self, environment: &str) -> bool {
        self.environments
            .get(environment)
            .is_none_or(environment::Environment::needs_approval)
    }

    /// The same plan run at another speed (the CLI's `--time-scale`).
    pub fn with_time_scale(self, time_scale: TimeScale) -> Plan {
        Plan { time_scale, ..self }
    }

    /// A duration of the plan as the wall clock will see it.
    pub fn scaled(&self, duration: Duration) -> Duration {
        self.time_scale.apply(duration)
    }

    /// How long the plan holds in plan time along its longest chain of `needs`, approvals
    /// excluded.
    pub fn critical_path(&self) -> Duration {
        let mut finish: Vec<Duration> = Vec::with_capacity(self.stages.len());
        for stage in &self.stages {
            let start = stage
                .needs
                .iter()
                .filter_map(|need| self.stages.iter().position(|s| &s.id == need))
                .filter_map(|index| finish.get(index).copied())
                .max()
                .unwrap_or(Duration::ZERO);
            finish.push(start + stage.hold());
        }
        finish.into_iter().max().unwrap_or(Duration::ZERO)
    }
}

/// A stage (a week of the seed's schedule): steps run in order once its `needs` are done and its
/// environment is approved.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    /// Unique within the plan.
    pub id: String,
    /// A title for people.
    pub name: String,
    /// Stages that must have finished first.
    pub needs: Vec<String>,
    /// The GitHub environment whose approval the stage waits for.
    pub environment: Option<String>,
    /// Whether the stage exists to raise the canary weight (then `exit_weight > entry_weight`).
    pub promotion: bool,
    /// What the stage does, in order.
    pub steps: Vec<Step>,
    /// The canary weight in force when the stage starts.
    pub entry_weight: Weight,
    /// The canary weight in force when the stage has finished.
    pub exit_weight: Weight,
}

impl Stage {
    /// How long the stage's steps hold, in plan time.
    pub fn hold(&self) -> Duration {
        self.steps.iter().map(Step::hold).sum()
    }
}
