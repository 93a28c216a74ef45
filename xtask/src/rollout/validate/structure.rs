//! Structure: stage ids, `needs` and the order they give, each step's own fields, and the
//! thresholds every gate needs.

use std::collections::HashMap;

use super::{Checker, ValidationError};
use crate::rollout::plan::spec::{PlanSpec, StageSpec, StepSpec};
use crate::rollout::plan::step::{LoadTest, SloCheck, Soak, Step};
use crate::rollout::plan::ThresholdSpec;

impl Checker<'_> {
    /// Checks ids are present and unique; returns each id's first stage.
    pub(super) fn stage_ids(&mut self, stages: &[StageSpec]) -> HashMap<String, usize> {
        if stages.is_empty() {
            self.report("stages", ValidationError::NoStages);
        }
        let mut index = HashMap::new();
        for (at, stage) in stages.iter().enumerate() {
            if stage.id.trim().is_empty() {
                self.report(&format!("stages.{at}.id"), ValidationError::EmptyStageId);
            } else if let Some(first) = index.get(&stage.id) {
                let first_line = self.source.line(&format!("stages.{first}.id"));
                let id = stage.id.clone();
                self.report(
                    &format!("stages.{at}.id"),
                    ValidationError::DuplicateStage { id, first_line },
                );
            } else {
                index.insert(stage.id.clone(), at);
            }
        }
        index
    }

    /// Orders the stages so each comes after all it needs (ties in file order), or reports why
    /// they cannot be.
    pub(super) fn order(
        &mut self,
        stages: &[StageSpec],
        index: &HashMap<String, usize>,
    ) -> Option<Vec<usize>> {
        let mut needs: Vec<Vec<usize>> = Vec::with_capacity(stages.len());
        for (at, stage) in stages.iter().enumerate() {
            let mut resolved = Vec::new();
            for (n, need) in stage.needs.iter().enumerate() {
                match index.get(need) {
                    Some(&other) => resolved.push(other),
                    None => self.report(
                        &format!("stages.{at}.needs.{n}"),
                        ValidationError::UnknownNeed {
                            stage: stage.id.clone(),
                            need: need.clone(),
                        },
                    ),
                }
            }
            needs.push(resolved);
        }

        let mut done = vec![false; stages.len()];
        let mut order = Vec::with_capacity(stages.len());
        // Quadratic, and plans have a handful of stages: the simplest order that keeps file order
        // among stages that could run in either.
        while let Some(next) =
            (0..stages.len()).find(|&at| !done[at] && needs[at].iter().all(|&need| done[need]))
        {
            done[next] = true;
            order.push(next);
        }
        if order.len() == stages.len() {
            return Some(order);
        }
        if let Some(cycle) = find_cycle(&needs) {
            let first = cycle.first().copied().unwrap_or_default();
            let names = cycle.iter().map(|&at| stages[at].id.clone()).collect();
            self.report(
                &format!("stages.{first}.needs"),
                ValidationError::NeedsCycle { cycle: names },
            );
        }
        None
    }

    /// Checks one stage's steps on their own and resolves them; `None` when any is invalid.
    pub(super) fn stage(
        &mut self,
        at: usize,
        stage: &StageSpec,
        plan: &PlanSpec,
    ) -> Option<Vec<Step>> {
        if stage.steps.is_empty() {
            self.report(
                &format!("stages.{at}"),
                ValidationError::NoSteps {
                    stage: stage.id.clone(),
                },
            );
        }
        let mut steps = Some(Vec::with_capacity(stage.steps.len()));
        for (n, step) in stage.steps.iter().enumerate() {
            let path = format!("stages.{at}.steps.{n}");
            match self.step(&path, &stage.id, step, plan) {
                Some(step) => {
                    if let Some(steps) = steps.as_mut() {
                        steps.push(step);
                    }
                }
                None => steps = None,
            }
        }
        self.canary_steps_are_checked(at, stage);
        steps
    }

    /// Checks and resolves one step; `None` when it is invalid.
    fn step(&mut self, path: &str, stage: &str, step: &StepSpec, plan: &PlanSpec) -> Option<Step> {
        let kind = step.kind();
        let before = self.violations.len();
        let positive = |check: &mut Self, field: &'static str, ok: bool| {
            if !ok {
                let error = ValidationError::NotPositive {
                    stage: stage.to_owned(),
                    step: kind,
                    field,
                };
                check.report(&format!("{path}.{kind}.{field}"), error);
            }
        };
        let non_empty = |check: &mut Self, field: &'static str, text: &str| {
            if text.trim().is_empty() {
                let error = ValidationError::EmptyField {
                    stage: stage.to_owned(),
                    step: kind,
                    field,
                };
                check.report(&format!("{path}.{kind}.{field}"), error);
            }
        };
        let thresholds =
            |check: &mut Self, overrides: &ThresholdSpec| match overrides.resolve(&plan.slos) {
                Ok(thresholds) => Some(thresholds),
                Err(missing) => {
                    for metric in missing {
                        let error = ValidationError::MissingThreshold {
                            stage: stage.to_owned(),
                            step: kind,
                            metric,
                        };
                        check.report(path, error);
                    }
                    None
                }
            };

        let resolved = match step {
            StepSpec::LoadTest(spec) => {
                positive(self, "rate", spec.rate > 0);
                positive(self, "duration", !spec.duration.is_zero());
                thresholds(self, &spec.thresholds).map(|thresholds| {
                    Step::LoadTest(LoadTest {
                        rate: spec.rate,
                        duration: spec.duration,
                        thresholds,
                        compare: spec.compare.clone(),
                    })
                })
            }
            StepSpec::SloCheck(spec) => {
                positive(self, "window", !spec.window.is_zero());
                positive(self, "min_requests", spec.min_requests > 0);
                thresholds(self, &spec.thresholds).map(|thresholds| {
                    Step::SloCheck(SloCheck {
                        window: spec.window,
                        min_requests: spec.min_requests,
                        thresholds,
                        compare: spec.compare.clone(),
                    })
                })
            }
            StepSpec::Soak(spec) => {
                positive(self, "duration", !spec.duration.is_zero());
                thresholds(self, &spec.thresholds).map(|thresholds| {
                    Step::Soak(Soak {
                        duration: spec.duration,
                        thresholds,
                    })
                })
            }
            StepSpec::Parity(spec) => {
                non_empty(self, "corpus", &spec.corpus);
                if !(spec.min_cosine > 0.0 && spec.min_cosine <= 1.0) {
                    let error = ValidationError::MinCosineOutOfRange {
                        stage: stage.to_owned(),
                        value: spec.min_cosine,
                    };
                    self.report(&format!("{path}.parity.min_cosine"), error);
                }
                Some(Step::Parity(spec.clone()))
            }
            StepSpec::Canary(spec) => Some(Step::Canary(spec.clone())),
            StepSpec::Wait(spec) => {
                positive(self, "duration", !spec.duration.is_zero());
                Some(Step::Wait(spec.clone()))
            }
            StepSpec::Scale(spec) => {
                non_empty(self, "deployment", &spec.deployment);
                Some(Step::Scale(spec.clone()))
            }
            StepSpec::GaTag(spec) => {
                non_empty(self, "tag", &spec.tag);
                Some(Step::GaTag(spec.clone()))
            }
            StepSpec::HelmPush(spec) => {
                non_empty(self, "chart", &spec.chart);
                non_empty(self, "registry", &spec.registry);
                Some(Step::HelmPush(spec.clone()))
            }
            StepSpec::ImagePush(spec) => {
                non_empty(self, "image", &spec.image);
                non_empty(self, "registry", &spec.registry);
                Some(Step::ImagePush(spec.clone()))
            }
            StepSpec::MlxTeardown(spec) => {
                non_empty(self, "deployment", &spec.deployment);
                positive(self, "grace_period", !spec.grace_period.is_zero());
                Some(Step::MlxTeardown(spec.clone()))
            }
            StepSpec::Notify(spec) => {
                non_empty(self, "channel", &spec.channel);
                non_empty(self, "message", &spec.message);
                Some(Step::Notify(spec.clone()))
            }
        };
        resolved.filter(|_| self.violations.len() == before)
    }
}

