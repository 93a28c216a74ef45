//! `--compare FILE`: this run beside an earlier one, and the regression gate of pull requests.
//!
//! On a shared 2-core machine absolute figures swing by tens of percent from one minute to the
//! next, so only figures relative to a same-run peer gate:
//! - Candle's sentences/s over ONNX Runtime's, at each shape (a drop beyond the threshold fails);
//! - akidb-embed's highest rate held over the legacy stand-in's (likewise);
//! - akidb-embed's errors under each load: any where the earlier run had none fails.
//!
//! Everything else (sentences/s, latencies, memory, cold start) is shown, not gated.

use super::report::BenchReport;

/// How a metric takes part in the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Shown only; `true` when higher is better.
    Shown { higher_is_better: bool },
    /// A same-run ratio, higher is better: a relative drop beyond the threshold fails.
    Ratio,
    /// An error count: errors where there were none fail.
    NoNewErrors,
}

/// One named figure of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Stable name, e.g. `engine paraphrase-MiniLM-L3-v2 32x128 candle/ort`.
    pub name: String,
    /// Its value.
    pub value: f64,
    /// Its part in the gate.
    pub gate: Gate,
}

fn metric(name: String, value: f64, gate: Gate) -> Metric {
    Metric { name, value, gate }
}

const HIGHER: Gate = Gate::Shown {
    higher_is_better: true,
};
const LOWER: Gate = Gate::Shown {
    higher_is_better: false,
};

/// The figures of `report` that a comparison looks at, in report order.
pub fn metrics(report: &BenchReport) -> Vec<Metric> {
    let mut out = Vec::new();
    if let Some(engine) = &report.engine {
        for row in &engine.rows {
            let shape = format!("engine {} {}x{}", row.model, row.batch, row.tokens);
            out.push(metric(
                format!("{shape} candle sentences/s"),
                row.candle.sentences_per_s,
                HIGHER,
            ));
            if let Some(ort) = &row.ort {
                out.push(metric(
                    format!("{shape} ort sentences/s"),
                    ort.sentences_per_s,
                    HIGHER,
                ));
            }
            if let Some(ratio) = row.ratio {
                out.push(metric(format!("{shape} candle/ort"), ratio, Gate::Ratio));
            }
            if let Some(int8) = &row.int8 {
                out.push(metric(
                    format!("{shape} candle int8 sentences/s"),
                    int8.sentences_per_s,
                    HIGHER,
                ));
            }
            if let Some(ratio) = row.int8_over_f32 {
                out.push(metric(format!("{shape} int8/f32"), ratio, Gate::Ratio));
            }
            if let Some(ratio) = row.int8_over_ort_int8 {
                out.push(metric(
                    format!("{shape} int8 candle/ort"),
                    ratio,
                    Gate::Ratio,
                ));
            }
        }
    }
    for http in &report.http {
        for load in &http.loads {
            let candle = &load.figures.candle;
            let name = format!("http {} {}", http.model, load.name);
            out.push(metric(
                format!("{name} candle P95 ms"),
                candle.p95_ms,
                LOWER,
            ));
            if let Some(legacy) = &load.figures.legacy {
                out.push(metric(
                    format!("{name} legacy P95 ms"),
                    legacy.p95_ms,
                    LOWER,
                ));
            }
            out.push(metric(
                format!("{name} candle errors"),
                candle.errors as f64,
                Gate::NoNewErrors,
            ));
            if let Some(rss) = candle.peak_rss_mb {
                out.push(metric(format!("{name} candle peak RSS MB"), rss, LOWER));
            }
        }
        if let Some(max) = &http.max_rate {
            if let Some(rate) = max.candle {
                out.push(metric(
                    format!("http {} highest rate candle", http.model),
                    rate.into(),
                    HIGHER,
                ));
            }
            if let Some(ratio) = max.faster_than_legacy {
                out.push(metric(
                    format!("http {} × faster than legacy", http.model),
                    ratio,
                    Gate::Ratio,
                ));
            }
        }
    }
    for serving in &report.serving {
        out.push(metric(
            format!("serving / engine {}", serving.model),
            serving.ratio,
            Gate::Ratio,
        ));
    }
    if let Some(lone) = &report.lone {
        for row in &lone.rows {
            let name = match row.batch_wait_us {
                Some(wait) => format!("lone {} window {wait} µs", row.server),
                None => format!("lone {}", row.server),
            };
            out.push(metric(format!("{name} P50 ms"), row.figures.p50_ms, LOWER));
            out.push(metric(format!("{name} P99 ms"), row.figures.p99_ms, LOWER));
            out.push(metric(
                format!("{name} errors"),
                row.figures.errors as f64,
                Gate::NoNewErrors,
            ));
        }
    }
    if let Some(cold) = &report.cold_start {
        out.push(metric(
            "cold start candle ms".into(),
            cold.median_ms.candle,
            LOWER,
        ));
    }
    out
}

