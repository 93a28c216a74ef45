//! What a runner would do with a plan, written out for people: every action, stage by stage in
//! dependency order, with its wall-clock durations, approvals, gates and rollback triggers.

use std::fmt;
use std::time::Duration;

use super::plan::rollback::RollbackCondition;
use super::plan::step::{ParityReference, Step};
use super::plan::{Plan, Stage};

/// A one-paragraph overview, as `validate` prints it.
pub fn summary(plan: &Plan) -> String {
    let stages = plan.stages();
    let ids: Vec<&str> = stages.iter().map(|stage| stage.id.as_str()).collect();
    let weights: Vec<String> = stages
        .iter()
        .filter(|stage| stage.exit_weight > stage.entry_weight)
        .map(|stage| stage.exit_weight.to_string())
        .collect();
    let approvals = stages
        .iter()
        .filter(|stage| stage.environment.is_some())
        .count();
    format!(
        "plan `{}`: {} stages ({}), canary {}, {} approvals, {} rollback triggers, {} of holds",
        plan.name,
        stages.len(),
        ids.join(" -> "),
        if weights.is_empty() {
            "unchanged".to_owned()
        } else {
            format!("0% -> {}", weights.join(" -> "))
        },
        approvals,
        plan.rollback.len(),
        humantime::format_duration(plan.critical_path()),
    )
}

/// Every action the runner would take, in order; `Display` writes it out.
pub struct DryRun<'a>(pub &'a Plan);

impl fmt::Display for DryRun<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plan = self.0;
        let scale = plan.time_scale();
        writeln!(f, "Rollout plan `{}`", plan.name)?;
        if scale.is_real_time() {
            writeln!(f, "Time scale 1: every duration is waited in full.")?;
        } else {
            writeln!(
                f,
                "Time scale {scale}: durations run {} as fast (1h of plan time takes {}); latency \
                 thresholds are not scaled.",
                ratio(scale.factor()),
                wall(plan, Duration::from_secs(3600)),
            )?;
        }

        writeln!(f, "\nSLOs, the default thresholds of every gate:")?;
        match plan.slos.resolve(&plan.slos) {
            Ok(slos) => writeln!(f, "  {slos}")?,
            Err(_) => writeln!(
                f,
                "  incomplete: each gate sets the thresholds the plan leaves out"
            )?,
        }

        writeln!(
            f,
            "\nRollback triggers, watched from the first traffic change to the end:"
        )?;
        for trigger in &plan.rollback {
            let condition = match &trigger.when {
                RollbackCondition::ErrorRate(sustained) => {
                    format!(
                        "error rate > {} for {}",
                        sustained.above,
                        timed(plan, sustained.duration)
                    )
                }
                RollbackCondition::P95Latency(sustained) => {
                    format!(
                        "P95 latency > {} for {}",
                        sustained.above,
                        timed(plan, sustained.duration)
                    )
                }
                RollbackCondition::MemoryGrowth(growth) => {
                    format!(
                        "memory grows > {} over {}",
                        growth.above,
                        timed(plan, growth.over)
                    )
                }
            };
            writeln!(
                f,
                "  - {} ({}): {condition} -> all traffic back to the legacy service",
                trigger.name, trigger.urgency
            )?;
        }

        let count = plan.stages().len();
        for (n, stage) in plan.stages().iter().enumerate() {
            write_stage(f, plan, stage, n + 1, count)?;
        }

        let approvals = plan
            .stages()
            .iter()
            .filter(|stage| stage.environment.is_some())
            .count();
        writeln!(
            f,
            "\nTotal: {} of holds along the longest chain of `needs`, plus {approvals} approval{}.",
            timed(plan, plan.critical_path()),
            if approvals == 1 { "" } else { "s" },
        )
    }
}

fn write_stage(
    f: &mut fmt::Formatter<'_>,
    plan: &Plan,
    stage: &Stage,
    number: usize,
    count: usize,
) -> fmt::Result {
    writeln!(f, "\nStage {number}/{count} `{}`: {}", stage.id, stage.name)?;
    let needs = if stage.needs.is_empty() {
        "nothing".to_owned()
    } else {
        stage.needs.join(", ")
    };
    writeln!(f, "  needs: {needs}")?;
    match &stage.environment {
        Some(environment) => writeln!(
            f,
            "  approval: wait for approval of environment `{environment}`"
        )?,
        None => writeln!(f, "  approval: none")?,
    }
    if stage.exit_weight > stage.entry_weight {
        writeln!(
            f,
            "  canary traffic: {} -> {} (promotion)",
            stage.entry_weight, stage.exit_weight
        )?;
    } else {
        writeln!(f, "  canary traffic: stays at {}", stage.entry_weight)?;
    }
    for (n, step) in stage.steps.iter().enumerate() {
        writeln!(f, "  {}. {}: {}", n + 1, step.kind(), describe(plan, step))?;
    }
    Ok(())
}

