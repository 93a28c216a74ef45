//! The alerts, as one model: those written in `rollout/monitoring/alerts.yaml` and one per
//! rollback trigger of the plan. Thresholds an alert leaves out are the plan's SLOs, so a page
//! and a go/no-go gate never disagree about what "too many errors" means.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::rollout::plan::rollback::{LatencyBound, RollbackCondition, Sustained, Urgency};
use crate::rollout::plan::units::Percent;
use crate::rollout::plan::{Plan, RollbackTrigger};

/// `rollout/monitoring/alerts.yaml` as written.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsSpec {
    /// The alerts, in the order the rules file lists them.
    pub alerts: Vec<AlertSpec>,
}

/// One alert as written.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSpec {
    /// The alert's name in Prometheus (`AkidbErrorRateCritical`).
    pub name: String,
    /// Who hears about it.
    pub severity: Severity,
    /// What has to be observed, and for how long.
    pub when: AlertCondition,
}

/// Who hears about an alert: Alertmanager routes on this label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Pages the on-call engineer (PagerDuty).
    Critical,
    /// Tells the team (Slack).
    Warning,
}

impl Severity {
    /// The `severity` label's value.
    pub fn label(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
        }
    }
}

/// What an alert in `alerts.yaml` watches.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertCondition {
    /// Server errors above a share of embedding requests (default: the plan's `error_rate`).
    ErrorRate(ErrorRateSpec),
    /// 95th percentile latency above a bound.
    P95Latency(Sustained<LatencyBound>),
    /// Fewer ready pods than `below`.
    HealthyPods(HealthyPodsSpec),
    /// CPU above a share of the requested CPU while the autoscaler adds no replica.
    HpaNotScaling(HpaNotScalingSpec),
    /// A pod's memory above a share of the plan's `memory_per_pod`.
    Memory(MemorySpec),
}

/// `error_rate: {above, for}`; `above` defaults to the plan's SLO.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorRateSpec {
    /// The share of requests; the plan's `slos.error_rate` when left out.
    #[serde(default)]
    pub above: Option<Percent>,
    /// How long it must hold.
    #[serde(rename = "for", with = "humantime_serde")]
    pub duration: Duration,
}

/// `healthy_pods: {below, for}`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthyPodsSpec {
    /// Fewer ready pods than this fires.
    pub below: u32,
    /// How long it must hold.
    #[serde(rename = "for", with = "humantime_serde")]
    pub duration: Duration,
}

/// `hpa_not_scaling: {cpu_above, for}`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HpaNotScalingSpec {
    /// CPU use as a share of the pods' CPU requests (what the HPA targets).
    pub cpu_above: Percent,
    /// How long the replica count must stay unchanged while CPU is that high.
    #[serde(rename = "for", with = "humantime_serde")]
    pub duration: Duration,
}

/// `memory: {above, for}`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorySpec {
    /// The share of the plan's `slos.memory_per_pod`.
    pub above: Percent,
    /// How long it must hold.
    #[serde(rename = "for", with = "humantime_serde")]
    pub duration: Duration,
}

/// An alert, complete: every threshold a number.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// The alert's name in Prometheus.
    pub name: String,
    /// Who hears about it.
    pub severity: Severity,
    /// What it watches, with its threshold.
    pub signal: Signal,
    /// How long the signal must hold before the alert fires.
    pub hold: Duration,
    /// The rollback urgency, when the alert mirrors a rollback trigger of the plan.
    pub rollback: Option<Urgency>,
}

