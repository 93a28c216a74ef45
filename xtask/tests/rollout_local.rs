//! The whole rollout plan on the local target (real nginx, Prometheus, legacy stand-in and
//! Candle service): it completes with no failed request during the weight shifts, an injected
//! canary fault rolls back within a minute (at 10%, by the error-rate trigger, named), and a
//! killed run resumes without repeating steps.
//!
//! The whole plan is run as the README's first command, `cargo xtask rollout run`, exactly as
//! written (no flag, no terminal): the plan's drill on the local target.
//!
//! These runs take minutes, so they are ignored by `cargo test`; `cargo xtask ci` runs all
//! of them (`cargo test -p xtask --test rollout_local -- --ignored --test-threads 1`). They need
//! `cargo xtask models`, the `.venv` and `target/debug/akidb-embed`.
//!
//! The whole plan takes about 7 minutes at the drill's time scale, three of them at the 1%
//! stage: at 50 req/s the canary sees 0.5 req/s there, and its gates wait until the 100 requests
//! a P99 is judged on have come in (rollout/README.md, "How gates judge a sample").

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

const TIME_SCALE: &str = "0.0001";
const MAX_RATE: &str = "50";

fn xtask(state_dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.arg("rollout")
        .args(args)
        .arg("--state-dir")
        .arg(state_dir)
        .env("NO_COLOR", "1")
        // Inside a GitHub job the runner would take approvals from GitHub only.
        .env_remove("GITHUB_ACTIONS")
        .env(
            "AKIDB_EMBED_BIN",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/akidb-embed"),
        );
    cmd
}

