//! `cargo xtask workflows run`: the workflows of `.github/workflows/` executed here under act,
//! as a user runs them. The refusals take seconds; the whole rollout on the local target and the
//! release of a tag take minutes, so `cargo test` skips them and `cargo xtask ci` runs them
//! (`--ignored`, as `rollout_local`), the release after the image step has made its release
//! build. The bench gate of a pull request runs on demand (`-- --ignored the_pull_request`).

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Instant,
};

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// act runs one workflow at a time here: its host-mode folders are per job, not per run.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn workflows_run(args: &[&str]) -> Output {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["workflows", "run"])
        .args(args)
        .env("NO_COLOR", "1")
        .env("AKIDB_ROLLOUT_MAX_RATE", "50")
        .env("AKIDB_EMBED_BIN", root().join("target/debug/akidb-embed"))
        .output()
        .expect("xtask runs");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    println!(
        "workflows run {args:?}: {:.0} s",
        started.elapsed().as_secs_f64()
    );
    out
}

/// The `<job>: <result>` lines of the summary, in order.
fn results(out: &Output) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(&out.stdout);
    let summary = text.rsplit_once("\nworkflow ").map_or("", |(_, s)| s);
    summary
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(": "))
        .map(|(job, result)| (job.to_owned(), result.to_owned()))
        .collect()
}

fn run_dir(out: &Output) -> PathBuf {
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text
        .rsplit_once("(run ")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(id, _)| id.to_owned())
        .expect("the summary names the run");
    root().join("target/workflows/runs").join(id)
}

#[test]
fn time_scale_on_a_cluster_fails_the_first_job_and_skips_the_rest() {
    let out = workflows_run(&["rollout", "--input", "time_scale=0.5"]);
    assert!(!out.status.success());
    let results = results(&out);
    assert_eq!(
        results.first().map(|(j, r)| (j.as_str(), r.as_str())),
        Some(("week-1", "failed")),
        "{results:?}"
    );
    assert!(results.len() >= 6, "{results:?}");
    assert!(
        results[1..].iter().all(|(_, r)| r == "skipped"),
        "{results:?}"
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("time_scale speeds up the local target only"),
        "{said}"
    );
}

#[test]
fn a_cluster_job_without_its_settings_fails_naming_every_missing_one() {
    let out = workflows_run(&[
        "rollout",
        "--input",
        "target=kubernetes",
        "--var",
        "AKIDB_CANARY_URL=http://127.0.0.1:1",
    ]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(
            "lacks: secret KUBECONFIG variable AKIDB_PROMETHEUS_URL variable AKIDB_LEGACY_URL"
        ),
        "{said}"
    );
    // It failed before the checkout: nothing was built or changed.
    assert!(!said.contains("checkout (stand-in)"), "{said}");
    assert_eq!(results(&out)[0], ("week-1".to_owned(), "failed".to_owned()));
}

