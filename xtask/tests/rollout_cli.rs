//! `cargo xtask rollout validate|plan|run`, run as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    match Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
    {
        Ok(output) => output,
        Err(error) => panic!("cannot run xtask: {error}"),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/rollout/testdata")
        .join(name)
}

#[test]
fn validate_accepts_the_checked_in_plan_and_summarises_it() {
    let output = xtask(&["rollout", "validate"]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(stdout.starts_with("OK "), "{stdout}");
    assert!(
        stdout.contains("0% -> 1% -> 10% -> 50% -> 100%"),
        "{stdout}"
    );
}

#[test]
fn validate_fails_with_file_and_line_of_each_broken_rule() {
    let plan = fixture("invalid/cycle-in-needs.yaml");
    let output = xtask(&["rollout", "validate", "--plan", &plan.display().to_string()]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("cycle-in-needs.yaml:12: `needs` form a cycle: a -> c -> b -> a"),
        "{stderr}"
    );
}

#[test]
fn validate_fails_with_file_line_and_column_of_a_schema_error() {
    let plan = fixture("invalid/unknown-step-kind.yaml");
    let output = xtask(&["rollout", "validate", "--plan", &plan.display().to_string()]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("unknown-step-kind.yaml:14:"), "{stderr}");
    assert!(
        stderr.contains("unknown variant `deploy_everywhere`"),
        "{stderr}"
    );
}

#[test]
fn plan_prints_a_dry_run_at_the_requested_time_scale() {
    let output = xtask(&["rollout", "plan", "--time-scale", "0.0001"]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(stdout.contains("Stage 2/6 `week-2`"), "{stdout}");
    assert!(
        stdout.contains("wait for approval of environment `production`"),
        "{stdout}"
    );
    assert!(stdout.contains("(runs as 25s 920ms)"), "{stdout}");
}

#[test]
fn plan_rejects_a_time_scale_of_zero() {
    let output = xtask(&["rollout", "plan", "--time-scale", "0"]);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("greater than zero"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn run_refuses_an_invalid_plan() {
    let plan = fixture("invalid/unknown-need.yaml");
    let output = xtask(&["rollout", "run", "--plan", &plan.display().to_string()]);
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("the rollout runner only runs a valid plan"));
}