/// One metric in both runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Compared {
    /// Metric name.
    pub name: String,
    /// The earlier run's value, when it had the metric.
    pub previous: Option<f64>,
    /// This run's value, when it has the metric.
    pub current: Option<f64>,
    /// Its part in the gate.
    pub gate: Gate,
    /// Why it fails the gate, when it does.
    pub regression: Option<String>,
}

/// Both runs, metric by metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Every metric of either run.
    pub rows: Vec<Compared>,
    /// The allowed relative drop of a gated ratio, percent.
    pub threshold_pct: f64,
    /// Whether one run was a `--quick` smoke and the other not.
    pub mixed_modes: bool,
}

/// Compares `current` with `previous`; gated ratios may drop by `threshold_pct` percent.
pub fn compare(previous: &BenchReport, current: &BenchReport, threshold_pct: f64) -> Comparison {
    let before = metrics(previous);
    let now = metrics(current);
    let mut rows: Vec<Compared> = now
        .iter()
        .map(|m| {
            let previous = before.iter().find(|b| b.name == m.name).map(|b| b.value);
            Compared {
                name: m.name.clone(),
                previous,
                current: Some(m.value),
                gate: m.gate,
                regression: previous.and_then(|p| regression(m.gate, p, m.value, threshold_pct)),
            }
        })
        .collect();
    rows.extend(
        before
            .iter()
            .filter(|b| !now.iter().any(|m| m.name == b.name))
            .map(|b| Compared {
                name: b.name.clone(),
                previous: Some(b.value),
                current: None,
                gate: b.gate,
                // A gated figure the head no longer measures would pass any gate: it fails.
                regression: match b.gate {
                    Gate::Shown { .. } => None,
                    Gate::Ratio | Gate::NoNewErrors => Some(format!(
                        "missing from this run (the earlier run measured {:.3})",
                        b.value
                    )),
                },
            }),
    );
    Comparison {
        rows,
        threshold_pct,
        mixed_modes: previous.quick != current.quick,
    }
}

/// Why `current` regresses from `previous` under `gate`, if it does.
fn regression(gate: Gate, previous: f64, current: f64, threshold_pct: f64) -> Option<String> {
    match gate {
        Gate::Shown { .. } => None,
        Gate::Ratio => {
            let floor = previous * (1.0 - threshold_pct / 100.0);
            (current < floor).then(|| {
                format!(
                    "{current:.3} is {:.1}% below {previous:.3} (allowed: {threshold_pct}%)",
                    100.0 * (previous - current) / previous
                )
            })
        }
        Gate::NoNewErrors => (previous == 0.0 && current > 0.0)
            .then(|| format!("{current} errors where the earlier run had none")),
    }
}

impl Comparison {
    /// The regressions, one line each.
    pub fn regressions(&self) -> Vec<String> {
        self.rows
            .iter()
            .filter_map(|r| Some(format!("{}: {}", r.name, r.regression.as_ref()?)))
            .collect()
    }

