//! Replay against a real Prometheus holding a recorded incident, backfilled with `promtool tsdb
//! create-blocks-from openmetrics`: forty minutes of both sides' series, the canary failing 3%
//! of its requests and slowing down from minute 20.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::Path,
    process::Command,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::replay::{render, Replay};
use crate::{
    project::free_port,
    rollout::load,
    stack::{
        programs::Tools,
        prometheus::{PrometheusApi, EMBED_ROUTE},
        supervisor::{Ledger, Supervised, STOP_GRACE},
    },
    tools::debian::ensure_program,
};

const PLAN: &str = r##"
name: replayed
slos: {error_rate: 0.5%, p50: 40ms, p95: 60ms, p99: 100ms}
canary: {max_weight: 10}
rollback:
  - name: error-rate-critical
    urgency: immediate
    when:
      error_rate: {above: 1%, for: 5m}
  - name: p95-latency-sustained
    urgency: planned
    when:
      p95_latency: {above: 100ms, for: 10m}
stages:
  - id: week-2
    name: Canary
    environment: canary-10
    promotion: true
    steps:
      - canary: {weight: 10}
      - slo_check:
          window: 10m
          min_requests: 1000
          compare: {p95_ratio: 1.2, p99_ratio: 1.3, error_rate_ratio: 2}
"##;

/// Latency buckets in seconds, as the services export them.
const LE: [&str; 8] = [
    "0.005", "0.01", "0.025", "0.035", "0.05", "0.075", "0.1", "+Inf",
];
/// Sample spacing of the recording.
const STEP: u64 = 15;
/// The recording's length, and when the incident starts, in seconds from its start.
const LENGTH: u64 = 40 * 60;
const INCIDENT: u64 = 20 * 60;

/// Per scrape interval: requests per bucket (non-cumulative) and errors, of one side at `t`.
fn traffic(canary: bool, t: u64) -> ([u64; 8], u64) {
    match (canary, t >= INCIDENT) {
        // Candle before the incident: fast, no errors.
        (true, false) => ([60, 80, 10, 0, 0, 0, 0, 0], 0),
        // Candle in the incident: most requests at 75-100 ms, 3% failing.
        (true, true) => ([0, 10, 10, 10, 10, 20, 90, 0], 5),
        // The legacy stand-in throughout: slow, healthy.
        (false, _) => ([0, 0, 60, 200, 40, 0, 0, 0], 0),
    }
}

/// The OpenMetrics text of the whole recording, starting at Unix second `start`.
fn recording(start: u64) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "# TYPE candle_requests counter");
    for (job, canary) in [("canary", true), ("stable", false)] {
        for status in ["200", "500"] {
            let mut total = 0;
            for t in (0..=LENGTH).step_by(STEP as usize) {
                let (buckets, errors) = traffic(canary, t);
                let answered: u64 = buckets.iter().sum();
                total += if status == "500" {
                    errors
                } else {
                    answered - errors
                };
                let _ = writeln!(
                    text,
                    "candle_requests_total{{job=\"{job}\",route=\"{EMBED_ROUTE}\",status=\"{status}\"}} {total} {}",
                    start + t
                );
            }
        }
    }
    let _ = writeln!(text, "# TYPE candle_request_duration_seconds histogram");
    for (job, canary) in [("canary", true), ("stable", false)] {
        let mut cumulative = [0u64; 8];
        let mut sum = 0.0;
        for t in (0..=LENGTH).step_by(STEP as usize) {
            let (buckets, _) = traffic(canary, t);
            let mut below = 0;
            for (i, count) in buckets.iter().enumerate() {
                below += count;
                cumulative[i] += below;
            }
            sum += buckets.iter().sum::<u64>() as f64 * 0.02;
            let labels = format!("job=\"{job}\",route=\"{EMBED_ROUTE}\"");
            for (i, le) in LE.iter().enumerate() {
                let _ = writeln!(
                    text,
                    "candle_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {} {}",
                    cumulative[i],
                    start + t
                );
            }
            let _ = writeln!(
                text,
                "candle_request_duration_seconds_count{{{labels}}} {} {}",
                cumulative[7],
                start + t
            );
            let _ = writeln!(
                text,
                "candle_request_duration_seconds_sum{{{labels}}} {sum} {}",
                start + t
            );
        }
    }
    text.push_str("# EOF\n");
    text
}

