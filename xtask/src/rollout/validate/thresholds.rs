//! Thresholds and the values that must agree with them: percentiles in order, triggers no
//! tighter than the gates they guard, windows within the time held at their weight, and
//! `min_requests` within the traffic the plan drives.

use std::collections::HashMap;
use std::time::Duration;

use humantime::format_duration;

use super::{Checker, ValidationError};
use crate::rollout::plan::rollback::RollbackCondition;
use crate::rollout::plan::slo::SloMetric;
use crate::rollout::plan::spec::{PlanSpec, StepSpec};
use crate::rollout::plan::step::Step;
use crate::rollout::plan::{Stage, ThresholdSpec};

impl Checker<'_> {
    /// Every trigger needs a threshold and a window above zero.
    pub(super) fn rollback(&mut self, plan: &PlanSpec) {
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
    /// P50 <= P95 <= P99, in `slos` and in every gate that overrides a percentile.
    pub(super) fn percentiles(&mut self, plan: &PlanSpec) {
        if let Some(found) = disordered(&plan.slos) {
            let at = "`slos`".to_owned();
            self.report("slos", ValidationError::PercentilesOutOfOrder { at, found });
        }
        for (at, stage) in plan.stages.iter().enumerate() {
            for (n, step) in stage.steps.iter().enumerate() {
                let Some((kind, own)) = gate_thresholds(step) else {
                    continue;
                };
                if own.p50.is_none() && own.p95.is_none() && own.p99.is_none() {
                    continue;
                }
                let merged = ThresholdSpec {
                    p50: own.p50.or(plan.slos.p50),
                    p95: own.p95.or(plan.slos.p95),
                    p99: own.p99.or(plan.slos.p99),
                    ..ThresholdSpec::default()
                };
                if let Some(found) = disordered(&merged) {
                    let error = ValidationError::PercentilesOutOfOrder {
                        at: format!("{kind} in stage `{}`", stage.id),
                        found,
                    };
                    self.report(&format!("stages.{at}.steps.{n}.{kind}.thresholds"), error);
                }
            }
        }
    }

    /// A trigger rolls back only what every gate would fail: its threshold is not below the
    /// SLO's nor below any gate's override of the same metric (error rate, P95).
    pub(super) fn triggers_against_gates(&mut self, plan: &PlanSpec) {
        for (t, trigger) in plan.rollback.iter().enumerate() {
            // A zero threshold is already its own violation.
            if !trigger.when.threshold_is_positive() {
                continue;
            }
            let (metric, fires_above, trigger_value) = match &trigger.when {
                RollbackCondition::ErrorRate(s) => {
                    (SloMetric::ErrorRate, s.above.value(), s.above.to_string())
                }
                RollbackCondition::P95Latency(s) => {
                    (SloMetric::P95, s.above.0.as_secs_f64(), s.above.to_string())
                }
                RollbackCondition::MemoryGrowth(_) => continue,
            };
            let mut gates = vec![(
                format!("rollback.{t}.when"),
                "`slos`".to_owned(),
                &plan.slos,
            )];
            for (at, stage) in plan.stages.iter().enumerate() {
                for (n, step) in stage.steps.iter().enumerate() {
                    if let Some((kind, own)) = gate_thresholds(step) {
                        let path = format!("stages.{at}.steps.{n}.{kind}.thresholds.{metric}");
                        gates.push((path, format!("{kind} in stage `{}`", stage.id), own));
                    }
                }
            }
            for (path, gate, thresholds) in gates {
                let Some((value, gate_value)) = threshold(thresholds, metric) else {
                    continue;
                };
                if value > fires_above {
                    let error = ValidationError::TriggerTighterThanGate {
                        trigger: trigger.name.clone(),
                        metric,
                        trigger_value: trigger_value.clone(),
                        gate,
                        gate_value,
                    };
                    self.report(&path, error);
                }
            }
        }
    }

    /// An slo_check after a hold at its weight judges that hold: its window lies within the
    /// plan time held since the last canary step (across the stages it needs), or it reaches
    /// back into the previous split. (One right after its canary step has no hold to judge: it
    /// judges what arrives after the shift, waiting for its sample.) Its `min_requests` lies
    /// within what the stage's load test sends the canary in the window: rate × weight × window.
    pub(super) fn windows(&mut self, stages: &[(usize, Stage)]) {
        // Per stage id: plan time held at the weight in force when the stage ends.
        let mut at_exit: HashMap<&str, Duration> = HashMap::new();
        for (at, stage) in stages {
            let mut held = stage
                .needs
                .iter()
                .filter_map(|need| at_exit.get(need.as_str()).copied())
                .max()
                .unwrap_or_default();
            let mut rate = None;
            let mut weight = stage.entry_weight;
            for (n, step) in stage.steps.iter().enumerate() {
                match step {
                    Step::Canary(canary) => {
                        held = Duration::ZERO;
                        weight = canary.weight;
                    }
                    Step::LoadTest(load) => rate = Some(load.rate),
                    Step::SloCheck(check) => {
                        let path = format!("stages.{at}.steps.{n}.slo_check");
                        if !held.is_zero() && check.window > held {
                            let error = ValidationError::WindowLongerThanHold {
                                stage: stage.id.clone(),
                                window: format_duration(check.window).to_string(),
                                held: format_duration(held).to_string(),
                            };
                            self.report(&format!("{path}.window"), error);
                        }
                        let Some(rate) = rate else { continue };
                        let share = f64::from(weight.percent()) / 100.0;
                        let most = f64::from(rate) * share * check.window.as_secs_f64();
                        if check.min_requests as f64 > most {
                            let error = ValidationError::MinRequestsUnreachable {
                                stage: stage.id.clone(),
                                min_requests: check.min_requests,
                                expected: format!(
                                    "{rate} req/s x {weight} canary weight x {} is {most:.0}",
                                    format_duration(check.window)
                                ),
                            };
                            self.report(&format!("{path}.min_requests"), error);
                        }
                    }
                    _ => {}
                }
                held += step.hold();
            }
            at_exit.insert(&stage.id, held);
        }
    }
}

