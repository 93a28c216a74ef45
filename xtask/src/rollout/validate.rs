//! The rules a well-formed plan must also follow: the ones serde cannot see because they span
//! fields, steps or stages. Every broken rule is reported, each at the line that breaks it.

use std::collections::HashMap;

use thiserror::Error;

use super::plan::slo::SloMetric;
use super::plan::source_map::SourceMap;
use super::plan::spec::{PlanSpec, StageSpec, StepSpec};
use super::plan::step::{LoadTest, SloCheck, Soak, Step};
use super::plan::{Plan, Stage, ThresholdSpec, Weight};

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
    let drafts: Vec<Option<Vec<Step>>> = spec
        .stages
        .iter()
        .enumerate()
        .map(|(at, stage)| check.stage(at, stage, &spec))
        .collect();
    let weights = match check.order(&spec.stages, &index) {
        Some(order) => check.canary(&spec, &order),
        None => None,
    };

    let mut violations = check.violations;
    match weights {
        Some(weights) if violations.is_empty() => {
            let mut stages = Vec::with_capacity(weights.len());
            for (at, entry_weight, exit_weight) in weights {
                let (Some(stage), Some(Some(steps))) = (spec.stages.get(at), drafts.get(at)) else {
                    continue;
                };
                stages.push(Stage {
                    id: stage.id.clone(),
                    name: stage.name.clone(),
                    needs: stage.needs.clone(),
                    environment: stage.environment.clone(),
                    promotion: stage.promotion,
                    steps: steps.clone(),
                    entry_weight,
                    exit_weight,
                });
            }
            Ok(Plan {
                name: spec.name,
                slos: spec.slos,
                max_weight: spec.canary.max_weight,
                rollback: spec.rollback,
                time_scale: spec.time_scale,
                drill: spec.drill,
                stages,
            })
        }
        _ => {
            // The sort is stable, so violations on one line keep the order they were found in.
            violations.sort_by_key(|v| v.line.unwrap_or(usize::MAX));
            Err(violations)
        }
    }
}

/// Collects violations while walking the spec.
struct Checker<'a> {
    source: &'a SourceMap,
    violations: Vec<Violation>,
}