    /// A Markdown table of both runs.
    pub fn table(&self) -> String {
        let mut out = format!(
            "\nCompared with the earlier run (gated: same-run ratios may drop {}%, no new \
             errors){}\n\n| metric | earlier | now | change | gate |\n|---|---|---|---|---|\n",
            self.threshold_pct,
            if self.mixed_modes {
                "; one run was --quick, so the figures are not comparable"
            } else {
                ""
            }
        );
        let show = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
        for row in &self.rows {
            let change = match (row.previous, row.current) {
                (Some(p), Some(c)) if p != 0.0 => format!("{:+.1}%", 100.0 * (c - p) / p),
                _ => "-".to_string(),
            };
            let gate = match (&row.regression, row.gate) {
                (Some(_), _) => "FAIL",
                (None, Gate::Shown { .. }) => "",
                (None, _) if row.previous.is_none() || row.current.is_none() => "not in both",
                (None, _) => "ok",
            };
            out.push_str(&format!(
                "| {} | {} | {} | {change} | {gate} |\n",
                row.name,
                show(row.previous),
                show(row.current)
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::{
        EngineFigures, EngineRow, EngineSection, HttpSection, LoadFigures, Machine, MaxRate, SCHEMA,
    };

    fn figures(sps: f64) -> EngineFigures {
        EngineFigures {
            sentences_per_s: sps,
            p50_ms: 1.0,
            p95_ms: 1.0,
            mean_tokens: 10.0,
            iterations: 3,
            runs: vec![sps],
        }
    }

    fn report(candle_sps: f64, ort_sps: f64, errors: u64, faster: f64) -> BenchReport {
        BenchReport {
            schema: SCHEMA,
            commit: None,
            started_unix: 0,
            profile: "release".into(),
            quick: false,
            threads: 2,
            machine: Machine::default(),
            engine: Some(EngineSection {
                seconds: 1.0,
                repetitions: 1,
                rows: vec![EngineRow {
                    model: "m".into(),
                    batch: 32,
                    tokens: 10,
                    candle: figures(candle_sps),
                    ort: Some(figures(ort_sps)),
                    ratio: Some(candle_sps / ort_sps),
                    int8: None,
                    int8_over_f32: None,
                    ort_int8: None,
                    int8_over_ort_int8: None,
                    gflop_per_text: None,
                }],
            }),
            http: vec![HttpSection::sample(
                LoadFigures {
                    errors,
                    ..LoadFigures::default()
                },
                Some(MaxRate {
                    p95_limit_ms: 35.0,
                    candle: Some(1000),
                    legacy: Some(400),
                    faster_than_legacy: Some(faster),
                    steps: Vec::new(),
                }),
            )],
            cold_start: None,
            lone: None,
            serving: Vec::new(),
        }
    }

    #[test]
    fn a_slower_machine_with_the_same_ratio_passes() {
        // Both engines 40% slower: the absolute figures drop, the ratio does not.
        let comparison = compare(
            &report(500.0, 1000.0, 0, 2.5),
            &report(300.0, 600.0, 0, 2.5),
            10.0,
        );
        assert!(
            comparison.regressions().is_empty(),
            "{:?}",
            comparison.regressions()
        );
        assert!(comparison.table().contains("-40.0%"));
    }

    #[test]
    fn a_ratio_dropping_beyond_the_threshold_fails() {
        let comparison = compare(
            &report(500.0, 1000.0, 0, 2.5),
            &report(400.0, 1000.0, 0, 2.4),
            10.0,
        );
        let regressions = comparison.regressions();
        assert_eq!(regressions.len(), 1, "{regressions:?}");
        assert!(
            regressions[0].starts_with("engine m 32x10 candle/ort"),
            "{regressions:?}"
        );
        assert!(comparison.table().contains("FAIL"));
    }

    #[test]
    fn new_errors_fail_and_old_ones_do_not() {
        let new = compare(&report(1.0, 1.0, 0, 2.0), &report(1.0, 1.0, 3, 2.0), 10.0);
        assert_eq!(new.regressions().len(), 1);
        let old = compare(&report(1.0, 1.0, 5, 2.0), &report(1.0, 1.0, 7, 2.0), 10.0);
        assert!(old.regressions().is_empty());
    }

    #[test]
    fn a_faster_than_legacy_drop_fails() {
        let comparison = compare(&report(1.0, 1.0, 0, 2.5), &report(1.0, 1.0, 0, 2.0), 10.0);
        assert_eq!(comparison.regressions().len(), 1);
    }

    #[test]
    fn metrics_only_in_one_run_are_listed_not_gated() {
        let mut previous = report(1.0, 1.0, 0, 2.0);
        previous.http.clear();
        let comparison = compare(&previous, &report(1.0, 1.0, 0, 1.0), 10.0);
        assert!(comparison.regressions().is_empty());
        assert!(comparison.rows.iter().any(|r| r.previous.is_none()));
    }

    #[test]
    fn a_gated_metric_missing_from_this_run_fails_and_a_shown_one_does_not() {
        let mut current = report(1.0, 1.0, 0, 2.0);
        current.http.clear();
        let comparison = compare(&report(1.0, 1.0, 0, 2.0), &current, 10.0);
        let regressions = comparison.regressions();
        assert!(
            regressions
                .iter()
                .any(|r| r.starts_with("http m × faster than legacy: missing from this run")),
            "{regressions:?}"
        );
        // Only gated figures fail: the latencies and rates that went with them are shown.
        let gated = comparison
            .rows
            .iter()
            .filter(|r| r.current.is_none() && !matches!(r.gate, Gate::Shown { .. }))
            .count();
        assert_eq!(regressions.len(), gated, "{regressions:?}");
        assert!(comparison.rows.iter().any(|r| r.current.is_none()
            && matches!(r.gate, Gate::Shown { .. })
            && r.regression.is_none()));
    }

    #[test]
    fn the_serving_path_is_held_against_its_own_engine() {
        let mut previous = report(500.0, 1000.0, 0, 2.5);
        previous.serving = previous.serving_ratios();
        assert_eq!(
            previous.serving.iter().map(|s| s.ratio).collect::<Vec<_>>(),
            [2.0]
        );
        // The engine doubled and the serving path did not follow: every other ratio holds.
        let mut current = report(1000.0, 2000.0, 0, 2.5);
        current.serving = current.serving_ratios();
        let comparison = compare(&previous, &current, 10.0);
        let regressions = comparison.regressions();
        assert_eq!(regressions.len(), 1, "{regressions:?}");
        assert!(
            regressions[0].starts_with("serving / engine m"),
            "{regressions:?}"
        );
        // A head that no longer measures it fails as well.
        let mut missing = report(500.0, 1000.0, 0, 2.5);
        missing.serving.clear();
        assert!(compare(&previous, &missing, 10.0)
            .regressions()
            .iter()
            .any(|r| r.starts_with("serving / engine m: missing")));
    }

    #[test]
    fn the_serving_ratio_needs_the_same_model_and_a_rate_held() {
        let mut other_model = report(500.0, 1000.0, 0, 2.5);
        other_model.http[0].model = "other".into();
        assert_eq!(other_model.serving_ratios(), []);
        let mut nothing_held = report(500.0, 1000.0, 0, 2.5);
        if let Some(max) = nothing_held.http[0].max_rate.as_mut() {
            max.candle = None;
        }
        assert_eq!(nothing_held.serving_ratios(), []);
    }

    #[test]
    fn each_model_served_is_held_against_its_own_engine_row() {
        let mut two = report(500.0, 1000.0, 0, 2.5);
        let mut second = two.http[0].clone();
        second.model = "n".into();
        if let Some(max) = second.max_rate.as_mut() {
            max.candle = Some(100);
        }
        two.http.push(second);
        if let Some(engine) = two.engine.as_mut() {
            let mut row = engine.rows[0].clone();
            row.model = "n".into();
            row.candle = figures(400.0);
            engine.rows.push(row);
        }
        let ratios: Vec<(String, f64)> = two
            .serving_ratios()
            .into_iter()
            .map(|s| (s.model, s.ratio))
            .collect();
        assert_eq!(ratios, [("m".to_string(), 2.0), ("n".to_string(), 0.25)]);
        // Each model's HTTP figures are named after it: a second model adds rows, not clashes.
        let names: Vec<String> = metrics(&two).into_iter().map(|m| m.name).collect();
        assert!(names.contains(&"http n × faster than legacy".to_string()));
        assert!(names.contains(&"http m short@200 candle P95 ms".to_string()));
    }

    #[test]
    fn a_report_with_one_http_section_and_one_serving_ratio_still_reads() {
        let mut current = report(500.0, 1000.0, 0, 2.5);
        current.serving = current.serving_ratios();
        let mut json = serde_json::to_value(&current).unwrap();
        // The layout before the HTTP section became one per model.
        json["http"] = json["http"][0].clone();
        json["serving"] = json["serving"][0].clone();
        let read: BenchReport = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(read, current);
        json["http"] = serde_json::Value::Null;
        json["serving"] = serde_json::Value::Null;
        let read: BenchReport = serde_json::from_value(json).unwrap();
        assert!(read.http.is_empty() && read.serving.is_empty());
    }

    #[test]
    fn an_int8_speed_up_that_shrinks_fails() {
        let with_int8 = |speed_up: f64| {
            let mut r = report(500.0, 1000.0, 0, 2.5);
            if let Some(row) = r.engine.as_mut().map(|e| &mut e.rows[0]) {
                row.int8 = Some(figures(500.0 * speed_up));
                row.int8_over_f32 = Some(speed_up);
            }
            r
        };
        let comparison = compare(&with_int8(1.7), &with_int8(1.2), 10.0);
        let regressions = comparison.regressions();
        assert_eq!(regressions.len(), 1, "{regressions:?}");
        assert!(
            regressions[0].starts_with("engine m 32x10 int8/f32"),
            "{regressions:?}"
        );
        assert!(compare(&with_int8(1.7), &with_int8(1.65), 10.0)
            .regressions()
            .is_empty());
    }
}
