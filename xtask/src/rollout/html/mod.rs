//! The HTML report: one self-contained file (inline CSS and SVG, no script, no font or anything
//! else from the network) with the charts of a run's timeline — traffic share, request rate,
//! error rate, P50/P95/P99 of each side against the SLOs, memory — and its stage boundaries,
//! approvals, gate verdicts and rollbacks on the time axis. `report.html` of a run and the
//! weekly report's HTML are both drawn here.

pub mod charts;
pub mod series;

use std::{fmt::Write as _, path::Path, time::Duration};

use plotters::style::RGBColor;

use self::{
    charts::{Chart, Limit, Line},
    series::{Mark, Marker, Point, Series},
};
use crate::rollout::{
    plan::{slo::SloThresholds, Plan},
    run::{
        state::{RunState, RunStatus},
        timeline::{self, Figures, Timeline},
    },
};

const CANARY: RGBColor = RGBColor(31, 119, 180);
const STABLE: RGBColor = RGBColor(255, 127, 14);
const WEIGHT: RGBColor = RGBColor(120, 120, 120);
const SLO: RGBColor = RGBColor(200, 30, 30);

/// Text made safe inside HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn line(name: &str, color: RGBColor, points: &[Point], f: impl Fn(&Point) -> Option<f64>) -> Line {
    Line {
        name: name.into(),
        color,
        points: points.iter().map(|p| (p.t, f(p))).collect(),
    }
}

/// Lighter or darker shades of a side's colour for its P50, P95, P99.
fn shade(color: RGBColor, step: u8) -> RGBColor {
    let f = |c: u8| (u16::from(c) * (4 - u16::from(step)) / 4) as u8;
    RGBColor(f(color.0), f(color.1), f(color.2))
}

fn latency_chart(side: &str, color: RGBColor, s: &Series, slos: Option<&SloThresholds>) -> Chart {
    let pick = |p: &Point| -> Figures {
        if side == "canary" {
            p.canary.clone()
        } else {
            p.stable.clone()
        }
    };
    let mut limits = Vec::new();
    if let Some(slo) = slos {
        for (name, limit) in [("P50", slo.p50), ("P95", slo.p95), ("P99", slo.p99)] {
            limits.push(Limit {
                name: format!("SLO {name} < {:.0} ms", ms(limit)),
                color: SLO,
                value: ms(limit),
            });
        }
    }
    Chart {
        title: format!("Latency of the {side} side: P50, P95, P99"),
        unit: "ms".into(),
        lines: vec![
            line(&format!("{side} P50"), shade(color, 0), &s.points, |p| {
                pick(p).p50_ms
            }),
            line(&format!("{side} P95"), shade(color, 1), &s.points, |p| {
                pick(p).p95_ms
            }),
            line(&format!("{side} P99"), shade(color, 2), &s.points, |p| {
                pick(p).p99_ms
            }),
        ],
        limits,
        y_top: None,
    }
}

/// The charts of a series, in the order the page shows them.
pub fn charts(s: &Series, slos: Option<&SloThresholds>) -> Vec<Chart> {
    let p = &s.points;
    vec![
        Chart {
            title: "Traffic share: observed per side, and the configured canary weight".into(),
            unit: "% of requests".into(),
            lines: vec![
                line("canary (Candle)", CANARY, p, Point::canary_share),
                line("stable (legacy)", STABLE, p, |p| {
                    p.canary_share().map(|c| 100.0 - c)
                }),
                line("configured canary weight", WEIGHT, p, |p| {
                    Some(f64::from(p.weight))
                }),
            ],
            limits: Vec::new(),
            y_top: Some(100.0),
        },
        Chart {
            title: "Request rate per side".into(),
            unit: "req/s".into(),
            lines: vec![
                line("canary", CANARY, p, |p| Some(p.canary.rate)),
                line("stable", STABLE, p, |p| Some(p.stable.rate)),
            ],
            limits: Vec::new(),
            y_top: None,
        },
        Chart {
            title: "Error rate per side".into(),
            unit: "% of requests".into(),
            lines: vec![
                line("canary", CANARY, p, |p| p.canary.error_rate),
                line("stable", STABLE, p, |p| p.stable.error_rate),
            ],
            limits: slos
                .map(|slo| Limit {
                    name: format!("SLO < {}", slo.error_rate),
                    color: SLO,
                    value: slo.error_rate.value(),
                })
                .into_iter()
                .collect(),
            y_top: None,
        },
        latency_chart("canary", CANARY, s, slos),
        latency_chart("stable", STABLE, s, slos),
        Chart {
            title: match slos.and_then(|slo| slo.memory_per_pod) {
                Some(limit) => format!("Resident memory per side (limit {limit} per pod)"),
                None => "Resident memory per side".into(),
            },
            unit: "MiB".into(),
            lines: vec![
                line("canary", CANARY, p, |p| p.canary.memory_mib),
                line("stable", STABLE, p, |p| p.stable.memory_mib),
            ],
            limits: Vec::new(),
            y_top: None,
        },
    ]
}