#[test]
fn unknown_inputs_and_workflows_are_refused_before_act_runs() {
    let out = workflows_run(&["rollout", "--input", "targett=local"]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("--input targett: the workflow has no such input"),
        "{said}"
    );
    let out = workflows_run(&["rollout", "--input", "target=moon"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not one of kubernetes, local"));
    let out = workflows_run(&["no-such-workflow"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no workflow"));
}

#[test]
#[ignore = "minutes long: the seven stage jobs on the local target; `cargo xtask ci` runs it"]
fn the_rollout_runs_its_stage_jobs_in_order_on_the_local_target_each_from_the_last_state() {
    let out = workflows_run(&[
        "rollout",
        "--input",
        "target=local",
        "--input",
        "time_scale=0.0001",
    ]);
    assert!(out.status.success(), "the run failed: see its output above");
    let results = results(&out);
    let expected = [
        "week-1",
        "week-2",
        "week-3",
        "week-4",
        "week-5",
        "week-5-publish",
        "week-6",
    ];
    let got: Vec<(&str, &str)> = results
        .iter()
        .map(|(j, r)| (j.as_str(), r.as_str()))
        .collect();
    let want: Vec<(&str, &str)> = expected.iter().map(|j| (*j, "succeeded")).collect();
    assert_eq!(got, want);
    // The last job's artifact: every stage finished, one run started and continued by each
    // later job, from the state the job before uploaded, no step run twice.
    let state_dir = run_dir(&out).join("artifacts/rollout-state-week-6");
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(state_dir.join("state.json")).expect("state.json"),
    )
    .expect("JSON");
    for stage in ["week-1", "week-2", "week-3", "week-4", "week-5", "week-6"] {
        assert_eq!(state["stages"][stage]["finished"], true, "{stage}: {state}");
    }
    assert_eq!(state["weight"], 100);
    let audit: Vec<Value> = std::fs::read_to_string(state_dir.join("audit.jsonl"))
        .expect("audit.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let count = |step: &str, result: &str| {
        audit
            .iter()
            .filter(|e| e["step"] == step && e["result"] == result)
            .count()
    };
    assert_eq!(count("run", "started"), 1);
    assert_eq!(count("resume", "started"), expected.len() - 1);
    // Each stage with an environment was approved by GitHub's record (the fake's stand-in
    // reviewer), read through the API: nothing else approves inside a job.
    for stage in ["week-2", "week-3", "week-4", "week-5", "week-6"] {
        let approval = &state["approvals"][stage];
        assert_eq!(
            approval["actor"], "stand-in-reviewer",
            "{stage}: {approval}"
        );
        assert_eq!(
            approval["reviews"][0]["state"], "approved",
            "{stage}: {approval}"
        );
    }
    let mut seen = std::collections::HashSet::new();
    for entry in &audit {
        if entry["result"] == "ok" && entry["stage"] != "" && entry["step"] != "stage" {
            let key = format!("{}/{}", entry["stage"], entry["step"]);
            assert!(seen.insert(key.clone()), "{key} ran twice");
        }
    }
}

/// The local registry `workflows run` pushes to, started again on the run's storage to read
/// back what the jobs pushed.
#[allow(dead_code)]
#[path = "../src/stack/registry.rs"]
mod registry;

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A program on PATH or in the sbin folders.
fn program(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed (the run installs it)"))
}

#[test]
#[ignore = "minutes long: a release build unless `cargo xtask container` made it; `cargo xtask ci` runs it after that"]
fn the_release_of_a_tag_publishes_the_archive_image_and_chart_through_the_projects_own_code() {
    let out = workflows_run(&["release", "--event", "push", "--ref", "refs/tags/v2.0.0"]);
    assert!(out.status.success(), "the run failed: see its output above");
    let got = results(&out);
    let want: Vec<(String, String)> = ["dist", "image", "chart", "release"]
        .iter()
        .map(|j| ((*j).to_owned(), "succeeded".to_owned()))
        .collect();
    assert_eq!(got, want);
    let run = run_dir(&out);

    // The GitHub release, as the fake holds it: the notes as its body, the host's archive with
    // its checksum and the sum of all, byte for byte what cargo-dist wrote and checked.
    let github: Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("github.json")).expect("github.json"),
    )
    .expect("JSON");
    let releases = github["releases"].as_array().expect("releases");
    assert_eq!(releases.len(), 1, "{github}");
    assert_eq!(releases[0]["tag_name"], "v2.0.0");
    let notes = std::fs::read_to_string(root().join("RELEASE_NOTES.md")).expect("notes");
    assert_eq!(releases[0]["body"], notes.as_str());
    let host = String::from_utf8_lossy(
        &Command::new("rustc")
            .arg("-vV")
            .output()
            .expect("rustc")
            .stdout,
    )
    .lines()
    .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
    .expect("host");
    let archive = format!("akidb-embed-{host}.tar.xz");
    let distrib = root().join("target/distrib");
    let asset = |name: &str| {
        github["assets"]
            .as_array()
            .expect("assets")
            .iter()
            .find(|a| a["name"] == name)
            .unwrap_or_else(|| panic!("no asset {name}: {github}"))
            .clone()
    };
    for name in [
        archive.clone(),
        format!("{archive}.sha256"),
        "sha256.sum".to_owned(),
    ] {
        let held = asset(&name);
        if name != "sha256.sum" {
            let local = std::fs::read(distrib.join(&name)).expect("the archive cargo-dist wrote");
            assert_eq!(held["sha256"], sha256_hex(&local), "{name}");
        }
    }
    let recorded = std::fs::read_to_string(distrib.join(format!("{archive}.sha256"))).unwrap();
    assert_eq!(
        recorded.split_whitespace().next(),
        asset(&archive)["sha256"].as_str(),
        "the archive matches its .sha256"
    );

    // The registry the run pushed to, read back with real clients.
    let registry =
        registry::LocalRegistry::start(&program("docker-registry"), &run.join("registry"), None)
            .expect("the run's registry starts again");
    let host = registry.host();
    let pulled = tempfile::tempdir().expect("temp dir");
    let helm = std::fs::read_dir(root().join(".cache/tools"))
        .expect(".cache/tools")
        .filter_map(|e| e.ok().map(|e| e.path().join("helm")))
        .find(|p| p.is_file())
        .expect("the chart job installed helm");
    let pull = Command::new(helm)
        .args(["pull", &format!("oci://{host}/akidb/charts/akidb-candle")])
        .args(["--version", "2.0.0", "--plain-http", "--destination"])
        .arg(pulled.path())
        .output()
        .expect("helm runs");
    assert!(
        pull.status.success(),
        "{}",
        String::from_utf8_lossy(&pull.stderr)
    );
    assert!(pulled.path().join("akidb-candle-2.0.0.tgz").is_file());
    let image = format!("{host}/akidb/embedding:v2.0.0");
    let pull = Command::new("podman")
        .args(["pull", "--quiet", "--tls-verify=false", &image])
        .output()
        .expect("podman runs");
    assert!(
        pull.status.success(),
        "{}",
        String::from_utf8_lossy(&pull.stderr)
    );
    let entrypoint = Command::new("podman")
        .args([
            "image",
            "inspect",
            "--format",
            "{{.Config.Entrypoint}}",
            &image,
        ])
        .output()
        .expect("podman runs");
    assert_eq!(
        String::from_utf8_lossy(&entrypoint.stdout).trim(),
        "[/akidb-embed]"
    );
    let _ = Command::new("podman")
        .args(["rmi", "--force", &image])
        .output();
}

/// Every gated same-run ratio of a bench report (`candle/ort` and `faster_than_legacy`), scaled.
fn scale_ratios(value: &mut Value, by: f64) -> usize {
    let mut scaled = 0;
    match value {
        Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                if matches!(
                    key.as_str(),
                    "ratio" | "faster_than_legacy" | "int8_over_f32"
                ) {
                    if let Some(x) = field.as_f64() {
                        *field = serde_json::json!(x * by);
                        scaled += 1;
                        continue;
                    }
                }
                scaled += scale_ratios(field, by);
            }
        }
        Value::Array(items) => {
            for item in items {
                scaled += scale_ratios(item, by);
            }
        }
        _ => {}
    }
    scaled
}