/// A gate's comparison with the baseline, when it has one.
fn compared(compare: Option<&super::plan::compare::Compare>) -> String {
    compare.map_or_else(String::new, |c| format!("; vs baseline: {c}"))
}

/// What one step does and what it gates on.
fn describe(plan: &Plan, step: &Step) -> String {
    match step {
        Step::LoadTest(step) => format!(
            "drive {} req/s for {}; gate: {}{}",
            step.rate,
            timed(plan, step.duration),
            step.thresholds,
            compared(step.compare.as_ref())
        ),
        Step::Parity(step) => {
            let reference = match step.against {
                ParityReference::Legacy => "the legacy service",
                ParityReference::Golden => "the stored vectors",
            };
            format!(
                "embed the texts of `{}` with Candle and {reference}; gate: cosine >= {} for every text",
                step.corpus, step.min_cosine
            )
        }
        Step::Canary(step) => format!("route {} of traffic to Candle", step.weight),
        Step::SloCheck(step) => {
            let requests = if plan.time_scale().is_real_time() {
                step.min_requests.to_string()
            } else {
                format!(
                    "{} (scaled from {})",
                    plan.time_scale().apply_count(step.min_requests),
                    step.min_requests
                )
            };
            format!(
                "over the last {}, with at least {requests} requests; gate: {}{}",
                timed(plan, step.window),
                step.thresholds,
                compared(step.compare.as_ref())
            )
        }
        Step::Soak(step) => format!(
            "hold for {}, failing on the first breach of: {}",
            timed(plan, step.duration),
            step.thresholds
        ),
        Step::Wait(step) => format!("hold for {}", timed(plan, step.duration)),
        Step::Scale(step) => format!(
            "scale deployment `{}` to {} replica{}",
            step.deployment,
            step.replicas,
            if step.replicas == 1 { "" } else { "s" }
        ),
        Step::GaTag(step) => match &step.message {
            Some(message) => format!("tag `{}` ({message:?})", step.tag),
            None => format!("tag `{}`", step.tag),
        },
        Step::HelmPush(step) => format!(
            "package chart `{}` and push it to {}",
            step.chart, step.registry
        ),
        Step::ImagePush(step) => format!("push image `{}` to {}", step.image, step.registry),
        Step::MlxTeardown(step) => format!(
            "scale `{}` to 0, wait {} (last cheap rollback), then delete its resources",
            step.deployment,
            timed(plan, step.grace_period)
        ),
        Step::Notify(step) => format!(
            "post to {}: {:?} ({})",
            step.channel,
            step.message,
            crate::rollout::notify::Notifier::from_env().describe(&step.channel)
        ),
    }
}

/// A plan duration, followed by its wall-clock length when the plan is scaled.
fn timed(plan: &Plan, duration: Duration) -> String {
    let written = humantime::format_duration(duration).to_string();
    if plan.time_scale().is_real_time() {
        written
    } else {
        format!("{written} (runs as {})", wall(plan, duration))
    }
}

fn wall(plan: &Plan, duration: Duration) -> String {
    humantime::format_duration(plan.scaled(duration)).to_string()
}

/// How many times faster than real time the plan runs: `10000x` for a factor of 0.0001.
fn ratio(factor: f64) -> String {
    format!("{}x", (1.0 / factor * 1000.0).round() / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::load;
    use crate::rollout::plan::TimeScale;

    fn checked_in_plan() -> Plan {
        let file = crate::project::plan_path();
        match load::load(&file) {
            Ok(plan) => plan,
            Err(error) => panic!("{error}"),
        }
    }

    #[test]
    fn lists_stages_in_dependency_order_with_approvals() {
        let text = DryRun(&checked_in_plan()).to_string();
        let positions: Vec<Option<usize>> = (1..=6)
            .map(|week| text.find(&format!("Stage {week}/6 `week-{week}`")))
            .collect();
        assert!(positions.iter().all(Option::is_some), "{text}");
        assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{text}");
        assert!(
            text.contains("wait for approval of environment `canary-1`"),
            "{text}"
        );
        assert!(text.contains("0% -> 1% (promotion)"), "{text}");
    }

    #[test]
    fn shows_scaled_durations_next_to_the_written_ones() {
        let scale: TimeScale = "0.0001".parse().expect("valid scale");
        let text = DryRun(&checked_in_plan().with_time_scale(scale)).to_string();
        assert!(
            text.contains("hold for 3days (runs as 25s 920ms)"),
            "{text}"
        );
        assert!(
            text.contains("error rate > 1% for 5m (runs as 30ms)"),
            "{text}"
        );
        // Latency thresholds are limits, not waits: they stay as written.
        assert!(text.contains("P95 < 35ms"), "{text}");
    }

    #[test]
    fn real_time_shows_durations_once() {
        let text = DryRun(&checked_in_plan()).to_string();
        assert!(!text.contains("runs as"), "{text}");
    }
}
