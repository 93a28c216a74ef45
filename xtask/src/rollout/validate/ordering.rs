//! Ordering: how traffic moves (weights rise along `needs`, promotions are declared, moves
//! are approved and checked) and which steps are safe only once the cut-over is complete.

use std::collections::HashMap;

use super::{Checker, ValidationError};
use crate::rollout::plan::spec::{PlanSpec, StageSpec, StepSpec};
use crate::rollout::plan::step::Step;
use crate::rollout::plan::{Stage, Weight};

impl Checker<'_> {
    /// Every canary step must be judged by an slo_check before traffic moves again or the stage
    /// ends: otherwise a bad weight is promoted on nothing but elapsed time.
    pub(super) fn canary_steps_are_checked(&mut self, at: usize, stage: &StageSpec) {
        let steps = &stage.steps;
        for (n, step) in steps.iter().enumerate() {
            let StepSpec::Canary(canary) = step else {
                continue;
            };
            let checked = steps[n + 1..]
                .iter()
                .take_while(|later| !matches!(later, StepSpec::Canary(_)))
                .any(|later| matches!(later, StepSpec::SloCheck(_)));
            if !checked {
                let error = ValidationError::CanaryWithoutSloCheck {
                    stage: stage.id.clone(),
                    weight: canary.weight,
                };
                self.report(&format!("stages.{at}.steps.{n}"), error);
            }
        }
        if stage
            .environment
            .as_deref()
            .is_none_or(|env| env.trim().is_empty())
            && steps.iter().any(|step| matches!(step, StepSpec::Canary(_)))
        {
            self.report(
                &format!("stages.{at}"),
                ValidationError::CanaryWithoutApproval {
                    stage: stage.id.clone(),
                },
            );
        }
    }

    /// Follows the canary weight through the stages in dependency order; returns each stage's
    /// entry and exit weight, in that order.
    pub(super) fn canary(
        &mut self,
        plan: &PlanSpec,
        order: &[usize],
    ) -> Option<Vec<(usize, Weight, Weight)>> {
        let stages = &plan.stages;
        let ancestors = ancestors(stages, order);
        let sets_weight = |at: usize| {
            stages[at]
                .steps
                .iter()
                .any(|s| matches!(s, StepSpec::Canary(_)))
        };

        // The weights only have an order if the stages that set them do.
        let canary_stages: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&at| sets_weight(at))
            .collect();
        for pair in canary_stages.windows(2) {
            let (earlier, later) = (pair[0], pair[1]);
            if !ancestors[later][earlier] {
                let (first, second) = (earlier.min(later), earlier.max(later));
                let error = ValidationError::ConcurrentCanaryStages {
                    first: stages[first].id.clone(),
                    second: stages[second].id.clone(),
                };
                self.report(&format!("stages.{second}"), error);
                return None;
            }
        }

        let mut exit: Vec<Option<(Weight, usize)>> = vec![None; stages.len()];
        let mut weights = Vec::with_capacity(order.len());
        for &at in order {
            let stage = &stages[at];
            // With the canary stages in one chain, the highest weight among ancestors is the
            // latest one set.
            let inherited = (0..stages.len())
                .filter(|&other| ancestors[at][other])
                .filter_map(|other| exit[other])
                .max_by_key(|(weight, _)| *weight);
            let entry = inherited.map_or(Weight::ZERO, |(weight, _)| weight);
            let mut current = inherited;
            let reported = self.violations.len();
            for (n, step) in stage.steps.iter().enumerate() {
                let StepSpec::Canary(canary) = step else {
                    continue;
                };
                let path = format!("stages.{at}.steps.{n}.canary.weight");
                let (previous, previous_at) =
                    current.map_or((Weight::ZERO, None), |(w, by)| (w, Some(by)));
                if canary.weight <= previous {
                    let error = ValidationError::WeightNotIncreasing {
                        stage: stage.id.clone(),
                        weight: canary.weight,
                        previous,
                        previous_stage: previous_at.map(|by: usize| stages[by].id.clone()),
                    };
                    self.report(&path, error);
                }
                if let Some(max) = plan.canary.max_weight.filter(|max| canary.weight > *max) {
                    let error = ValidationError::WeightAboveMax {
                        stage: stage.id.clone(),
                        weight: canary.weight,
                        max,
                    };
                    self.report(&path, error);
                }
                current = Some((canary.weight.max(previous), at));
            }
            let exit_weight = current.map_or(Weight::ZERO, |(weight, _)| weight);
            exit[at] = current;
            // A stage whose weights are already wrong would only be reported twice.
            if self.violations.len() == reported {
                self.promotion_is_declared(at, stage, entry, exit_weight);
            }
            weights.push((at, entry, exit_weight));
        }

        if let Some(max) = plan.canary.max_weight {
            self.final_weight_is_max(plan, &canary_stages, max);
        }
        let moves_traffic = weights.iter().any(|(_, entry, exit)| exit > entry);
        if moves_traffic && plan.rollback.is_empty() {
            self.report("rollback", ValidationError::NoRollbackTriggers);
        }
        Some(weights)
    }

    /// `promotion: true` and a rising weight must go together: the flag is what approvers and
    /// reports read, the weight is what happens.
    fn promotion_is_declared(&mut self, at: usize, stage: &StageSpec, from: Weight, to: Weight) {
        let path = format!("stages.{at}.promotion");
        let id = stage.id.clone();
        if stage.promotion && to <= from {
            self.report(
                &path,
                ValidationError::PromotionDoesNotPromote {
                    stage: id,
                    from,
                    to,
                },
            );
        } else if !stage.promotion && to > from {
            self.report(
                &path,
                ValidationError::UnmarkedPromotion {
                    stage: id,
                    from,
                    to,
                },
            );
        }
    }

    /// The last canary step must land on `max_weight` exactly.
    fn final_weight_is_max(&mut self, plan: &PlanSpec, canary_stages: &[usize], max: Weight) {
        let last = canary_stages.last().and_then(|&at| {
            let steps = &plan.stages[at].steps;
            steps
                .iter()
                .enumerate()
                .rev()
                .find_map(|(n, step)| match step {
                    StepSpec::Canary(canary) => Some((at, n, canary.weight)),
                    _ => None,
                })
        });
        match last {
            Some((at, n, weight)) if weight != max => {
                let stage = plan.stages[at].id.clone();
                let path = format!("stages.{at}.steps.{n}.canary.weight");
                self.report(
                    &path,
                    ValidationError::FinalWeightNotMax { stage, weight, max },
                );
            }
            Some(_) => {}
            None => self.report(
                "canary.max_weight",
                ValidationError::MaxWeightNeverReached { max },
            ),
        }
    }

    /// Steps that retire the legacy service (`mlx_teardown`, a `scale` to 0) or publish the
    /// release (`ga_tag`, `image_push`, `helm_push`) come only once the canary has reached `full`
    /// and a soak or slo_check has judged it there, in the stage or one it needs: before that a
    /// rollback still needs the legacy service, and a release would ship what is not proven.
    pub(super) fn cut_over(&mut self, stages: &[(usize, Stage)], full: Weight) {
        // Per stage id: (full weight reached, cut-over complete) when the stage ends.
        let mut at_exit: HashMap<&str, (bool, bool)> = HashMap::new();
        for (at, stage) in stages {
            let inherited = |pick: fn(&(bool, bool)) -> bool| {
                stage
                    .needs
                    .iter()
                    .filter_map(|need| at_exit.get(need.as_str()))
                    .any(pick)
            };
            let (mut reached, mut complete) = (inherited(|s| s.0), inherited(|s| s.1));
            for (n, step) in stage.steps.iter().enumerate() {
                match step {
                    Step::Canary(canary) => reached = canary.weight >= full,
                    Step::Soak(_) | Step::SloCheck(_) if reached => complete = true,
                    _ => {}
                }
                let Some(acts) = retires_or_releases(step) else {
                    continue;
                };
                if !complete {
                    let error = ValidationError::BeforeCutOver {
                        stage: stage.id.clone(),
                        step: step.kind(),
                        acts,
                        full,
                    };
                    self.report(&format!("stages.{at}.steps.{n}"), error);
                }
            }
            at_exit.insert(&stage.id, (reached, complete));
        }
    }
}

