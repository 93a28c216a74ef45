//! `cargo xtask monitoring`, run as a user would.

use std::process::Command;

#[test]
fn the_committed_monitoring_files_are_what_the_plan_generates() {
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["monitoring", "--check"])
        .output()
        .expect("xtask runs");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_weekly_report_lists_the_window_s_gates_approvals_and_incidents() {
    let dir = tempfile::tempdir().expect("temp dir");
    let now = std::time::SystemTime::now();
    let line = |step: &str, result: &str, detail: &str| {
        format!(
            r#"{{"time":"{}","stage":"week-2","step":"{step}","actor":"ops","result":"{result}","detail":"{detail}"}}"#,
            humantime::format_rfc3339_millis(now)
        )
    };
    let old = r#"{"time":"2020-01-01T00:00:00.000Z","stage":"week-1","step":"approve","actor":"ops","result":"approved","detail":"long ago"}"#;
    let audit = [
        old.to_string(),
        line("approve", "approved", "environment canary-1"),
        line("canary#1", "ok", "canary weight 1%"),
        line("slo_check#4", "failed", "P95 52ms above 35ms"),
        line("rollback", "rolled_back", "all traffic on stable"),
    ]
    .join("\n");
    std::fs::write(dir.path().join("audit.jsonl"), audit).expect("audit log");
    let out = dir.path().join("week.md");
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["rollout", "report", "--since", "7d", "--state-dir"])
        .arg(dir.path())
        .arg("--out")
        .arg(&out)
        .env_remove("AKIDB_PROMETHEUS")
        .output()
        .expect("xtask runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = std::fs::read_to_string(&out).expect("report written");
    assert!(report.contains("canary weight 1%"), "{report}");
    assert!(report.contains("P95 52ms above 35ms"), "{report}");
    assert!(report.contains("environment canary-1"), "{report}");
    assert!(!report.contains("long ago"), "{report}");
}