/// A cycle of `needs` edges, its first stage repeated at the end, if there is one.
fn find_cycle(needs: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Unvisited,
        OnPath,
        Finished,
    }

    fn visit(
        at: usize,
        needs: &[Vec<usize>],
        marks: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[at] = Mark::OnPath;
        path.push(at);
        for &next in &needs[at] {
            match marks[next] {
                Mark::OnPath => {
                    let start = path.iter().position(|&p| p == next).unwrap_or_default();
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next);
                    return Some(cycle);
                }
                Mark::Unvisited => {
                    if let Some(cycle) = visit(next, needs, marks, path) {
                        return Some(cycle);
                    }
                }
                Mark::Finished => {}
            }
        }
        path.pop();
        marks[at] = Mark::Finished;
        None
    }

    let mut marks = vec![Mark::Unvisited; needs.len()];
    (0..needs.len()).find_map(|at| {
        if marks[at] == Mark::Unvisited {
            visit(at, needs, &mut marks, &mut Vec::new())
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::super::test_support::*;
    use super::super::*;
    use crate::rollout::load;
    use crate::rollout::plan::slo::SloMetric;
    use crate::rollout::plan::step::Step;
    use crate::rollout::plan::Weight;

    #[test]
    fn orders_stages_by_needs_whatever_their_file_order() {
        let plan = load::parse(
            &fixture("valid-out-of-order.yaml").1,
            Path::new("plan.yaml"),
        )
        .expect("a valid plan");
        let ids: Vec<&str> = plan
            .stages()
            .iter()
            .map(|stage| stage.id.as_str())
            .collect();
        assert_eq!(ids, ["staging", "canary", "ramp"]);
        let weights: Vec<(Weight, Weight)> = plan
            .stages()
            .iter()
            .map(|stage| (stage.entry_weight, stage.exit_weight))
            .collect();
        assert_eq!(
            weights,
            [
                (weight(0), weight(0)),
                (weight(0), weight(1)),
                (weight(1), weight(10))
            ]
        );
    }

    #[test]
    fn gates_inherit_the_plan_slos_unless_they_override_them() {
        let plan = load::parse(
            &fixture("valid-out-of-order.yaml").1,
            Path::new("plan.yaml"),
        )
        .expect("a valid plan");
        let Some(Step::LoadTest(load_test)) = plan.stages()[0].steps.first() else {
            panic!("staging starts with its load test");
        };
        assert_eq!(load_test.thresholds.p95, Duration::from_millis(30));
        assert_eq!(load_test.thresholds.p99, Duration::from_millis(50));
        assert_eq!(load_test.thresholds.error_rate.value(), 0.1);
    }

    #[test]
    fn rejects_unknown_step_kind_at_its_line() {
        let (line, message) = syntax_error("invalid/unknown-step-kind.yaml");
        assert_eq!(line, Some(14));
        assert!(
            message.contains("unknown variant `deploy_everywhere`"),
            "{message}"
        );
    }

    #[test]
    fn rejects_unknown_keys_at_their_line() {
        let (line, message) = syntax_error("invalid/unknown-field.yaml");
        assert_eq!(line, Some(15));
        assert!(message.contains("unknown field `speed`"), "{message}");
    }

    #[test]
    fn rejects_canary_weight_outside_0_to_100_at_its_line() {
        let (line, message) = syntax_error("invalid/weight-out-of-range.yaml");
        assert_eq!(line, Some(16));
        assert!(
            message.contains("canary weight 150 is outside 0..=100"),
            "{message}"
        );
    }

    #[test]
    fn rejects_percentages_without_their_sign() {
        let (line, message) = syntax_error("invalid/percent-without-sign.yaml");
        assert_eq!(line, Some(3));
        assert!(
            message.contains("write a percentage with its sign"),
            "{message}"
        );
    }

    #[test]
    fn rejects_slo_check_without_p95_when_the_plan_sets_no_default() {
        let (line, error) = the_violation("invalid/missing-threshold.yaml");
        assert_eq!(line, Some(16));
        let metric = SloMetric::P95;
        assert_eq!(
            error,
            ValidationError::MissingThreshold {
                stage: "canary".into(),
                step: "slo_check",
                metric
            }
        );
    }

    #[test]
    fn rejects_cycle_in_needs_and_names_it() {
        let (line, error) = the_violation("invalid/cycle-in-needs.yaml");
        assert_eq!(line, Some(12));
        let cycle = ["a", "c", "b", "a"].map(String::from).to_vec();
        assert_eq!(error, ValidationError::NeedsCycle { cycle });
        assert_eq!(
            error.to_string(),
            "`needs` form a cycle: a -> c -> b -> a (each needs the next)"
        );
    }

    #[test]
    fn rejects_needs_naming_an_unknown_stage() {
        let (line, error) = the_violation("invalid/unknown-need.yaml");
        assert_eq!(line, Some(12));
        assert_eq!(
            error,
            ValidationError::UnknownNeed {
                stage: "week-1".into(),
                need: "week-0".into()
            }
        );
    }

    #[test]
    fn rejects_duplicate_stage_ids() {
        let (line, error) = the_violation("invalid/duplicate-stage.yaml");
        assert_eq!(line, Some(13));
        assert_eq!(
            error,
            ValidationError::DuplicateStage {
                id: "week-1".into(),
                first_line: Some(10)
            }
        );
    }

    #[test]
    fn reports_every_broken_rule_as_file_line_message() {
        let text = "\
name: several problems
stages:
  - id: a
    name: A
    needs: [nowhere]
    steps:
      - wait: {duration: 0s}
  - id: a
    name: A again
    steps: []
";
        let error = load::parse(text, Path::new("rollout/plan.yaml")).expect_err("invalid");
        assert_eq!(
            error.to_string(),
            "rollout/plan.yaml: the rollout plan breaks 4 rules\n  \
             rollout/plan.yaml:5: stage `a` needs `nowhere`, which is not a stage of this plan\n  \
             rollout/plan.yaml:7: wait in stage `a`: `duration` must be greater than zero\n  \
             rollout/plan.yaml:8: stage id `a` is used twice (first at line 3)\n  \
             rollout/plan.yaml:8: stage `a` has no steps"
        );
    }
}