/// What an alert watches, with its threshold resolved.
#[derive(Clone, Debug, PartialEq)]
pub enum Signal {
    /// Server errors per embedding request above this fraction (`0.005` for 0.5%).
    ErrorRatio(f64),
    /// P95 latency of embedding requests above this.
    P95Latency(Duration),
    /// Fewer ready pods than this.
    HealthyPodsBelow(u32),
    /// CPU above this fraction of the requests while the replica count stays the same.
    HpaNotScaling(f64),
    /// A pod's resident memory above this many bytes.
    MemoryAbove(u64),
    /// Resident memory grown by more than this fraction within the window.
    MemoryGrowth {
        /// `0.2` for 20%.
        above: f64,
        /// The window the growth is measured over.
        over: Duration,
    },
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Signal::ErrorRatio(ratio) => write!(f, "error rate above {}%", ratio * 100.0),
            Signal::P95Latency(bound) => {
                write!(
                    f,
                    "P95 latency above {}",
                    humantime::format_duration(*bound)
                )
            }
            Signal::HealthyPodsBelow(count) => write!(
                f,
                "fewer than {count} healthy pod{}",
                if *count == 1 { "" } else { "s" }
            ),
            Signal::HpaNotScaling(cpu) => write!(
                f,
                "CPU above {}% of requests while the HPA adds no replica",
                cpu * 100.0
            ),
            Signal::MemoryAbove(bytes) => {
                write!(f, "memory above {}", bytesize::ByteSize::b(*bytes))
            }
            Signal::MemoryGrowth { above, over } => write!(
                f,
                "memory grown by more than {}% within {}",
                above * 100.0,
                humantime::format_duration(*over)
            ),
        }
    }
}

