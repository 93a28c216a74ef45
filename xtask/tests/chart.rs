//! `cargo xtask chart manifests`, run as a user would: the checked-in plain manifests in
//! rollout/k8s/ are the chart's canary Ingress at each weight.

use std::process::Command;

#[test]
fn checked_in_plain_manifests_match_the_chart() {
    let output = match Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["chart", "manifests"])
        .env("RUST_BACKTRACE", "0")
        .output()
    {
        Ok(output) => output,
        Err(error) => panic!("cannot run xtask: {error}"),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("rollout/k8s/ matches the chart"),
        "{stdout}"
    );
}