/// A gate's own thresholds (its overrides of `slos`), with its kind.
fn gate_thresholds(step: &StepSpec) -> Option<(&'static str, &ThresholdSpec)> {
    match step {
        StepSpec::LoadTest(gate) => Some(("load_test", &gate.thresholds)),
        StepSpec::SloCheck(gate) => Some(("slo_check", &gate.thresholds)),
        StepSpec::Soak(gate) => Some(("soak", &gate.thresholds)),
        _ => None,
    }
}

/// The threshold `spec` sets for `metric`, comparable and as written.
fn threshold(spec: &ThresholdSpec, metric: SloMetric) -> Option<(f64, String)> {
    let latency =
        |d: Option<Duration>| d.map(|d| (d.as_secs_f64(), format_duration(d).to_string()));
    match metric {
        SloMetric::ErrorRate => spec.error_rate.map(|p| (p.value(), p.to_string())),
        SloMetric::P50 => latency(spec.p50),
        SloMetric::P95 => latency(spec.p95),
        SloMetric::P99 => latency(spec.p99),
    }
}

/// The percentiles as written, when two of those set are out of order.
fn disordered(spec: &ThresholdSpec) -> Option<String> {
    let [p50, p95, p99] = [spec.p50, spec.p95, spec.p99];
    let out_of_order = [(p50, p95), (p95, p99), (p50, p99)]
        .iter()
        .any(|pair| matches!(pair, (Some(low), Some(high)) if low > high));
    let show =
        |d: Option<Duration>| d.map_or("unset".to_owned(), |d| format_duration(d).to_string());
    out_of_order.then(|| format!("p50 {}, p95 {}, p99 {}", show(p50), show(p95), show(p99)))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;

    #[test]
    fn rejects_rollback_triggers_without_a_threshold_or_window() {
        let found: Vec<(Option<usize>, ValidationError)> =
            violations("invalid/rollback-trigger-not-positive.yaml")
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

    use crate::rollout::plan::slo::SloMetric;

    #[test]
    fn rejects_percentiles_out_of_order_in_the_slos() {
        let text = base_with(&[("p95: 35ms, p99: 50ms", "p95: 60ms, p99: 50ms")]);
        let (line, error) = the_violation_in(&text);
        assert_eq!(line, Some(2));
        assert_eq!(
            error.to_string(),
            "`slos`: the percentiles contradict each other (need p50 <= p95 <= p99): \
             p50 20ms, p95 60ms, p99 50ms"
        );
    }

    #[test]
    fn rejects_a_gate_override_that_puts_its_percentiles_out_of_order() {
        let text = base_with(&[(
            "- soak: {duration: 1h}",
            "- soak: {duration: 1h, thresholds: {p50: 40ms}}",
        )]);
        let (line, error) = the_violation_in(&text);
        assert_eq!(line, line_of(&text, "p50: 40ms"));
        assert_eq!(
            error,
            ValidationError::PercentilesOutOfOrder {
                at: "soak in stage `half`".into(),
                found: "p50 40ms, p95 35ms, p99 50ms".into(),
            }
        );
    }

    #[test]
    fn rejects_a_trigger_that_rolls_back_what_the_slos_accept() {
        let text = base_with(&[("above: 1%, for: 5m", "above: 0.05%, for: 5m")]);
        let (line, error) = the_violation_in(&text);
        assert_eq!(line, line_of(&text, "when:"));
        assert_eq!(
            error,
            ValidationError::TriggerTighterThanGate {
                trigger: "errors".into(),
                metric: SloMetric::ErrorRate,
                trigger_value: "0.05%".into(),
                gate: "`slos`".into(),
                gate_value: "0.1%".into(),
            }
        );
    }

    #[test]
    fn rejects_a_gate_override_looser_than_a_trigger() {
        let text = base_with(&[(
            "- slo_check: {window: 1h, min_requests: 10}",
            "- slo_check: {window: 1h, min_requests: 10, thresholds: {error_rate: 2%}}",
        )]);
        let (line, error) = the_violation_in(&text);
        assert_eq!(line, line_of(&text, "error_rate: 2%"));
        assert_eq!(
            error.to_string(),
            "rollback trigger `errors` fires above 1%, below the error_rate threshold 2% of \
             slo_check in stage `half`: it rolls back a canary the gate would pass"
        );
    }

    #[test]
    fn rejects_a_latency_trigger_below_the_p95_slo() {
        let text = base_with(&[(
            "      error_rate: {above: 1%, for: 5m}\n",
            "      error_rate: {above: 1%, for: 5m}\n  - name: slow\n    urgency: planned\n    \
             when:\n      p95_latency: {above: 30ms, for: 5m}\n",
        )]);
        let (line, error) = the_violation_in(&text);
        assert_eq!(line, line_of(&text, "p95_latency").map(|line| line - 1));
        assert!(
            matches!(error, ValidationError::TriggerTighterThanGate { ref trigger, metric: SloMetric::P95, .. } if trigger == "slow"),
            "{error:?}"
        );
    }

    #[test]
    fn an_slo_check_right_after_its_canary_step_judges_what_arrives_after_it() {
        let text = base_with(&[("      - soak: {duration: 1h}\n", "")]);
        if let Err(error) = crate::rollout::load::parse(&text, std::path::Path::new("plan.yaml")) {
            panic!("{error}");
        }
    }

    #[test]
    fn rejects_an_slo_check_window_longer_than_the_weight_was_held() {
        let text = base_with(&[(
            "- slo_check: {window: 1h, min_requests: 10}",
            "- slo_check: {window: 2h, min_requests: 10}",
        )]);
        let (line, error) = the_violation_in(&text);
        assert_eq!(line, line_of(&text, "window: 2h"));
        assert_eq!(
            error,
            ValidationError::WindowLongerThanHold {
                stage: "half".into(),
                window: "2h".into(),
                held: "1h".into(),
            }
        );
    }

    #[test]
    fn a_weight_held_since_an_earlier_stage_counts_towards_the_window() {
        let text = format!(
            "{BASE}  - id: after\n    name: After\n    needs: [full]\n    steps:\n      \
             - wait: {{duration: 2h}}\n      - slo_check: {{window: 3h, min_requests: 10}}\n"
        );
        if let Err(error) = crate::rollout::load::parse(&text, std::path::Path::new("plan.yaml")) {
            panic!("{error}");
        }
        let (_, error) = the_violation_in(&text.replace("window: 3h", "window: 4h"));
        assert!(
            matches!(error, ValidationError::WindowLongerThanHold { ref held, .. } if held == "3h")
        );
    }

    #[test]
    fn rejects_min_requests_beyond_rate_times_weight_times_window() {
        // Without a load test in the stage, its traffic is production's: nothing to check.
        let text = base_with(&[(
            "- slo_check: {window: 1h, min_requests: 10}",
            "- slo_check: {window: 1h, min_requests: 200000}",
        )]);
        if let Err(error) = crate::rollout::load::parse(&text, std::path::Path::new("plan.yaml")) {
            panic!("{error}");
        }
        let text = text.replacen(
            "- soak: {duration: 1h}",
            "- load_test: {rate: 100, duration: 1h}",
            1,
        );
        let (line, error) = the_violation_in(&text);
        assert_eq!(line, line_of(&text, "min_requests: 200000"));
        assert_eq!(
            error.to_string(),
            "slo_check in stage `half`: `min_requests` 200000 cannot be reached: 100 req/s x 50% \
             canary weight x 1h is 180000"
        );
    }
}