/// Why the alerts could not be read or completed.
#[derive(Debug, Error)]
pub enum AlertsError {
    /// The file could not be read.
    #[error("{}: cannot read the alerts", .file.display())]
    Read {
        /// The alerts file.
        file: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Not YAML, or not the schema.
    #[error("{}: {source}", .file.display())]
    Syntax {
        /// The alerts file.
        file: PathBuf,
        /// What the parser said, with line and column.
        source: serde_yaml_ng::Error,
    },
    /// An alert needs an SLO the plan does not set.
    #[error("alert `{alert}` needs the plan's `slos.{slo}`, which rollout/plan.yaml does not set")]
    MissingSlo {
        /// The alert's name.
        alert: String,
        /// The SLO key.
        slo: &'static str,
    },
    /// Two alerts share a name.
    #[error("two alerts are named `{0}`")]
    DuplicateName(String),
}

/// Reads `alerts.yaml`.
pub fn load(file: &Path) -> Result<AlertsSpec, AlertsError> {
    let text = std::fs::read_to_string(file).map_err(|source| AlertsError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    // Conditions are enums written as one-key maps, as in the plan.
    let deserializer = serde_yaml_ng::Deserializer::from_str(&text);
    serde_yaml_ng::with::singleton_map_recursive::deserialize(deserializer).map_err(|source| {
        AlertsError::Syntax {
            file: file.to_path_buf(),
            source,
        }
    })
}

/// Every alert: those of `spec`, completed from the plan's SLOs, then one per rollback trigger.
pub fn resolve(spec: &AlertsSpec, plan: &Plan) -> Result<Vec<Alert>, AlertsError> {
    let mut alerts = Vec::new();
    for written in &spec.alerts {
        alerts.push(resolve_one(written, plan)?);
    }
    alerts.extend(plan.rollback.iter().map(rollback_alert));
    let mut names: Vec<&str> = alerts.iter().map(|a| a.name.as_str()).collect();
    names.sort_unstable();
    if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(AlertsError::DuplicateName(pair[0].to_string()));
    }
    Ok(alerts)
}

fn resolve_one(written: &AlertSpec, plan: &Plan) -> Result<Alert, AlertsError> {
    let missing = |slo| AlertsError::MissingSlo {
        alert: written.name.clone(),
        slo,
    };
    let (signal, hold) = match &written.when {
        AlertCondition::ErrorRate(rate) => {
            let above = rate
                .above
                .or(plan.slos.error_rate)
                .ok_or_else(|| missing("error_rate"))?;
            (Signal::ErrorRatio(fraction(above)), rate.duration)
        }
        AlertCondition::P95Latency(latency) => {
            (Signal::P95Latency(latency.above.0), latency.duration)
        }
        AlertCondition::HealthyPods(pods) => (Signal::HealthyPodsBelow(pods.below), pods.duration),
        AlertCondition::HpaNotScaling(hpa) => {
            (Signal::HpaNotScaling(fraction(hpa.cpu_above)), hpa.duration)
        }
        AlertCondition::Memory(memory) => {
            let limit = plan
                .slos
                .memory_per_pod
                .ok_or_else(|| missing("memory_per_pod"))?;
            let bytes = (limit.as_u64() as f64 * fraction(memory.above)).round() as u64;
            (Signal::MemoryAbove(bytes), memory.duration)
        }
    };
    Ok(Alert {
        name: written.name.clone(),
        severity: written.severity,
        signal,
        hold,
        rollback: None,
    })
}

/// A rollback trigger as an alert: it pages, since the rollout is being undone.
fn rollback_alert(trigger: &RollbackTrigger) -> Alert {
    let signal = match &trigger.when {
        RollbackCondition::ErrorRate(rate) => Signal::ErrorRatio(fraction(rate.above)),
        RollbackCondition::P95Latency(latency) => Signal::P95Latency(latency.above.0),
        RollbackCondition::MemoryGrowth(growth) => Signal::MemoryGrowth {
            above: fraction(growth.above),
            over: growth.over,
        },
    };
    // The same `for:` the runner waits for (plan::rollback::Pending).
    let hold = trigger.hold();
    Alert {
        name: format!("AkidbRollback{}", camel_case(&trigger.name)),
        severity: Severity::Critical,
        signal,
        hold,
        rollback: Some(trigger.urgency),
    }
}

/// `0.5%` as `0.005`, rounded to 12 decimals so that it prints as written.
fn fraction(percent: Percent) -> f64 {
    (percent.value() * 1e10).round() / 1e12
}

/// `error-rate-critical` as `ErrorRateCritical`.
fn camel_case(name: &str) -> String {
    name.split(['-', '_', ' '])
        .filter(|word| !word.is_empty())
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

impl Alert {
    /// The labels the alert adds to its series: the severity (what Alertmanager routes on),
    /// the service, and the rollback urgency where there is one.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            ("severity".to_string(), self.severity.label().to_string()),
            ("service".to_string(), super::promql::SERVICE.to_string()),
        ]);
        if let Some(urgency) = self.rollback {
            labels.insert("rollback".to_string(), urgency.to_string());
        }
        labels
    }

    /// The annotations: a one-line summary and what to do.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let held = if self.hold.is_zero() {
            String::new()
        } else {
            format!(" for {}", humantime::format_duration(self.hold))
        };
        let summary = format!("akidb-candle: {}{held}", self.signal);
        let description = match self.rollback {
            Some(Urgency::Immediate) => {
                "A rollback trigger of rollout/plan.yaml: the rollout sends all traffic back to \
                 the legacy service at once; confirm it did (`cargo xtask rollout status`)."
            }
            Some(Urgency::Planned) => {
                "A rollback trigger of rollout/plan.yaml: roll back \
                 (`cargo xtask rollout rollback`) and investigate."
            }
            None => "See docs/RUNBOOK.md for the checks and the rollback command.",
        };
        BTreeMap::from([
            ("summary".to_string(), summary),
            ("description".to_string(), description.to_string()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_names_become_alert_names() {
        assert_eq!(camel_case("error-rate-critical"), "ErrorRateCritical");
        assert_eq!(camel_case("memory-leak"), "MemoryLeak");
    }

    #[test]
    fn an_error_rate_alert_without_a_bound_takes_the_plan_slo() {
        let plan = crate::rollout::load::load(&crate::project::plan_path())
            .expect("the checked-in plan is valid");
        let spec: AlertsSpec = serde_yaml_ng::with::singleton_map_recursive::deserialize(
            serde_yaml_ng::Deserializer::from_str(
                "alerts:\n  - name: A\n    severity: warning\n    when:\n      error_rate: {for: 10m}\n",
            ),
        )
        .expect("valid alerts");
        let alerts = resolve(&spec, &plan).expect("complete");
        assert_eq!(alerts[0].signal, Signal::ErrorRatio(0.001));
        assert_eq!(alerts[0].hold, Duration::from_secs(600));
        assert!(alerts[1..].iter().all(|a| a.rollback.is_some()));
    }
}
