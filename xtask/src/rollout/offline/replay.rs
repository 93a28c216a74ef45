//! `cargo xtask rollout replay`: a stage's gates and the plan's rollback triggers evaluated
//! against past data in Prometheus, step by step over `[--from, --to]`: would this plan have
//! stopped that incident, and when?
//!
//! Each evaluation at time `t` is an instant query at `t`, over the trigger's window (plan time
//! as written: past production data is real time) or the gate's window cut to `t - from`
//! (`--from` stands for the moment the split took effect). Memory growth is not replayed.

use std::{
    fmt::Write as _,
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;
use clap::Args;

use crate::{
    rollout::{
        judge::{self, Call},
        plan::{compare::Compare, rollback::RollbackCondition, slo::SloThresholds, Plan, Step},
        run::gate::{self, Verdict},
    },
    stack::prometheus::{MeasurementQueries, PrometheusApi},
};

/// Fewest requests a replayed trigger judges, as in a run.
const MIN_TRIGGER_REQUESTS: u64 = 20;

/// Arguments of `cargo xtask rollout replay`.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The Prometheus that holds the past data (`http://host:9090`)
    #[arg(long, value_name = "URL")]
    prometheus_url: String,
    /// Start: RFC 3339 (`2026-11-02T14:00:00Z`) or Unix seconds
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    from: SystemTime,
    /// End, in the same forms
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    to: SystemTime,
    /// Replay this stage's gates too (without it, only the rollback triggers)
    #[arg(long, value_name = "STAGE")]
    stage: Option<String>,
    /// Time between evaluations [default: a sixtieth of the range, at least 15s]
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    step: Option<Duration>,
    /// The plan [default: rollout/plan.yaml]
    #[arg(long, value_name = "PATH")]
    plan: Option<PathBuf>,
    /// Prometheus job of the canary's series
    #[arg(long, default_value = "canary")]
    canary_job: String,
    /// Prometheus job of the baseline's series
    #[arg(long, default_value = "stable")]
    stable_job: String,
}

fn parse_time(text: &str) -> Result<SystemTime, String> {
    if let Ok(seconds) = text.parse::<f64>() {
        if seconds.is_finite() && seconds >= 0.0 {
            return Ok(UNIX_EPOCH + Duration::from_secs_f64(seconds));
        }
    }
    humantime::parse_rfc3339_weak(text)
        .map_err(|e| format!("`{text}` is neither RFC 3339 nor Unix seconds: {e}"))
}

fn unix(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What is replayed: the plan's triggers, and a stage's gates.
pub struct Replay<'a> {
    /// The plan.
    pub plan: &'a Plan,
    /// The stage whose gates are replayed.
    pub stage: Option<&'a str>,
    /// Where the data is.
    pub api: PrometheusApi,
    /// The canary's and the baseline's jobs.
    pub jobs: (String, String),
}

/// One column of the replay: a trigger or a gate.
enum Check<'a> {
    Trigger {
        name: &'a str,
        when: &'a RollbackCondition,
    },
    Gate {
        label: String,
        window: Duration,
        min_requests: u64,
        thresholds: &'a SloThresholds,
        compare: Option<&'a Compare>,
    },
}

impl Check<'_> {
    fn label(&self) -> String {
        match self {
            Check::Trigger { name, .. } => format!("trigger {name}"),
            Check::Gate { label, .. } => label.clone(),
        }
    }
}

/// One evaluation: the check's label, the time, the call and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Evaluation {
    /// `trigger NAME` or `STEP#INDEX`.
    pub check: String,
    /// Unix seconds.
    pub time: f64,
    /// `fired`/`quiet`/`unjudged` for a trigger; `pass`/`fail`/`inconclusive` for a gate.
    pub call: String,
    /// What was measured.
    pub detail: String,
}

