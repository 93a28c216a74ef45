//! `cargo xtask rollout report --since ...`: the plan's weekly status report as markdown —
//! traffic split, error rate and latency of each side against the SLOs (from Prometheus),
//! and the incidents, approvals and go/no-go decisions of the window (from the audit log).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::Args;

use crate::rollout::html::{self, series::Series, Heading};
use crate::rollout::plan::slo::SloThresholds;
use crate::rollout::run::audit::{AuditEntry, AuditLog};
use crate::rollout::run::state::RunState;
use crate::rollout::run::timeline::{Entry, Timeline};
use crate::rollout::run::{self, RunFiles};
use crate::rollout::targets::{Measurement, Side};
use crate::stack::prometheus::PrometheusApi;

/// Arguments of `cargo xtask rollout report`.
#[derive(Args)]
pub struct ReportArgs {
    /// Start of the window: RFC 3339 (`2026-11-21T00:00:00Z`) or a span back from now (`7d`)
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    since: SystemTime,
    /// The Prometheus that scrapes both sides (`127.0.0.1:9090`); left out, the report has
    /// no measurements
    #[arg(long, value_name = "HOST:PORT", env = "AKIDB_PROMETHEUS")]
    prometheus: Option<SocketAddr>,
    /// Folder of state.json and audit.jsonl [default: target/rollout]
    #[arg(long, value_name = "DIR", env = "AKIDB_ROLLOUT_DIR")]
    state_dir: Option<PathBuf>,
    /// Where to write the report [default: <state dir>/weekly-report.md]; its charts go beside
    /// it, with the extension `.html`
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
}

fn parse_since(text: &str) -> Result<SystemTime, String> {
    if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        return Ok(time);
    }
    let span = humantime::parse_duration(text)
        .map_err(|_| format!("`{text}` is neither an RFC 3339 time nor a span such as `7d`"))?;
    SystemTime::now()
        .checked_sub(span)
        .ok_or_else(|| format!("`{text}` reaches back before the epoch"))
}

/// Everything the report shows.
pub struct ReportInput {
    /// The plan's name.
    pub plan: String,
    /// The window.
    pub since: SystemTime,
    /// The end of the window (now).
    pub until: SystemTime,
    /// The canary weight now, when a run exists.
    pub weight: Option<u8>,
    /// The plan's SLOs.
    pub slos: Option<SloThresholds>,
    /// Canary and stable over the window, or why there are none.
    pub measurements: Result<[(Side, Measurement); 2], String>,
    /// The audit entries of the window.
    pub entries: Vec<AuditEntry>,
}

/// Runs `cargo xtask rollout report`.
pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let root = crate::project::root();
    let files = RunFiles {
        dir: args
            .state_dir
            .unwrap_or_else(|| root.join("target").join("rollout")),
    };
    let plan = crate::rollout::load::load(&crate::project::plan_path())?;
    let until = SystemTime::now();
    let window = until.duration_since(args.since).unwrap_or(Duration::ZERO);
    let entries = AuditLog::new(files.audit(), run::actor())
        .read()?
        .into_iter()
        .filter(|entry| {
            humantime::parse_rfc3339_weak(&entry.time).is_ok_and(|time| time >= args.since)
        })
        .collect();
    let measurements = match args.prometheus {
        None => Err("no Prometheus given (--prometheus HOST:PORT)".to_string()),
        Some(address) => {
            let api = PrometheusApi::new(address);
            let measure = |side| api.measure(side, window).map(|m| (side, m));
            measure(Side::Canary)
                .and_then(|canary| Ok([canary, measure(Side::Stable)?]))
                .map_err(|error| format!("{error:#}"))
        }
    };
    let input = ReportInput {
        plan: plan.name.clone(),
        since: args.since,
        until,
        weight: RunState::load(&files.state())?.map(|state| state.weight),
        slos: plan.slos.resolve(&plan.slos).ok(),
        measurements,
        entries,
    };
    let out = args
        .out
        .unwrap_or_else(|| files.dir.join("weekly-report.md"));
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&out, render(&input)).with_context(|| format!("writing {}", out.display()))?;
    println!("rollout: weekly report written to {}", out.display());
    let html = out.with_extension("html");
    let timeline = Timeline::read(&files.timeline())?;
    std::fs::write(&html, render_html(&input, &timeline)?)
        .with_context(|| format!("writing {}", html.display()))?;
    println!("rollout: its charts written to {}", html.display());
    Ok(())
}

fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn millis(d: Option<Duration>) -> String {
    d.map_or("-".to_string(), |d| {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    })
}

/// Table-safe text.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn table(out: &mut String, entries: &[&AuditEntry], empty: &str) {
    if entries.is_empty() {
        let _ = writeln!(out, "{empty}\n");
        return;
    }
    let _ = writeln!(out, "| time | stage | step | result | by | detail |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for e in entries {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            e.time,
            cell(&e.stage),
            cell(&e.step),
            cell(&e.result),
            cell(&e.actor),
            cell(&e.detail)
        );
    }
    out.push('\n');
}

/// The step kind of an audit entry (`slo_check#4` is `slo_check`).
fn kind(entry: &AuditEntry) -> &str {
    entry.step.split('#').next().unwrap_or_default()
}

/// The report's charts as HTML: the timeline entries of the window, drawn as a run's
/// `report.html` is.
pub fn render_html(input: &ReportInput, timeline: &[Entry]) -> anyhow::Result<String> {
    let unix = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    };
    let (since, until) = (unix(input.since), unix(input.until));
    let window: Vec<Entry> = timeline
        .iter()
        .filter(|e| e.at >= since && e.at <= until)
        .cloned()
        .collect();
    let mut lines = vec![format!(
        "From {} to {} (UTC).",
        time(input.since),
        time(input.until)
    )];
    lines.push(match input.weight {
        Some(weight) => format!(
            "Now: {weight}% on Candle (canary), {}% on the legacy service.",
            100 - u32::from(weight)
        ),
        None => "No rollout run has been recorded.".into(),
    });
    if window.is_empty() {
        lines.push("The run timeline holds nothing in this window.".into());
    }
    let heading = Heading {
        title: format!("Weekly rollout report: {}", input.plan),
        lines,
        table: Vec::new(),
    };
    Ok(html::render(
        &heading,
        &Series::of(&window),
        input.slos.as_ref(),
    )?)
}

