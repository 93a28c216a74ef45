//! The plan's `environments`: once the plan has the section, every environment a stage names is
//! declared there, with reviewers wherever a stage moves production traffic. (One declared and
//! unused is allowed: plans cut from a larger one keep the section whole.)

use super::{Checker, ValidationError};
use crate::rollout::plan::spec::{PlanSpec, StepSpec};

impl Checker<'_> {
    /// The rules of the `environments` section (none when the plan has no such section).
    pub(super) fn environments(&mut self, plan: &PlanSpec) {
        if plan.environments.is_empty() {
            return;
        }
        for (at, stage) in plan.stages.iter().enumerate() {
            let Some(name) = &stage.environment else {
                continue;
            };
            let Some(declared) = plan.environments.get(name) else {
                let error = ValidationError::UndeclaredEnvironment {
                    stage: stage.id.clone(),
                    name: name.clone(),
                };
                self.report(&format!("stages.{at}.environment"), error);
                continue;
            };
            let moves_traffic = stage.steps.iter().any(|s| matches!(s, StepSpec::Canary(_)));
            if moves_traffic && !declared.needs_approval() {
                let error = ValidationError::CanaryWithoutReviewers {
                    stage: stage.id.clone(),
                    name: name.clone(),
                };
                self.report(&format!("environments.{name}.reviewers"), error);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::test_support::*;
    use super::*;
    use crate::rollout::load;

    /// The rules `text` breaks; none when it loads.
    fn violations_in_or_none(text: &str) -> Vec<String> {
        match load::parse(text, Path::new("plan.yaml")) {
            Ok(_) => Vec::new(),
            Err(error) => vec![error.to_string()],
        }
    }

    const DECLARED: &str = "environments:\n  canary-50: {reviewers: [team:release-managers]}\n  \
                            production: {reviewers: [team:release-managers], branches: [main]}\n";

    fn with_environments(section: &str) -> String {
        let base = base_with(&[]);
        let at = base.find("stages:").expect("the base plan has stages");
        format!("{}{section}{}", &base[..at], &base[at..])
    }

    #[test]
    fn the_checked_in_plan_declares_every_environment_it_names() {
        let text = std::fs::read_to_string(crate::project::root().join("rollout/plan.yaml"))
            .expect("rollout/plan.yaml");
        assert!(
            text.contains("\nenvironments:"),
            "rollout/plan.yaml declares its environments"
        );
        assert_eq!(violations_in_or_none(&text), Vec::<String>::new());
    }

    #[test]
    fn a_declared_section_must_cover_every_stage() {
        assert_eq!(
            violations_in_or_none(&with_environments(DECLARED)),
            Vec::<String>::new()
        );
        let violations = violations_in(&with_environments(
            "environments:\n  nobody-uses-this: {reviewers: [user:someone]}\n",
        ));
        assert!(violations
            .iter()
            .any(|v| matches!(&v.error, ValidationError::UndeclaredEnvironment { .. })));
    }

    #[test]
    fn traffic_never_moves_in_an_environment_without_reviewers() {
        let text = with_environments(&DECLARED.replace(
            "canary-50: {reviewers: [team:release-managers]}",
            "canary-50: {reviewers: []}",
        ));
        let violations = violations_in(&text);
        let found: Vec<_> = violations
            .iter()
            .filter(|v| matches!(&v.error, ValidationError::CanaryWithoutReviewers { name, .. } if name == "canary-50"))
            .collect();
        assert_eq!(found.len(), 1, "{violations:?}");
        assert_eq!(found[0].line, line_of(&text, "canary-50: {reviewers: []}"));
    }
}
