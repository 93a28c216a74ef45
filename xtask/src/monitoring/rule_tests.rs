//! `promtool test rules` unit tests of every alert: series that hold its signal fire it after
//! its `for`, not before, and series on the safe side of the threshold never fire it.
//!
//! The series are built from the same resolved thresholds as the rules, but in the raw
//! metrics (request counters, histogram buckets, gauges), so a test fails when an expression
//! reads the wrong metric, label or unit, or compares the wrong way.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::alerts::{Alert, Signal};
use super::promql::{self, SERVICE};

/// A `promtool test rules` file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleTestFile {
    /// The rules under test, relative to this file.
    pub rule_files: Vec<String>,
    /// How often rules are evaluated.
    pub evaluation_interval: String,
    /// The test groups.
    pub tests: Vec<TestGroup>,
}

/// Input series and the alerts expected at given times.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TestGroup {
    /// What the group shows.
    pub name: String,
    /// The step between the values of each series.
    pub interval: String,
    /// The series.
    pub input_series: Vec<InputSeries>,
    /// The expectations.
    pub alert_rule_test: Vec<AlertRuleTest>,
}

/// One series in promtool's expanding notation (`0+6000x40`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InputSeries {
    /// `name{label="value"}`.
    pub series: String,
    /// The values, one per interval.
    pub values: String,
}

/// The alerts of one name firing at one time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertRuleTest {
    /// When, from the start of the series.
    pub eval_time: String,
    /// Which alert.
    pub alertname: String,
    /// Exactly the alerts firing then (none: an empty list).
    pub exp_alerts: Vec<ExpectedAlert>,
}

/// A firing alert, with all its labels and annotations.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExpectedAlert {
    /// Labels of the series plus the alert's own.
    pub exp_labels: BTreeMap<String, String>,
    /// The alert's annotations.
    pub exp_annotations: BTreeMap<String, String>,
}

/// Minutes between values.
const STEP: Duration = Duration::from_secs(60);
/// Requests per step in the generated traffic (100 req/s).
const REQUESTS_PER_STEP: f64 = 6000.0;
/// The namespace the Kubernetes series carry.
const NAMESPACE: &str = "akidb";

/// The unit tests of `alerts`, for the rules file `rules_file` beside the test file.
pub fn test_file(rules_file: &str, alerts: &[Alert]) -> RuleTestFile {
    RuleTestFile {
        rule_files: vec![rules_file.to_string()],
        evaluation_interval: promql::duration(STEP),
        tests: alerts
            .iter()
            .flat_map(|alert| [firing(alert), quiet(alert)])
            .collect(),
    }
}

/// The signal holds from the start: pending before its `for`, firing after.
fn firing(alert: &Alert) -> TestGroup {
    let fire_at = alert.hold + signal_lead(&alert.signal) + 2 * STEP;
    let (series, labels) = scenario(&alert.signal, true, steps(fire_at));
    let mut checks = Vec::new();
    if alert.hold >= 2 * STEP {
        checks.push(AlertRuleTest {
            eval_time: promql::duration(alert.hold - STEP),
            alertname: alert.name.clone(),
            exp_alerts: Vec::new(),
        });
    }
    let mut exp_labels = labels;
    exp_labels.extend(alert.labels());
    checks.push(AlertRuleTest {
        eval_time: promql::duration(fire_at),
        alertname: alert.name.clone(),
        exp_alerts: vec![ExpectedAlert {
            exp_labels,
            exp_annotations: alert.annotations(),
        }],
    });
    TestGroup {
        name: format!("{} fires when {}", alert.name, alert.signal),
        interval: promql::duration(STEP),
        input_series: series,
        alert_rule_test: checks,
    }
}

/// The signal stays on the safe side: never fires.
fn quiet(alert: &Alert) -> TestGroup {
    let at = alert.hold + signal_lead(&alert.signal) + 2 * STEP;
    let (series, _) = scenario(&alert.signal, false, steps(at));
    TestGroup {
        name: format!("{} stays quiet below its threshold", alert.name),
        interval: promql::duration(STEP),
        input_series: series,
        alert_rule_test: vec![AlertRuleTest {
            eval_time: promql::duration(at),
            alertname: alert.name.clone(),
            exp_alerts: Vec::new(),
        }],
    }
}

/// How long a signal's series take to show it: a growth needs its window, and a rate of a
/// counter that starts with the series ramps up over the rate window (a ratio of two such
/// rates does not).
fn signal_lead(signal: &Signal) -> Duration {
    match signal {
        Signal::MemoryGrowth { over, .. } => *over,
        Signal::HpaNotScaling(_) => promql::RATE_WINDOW_DURATION + STEP,
        _ => STEP,
    }
}

/// Values per series to reach `until`, with a margin.
fn steps(until: Duration) -> u64 {
    until.as_secs() / STEP.as_secs() + 5
}

