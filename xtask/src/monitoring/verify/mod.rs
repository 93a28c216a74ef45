//! `cargo xtask monitoring --verify` (a step of `cargo xtask ci`): the generated files are
//! current, Prometheus and Alertmanager accept them, every alert fires and stays quiet when its
//! unit tests say, every dashboard query parses, and every metric a rule or dashboard reads is
//! one the service really exports or one a listed Kubernetes exporter does.

pub mod metric_names;
pub mod scrape;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use thiserror::Error;
use xshell::{cmd, Shell};

use super::files;
use super::grafana;
use super::promql::EXTERNAL_METRICS;
use super::rules::{RecordingRule, Rule, RuleFile, RuleGroup};
use crate::generated::{self, GeneratedFile};
use crate::tools::debian::ensure_program;

/// Metrics read by a rule or dashboard that nothing exports.
#[derive(Debug, Error)]
#[error("metrics that neither the service nor a listed exporter exports:\n{}", list(.0))]
pub struct UnknownMetrics(pub BTreeMap<String, Vec<String>>);

fn list(unknown: &BTreeMap<String, Vec<String>>) -> String {
    unknown
        .iter()
        .map(|(name, readers)| format!("  {name} (read by {})", readers.join(", ")))
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the checks need to know.
pub struct VerifyOptions {
    /// The workspace root.
    pub root: PathBuf,
    /// The `akidb-embed` binary to scrape.
    pub service_binary: PathBuf,
    /// Scratch files (the dashboards' queries as rules, the service's log).
    pub work_dir: PathBuf,
}

/// Runs every check on the committed files, which must equal `generated`.
pub fn verify(
    sh: &Shell,
    options: &VerifyOptions,
    generated: &[GeneratedFile],
    rules: &RuleFile,
) -> anyhow::Result<()> {
    generated::check(&options.root, generated, super::COMMAND)?;
    println!("monitoring: generated files are current");
    let promtool = ensure_program("promtool", "prometheus")?;
    let amtool = ensure_program("amtool", "prometheus-alertmanager")?;
    let root = &options.root;
    let rules_file = root.join(files::RULES);
    let chart_rules = root.join(files::CHART_RULES);
    cmd!(
        sh,
        "{promtool} check rules --lint-fatal {rules_file} {chart_rules}"
    )
    .run()?;
    let tests = root.join(files::RULE_TESTS);
    cmd!(sh, "{promtool} test rules {tests}").run()?;
    let alertmanager = root.join(files::ALERTMANAGER);
    cmd!(sh, "{amtool} check-config {alertmanager}").run()?;

    std::fs::create_dir_all(&options.work_dir)
        .with_context(|| format!("creating {}", options.work_dir.display()))?;
    let queries = dashboard_queries();
    let queries_file = options.work_dir.join("dashboard-queries.rules.yaml");
    std::fs::write(&queries_file, serde_yaml_ng::to_string(&queries)?)?;
    // promtool parses each expression as it loads a rule; a query that does not parse fails
    // here with its panel's name.
    cmd!(sh, "{promtool} check rules --lint-fatal {queries_file}").run()?;

    let exported = scrape::exported_names(
        &options.service_binary,
        &root.join("models"),
        &options.work_dir.join("akidb-embed.log"),
    )?;
    println!(
        "monitoring: the service exports {} sample names",
        exported.len()
    );
    let unknown = unknown_metrics(rules, &queries, &exported);
    if !unknown.is_empty() {
        bail!(UnknownMetrics(unknown));
    }
    println!("monitoring: every metric read is exported by the service or a listed exporter");
    Ok(())
}

/// Every dashboard query as a recording rule, in a group per dashboard, the rule named after
/// its panel so promtool's errors point at it.
pub fn dashboard_queries() -> RuleFile {
    let groups = grafana::dashboards()
        .into_iter()
        .map(|(file, dashboard)| RuleGroup {
            name: file.to_string(),
            rules: dashboard
                .panels
                .iter()
                .flat_map(|panel| {
                    let dashboard = &dashboard;
                    panel.targets.iter().map(move |target| {
                        Rule::Recording(RecordingRule {
                            record: format!(
                                "dashboard:{}_{}:{}",
                                slug(&dashboard.title),
                                slug(&panel.title),
                                target.ref_id.to_lowercase()
                            ),
                            expr: target.expr.clone(),
                        })
                    })
                })
                .collect(),
        })
        .collect();
    RuleFile { groups }
}

/// `P95 latency: canary vs stable` as `p95_latency_canary_vs_stable`.
fn slug(title: &str) -> String {
    let lower: String = title
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    lower
        .split('_')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("_")
}

/// The metrics read by `rules` and the dashboards' `queries` that are neither recorded by the
/// rules, exported by the service (`exported`), nor listed in [`EXTERNAL_METRICS`]; each with
/// the rules and panels that read it.
pub fn unknown_metrics(
    rules: &RuleFile,
    queries: &RuleFile,
    exported: &BTreeSet<String>,
) -> BTreeMap<String, Vec<String>> {
    let recorded: BTreeSet<&str> = rules.recorded_names().into_iter().collect();
    let external: BTreeSet<&str> = EXTERNAL_METRICS
        .iter()
        .flat_map(|(_, names)| names.iter().copied())
        .collect();
    let mut readers: Vec<(String, &str)> = Vec::new();
    for group in rules.groups.iter().chain(&queries.groups) {
        for rule in &group.rules {
            let (name, expr) = match rule {
                Rule::Recording(rule) => (rule.record.clone(), rule.expr.as_str()),
                Rule::Alerting(rule) => (rule.alert.clone(), rule.expr.as_str()),
            };
            readers.push((name, expr));
        }
    }
    let mut unknown: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (reader, expr) in readers {
        for metric in metric_names::metric_names(expr) {
            let known = recorded.contains(metric.as_str())
                || external.contains(metric.as_str())
                || exported.contains(&metric);
            if !known {
                unknown.entry(metric).or_default().push(reader.clone());
            }
        }
    }
    unknown
}

/// The default scratch folder.
pub fn default_work_dir(root: &Path) -> PathBuf {
    root.join("target").join("monitoring")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_rule(expr: &str) -> RuleFile {
        RuleFile {
            groups: vec![RuleGroup {
                name: "g".into(),
                rules: vec![Rule::Recording(RecordingRule {
                    record: "akidb:x".into(),
                    expr: expr.into(),
                })],
            }],
        }
    }

    #[test]
    fn a_misspelt_metric_is_reported_with_its_reader() {
        let exported = BTreeSet::from(["candle_requests_total".to_string()]);
        let rules = one_rule("sum by (job) (rate(candle_request_total[5m])) / akidb:x");
        let unknown = unknown_metrics(&rules, &RuleFile { groups: Vec::new() }, &exported);
        assert_eq!(
            unknown,
            BTreeMap::from([(
                "candle_request_total".to_string(),
                vec!["akidb:x".to_string()]
            )])
        );
    }

    #[test]
    fn exported_recorded_and_listed_metrics_are_known() {
        let exported = BTreeSet::from(["candle_requests_total".to_string()]);
        let rules = one_rule(
            "rate(candle_requests_total[5m]) + on() kube_deployment_status_replicas_available + akidb:x",
        );
        assert!(unknown_metrics(&rules, &RuleFile { groups: Vec::new() }, &exported).is_empty());
    }

    #[test]
    fn every_dashboard_query_becomes_a_uniquely_named_rule() {
        let queries = dashboard_queries();
        let mut names = queries.recorded_names();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count);
        assert!(count >= 20, "{count} queries");
    }
}
