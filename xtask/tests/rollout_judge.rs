//! `cargo xtask rollout judge` on sample files, run as a user would: each statistic beside its
//! threshold, the verdict, and exit 0 (pass), 1 (fail), 3 (inconclusive), 2 (unusable input).

use std::path::Path;
use std::process::{Command, Output};

fn judge(dir: &Path, baseline: &str, canary: &str, extra: &[&str]) -> Output {
    let (b, c) = (dir.join("baseline.json"), dir.join("canary.json"));
    std::fs::write(&b, baseline).expect("baseline written");
    std::fs::write(&c, canary).expect("canary written");
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["rollout", "judge", "--baseline"])
        .arg(&b)
        .arg("--canary")
        .arg(&c)
        .args(extra)
        .output()
        .expect("xtask runs")
}

/// `n` latencies spread over `[lo, lo + 10)` ms, times `scale`, as a sample file.
fn sample(n: usize, scale: f64, errors: u64) -> String {
    let latencies: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "{:.3}",
                (10.0 + ((i * 7919) % n) as f64 * 10.0 / n as f64) * scale
            )
        })
        .collect();
    format!(
        r#"{{"latency_ms": [{}], "requests": {n}, "errors": {errors}}}"#,
        latencies.join(", ")
    )
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_faster_canary_passes_with_the_plans_thresholds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = judge(
        dir.path(),
        &sample(1000, 3.0, 1),
        &sample(1000, 1.0, 0),
        &["--stage", "week-4"],
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    // The checked-in plan's week-4 gates: P95 within 3x, errors within 2x.
    assert!(shown.contains("P95 ratio <= 3"), "{shown}");
    assert!(shown.contains("P95 ratio "), "{shown}");
    assert!(shown.contains("error rate ratio"), "{shown}");
    assert!(shown.trim_end().ends_with("verdict: pass"), "{shown}");
}

#[test]
fn a_slower_canary_fails_and_flags_override_the_plan() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = judge(
        dir.path(),
        &sample(1000, 1.0, 0),
        &sample(1000, 2.0, 0),
        &["--p95-ratio", "1.2"],
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("<= 1.2"), "{shown}");
    assert!(shown.trim_end().ends_with("verdict: fail"), "{shown}");
}

#[test]
fn an_empty_or_tiny_baseline_is_inconclusive_and_bad_input_is_an_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let empty = r#"{"latency_ms": [], "requests": 0, "errors": 0}"#;
    let out = judge(dir.path(), empty, &sample(1000, 1.0, 0), &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("verdict: inconclusive"));
    let out = judge(dir.path(), &sample(10, 1.0, 0), &sample(10, 1.0, 0), &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let out = judge(
        dir.path(),
        "{\"latency_ms\": [1, 2]}",
        &sample(10, 1.0, 0),
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not a sample file"), "{}", text(&out));
    let out = judge(
        dir.path(),
        &sample(1000, 1.0, 0),
        &sample(1000, 1.0, 0),
        &["--p95-ratio", "0.5"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("p95_ratio"), "{}", text(&out));
}
