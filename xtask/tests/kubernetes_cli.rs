//! `cargo xtask rollout run --target kubernetes`, run as a user would, against the fake API
//! server (found through `KUBECONFIG`, as kubectl finds a cluster).

#[allow(dead_code)]
#[path = "../src/rollout/targets/kubernetes/fake_apiserver.rs"]
mod fake_apiserver;

use std::{
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use fake_apiserver::FakeApiServer;
use serde_json::json;

const NS: &str = "production";

/// A kubeconfig in `dir` whose only context is the fake.
fn kubeconfig(fake: &FakeApiServer, dir: &Path) -> std::path::PathBuf {
    let kubeconfig = dir.join("kubeconfig");
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
         users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n\
         \x20   user: fake\n    namespace: {NS}\ncurrent-context: fake\n",
        fake.url()
    );
    std::fs::write(&kubeconfig, config).expect("kubeconfig");
    kubeconfig
}

/// Runs xtask with a kubeconfig whose only context is the fake, a home without one, and the
/// optional settings set but empty.
fn xtask(fake: &FakeApiServer, dir: &Path, args: &[&str]) -> Output {
    let kubeconfig = kubeconfig(fake, dir);
    match Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", dir)
        .env_remove("KUBERNETES_SERVICE_HOST")
        // Inside a GitHub job the runner would take approvals from GitHub only.
        .env_remove("GITHUB_ACTIONS")
        .env("AKIDB_ROLLOUT_DIR", dir.join("rollout"))
        .env("RUST_BACKTRACE", "0")
        // As a GitHub job exports repository variables nobody set: empty. They must leave the
        // flags' defaults in force (an empty duration would not even parse).
        .env("AKIDB_ROLLOUT_TIMEOUT", "")
        .env("AKIDB_KUBE_NAMESPACE", "")
        .env("AKIDB_CANARY_JOB", "")
        .output()
    {
        Ok(output) => output,
        Err(error) => panic!("cannot run xtask: {error}"),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn kind_plan() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../rollout/testdata/kind/plan.yaml")
        .display()
        .to_string()
}

fn cluster() -> FakeApiServer {
    let fake = FakeApiServer::start(Duration::from_millis(200)).expect("fake API server");
    fake.insert(
        NS,
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": "akidb-candle-canary",
                "annotations": {
                    "nginx.ingress.kubernetes.io/canary": "true",
                    "nginx.ingress.kubernetes.io/canary-weight": "0"
                }
            }
        }),
    );
    fake.insert(
        NS,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": "akidb-candle" },
            "spec": { "replicas": 1 }
        }),
    );
    fake
}

#[test]
fn a_plan_of_cluster_steps_runs_through_the_kubeconfig_cluster() {
    let fake = cluster();
    let dir = tempfile::tempdir().expect("temp dir");
    let plan = dir.path().join("plan.yaml");
    std::fs::write(
        &plan,
        "name: scale-only\nstages:\n  - id: prepare\n    name: Pre-scale\n    steps:\n      \
         - scale:\n          deployment: akidb-candle\n          replicas: 3\n",
    )
    .expect("plan");
    let plan = plan.display().to_string();
    let output = xtask(
        &fake,
        dir.path(),
        &["rollout", "run", "--target", "kubernetes", "--plan", &plan],
    );
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(
        stdout.contains("akidb-candle: 3/3 replicas ready"),
        "{stdout}"
    );
    let deployment = fake
        .object(NS, "deployments", "akidb-candle")
        .expect("deployment");
    assert_eq!(deployment["status"]["readyReplicas"], 3);
    // The runner restores the recorded split (0% for a new run) before the first stage.
    let ingress = fake
        .object(NS, "ingresses", "akidb-candle-canary")
        .expect("ingress");
    assert_eq!(
        ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"],
        "0"
    );
    assert!(fake.received().iter().any(|r| r.method == "PATCH"));
}

#[test]
fn a_dry_run_prints_the_kind_plans_calls_and_sends_none() {
    let fake = cluster();
    let dir = tempfile::tempdir().expect("temp dir");
    let plan = kind_plan();
    let output = xtask(
        &fake,
        dir.path(),
        &[
            "rollout",
            "run",
            "--target",
            "kubernetes",
            "--dry-run",
            "--plan",
            &plan,
        ],
    );
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    for weight in ["10", "100"] {
        let patch = format!(
            r#"(application/merge-patch+json) {{"metadata":{{"annotations":{{"nginx.ingress.kubernetes.io/canary":"true","nginx.ingress.kubernetes.io/canary-weight":"{weight}"}}}}}}"#
        );
        assert!(stdout.contains(&patch), "{patch} in {stdout}");
    }
    assert!(
        stdout.contains("DELETE /apis/apps/v1/namespaces/production/deployments/akidb-mlx"),
        "{stdout}"
    );
    assert!(stdout.contains("candle_requests_total"), "{stdout}");
    assert!(stdout.contains("API calls printed, none made"), "{stdout}");
    assert!(fake.received().is_empty(), "{:?}", fake.received());
    assert!(!dir.path().join("rollout/state.json").exists());
}