impl Replay<'_> {
    fn checks(&self) -> anyhow::Result<Vec<Check<'_>>> {
        let mut checks: Vec<Check> = self
            .plan
            .rollback
            .iter()
            .map(|t| Check::Trigger {
                name: &t.name,
                when: &t.when,
            })
            .collect();
        if let Some(id) = self.stage {
            let stage = super::stage(self.plan, id)?;
            for (index, step) in stage.steps.iter().enumerate() {
                let (window, min_requests, thresholds, compare) = match step {
                    Step::SloCheck(s) => {
                        (s.window, s.min_requests, &s.thresholds, s.compare.as_ref())
                    }
                    Step::LoadTest(s) => (s.duration, 1, &s.thresholds, s.compare.as_ref()),
                    Step::Soak(s) => (s.duration, 1, &s.thresholds, None),
                    _ => continue,
                };
                checks.push(Check::Gate {
                    label: format!("{}#{index}", step.kind()),
                    window,
                    min_requests,
                    thresholds,
                    compare,
                });
            }
        }
        Ok(checks)
    }

    fn queries(&self, canary: bool, window: Duration) -> MeasurementQueries {
        if canary {
            MeasurementQueries::for_job(&self.jobs.0, false, window)
        } else {
            MeasurementQueries::for_job(&self.jobs.1, false, window)
        }
    }

    fn evaluate(
        &self,
        check: &Check,
        time: f64,
        since: Duration,
    ) -> anyhow::Result<(String, String)> {
        match check {
            Check::Trigger { when, .. } => {
                let window = when.window();
                let m = self
                    .api
                    .measure_at(&self.queries(true, window), Some(time))?;
                let (fired, detail) = match when {
                    RollbackCondition::MemoryGrowth(_) => {
                        return Ok(("unjudged".into(), "memory growth is not replayed".into()))
                    }
                    _ if m.requests < MIN_TRIGGER_REQUESTS => {
                        return Ok((
                            "unjudged".into(),
                            format!("{} requests in the window", m.requests),
                        ))
                    }
                    RollbackCondition::ErrorRate(s) => {
                        let rate = 100.0 * m.errors as f64 / m.requests as f64;
                        (
                            rate > s.above.value(),
                            format!("error rate {rate:.3}% (> {} fires)", s.above),
                        )
                    }
                    RollbackCondition::P95Latency(s) => match m.p95 {
                        Some(p95) => (
                            p95 > s.above.0,
                            format!(
                                "P95 {:.1}ms (> {:?} fires)",
                                p95.as_secs_f64() * 1000.0,
                                s.above.0
                            ),
                        ),
                        None => return Ok(("unjudged".into(), "no latency data".into())),
                    },
                };
                Ok((if fired { "fired" } else { "quiet" }.into(), detail))
            }
            Check::Gate {
                window,
                min_requests,
                thresholds,
                compare,
                ..
            } => {
                let window = (*window).min(since).max(Duration::from_secs(1));
                let m = self
                    .api
                    .measure_at(&self.queries(true, window), Some(time))?;
                let verdict = gate::judge(&m, thresholds, *min_requests);
                let verdict = match compare {
                    None => verdict,
                    Some(compare) => {
                        let canary = self
                            .api
                            .side_sample_at(&self.queries(true, window), Some(time))?;
                        let baseline = self
                            .api
                            .side_sample_at(&self.queries(false, window), Some(time))?;
                        let j = judge::judge(&canary, &baseline, compare);
                        let detail = format!("{}; {}", verdict.detail(), j.summary());
                        match (&verdict, j.verdict) {
                            (Verdict::Fail(_), _) | (_, Call::Fail) => Verdict::Fail(detail),
                            (Verdict::Inconclusive(_), _) | (_, Call::Inconclusive) => {
                                Verdict::Inconclusive(detail)
                            }
                            _ => Verdict::Pass(detail),
                        }
                    }
                };
                Ok((verdict.label().into(), verdict.detail().into()))
            }
        }
    }

    /// Every check at every step from `from` to `to` (inclusive).
    pub fn run(&self, from: f64, to: f64, step: Duration) -> anyhow::Result<Vec<Evaluation>> {
        anyhow::ensure!(to > from, "--to must come after --from");
        let checks = self.checks()?;
        let step = step.as_secs_f64().max(1.0);
        let mut out = Vec::new();
        let mut time = from;
        while time <= to + 1e-6 {
            let since = Duration::from_secs_f64(time - from);
            for check in &checks {
                let (call, detail) = self
                    .evaluate(check, time, since)
                    .with_context(|| format!("{} at {}", check.label(), format_time(time)))?;
                out.push(Evaluation {
                    check: check.label(),
                    time,
                    call,
                    detail,
                });
            }
            time += step;
        }
        Ok(out)
    }
}

fn format_time(time: f64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs_f64(time.max(0.0)))
        .to_string()
}

/// The timeline as text: one line per step with every check's call, then when each check
/// first fired or failed, with what it saw.
pub fn render(evaluations: &[Evaluation], from: f64) -> String {
    let mut checks: Vec<&str> = Vec::new();
    for e in evaluations {
        if !checks.contains(&e.check.as_str()) {
            checks.push(&e.check);
        }
    }
    let mut out = String::new();
    let _ = write!(out, "{:<22}", "time");
    for c in &checks {
        let _ = write!(out, " {c:<w$}", w = c.len().max(12));
    }
    out.push('\n');
    for row in evaluations.chunks(checks.len().max(1)) {
        let _ = write!(out, "{:<22}", format_time(row[0].time));
        for (e, c) in row.iter().zip(&checks) {
            let _ = write!(out, " {:<w$}", e.call, w = c.len().max(12));
        }
        out.push('\n');
    }
    out.push('\n');
    let mut stopped = None;
    for c in &checks {
        match evaluations
            .iter()
            .find(|e| e.check == *c && (e.call == "fired" || e.call == "fail"))
        {
            Some(e) => {
                let _ = writeln!(
                    out,
                    "{c}: first {} at {} (+{}s): {}",
                    e.call,
                    format_time(e.time),
                    (e.time - from).round(),
                    e.detail
                );
                if stopped.is_none_or(|(t, _)| e.time < t) {
                    stopped = Some((e.time, *c));
                }
            }
            None => {
                let _ = writeln!(out, "{c}: never fired or failed");
            }
        }
    }
    let _ = match stopped {
        Some((time, c)) => writeln!(
            out,
            "verdict: the plan would have stopped at {} (+{}s), by {c}",
            format_time(time),
            (time - from).round()
        ),
        None => writeln!(out, "verdict: the plan would not have stopped"),
    };
    out
}

/// Runs the command.
pub fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let plan = super::load_plan(args.plan.as_deref())?;
    let (from, to) = (unix(args.from), unix(args.to));
    let step = args
        .step
        .unwrap_or_else(|| Duration::from_secs_f64(((to - from) / 60.0).max(15.0)));
    let replay = Replay {
        plan: &plan,
        stage: args.stage.as_deref(),
        api: PrometheusApi::at_url(&args.prometheus_url),
        jobs: (args.canary_job.clone(), args.stable_job.clone()),
    };
    let evaluations = replay.run(from, to, step)?;
    println!(
        "replay of {} on {} from {} to {} every {}",
        args.stage
            .as_deref()
            .map_or("the rollback triggers".to_string(), |s| format!(
                "the rollback triggers and stage {s}'s gates"
            )),
        args.prometheus_url,
        format_time(from),
        format_time(to),
        humantime::format_duration(step)
    );
    print!("{}", render(&evaluations, from));
    Ok(())
}