/// What `step` does that is safe only after the cut-over, if it does such a thing.
fn retires_or_releases(step: &Step) -> Option<String> {
    match step {
        Step::Scale(scale) if scale.replicas == 0 => {
            Some(format!("scales `{}` to 0 replicas", scale.deployment))
        }
        Step::MlxTeardown(teardown) => Some(format!("retires `{}`", teardown.deployment)),
        Step::GaTag(tag) => Some(format!("tags the release `{}`", tag.tag)),
        Step::ImagePush(image) => Some(format!("pushes the image `{}`", image.image)),
        Step::HelmPush(chart) => Some(format!("pushes the chart `{}`", chart.chart)),
        _ => None,
    }
}

/// `ancestors[a][b]`: whether stage `a` needs stage `b`, directly or not.
fn ancestors(stages: &[StageSpec], order: &[usize]) -> Vec<Vec<bool>> {
    let index: HashMap<&str, usize> = stages
        .iter()
        .enumerate()
        .map(|(at, stage)| (stage.id.as_str(), at))
        .collect();
    let mut ancestors = vec![vec![false; stages.len()]; stages.len()];
    for &at in order {
        for need in &stages[at].needs {
            let Some(&parent) = index.get(need.as_str()) else {
                continue;
            };
            // `order` puts `parent` first, so its own ancestors are already complete.
            let inherited = ancestors[parent].clone();
            for (mine, theirs) in ancestors[at].iter_mut().zip(inherited) {
                *mine |= theirs;
            }
            ancestors[at][parent] = true;
        }
    }
    ancestors
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;

    #[test]
    fn rejects_canary_weight_that_does_not_increase_along_needs() {
        let (line, error) = the_violation("invalid/weight-not-increasing.yaml");
        assert_eq!(line, Some(23));
        assert_eq!(
            error,
            ValidationError::WeightNotIncreasing {
                stage: "week-3".into(),
                weight: weight(5),
                previous: weight(10),
                previous_stage: Some("week-2".into()),
            }
        );
    }

    #[test]
    fn rejects_canary_stages_that_neither_needs_the_other() {
        let (line, error) = the_violation("invalid/concurrent-canary-stages.yaml");
        assert_eq!(line, Some(17));
        assert_eq!(
            error,
            ValidationError::ConcurrentCanaryStages {
                first: "left".into(),
                second: "right".into()
            }
        );
    }

    #[test]
    fn rejects_raising_the_weight_without_a_later_slo_check_in_the_stage() {
        let (line, error) = the_violation("invalid/canary-without-slo-check.yaml");
        assert_eq!(line, Some(15));
        assert_eq!(
            error,
            ValidationError::CanaryWithoutSloCheck {
                stage: "canary".into(),
                weight: weight(1)
            }
        );
    }

    #[test]
    fn rejects_a_last_canary_step_short_of_max_weight() {
        let (line, error) = the_violation("invalid/final-weight-not-max.yaml");
        assert_eq!(line, Some(16));
        let (stage, max) = ("canary".into(), weight(100));
        assert_eq!(
            error,
            ValidationError::FinalWeightNotMax {
                stage,
                weight: weight(50),
                max
            }
        );
    }

    #[test]
    fn rejects_a_promotion_that_does_not_raise_the_weight() {
        let (line, error) = the_violation("invalid/promotion-without-promoting.yaml");
        assert_eq!(line, Some(21));
        let (from, to) = (weight(10), weight(10));
        assert_eq!(
            error,
            ValidationError::PromotionDoesNotPromote {
                stage: "week-3".into(),
                from,
                to
            }
        );
    }

    #[test]
    fn rejects_raising_the_weight_in_a_stage_not_marked_as_a_promotion() {
        let (line, error) = the_violation("invalid/unmarked-promotion.yaml");
        assert_eq!(line, Some(10));
        let (from, to) = (weight(0), weight(1));
        assert_eq!(
            error,
            ValidationError::UnmarkedPromotion {
                stage: "canary".into(),
                from,
                to
            }
        );
    }

    #[test]
    fn rejects_moving_traffic_without_an_approving_environment() {
        let (line, error) = the_violation("invalid/canary-without-approval.yaml");
        assert_eq!(line, Some(10));
        assert_eq!(
            error,
            ValidationError::CanaryWithoutApproval {
                stage: "canary".into()
            }
        );
    }

    fn before_cut_over(text: &str, needle: &str, step: &'static str, acts: &str) {
        let (line, error) = the_violation_in(text);
        assert_eq!(line, line_of(text, needle));
        assert_eq!(
            error,
            ValidationError::BeforeCutOver {
                stage: "half".into(),
                step,
                acts: acts.into(),
                full: weight(100),
            }
        );
    }

    #[test]
    fn rejects_releasing_before_the_cut_over() {
        let text = base_with(&[("#HALF", "- ga_tag: {tag: v0.0.0-pre, message: GA}")]);
        let text = text.replace("v0.0.0-pre", &format!("v{}", env!("CARGO_PKG_VERSION")));
        let tag = format!("tags the release `v{}`", env!("CARGO_PKG_VERSION"));
        before_cut_over(&text, "- ga_tag", "ga_tag", &tag);
        let text = base_with(&[(
            "#HALF",
            "- helm_push: {chart: charts/akidb-candle, registry: oci://ghcr.io/akidb/charts}",
        )]);
        let acts = "pushes the chart `charts/akidb-candle`";
        before_cut_over(&text, "- helm_push", "helm_push", acts);
        let text = base_with(&[(
            "#HALF",
            "- image_push: {image: akidb/embedding:v2.0.0, registry: ghcr.io}",
        )]);
        let acts = "pushes the image `akidb/embedding:v2.0.0`";
        before_cut_over(&text, "- image_push", "image_push", acts);
    }

    #[test]
    fn rejects_retiring_the_legacy_service_before_the_cut_over() {
        let text = base_with(&[("#HALF", "- scale: {deployment: akidb-mlx, replicas: 0}")]);
        let acts = "scales `akidb-mlx` to 0 replicas";
        before_cut_over(&text, "- scale", "scale", acts);
        let text = base_with(&[(
            "#HALF",
            "- mlx_teardown: {deployment: akidb-mlx, grace_period: 1h}",
        )]);
        before_cut_over(
            &text,
            "- mlx_teardown",
            "mlx_teardown",
            "retires `akidb-mlx`",
        );
    }

    #[test]
    fn full_weight_is_not_enough_until_a_soak_or_slo_check_judges_it() {
        // At 100% but not yet judged there: the teardown comes before the soak.
        let text = base_with(&[(
            "      - canary: {weight: 100}\n",
            "      - canary: {weight: 100}\n      - mlx_teardown: {deployment: akidb-mlx, \
             grace_period: 1h}\n",
        )]);
        let (line, error) = the_violation_in(&text);
        assert_eq!(line, line_of(&text, "- mlx_teardown"));
        assert!(
            matches!(error, ValidationError::BeforeCutOver { ref stage, .. } if stage == "full")
        );
    }

    #[test]
    fn accepts_legacy_and_release_steps_after_the_cut_over_even_in_a_later_stage() {
        let version = env!("CARGO_PKG_VERSION");
        let text = base_with(&[(
            "#FULL",
            &format!(
                "- scale: {{deployment: akidb-mlx, replicas: 0}}\n      \
                 - ga_tag: {{tag: v{version}, message: GA}}"
            ),
        )]);
        let later = format!(
            "{text}  - id: retire\n    name: Retire\n    needs: [full]\n    steps:\n      \
             - mlx_teardown: {{deployment: akidb-mlx, grace_period: 1h}}\n"
        );
        if let Err(error) = crate::rollout::load::parse(&later, std::path::Path::new("plan.yaml")) {
            panic!("{error}");
        }
    }
}