/// The input series of `signal` on the firing or the safe side, and the labels the alert's
/// series keep from them.
fn scenario(signal: &Signal, fire: bool, n: u64) -> (Vec<InputSeries>, BTreeMap<String, String>) {
    let side = |above: f64, below: f64| if fire { above } else { below };
    let job = labels(&[("job", SERVICE)]);
    match signal {
        Signal::ErrorRatio(ratio) => {
            let errors = REQUESTS_PER_STEP * side(ratio * 2.0, ratio / 2.0);
            let request = |status: &str, per_step: f64| InputSeries {
                series: format!(
                    r#"{}{{job="{SERVICE}",route="/api/v1/embed",model="all-MiniLM-L6-v2",status="{status}"}}"#,
                    promql::REQUESTS_TOTAL
                ),
                values: format!("0+{}x{n}", promql::number(per_step)),
            };
            (
                vec![request("200", REQUESTS_PER_STEP), request("500", errors)],
                job,
            )
        }
        Signal::P95Latency(bound) => {
            // Every request lands in one bucket: just above the bound, or well below it.
            let bound = bound.as_secs_f64();
            let bounds = [bound / 2.0, bound, bound * 2.0];
            let slowest_empty = if fire { bound } else { 0.0 };
            let mut series: Vec<InputSeries> = bounds
                .iter()
                .map(|le| {
                    let per_step = if *le > slowest_empty {
                        REQUESTS_PER_STEP
                    } else {
                        0.0
                    };
                    bucket(&promql::number(*le), per_step, n)
                })
                .collect();
            series.push(bucket("+Inf", REQUESTS_PER_STEP, n));
            (series, job)
        }
        Signal::HealthyPodsBelow(count) => {
            let ready = if fire {
                count.saturating_sub(1)
            } else {
                *count
            };
            let series = labels(&[("deployment", SERVICE), ("namespace", NAMESPACE)]);
            (
                vec![InputSeries {
                    series: format!(
                        "kube_deployment_status_replicas_available{}",
                        selector(&series)
                    ),
                    values: format!("{ready}x{n}"),
                }],
                series,
            )
        }
        Signal::HpaNotScaling(cpu) => {
            // Hot and stuck fires; cool and stuck does not.
            let cores = side(cpu + 0.1, cpu / 2.0);
            let container = labels(&[
                ("namespace", NAMESPACE),
                ("pod", &format!("{SERVICE}-0")),
                ("container", "akidb-embed"),
            ]);
            let mut requests = container.clone();
            requests.insert("resource".into(), "cpu".into());
            requests.insert("unit".into(), "core".into());
            let hpa = labels(&[
                ("namespace", NAMESPACE),
                ("horizontalpodautoscaler", SERVICE),
            ]);
            (
                vec![
                    InputSeries {
                        series: format!(
                            "container_cpu_usage_seconds_total{}",
                            selector(&container)
                        ),
                        values: format!("0+{}x{n}", promql::number(cores * STEP.as_secs_f64())),
                    },
                    InputSeries {
                        series: format!(
                            "kube_pod_container_resource_requests{}",
                            selector(&requests)
                        ),
                        values: format!("1x{n}"),
                    },
                    InputSeries {
                        series: format!(
                            "kube_horizontalpodautoscaler_status_current_replicas{}",
                            selector(&hpa)
                        ),
                        values: format!("3x{n}"),
                    },
                ],
                labels(&[("namespace", NAMESPACE)]),
            )
        }
        Signal::MemoryAbove(bytes) => {
            let value = (*bytes as f64 * side(1.05, 0.5)).round();
            memory(promql::number(value), 0.0, n)
        }
        Signal::MemoryGrowth { above, over } => {
            // Growing by three times the bound per window, or flat.
            let base = 1e9;
            let per_step = base * 3.0 * above * STEP.as_secs_f64() / over.as_secs_f64();
            memory(promql::number(base), side(per_step, 0.0), n)
        }
    }
}

fn bucket(le: &str, per_step: f64, n: u64) -> InputSeries {
    InputSeries {
        series: format!(
            r#"{}{{job="{SERVICE}",route="/api/v1/embed",le="{le}"}}"#,
            promql::REQUEST_DURATION_BUCKET
        ),
        values: format!("0+{}x{n}", promql::number(per_step)),
    }
}

fn memory(start: String, per_step: f64, n: u64) -> (Vec<InputSeries>, BTreeMap<String, String>) {
    let series = labels(&[("job", SERVICE), ("instance", "10.0.0.7:8080")]);
    (
        vec![InputSeries {
            series: format!("{}{}", promql::MEMORY_USAGE, selector(&series)),
            values: format!("{start}+{}x{n}", promql::number(per_step)),
        }],
        series,
    )
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn selector(labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!(r#"{k}="{v}""#))
        .collect();
    format!("{{{}}}", inner.join(","))
}