#[test]
fn fault_injection_is_refused_before_the_cluster_is_touched() {
    let fake = cluster();
    let dir = tempfile::tempdir().expect("temp dir");
    let plan = kind_plan();
    let output = xtask(
        &fake,
        dir.path(),
        &[
            "rollout",
            "run",
            "--target",
            "kubernetes",
            "--plan",
            &plan,
            "--inject-fault",
            "canary-10",
        ],
    );
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("--inject-fault breaks the canary on purpose"),
        "{}",
        text(&output.stderr)
    );
    assert!(fake.received().is_empty());
}

#[test]
fn the_plans_local_drill_never_applies_to_a_cluster() {
    let fake = cluster();
    let dir = tempfile::tempdir().expect("temp dir");
    let plan = dir.path().join("plan.yaml");
    std::fs::write(
        &plan,
        "name: drilled\ndrill:\n  target: local\n  time_scale: 0.001\n  max_rate: 5\n  \
         approvals: drill\nstages:\n  - id: prepare\n    name: Pre-scale\n    environment: \
         production\n    steps:\n      - scale:\n          deployment: akidb-candle\n          \
         replicas: 3\n",
    )
    .expect("plan");
    let plan = plan.display().to_string();
    // No terminal (output() gives none), no flags: on the local target the drill would approve.
    let output = xtask(
        &fake,
        dir.path(),
        &["rollout", "run", "--target", "kubernetes", "--plan", &plan],
    );
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(3),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(!stdout.contains("drill of the whole plan"), "{stdout}");
    assert!(stdout.contains("waits for approval"), "{stdout}");
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("rollout/state.json")).expect("state"),
    )
    .expect("state json");
    assert_eq!(state["time_scale"], 1.0, "the plan's own time scale");
    assert_eq!(state["approvals"], json!({}));
    let deployment = fake
        .object(NS, "deployments", "akidb-candle")
        .expect("deployment");
    assert_eq!(deployment["spec"]["replicas"], 1, "nothing ran unapproved");
}

/// The prompt a person at a terminal answers: `y` approves (recorded as `prompt`, with who) and
/// the stage runs; anything else leaves the run paused with nothing changed. Stdin is a
/// pseudo-terminal, as an operator's shell gives.
#[test]
fn the_approval_prompt_on_a_terminal_approves_on_y_and_pauses_otherwise() {
    use std::{io::Write, process::Stdio};

    for (answer, approved) in [("y\n", true), ("no\n", false)] {
        let fake = cluster();
        let dir = tempfile::tempdir().expect("temp dir");
        let plan = dir.path().join("plan.yaml");
        std::fs::write(
            &plan,
            "name: prompted\nstages:\n  - id: prepare\n    name: Pre-scale\n    environment: \
             production\n    steps:\n      - scale:\n          deployment: akidb-candle\n          \
             replicas: 3\n",
        )
        .expect("plan");
        let pty = nix::pty::openpty(None, None).expect("a pseudo-terminal");
        let mut master = std::fs::File::from(pty.master);
        // The line waits in the terminal until the prompt reads it.
        master
            .write_all(answer.as_bytes())
            .expect("type the answer");
        let plan = plan.display().to_string();
        let kubeconfig = kubeconfig(&fake, dir.path());
        let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["rollout", "run", "--target", "kubernetes", "--plan", &plan])
            .env("KUBECONFIG", &kubeconfig)
            .env("HOME", dir.path())
            .env("AKIDB_ROLLOUT_DIR", dir.path().join("rollout"))
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("GITHUB_ACTIONS")
            .stdin(Stdio::from(pty.slave))
            .output()
            .expect("run xtask");
        let stdout = text(&output.stdout);
        assert!(
            stdout.contains("Approve stage prepare (environment `production`)? [y/N]"),
            "{stdout}"
        );
        let state: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("rollout/state.json")).expect("state"),
        )
        .expect("state json");
        let replicas = fake
            .object(NS, "deployments", "akidb-candle")
            .expect("deployment")["spec"]["replicas"]
            .clone();
        if approved {
            assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
            assert_eq!(state["approvals"]["prepare"]["via"], "prompt");
            assert!(state["approvals"]["prepare"]["actor"]
                .as_str()
                .is_some_and(|a| !a.is_empty()));
            assert_eq!(replicas, 3);
        } else {
            assert_eq!(output.status.code(), Some(3), "{stdout}");
            assert_eq!(state["approvals"], json!({}));
            assert_eq!(replicas, 1, "nothing ran unapproved");
        }
    }
}