#[test]
#[ignore = "about 5 minutes: two quick engine benches; on demand, not in ci"]
fn the_pull_request_bench_gate_fails_a_head_whose_ratios_drop_30_percent() {
    // A quick engine bench of this tree, as the job would measure it, then a base whose gated
    // ratios are 30% higher: the job's gate (15%) must fail the head.
    let dir = tempfile::tempdir().expect("temp dir");
    let first = dir.path().join("first.json");
    let args = "--quick --profile dev --no-build --only engine";
    let bench = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("bench")
        .args(args.split(' '))
        .arg("--out")
        .arg(&first)
        .env("AKIDB_EMBED_BIN", root().join("target/debug/akidb-embed"))
        .output()
        .expect("xtask bench runs");
    assert!(
        bench.status.success(),
        "{}",
        String::from_utf8_lossy(&bench.stderr)
    );
    let mut base: Value =
        serde_json::from_str(&std::fs::read_to_string(&first).expect("report")).expect("JSON");
    assert!(
        scale_ratios(&mut base, 1.3) >= 3,
        "the engine section has its ratios"
    );
    let base_file = dir.path().join("base.json");
    std::fs::write(&base_file, serde_json::to_vec(&base).unwrap()).unwrap();

    let out = workflows_run(&[
        "ci",
        "--event",
        "pull_request",
        "--job",
        "bench",
        "--var",
        &format!("AKIDB_BENCH_BASE_REPORT={}", base_file.display()),
        "--var",
        &format!("AKIDB_BENCH_ARGS={args}"),
    ]);
    assert!(!out.status.success(), "the gate let a 30% drop through");
    let results = results(&out);
    assert!(
        results.iter().any(|(j, r)| j == "bench" && r == "failed"),
        "{results:?}"
    );
    assert!(
        results.iter().all(|(j, r)| j == "bench" || r == "skipped"),
        "only the bench job runs: {results:?}"
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("candle/ort") && said.contains("FAIL"),
        "{said}"
    );
}
