//! `cargo xtask workflows`, run as a user would: the committed rollout workflow is what the plan
//! generates, a stale one fails with a diff, and the real actionlint passes every workflow and
//! catches a broken one.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("xtask runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A copy of `.github/workflows/` to change.
fn copy_of_workflows() -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().expect("temp dir");
    let dir = temp.path().join("workflows");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for entry in std::fs::read_dir(root().join(".github/workflows")).expect("workflows") {
        let path = entry.expect("entry").path();
        if let Some(name) = path.file_name() {
            std::fs::copy(&path, dir.join(name)).expect("copy");
        }
    }
    (temp, dir)
}

#[test]
fn the_committed_rollout_workflow_is_current_and_every_workflow_lints_clean() {
    let output = xtask(&["workflows", "--check", "--lint"]);
    assert!(output.status.success(), "{}", text(&output));
    assert!(text(&output).contains("is up to date"), "{}", text(&output));
    assert!(
        text(&output).contains("workflows clean"),
        "{}",
        text(&output)
    );
}

#[test]
fn a_stale_rollout_workflow_fails_the_check_with_a_diff() {
    let (_temp, dir) = copy_of_workflows();
    let file = dir.join("rollout.yml");
    let committed = std::fs::read_to_string(&file).expect("rollout.yml");
    let edited = committed.replace("environment: canary-10", "environment: canary-ten");
    assert_ne!(
        edited, committed,
        "the plan's canary-10 stage is in the workflow"
    );
    std::fs::write(&file, edited).expect("write");
    let dir_text = dir.display().to_string();
    let output = xtask(&["workflows", "--check", "--dir", &dir_text]);
    assert!(!output.status.success());
    let said = text(&output);
    assert!(
        said.contains("differs from what the sources generate"),
        "{said}"
    );
    assert!(said.contains("run `cargo xtask workflows`"), "{said}");
    assert!(said.contains("-    environment: canary-ten"), "{said}");
    assert!(said.contains("+    environment: canary-10"), "{said}");

    // Regenerating fixes it.
    let regenerated = xtask(&["workflows", "--dir", &dir_text]);
    assert!(regenerated.status.success(), "{}", text(&regenerated));
    assert_eq!(
        std::fs::read_to_string(&file).expect("rollout.yml"),
        committed
    );
}

#[test]
fn actionlint_catches_a_broken_workflow() {
    let (_temp, dir) = copy_of_workflows();
    std::fs::write(
        dir.join("broken.yml"),
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ github.no_such_context }}\n        needs: y\n",
    )
    .expect("write");
    let dir_text = dir.display().to_string();
    let output = xtask(&["workflows", "--check", "--lint", "--dir", &dir_text]);
    assert!(!output.status.success());
    let said = text(&output);
    assert!(said.contains("broken.yml"), "{said}");
    assert!(said.contains("actionlint found problems"), "{said}");
}

/// release.yml publishes with the project's own code, the code the tests run against a local
/// registry and the fake GitHub: no `gh`, no docker push or login action, no `helm push`, no
/// downloaded tool pushes anything.
#[test]
fn the_release_workflow_publishes_through_cargo_xtask_only() {
    let text =
        std::fs::read_to_string(root().join(".github/workflows/release.yml")).expect("release.yml");
    let workflow: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("YAML");
    let steps = |job: &str| -> Vec<serde_yaml_ng::Value> {
        workflow["jobs"][job]["steps"]
            .as_sequence()
            .unwrap_or_else(|| panic!("job {job} has steps"))
            .clone()
    };
    let runs = |job: &str| -> String {
        steps(job)
            .iter()
            .filter_map(|s| s["run"].as_str().map(str::to_owned))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for (job, call) in [
        ("dist", "cargo xtask release dist"),
        ("image", "cargo xtask container archive"),
        ("image", "cargo xtask oci push-image"),
        ("chart", "cargo xtask oci push-chart"),
        ("release", "cargo xtask release publish"),
    ] {
        let script = runs(job);
        assert!(
            script.contains(call),
            "{job} does not call `{call}`:\n{script}"
        );
        for foreign in [
            "gh release",
            "helm push",
            "helm registry",
            "curl ",
            "docker push",
            "docker buildx",
            "dist build",
        ] {
            // The arm runners' cargo-dist installer is the one download left (the pinned PyPI
            // build is x86-64 only).
            if job == "dist" && foreign == "curl " {
                continue;
            }
            assert!(
                !script.contains(foreign),
                "{job} runs `{foreign}`:\n{script}"
            );
        }
        for step in steps(job) {
            let uses = step["uses"].as_str().unwrap_or_default();
            assert!(
                !uses.starts_with("docker/login-action")
                    && !uses.starts_with("docker/build-push-action"),
                "{job} pushes through {uses}"
            );
        }
    }
}