/// The report as markdown.
pub fn render(input: &ReportInput) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Weekly rollout report: {}\n", input.plan);
    let _ = writeln!(
        out,
        "From {} to {} (UTC).\n",
        time(input.since),
        time(input.until)
    );

    let _ = writeln!(out, "## Traffic split\n");
    match input.weight {
        Some(weight) => {
            let _ = writeln!(
                out,
                "Now: {weight}% on Candle (canary), {}% on the legacy service.\n",
                100 - u32::from(weight)
            );
        }
        None => {
            let _ = writeln!(out, "No rollout run has been recorded.\n");
        }
    }
    let shifts: Vec<&AuditEntry> = input
        .entries
        .iter()
        .filter(|e| (kind(e) == "canary" && e.result == "ok") || e.result == "rolled_back")
        .collect();
    table(
        &mut out,
        &shifts,
        "The weight did not change in this window.",
    );

    let _ = writeln!(out, "## Error rate and latency\n");
    match &input.measurements {
        Err(why) => {
            let _ = writeln!(out, "Not measured: {why}.\n");
        }
        Ok(sides) => {
            let _ = writeln!(
                out,
                "| side | requests | errors | error rate | P50 | P95 | P99 |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|---|");
            if let Some(slo) = &input.slos {
                let _ = writeln!(
                    out,
                    "| SLO | | | < {} | < {} | < {} | < {} |",
                    slo.error_rate,
                    millis(Some(slo.p50)),
                    millis(Some(slo.p95)),
                    millis(Some(slo.p99))
                );
            }
            for (side, m) in sides {
                let rate = if m.requests == 0 {
                    "-".to_string()
                } else {
                    format!("{:.3}%", m.errors as f64 * 100.0 / m.requests as f64)
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {rate} | {} | {} | {} |",
                    match side {
                        Side::Canary => "canary (Candle)",
                        Side::Stable => "stable (legacy)",
                    },
                    m.requests,
                    m.errors,
                    millis(m.p50),
                    millis(m.p95),
                    millis(m.p99)
                );
            }
            out.push('\n');
        }
    }

    let _ = writeln!(out, "## Go/no-go decisions\n");
    let gates: Vec<&AuditEntry> = input
        .entries
        .iter()
        .filter(|e| {
            matches!(kind(e), "slo_check" | "load_test" | "soak" | "parity")
                && e.result != "started"
        })
        .collect();
    table(&mut out, &gates, "No gate was decided in this window.");

    let _ = writeln!(out, "## Approvals\n");
    let approvals: Vec<&AuditEntry> = input
        .entries
        .iter()
        .filter(|e| kind(e) == "approve")
        .collect();
    table(&mut out, &approvals, "No approval in this window.");

    let _ = writeln!(out, "## Incidents\n");
    let incidents: Vec<&AuditEntry> = input
        .entries
        .iter()
        .filter(|e| matches!(e.result.as_str(), "failed" | "rolled_back" | "inconclusive"))
        .collect();
    table(&mut out, &incidents, "None.");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(step: &str, result: &str, detail: &str) -> AuditEntry {
        AuditEntry {
            time: "2026-11-28T01:25:36.130Z".into(),
            stage: "week-2".into(),
            step: step.into(),
            actor: "ops".into(),
            result: result.into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn sorts_the_audit_log_into_the_report_sections() {
        let input = ReportInput {
            plan: "akidb-candle-ga".into(),
            since: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000),
            until: SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_600_000),
            weight: Some(1),
            slos: None,
            measurements: Err("no Prometheus given".into()),
            entries: vec![
                entry("approve", "approved", "environment canary-1"),
                entry("canary#1", "ok", "canary weight 1%"),
                entry("slo_check#4", "started", ""),
                entry("slo_check#4", "failed", "P95 52ms > 35ms"),
                entry("rollback", "rolled_back", "all traffic on stable"),
            ],
        };
        let text = render(&input);
        let section = |name: &str| {
            let start = text.find(name).expect("section");
            let rest = &text[start + name.len()..];
            rest[..rest.find("\n## ").unwrap_or(rest.len())].to_string()
        };
        assert!(text.contains("Now: 1% on Candle"), "{text}");
        assert!(section("## Traffic split").contains("canary weight 1%"));
        assert!(section("## Go/no-go decisions").contains("P95 52ms > 35ms"));
        assert!(!section("## Go/no-go decisions").contains("started"));
        assert!(section("## Approvals").contains("environment canary-1"));
        assert!(section("## Incidents").contains("all traffic on stable"));
        assert!(section("## Error rate and latency").contains("Not measured"));
    }

    #[test]
    fn the_html_charts_hold_only_the_windows_timeline() {
        use crate::rollout::run::timeline::Event;
        let at = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let stage = |secs: u64, id: &str| Entry {
            at: secs as f64,
            event: Event::Stage {
                stage: id.into(),
                name: "a stage".into(),
                weight: 0,
            },
        };
        let input = ReportInput {
            plan: "akidb-candle-ga".into(),
            since: at(1_000),
            until: at(2_000),
            weight: Some(10),
            slos: None,
            measurements: Err("no Prometheus given".into()),
            entries: Vec::new(),
        };
        let timeline = [stage(500, "week-1"), stage(1_500, "week-3")];
        let page = render_html(&input, &timeline).unwrap();
        assert_eq!(page.matches("<svg").count(), 6);
        assert!(page.contains("week-3"));
        assert!(
            !page.contains("week-1"),
            "an entry before the window is drawn"
        );
        assert!(page.contains("Now: 10% on Candle"));
    }

    #[test]
    fn since_takes_a_time_or_a_span() {
        assert!(parse_since("2026-11-21T00:00:00Z").is_ok());
        assert!(parse_since("7d").is_ok());
        assert!(parse_since("last week").is_err());
    }
}