/// Backfills the recording into a TSDB under `dir` and serves it.
fn serve(dir: &Path, start: u64, ledger: &Ledger) -> (Supervised, PrometheusApi) {
    let promtool = ensure_program("promtool", "prometheus").expect("promtool installed");
    let tools = Tools::ensure().expect("prometheus installed");
    let file = dir.join("incident.om");
    std::fs::write(&file, recording(start)).expect("recording written");
    let data = dir.join("data");
    let output = Command::new(&promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&file)
        .arg(&data)
        .output()
        .expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 15s\n").expect("config written");
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port().expect("port")));
    let mut command = Command::new(&tools.prometheus);
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address={listen}"))
        .arg("--storage.tsdb.retention.time=30d")
        .arg("--log.level=warn");
    let mut process = Supervised::spawn("prometheus", command, &dir.join("prometheus.log"), ledger)
        .expect("prometheus starts");
    process
        .wait_for_http_ok(&format!("http://{listen}/-/ready"), Duration::from_secs(60))
        .expect("prometheus ready");
    (process, PrometheusApi::new(listen))
}

#[test]
fn replay_finds_when_the_plan_would_have_stopped_a_recorded_incident() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ledger = Ledger::new(dir.path().join("children"));
    // Four hours ago, on a whole minute: older than the head block, within retention.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let start = (now - 4 * 3600) / 60 * 60;
    let (mut process, api) = serve(dir.path(), start, &ledger);
    let plan = load::parse(PLAN, Path::new("replayed.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let replay = Replay {
        plan: &plan,
        stage: Some("week-2"),
        api,
        jobs: ("canary".into(), "stable".into()),
    };
    let from = (start + 5 * 60) as f64;
    let to = (start + LENGTH) as f64;
    let evaluations = replay.run(from, to, Duration::from_secs(60));
    process.terminate(STOP_GRACE).expect("prometheus stops");
    let evaluations = evaluations.expect("replayed");
    let text = render(&evaluations, from);
    let first = |check: &str, call: &str| {
        evaluations
            .iter()
            .find(|e| e.check == check && e.call == call)
            .map(|e| e.time - start as f64)
    };
    // The error-rate trigger fires within five minutes of the incident, never before it.
    let fired = first("trigger error-rate-critical", "fired").expect(&text);
    assert!(
        (INCIDENT as f64..=(INCIDENT + 300) as f64).contains(&fired),
        "fired {fired}s in:\n{text}"
    );
    // The latency trigger never fires: P95 stays under 100 ms.
    assert_eq!(
        first("trigger p95-latency-sustained", "fired"),
        None,
        "{text}"
    );
    // The gate passes (the canary far faster than the stand-in) before the incident. In it,
    // the comparison fails the gate at once, while every absolute SLO still holds (a few
    // errors and a slow tail, under the thresholds), and no later than the trigger fires.
    let passed = first("slo_check#1", "pass").expect(&text);
    assert!(passed < INCIDENT as f64, "{text}");
    let failed = evaluations
        .iter()
        .find(|e| e.check == "slo_check#1" && e.call == "fail")
        .expect(&text);
    let failed_at = failed.time - start as f64;
    assert!(
        (INCIDENT as f64..=fired).contains(&failed_at),
        "failed {failed_at}s:\n{text}"
    );
    assert!(
        failed
            .detail
            .contains("the canary is worse than the baseline allows"),
        "{}",
        failed.detail
    );
    println!("{text}");
    assert!(
        text.contains("verdict: the plan would have stopped at"),
        "{text}"
    );
}