fn run(state_dir: &Path, args: &[&str]) -> Output {
    let out = xtask(state_dir, args).output().expect("xtask runs");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn report(state_dir: &Path) -> Value {
    let text = std::fs::read_to_string(state_dir.join("report.json")).expect("report.json");
    serde_json::from_str(&text).unwrap()
}

fn audit(state_dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(state_dir.join("audit.jsonl"))
        .expect("audit.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn state_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/rollout-tests")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The README's first command, as its first shell block writes it.
fn readme_first_command() -> String {
    let readme = include_str!("../../README.md");
    let block = readme
        .split("```sh\n")
        .nth(1)
        .expect("the README has a shell block");
    let line = block.lines().next().expect("a first line");
    line.split('#').next().unwrap().trim().to_string()
}

#[test]
#[ignore = "about 7 minutes: run by `cargo xtask ci`, or by hand with --ignored"]
fn the_readme_first_command_drills_the_whole_plan_in_minutes_and_draws_its_report() {
    let command = readme_first_command();
    assert_eq!(
        command, "cargo xtask rollout run",
        "the README leads with another command"
    );
    let dir = state_dir("first-run");
    // `cargo xtask rollout run` is this binary's `rollout run`: no flag, no terminal. The state
    // folder and the prebuilt service come through the environment (the command stays as
    // written; under `cargo test` a nested `cargo build` would wait on the build lock).
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(command.split_whitespace().skip(2))
        .env("AKIDB_ROLLOUT_DIR", &dir)
        .env("NO_COLOR", "1")
        .env_remove("GITHUB_ACTIONS")
        .env(
            "AKIDB_EMBED_BIN",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/akidb-embed"),
        )
        .stdin(Stdio::null())
        .output()
        .expect("xtask runs");
    let took = started.elapsed();
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    println!("`{command}` took {:.1} s", took.as_secs_f64());
    assert!(out.status.success(), "the run failed: see its output above");
    assert!(
        took <= Duration::from_secs(600),
        "`{command}` took {took:?}, more than 10 minutes"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("drill of the whole plan"), "not a drill");

    let r = report(&dir);
    assert_eq!(r["status"]["status"], "completed", "{}", r["status"]);
    let mut failed = 0;
    for (id, stage) in r["stages"].as_object().unwrap() {
        failed += stage["traffic"]["failed"].as_u64().unwrap();
        let weight = stage["weight"].as_f64().unwrap();
        let split = &stage["after_shift"];
        if split.is_object() && weight >= 10.0 {
            let canary = split["canary"].as_f64().unwrap();
            let stable = split["stable"].as_f64().unwrap();
            let n = canary + stable;
            let share = 100.0 * canary / n;
            // nginx picks the canary at random per request: the share is binomial, and four
            // standard errors (±6.8 points at 50% over ~870 requests, ±2.9 at 10% over ~1,700)
            // leave a false alarm about once in 16,000 runs. At least 2 points: requests in
            // flight across the shift land on the old side (4 of 1,300 at 100%).
            let p = weight / 100.0;
            let tolerance = (400.0 * (p * (1.0 - p) / n).sqrt()).max(2.0);
            assert!(
                (share - weight).abs() <= tolerance,
                "{id}: observed share {share:.2}% at weight {weight}% (±{tolerance:.2} allowed)"
            );
        }
        // Notifications are recorded beside the gates (no webhook here: `logged_only`).
        let gates = stage["gates"].as_array().unwrap();
        for gate in gates.iter().filter(|g| g["kind"] != "notify") {
            assert_eq!(gate["verdict"], "pass", "{id}: {gate}");
        }
    }
    assert_eq!(
        failed, 0,
        "requests failed during the planned weight shifts"
    );
    let parity: Vec<_> = r["stages"]["week-1"]["gates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["kind"] == "parity")
        .collect();
    assert_eq!(parity.len(), 2);
    assert_eq!(r["weight"], 100);

    // Every approval was the drill's, and says so in the state and the audit log.
    let gated = include_str!("../../rollout/plan.yaml")
        .lines()
        .filter(|l| l.trim_start().starts_with("environment:"))
        .count();
    assert!(gated > 0);
    let approvals = r["approvals"].as_object().unwrap();
    assert_eq!(approvals.len(), gated, "{approvals:?}");
    for (stage, approval) in approvals {
        assert_eq!(approval["via"], "drill", "{stage}: {approval}");
    }
    let drilled = audit(&dir)
        .iter()
        .filter(|e| e["step"] == "approve" && e["detail"].as_str().unwrap().ends_with("via drill"))
        .count();
    assert_eq!(drilled, gated);

    // report.html: self-contained, six charts, and every stage marked on the time axis.
    let html = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
    assert!(html.starts_with("<!DOCTYPE html>"));
    for outside in ["<script", "<link", "@import", "url(", "src=\""] {
        assert!(
            !html.contains(outside),
            "report.html loads something: {outside}"
        );
    }
    let svgs: Vec<&str> = html
        .split("<svg")
        .skip(1)
        .map(|s| &s[..s.find("</svg>").expect("a closed svg")])
        .collect();
    assert_eq!(svgs.len(), 6, "six charts");
    for title in [
        "Traffic share",
        "Request rate",
        "Error rate",
        "Latency of the canary",
        "Latency of the stable",
        "memory",
    ] {
        assert!(svgs.iter().any(|s| s.contains(title)), "no chart `{title}`");
    }
    assert!(
        svgs[0].contains("polyline") || svgs[0].contains("<path"),
        "no line drawn"
    );
    for stage in r["stages"].as_object().unwrap().keys() {
        for svg in &svgs {
            assert!(
                svg.contains(stage.as_str()),
                "{stage} is not marked on every chart"
            );
        }
    }
    assert!(svgs[0].contains("approved by"), "approvals are not marked");
    let gates = html.matches("gate: ").count();
    let expected: usize = r["stages"]
        .as_object()
        .unwrap()
        .values()
        .map(|s| {
            let gates = s["gates"].as_array().unwrap();
            // The report's table also lists each notify's delivery; those are not verdicts.
            gates.iter().filter(|g| g["kind"] != "notify").count()
        })
        .sum();
    assert!(expected >= 13, "the drill judged only {expected} gates");
    assert_eq!(gates, expected, "every gate verdict is in the event list");
}

#[test]
#[ignore = "minutes long: run by cargo xtask ci"]
fn an_injected_canary_fault_rolls_back_to_stable_within_a_minute() {
    let dir = state_dir("fault");
    let args = [
        "run",
        "--approve",
        "all",
        "--time-scale",
        TIME_SCALE,
        "--max-rate",
        MAX_RATE,
        "--non-interactive",
        "--inject-fault",
        "week-2",
    ];
    let out = run(&dir, &args);
    assert_eq!(out.status.code(), Some(2), "a rolled-back run exits 2");
    let r = report(&dir);
    assert_eq!(r["status"]["status"], "rolled_back");
    assert_eq!(r["weight"], 0, "all traffic back on stable");
    let rollback = &r["rollback"];
    assert_eq!(rollback["stage"], "week-2");
    // The canary answers nothing once broken, so only the front door sees the failures.
    assert!(
        rollback["reason"].as_str().unwrap().contains("front door"),
        "{rollback}"
    );
    let recovery = rollback["recovery_seconds"].as_f64().unwrap();
    assert!(recovery < 60.0, "fault to 100% stable took {recovery:.1} s");
    assert!(
        rollback["failed_requests"].as_u64().unwrap() > 0,
        "the fault window's failures are counted"
    );
    assert!(std::fs::read_to_string(dir.join("report.md"))
        .unwrap()
        .contains("fault to 100% on stable"));
}

/// A plan of one 10% stage with rollout/plan.yaml's SLOs and rollback triggers, after a
/// week-1-like load test that starts the traffic.
fn ten_percent_plan(dir: &Path) -> PathBuf {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../rollout/plan.yaml"))
            .unwrap();
    let section = |from: &str, to: &str| {
        let start = text.find(from).unwrap();
        let end = text[start..].find(to).unwrap() + start;
        text[start..end].to_string()
    };
    let plan = format!(
        "name: trigger-drill\ntime_scale: 1.0\n{}{}\
         canary:\n  max_weight: 10\n\
         stages:\n  - id: ten\n    name: 10% canary\n    environment: canary-10\n\
         \x20   promotion: true\n    steps:\n      - load_test: {{rate: 50, duration: 48h}}\n\
         \x20     - canary: {{weight: 10}}\n      - soak: {{duration: 100h}}\n\
         \x20     - slo_check: {{window: 1h, min_requests: 100}}\n",
        section("\nslos:", "\ncanary:"),
        section("\nrollback:", "\nstages:"),
    );
    let path = dir.join("plan.yaml");
    std::fs::write(&path, plan).unwrap();
    path
}

#[test]
#[ignore = "minutes long: run by cargo xtask ci"]
fn a_canary_fault_at_10_percent_is_rolled_back_by_the_error_rate_trigger_by_name() {
    let dir = state_dir("trigger");
    let plan = ten_percent_plan(&dir);
    let args = [
        "run",
        "--plan",
        plan.to_str().unwrap(),
        "--approve",
        "all",
        "--time-scale",
        TIME_SCALE,
        "--max-rate",
        MAX_RATE,
        "--non-interactive",
        "--inject-fault",
        "ten",
    ];
    let out = run(&dir, &args);
    assert_eq!(out.status.code(), Some(2), "a rolled-back run exits 2");
    let r = report(&dir);
    assert_eq!(r["weight"], 0, "all traffic back on stable");
    let rollback = &r["rollback"];
    assert_eq!(rollback["stage"], "ten");
    // At 10% of 50 req/s the triggers see 5 canary requests a second: the immediate trigger
    // acts on its first evaluation, before the soak ends and its gate judges anything.
    let reason = rollback["reason"].as_str().unwrap();
    assert!(
        reason.contains("rollback trigger error-rate-critical (immediate"),
        "{rollback}"
    );
    let recovery = rollback["recovery_seconds"].as_f64().unwrap();
    assert!(recovery < 60.0, "fault to 100% stable took {recovery:.1} s");
    assert!(audit(&dir).iter().any(|e| e["step"] == "rollback"
        && e["detail"]
            .as_str()
            .is_some_and(|d| d.contains("error-rate-critical"))));
    assert!(std::fs::read_to_string(dir.join("report.md"))
        .unwrap()
        .contains("error-rate-critical"));
    // Week 1's kind of load test loaded and judged the candidate.
    let gates = r["stages"]["ten"]["gates"].as_array().unwrap();
    let load = gates.iter().find(|g| g["kind"] == "load_test").unwrap();
    assert!(
        load["detail"]
            .as_str()
            .unwrap()
            .starts_with("candidate (Candle"),
        "{load}"
    );
}

#[test]
#[ignore = "minutes long: run by cargo xtask ci"]
fn a_killed_run_resumes_without_repeating_finished_steps() {
    let dir = state_dir("resume");
    let args = [
        "--approve",
        "all",
        "--time-scale",
        TIME_SCALE,
        "--max-rate",
        MAX_RATE,
        "--non-interactive",
        "--stage",
        "week-1",
    ];
    let mut child = xtask(&dir, &[&["run"], &args[..]].concat())
        .spawn()
        .unwrap();
    // Kill it (no chance to clean up) once week 1 has finished its load test.
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        assert!(
            Instant::now() < deadline,
            "the run never got through week-1's first steps"
        );
        let done = std::fs::read_to_string(dir.join("state.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|s| s["stages"]["week-1"]["done"].as_array().map(|d| d.len()))
            .unwrap_or(0);
        if done >= 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // A new run is refused while this one is unfinished; resume continues it.
    let refused = run(&dir, &[&["run"], &args[..]].concat());
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("resume"));
    let out = run(&dir, &[&["resume"], &args[..]].concat());
    assert!(out.status.success(), "resume failed: see its output above");
    let r = report(&dir);
    assert_eq!(r["status"]["status"], "paused", "{}", r["status"]);
    assert!(r["stages"]["week-1"]["finished"].as_bool().unwrap());
    assert_eq!(r["weight"], 0);
    let mut seen = HashSet::new();
    for entry in audit(&dir) {
        if entry["result"] == "ok" && entry["stage"] != "" && entry["step"] != "stage" {
            let key = format!("{}/{}", entry["stage"], entry["step"]);
            assert!(seen.insert(key.clone()), "{key} ran twice");
        }
    }
    assert!(
        seen.contains("\"week-1\"/\"load_test#0\"") && seen.contains("\"week-1\"/\"parity#2\""),
        "{seen:?}"
    );
}
