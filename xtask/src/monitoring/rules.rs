//! The Prometheus rules file: recording rules, the plan's SLOs as series (for dashboards to
//! draw), and the alerts. The same groups go to a plain Prometheus and to the chart's
//! PrometheusRule.

use std::collections::BTreeMap;

use serde::Serialize;

use super::alerts::Alert;
use super::promql::{self, recorded};
use crate::rollout::plan::slo::ThresholdSpec;

/// A rules file (`rule_files:` of Prometheus, `spec:` of a PrometheusRule).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleFile {
    /// The rule groups, evaluated independently.
    pub groups: Vec<RuleGroup>,
}

/// A group of rules evaluated together, in order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleGroup {
    /// Unique within the file.
    pub name: String,
    /// The rules.
    pub rules: Vec<Rule>,
}

/// A recording or an alerting rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Rule {
    /// `record:` a new series.
    Recording(RecordingRule),
    /// `alert:` when the expression is non-empty for `for`.
    Alerting(AlertingRule),
}

/// `record: name, expr: ...`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecordingRule {
    /// The recorded series' name.
    pub record: String,
    /// What it records.
    pub expr: String,
}

/// `alert: name, expr: ..., for: ..., labels, annotations`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertingRule {
    /// The alert's name.
    pub alert: String,
    /// Fires while non-empty.
    pub expr: String,
    /// How long the expression must hold first.
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    pub hold: Option<String>,
    /// Added to the alert's labels.
    pub labels: BTreeMap<String, String>,
    /// Summary and description.
    pub annotations: BTreeMap<String, String>,
}

/// The group names, which the chart and the dashboards do not depend on.
const RECORDING_GROUP: &str = "akidb-candle.recording";
const SLO_GROUP: &str = "akidb-candle.slo";
const ALERT_GROUP: &str = "akidb-candle.alerts";

/// The rules file of the plan's SLOs and `alerts`.
pub fn rule_file(slos: &ThresholdSpec, alerts: &[Alert]) -> RuleFile {
    let recording = promql::recording_rules()
        .into_iter()
        .map(|(record, expr)| Rule::Recording(RecordingRule { record, expr }))
        .collect();
    RuleFile {
        groups: vec![
            RuleGroup {
                name: RECORDING_GROUP.to_string(),
                rules: recording,
            },
            RuleGroup {
                name: SLO_GROUP.to_string(),
                rules: slo_rules(slos),
            },
            RuleGroup {
                name: ALERT_GROUP.to_string(),
                rules: alerts.iter().map(alerting_rule).collect(),
            },
        ],
    }
}

/// The plan's SLOs as constant series, so dashboards draw the line each panel is judged by.
fn slo_rules(slos: &ThresholdSpec) -> Vec<Rule> {
    let constant = |record: String, value: String| {
        Rule::Recording(RecordingRule {
            record,
            expr: format!("vector({value})"),
        })
    };
    let mut rules = Vec::new();
    if let Some(rate) = slos.error_rate {
        rules.push(constant(
            recorded::SLO_ERROR_RATIO.to_string(),
            promql::number(rate.value() / 100.0),
        ));
    }
    for (q, bound) in promql::QUANTILES
        .into_iter()
        .zip([slos.p50, slos.p95, slos.p99])
    {
        if let Some(bound) = bound {
            rules.push(constant(recorded::slo_latency(q), promql::seconds(bound)));
        }
    }
    if let Some(memory) = slos.memory_per_pod {
        rules.push(constant(
            recorded::SLO_MEMORY.to_string(),
            memory.as_u64().to_string(),
        ));
    }
    rules
}

fn alerting_rule(alert: &Alert) -> Rule {
    Rule::Alerting(AlertingRule {
        alert: alert.name.clone(),
        expr: promql::alert_expression(&alert.signal),
        hold: (!alert.hold.is_zero()).then(|| promql::duration(alert.hold)),
        labels: alert.labels(),
        annotations: alert.annotations(),
    })
}

impl RuleFile {
    /// Every recorded series' name.
    pub fn recorded_names(&self) -> Vec<&str> {
        self.groups
            .iter()
            .flat_map(|group| &group.rules)
            .filter_map(|rule| match rule {
                Rule::Recording(rule) => Some(rule.record.as_str()),
                Rule::Alerting(_) => None,
            })
            .collect()
    }
}