impl Checker<'_> {
    fn report(&mut self, path: &str, error: ValidationError) {
        let line = self.source.line(path);
        self.violations.push(Violation { line, error });
    }

    /// Checks ids are present and unique; returns each id's first stage.
    fn stage_ids(&mut self, stages: &[StageSpec]) -> HashMap<String, usize> {
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
    fn order(
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
    fn stage(&mut self, at: usize, stage: &StageSpec, plan: &PlanSpec) -> Option<Vec<Step>> {
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

    /// Every canary step must be judged by an slo_check before traffic moves again or the stage
    /// ends: otherwise a bad weight is promoted on nothing but elapsed time.
    fn canary_steps_are_checked(&mut self, at: usize, stage: &StageSpec) {
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
    fn canary(&mut self, plan: &PlanSpec, order: &[usize]) -> Option<Vec<(usize, Weight, Weight)>> {
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

    /// Every trigger needs a threshold and a window above zero.
    fn rollback(&mut self, plan: &PlanSpec) {
        for (n, trigger) in plan.rollback.iter().enumerate() {
            let path = format!("rollback.{n}.when");
            if !trigger.when.threshold_is_positive() {
                let error = ValidationError::RollbackThresholdNotPositive {
                    trigger: trigger.name.clone(),
                };
                self.report(&path, error);
            }
            if trigger.when.window().is_zero() {
                let error = ValidationError::RollbackWindowNotPositive {
                    trigger: trigger.name.clone(),
                };
                self.report(&path, error);
            }
        }
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

    use super::*;
    use crate::rollout::load::{self, PlanError};
    use crate::rollout::plan::step::Step;

    /// A fixture's path (as errors name it) and text.
    macro_rules! fixture {
        ($name:literal) => {
            (
                concat!("testdata/", $name),
                include_str!(concat!("testdata/", $name)),
            )
        };
    }

    fn violations((file, text): (&str, &str)) -> Vec<Violation> {
        match load::parse(text, Path::new(file)) {
            Err(PlanError::Invalid { violations, .. }) => violations,
            other => panic!("expected broken rules, got {other:?}"),
        }
    }

    fn the_violation(fixture: (&str, &str)) -> (Option<usize>, ValidationError) {
        match violations(fixture).as_slice() {
            [only] => (only.line, only.error.clone()),
            many => panic!("expected one broken rule, got {many:#?}"),
        }
    }

    fn syntax_error((file, text): (&str, &str)) -> (Option<usize>, String) {
        match load::parse(text, Path::new(file)) {
            Err(PlanError::Syntax { line, message, .. }) => (line, message),
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    fn weight(value: u64) -> Weight {
        Weight::try_from(value).expect("a weight in range")
    }

    #[test]
    fn orders_stages_by_needs_whatever_their_file_order() {
        let plan = load::parse(
            fixture!("valid-out-of-order.yaml").1,
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
            fixture!("valid-out-of-order.yaml").1,
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
        let (line, message) = syntax_error(fixture!("invalid/unknown-step-kind.yaml"));
        assert_eq!(line, Some(14));
        assert!(
            message.contains("unknown variant `deploy_everywhere`"),
            "{message}"
        );
    }

    #[test]
    fn rejects_unknown_keys_at_their_line() {
        let (line, message) = syntax_error(fixture!("invalid/unknown-field.yaml"));
        assert_eq!(line, Some(15));
        assert!(message.contains("unknown field `speed`"), "{message}");
    }

    #[test]
    fn rejects_canary_weight_outside_0_to_100_at_its_line() {
        let (line, message) = syntax_error(fixture!("invalid/weight-out-of-range.yaml"));
        assert_eq!(line, Some(16));
        assert!(
            message.contains("canary weight 150 is outside 0..=100"),
            "{message}"
        );
    }

    #[test]
    fn rejects_percentages_without_their_sign() {
        let (line, message) = syntax_error(fixture!("invalid/percent-without-sign.yaml"));
        assert_eq!(line, Some(3));
        assert!(
            message.contains("write a percentage with its sign"),
            "{message}"
        );
    }

    #[test]
    fn rejects_slo_check_without_p95_when_the_plan_sets_no_default() {
        let (line, error) = the_violation(fixture!("invalid/missing-threshold.yaml"));
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
        let (line, error) = the_violation(fixture!("invalid/cycle-in-needs.yaml"));
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
        let (line, error) = the_violation(fixture!("invalid/unknown-need.yaml"));
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
        let (line, error) = the_violation(fixture!("invalid/duplicate-stage.yaml"));
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
    fn rejects_canary_weight_that_does_not_increase_along_needs() {
        let (line, error) = the_violation(fixture!("invalid/weight-not-increasing.yaml"));
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
        let (line, error) = the_violation(fixture!("invalid/concurrent-canary-stages.yaml"));
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
        let (line, error) = the_violation(fixture!("invalid/canary-without-slo-check.yaml"));
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
        let (line, error) = the_violation(fixture!("invalid/final-weight-not-max.yaml"));
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
        let (line, error) = the_violation(fixture!("invalid/promotion-without-promoting.yaml"));
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
        let (line, error) = the_violation(fixture!("invalid/unmarked-promotion.yaml"));
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
        let (line, error) = the_violation(fixture!("invalid/canary-without-approval.yaml"));
        assert_eq!(line, Some(10));
        assert_eq!(
            error,
            ValidationError::CanaryWithoutApproval {
                stage: "canary".into()
            }
        );
    }

    #[test]
    fn rejects_rollback_triggers_without_a_threshold_or_window() {
        let found: Vec<(Option<usize>, ValidationError)> =
            violations(fixture!("invalid/rollback-trigger-not-positive.yaml"))
                .into_iter()
                .map(|violation| (violation.line, violation.error))
                .collect();
        assert_eq!(
            found,
            [
                (
                    Some(7),
                    ValidationError::RollbackThresholdNotPositive {
                        trigger: "any-error".into()
                    }
                ),
                (
                    Some(11),
                    ValidationError::RollbackWindowNotPositive {
                        trigger: "instant-latency".into()
                    }
                ),
            ]
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