/// What the page says above its charts.
pub struct Heading {
    /// The page title.
    pub title: String,
    /// Lines of plain text under it.
    pub lines: Vec<String>,
    /// A table (header row first), e.g. the stages.
    pub table: Vec<Vec<String>>,
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;\
margin:24px auto;max-width:1140px;color:#222}h1{font-size:22px}h2{font-size:17px;\
margin-top:28px}table{border-collapse:collapse;font-size:13px;margin:8px 0}td,th{border:1px \
solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}th{background:#f4f4f4}\
.chart{margin:10px 0}.key span{display:inline-block;margin-right:14px;font-size:13px}\
.pass{color:#008c3c}.fail{color:#d20000}.inconclusive{color:#e68c00}";

fn table(out: &mut String, rows: &[Vec<String>]) {
    let Some((head, body)) = rows.split_first() else {
        return;
    };
    out.push_str("<table><tr>");
    for cell in head {
        let _ = write!(out, "<th>{}</th>", escape(cell));
    }
    out.push_str("</tr>");
    for row in body {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{}</td>", escape(cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>\n");
}

fn kind(m: &Marker) -> (&'static str, &str) {
    match &m.mark {
        Mark::Stage => ("stage", ""),
        Mark::Approval => ("approval", ""),
        Mark::Gate(verdict) => ("gate", verdict.as_str()),
        Mark::Rollback => ("rollback", "fail"),
    }
}

/// The whole page.
pub fn render(
    heading: &Heading,
    s: &Series,
    slos: Option<&SloThresholds>,
) -> Result<String, charts::ChartError> {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title}</title><style>{STYLE}</style></head><body>\n<h1>{title}</h1>\n",
        title = escape(&heading.title)
    );
    for l in &heading.lines {
        let _ = writeln!(out, "<p>{}</p>", escape(l));
    }
    table(&mut out, &heading.table);
    let origin = std::time::UNIX_EPOCH + Duration::from_secs_f64(s.origin.max(0.0));
    let _ = writeln!(
        out,
        "<h2>Charts</h2>\n<p>Time axis: seconds since {} (UTC). Each point is the trailing 4 s \
         of both sides as Prometheus scraped them.</p>\n<p class=\"key\"><span>grey line + name: \
         a stage begins</span><span style=\"color:#8000a0\">&#9650; approval</span>\
         <span class=\"pass\">&#9679; gate passed</span><span class=\"fail\">&#9679; gate \
         failed</span><span class=\"inconclusive\">&#9679; inconclusive</span>\
         <span class=\"fail\">thick red line: rollback</span><span style=\"color:#c81e1e\">\
         dashed: SLO</span></p>",
        humantime::format_rfc3339_seconds(origin)
    );
    if s.points.is_empty() {
        out.push_str("<p>No samples were recorded: the charts are empty.</p>\n");
    }
    for (index, chart) in charts(s, slos).iter().enumerate() {
        let svg = charts::svg(chart, s.end, &s.markers, index == 0)?;
        let _ = writeln!(out, "<div class=\"chart\">{svg}</div>");
    }
    out.push_str(
        "<h2>Events</h2>\n<table><tr><th>seconds</th><th>time (UTC)</th>\
         <th>stage</th><th>event</th><th>detail</th></tr>\n",
    );
    for m in &s.markers {
        let (what, class) = kind(m);
        let at = origin + Duration::from_secs_f64(m.t);
        let _ = writeln!(
            out,
            "<tr><td>{:.1}</td><td>{}</td><td>{}</td><td class=\"{class}\">{}: {}</td>\
             <td>{}</td></tr>",
            m.t,
            humantime::format_rfc3339_seconds(at),
            escape(&m.stage),
            what,
            escape(&m.label),
            escape(&m.detail)
        );
    }
    out.push_str("</table>\n</body></html>\n");
    Ok(out)
}

/// The heading of a run's report: status and one row per stage.
fn run_heading(plan: &Plan, state: &RunState) -> Heading {
    let status = match &state.status {
        RunStatus::Completed => "completed".to_string(),
        RunStatus::Running => "running".to_string(),
        RunStatus::Paused { reason } => format!("paused: {reason}"),
        RunStatus::RolledBack { reason } => format!("rolled back: {reason}"),
    };
    let mut rows = vec![[
        "stage", "name", "weight", "requests", "failed", "gates", "approval", "seconds",
    ]
    .map(String::from)
    .to_vec()];
    for stage in plan.stages() {
        let record = state.stages.get(&stage.id);
        let gates = record.map_or(String::new(), |r| {
            r.gates
                .iter()
                .map(|g| format!("{} {}", g.kind, g.verdict))
                .collect::<Vec<_>>()
                .join(", ")
        });
        rows.push(vec![
            stage.id.clone(),
            stage.name.clone(),
            format!("{}%", stage.exit_weight.percent()),
            record.map_or("-".into(), |r| r.traffic.sent.to_string()),
            record.map_or("-".into(), |r| r.traffic.failed.to_string()),
            gates,
            state.approvals.get(&stage.id).map_or("-".into(), |a| {
                format!("{} via {} at {}", a.actor, a.via, a.time)
            }),
            record.map_or("not run".into(), |r| format!("{:.1}", r.seconds)),
        ]);
    }
    Heading {
        title: format!("Rollout report: {} on target {}", state.plan, state.target),
        lines: vec![format!(
            "Status: {status}. Time scale {}. Canary weight now {}%.",
            state.time_scale, state.weight
        )],
        table: rows,
    }
}

/// Writes `report.html` of the run in `dir` from its timeline.
pub fn write_run(dir: &Path, plan: &Plan, state: &RunState) -> anyhow::Result<()> {
    let entries = Timeline::read(&dir.join("timeline.jsonl"))?;
    let series = Series::of(timeline::latest_run(&entries));
    let slos = plan.slos.resolve(&plan.slos).ok();
    let page = render(&run_heading(plan, state), &series, slos.as_ref())?;
    std::fs::write(dir.join("report.html"), page)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_html_would_read_as_markup() {
        assert_eq!(
            escape("P95 <35 & \"ok\""),
            "P95 &lt;35 &amp; &quot;ok&quot;"
        );
    }
}
