//! The rules a well-formed plan must also follow: the ones serde cannot see because they span
//! fields, steps or stages. Every broken rule is reported, each at the line that breaks it.
//!
//! One family of rules per module, each with its tests:
//! - [`structure`]: ids, `needs` and their order, each step's own fields, thresholds present;
//! - [`ordering`]: how traffic moves (weights, promotion, approval, a check after each move)
//!   and which steps are safe only after the cut-over is complete;
//! - [`thresholds`]: values that must agree (percentiles, triggers against gates, windows
//!   against holds, `min_requests` against the traffic);
//! - [`names`]: what GitHub, Kubernetes, semantic versioning and OCI registries accept.

mod environments;
mod error;
mod names;
mod ordering;
mod structure;
#[cfg(test)]
mod test_support;
mod thresholds;

use super::plan::source_map::SourceMap;
use super::plan::spec::PlanSpec;
use super::plan::{Plan, Stage, Weight};

pub use error::ValidationError;

/// A broken rule and the line of the plan that breaks it.
#[derive(Clone, Debug, PartialEq)]
pub struct Violation {
    /// 1-based; `None` when the node could not be located.
    pub line: Option<usize>,
    /// The rule.
    pub error: ValidationError,
}

/// Checks every rule and builds the plan, or returns every violation sorted by line.
pub fn validate(spec: PlanSpec, source: &SourceMap) -> Result<Plan, Vec<Violation>> {
    let mut check = Checker {
        source,
        violations: Vec::new(),
    };
    let index = check.stage_ids(&spec.stages);
    check.rollback(&spec);
    check.percentiles(&spec);
    check.triggers_against_gates(&spec);
    check.names(&spec);
    check.environments(&spec);
    let drafts: Vec<_> = spec
        .stages
        .iter()
        .enumerate()
        .map(|(at, stage)| check.stage(at, stage, &spec))
        .collect();
    let weights = match check.order(&spec.stages, &index) {
        Some(order) => check.canary(&spec, &order),
        None => None,
    };

    let Some(weights) = weights.filter(|_| check.violations.is_empty()) else {
        return Err(check.into_sorted());
    };
    // Each stage in dependency order, with its index in the file (which the source map knows).
    let mut stages: Vec<(usize, Stage)> = Vec::with_capacity(weights.len());
    for (at, entry_weight, exit_weight) in weights {
        let (Some(stage), Some(Some(steps))) = (spec.stages.get(at), drafts.get(at)) else {
            continue;
        };
        stages.push((
            at,
            Stage {
                id: stage.id.clone(),
                name: stage.name.clone(),
                needs: stage.needs.clone(),
                environment: stage.environment.clone(),
                promotion: stage.promotion,
                steps: steps.clone(),
                entry_weight,
                exit_weight,
            },
        ));
    }
    // Without a ceiling in the plan, the cut-over is complete at 100%.
    if let Some(full) = spec.canary.max_weight.or(Weight::try_from(100).ok()) {
        check.cut_over(&stages, full);
    }
    check.windows(&stages);
    if !check.violations.is_empty() {
        return Err(check.into_sorted());
    }
    Ok(Plan {
        name: spec.name,
        slos: spec.slos,
        max_weight: spec.canary.max_weight,
        rollback: spec.rollback,
        environments: spec.environments,
        time_scale: spec.time_scale,
        drill: spec.drill,
        stages: stages.into_iter().map(|(_, stage)| stage).collect(),
    })
}

/// Collects violations while walking the spec; each rule family adds its methods.
struct Checker<'a> {
    source: &'a SourceMap,
    violations: Vec<Violation>,
}

impl Checker<'_> {
    /// Records `error` at the line of the node at `path` (`stages.2.steps.0.canary.weight`).
    fn report(&mut self, path: &str, error: ValidationError) {
        let line = self.source.line(path);
        self.violations.push(Violation { line, error });
    }

    fn into_sorted(self) -> Vec<Violation> {
        let mut violations = self.violations;
        // The sort is stable, so violations on one line keep the order they were found in.
        violations.sort_by_key(|v| v.line.unwrap_or(usize::MAX));
        violations
    }
}
