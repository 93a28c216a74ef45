//! `cargo xtask workflows run`: a workflow of `.github/workflows/` executed on this machine under
//! act (nektos/act) in host mode: every `runs-on` label runs on this machine, no Docker; the
//! actions that would come from github.com are replaced by the stand-ins in
//! `.github/stand-ins/`; artifacts move between jobs through the run's store in
//! `target/workflows/runs/<run>/artifacts/`; GitHub's REST API is the project's fake GitHub,
//! which protects the plan's environments as the plan says and approves each as a stand-in
//! reviewer named so. Nothing leaves the machine.

pub mod results;
pub mod source;

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::Context;
use xshell::{cmd, Shell};

use self::{
    results::{JobResult, LogLine, Results},
    source::WorkflowSource,
};
use crate::{
    github::fake::{FakeGitHub, FakeReview},
    project,
    stack::registry::LocalRegistry,
    tools,
};

/// Options of `cargo xtask workflows run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The workflow's file name in .github/workflows, without `.yml` (rollout, release, ci).
    workflow: String,
    /// The event that starts it [default: workflow_dispatch when the workflow has it, else its
    /// first event]
    #[arg(long, value_name = "EVENT")]
    event: Option<String>,
    /// The event's git ref, e.g. refs/tags/v2.0.0 [default: the checked-out branch]
    #[arg(long = "ref", value_name = "REF")]
    git_ref: Option<String>,
    /// A `workflow_dispatch` input (repeatable).
    #[arg(long = "input", value_name = "KEY=VALUE", value_parser = parse_pair)]
    inputs: Vec<(String, String)>,
    /// A repository or environment variable, `vars.KEY` (repeatable).
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_pair)]
    vars: Vec<(String, String)>,
    /// Run only this job (and the jobs it needs), as act's `--job`.
    #[arg(long, value_name = "JOB")]
    job: Option<String>,
    /// A secret, `secrets.KEY` (repeatable; GITHUB_TOKEN has a stand-in value already).
    #[arg(long = "secret", value_name = "KEY=VALUE", value_parser = parse_pair)]
    secrets: Vec<(String, String)>,
}

fn parse_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

/// Where the stand-ins live, relative to the workspace.
pub const STAND_INS: &str = ".github/stand-ins";

/// The runs' folders (artifacts, event, act's log), relative to the workspace.
pub const RUNS: &str = "target/workflows/runs";

/// How a run ended, job by job.
#[derive(Debug)]
pub struct RunOutcome {
    /// The run's id (its folder in [`RUNS`]).
    pub run_id: u64,
    /// Every job of the workflow, in the file's order.
    pub jobs: Vec<(String, JobResult)>,
    /// Whether act itself exited 0.
    pub act_succeeded: bool,
}

/// Runs `cargo xtask workflows run`: prints `<job>: succeeded|failed|skipped` per job and fails
/// when a job failed.
pub fn run(sh: &Shell, args: &RunArgs) -> anyhow::Result<()> {
    let outcome = execute(sh, args)?;
    println!("\nworkflow {} (run {}):", args.workflow, outcome.run_id);
    for (job, result) in &outcome.jobs {
        println!("{job}: {}", result.label());
    }
    let failed: Vec<&str> = outcome
        .jobs
        .iter()
        .filter(|(_, r)| *r == JobResult::Failed)
        .map(|(job, _)| job.as_str())
        .collect();
    anyhow::ensure!(
        failed.is_empty(),
        "{} failed (act's log: {}/{}/act.jsonl)",
        failed.join(", "),
        RUNS,
        outcome.run_id
    );
    anyhow::ensure!(
        outcome.act_succeeded,
        "act failed before any job failed (act's log: {}/{}/act.jsonl)",
        RUNS,
        outcome.run_id
    );
    Ok(())
}

/// Every action of the workflow mapped to its stand-in folder; an action without one is an
/// error, since act would fetch it from github.com.
fn stand_ins(root: &Path, source: &WorkflowSource) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for action in &source.actions {
        let name = action.split_once('@').map_or(action.as_str(), |(n, _)| n);
        let dir = root.join(STAND_INS).join(name);
        if dir.join("action.yml").is_file() {
            found.push((action.clone(), dir));
        } else {
            missing.push(action.as_str());
        }
    }
    anyhow::ensure!(
        missing.is_empty(),
        "no stand-in in {STAND_INS}/ for {}: act would fetch it from github.com; add a \
         composite action that does its job here",
        missing.join(", ")
    );
    Ok(found)
}

/// The event's payload (`act -e`). A pull request is one from `git_ref` at `head` into
/// `main` at the same commit (a workflow that benches its base gets the tree it runs on).
fn event_payload(
    event: &str,
    git_ref: &str,
    head: &str,
    inputs: &[(String, String)],
) -> serde_json::Value {
    let inputs: serde_json::Map<String, serde_json::Value> = inputs
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    match event {
        "workflow_dispatch" => serde_json::json!({ "ref": git_ref, "inputs": inputs }),
        "pull_request" => serde_json::json!({
            "ref": git_ref,
            "pull_request": {
                "number": 1,
                "head": { "ref": git_ref.trim_start_matches("refs/heads/"), "sha": head },
                "base": { "ref": "main", "sha": head },
            },
        }),
        _ => serde_json::json!({ "ref": git_ref }),
    }
}

/// Runs the workflow under act and gathers each job's result.
pub fn execute(sh: &Shell, args: &RunArgs) -> anyhow::Result<RunOutcome> {
    let root = project::root();
    let dir = root.join(".github").join("workflows");
    let file = dir.join(format!("{}.yml", args.workflow));
    anyhow::ensure!(
        file.is_file(),
        "no workflow {} (the workflows are the .yml files of {})",
        file.display(),
        dir.display()
    );
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let source = WorkflowSource::parse(&text).with_context(|| file.display().to_string())?;
    let event = match &args.event {
        Some(event) => event.clone(),
        None if source.events.iter().any(|e| e == "workflow_dispatch") => {
            "workflow_dispatch".to_owned()
        }
        None => source
            .events
            .first()
            .cloned()
            .with_context(|| format!("{} has no `on:` events", file.display()))?,
    };
    anyhow::ensure!(
        source.events.contains(&event),
        "{} does not run on {event} (it runs on {})",
        file.display(),
        source.events.join(", ")
    );
    anyhow::ensure!(
        args.inputs.is_empty() || event == "workflow_dispatch",
        "--input goes with the workflow_dispatch event"
    );
    source.check_inputs(&args.inputs)?;
    let stand_ins = stand_ins(&root, &source)?;
    let git_ref = match &args.git_ref {
        Some(r) => r.clone(),
        None => {
            let branch = cmd!(sh, "git rev-parse --abbrev-ref HEAD").quiet().read()?;
            format!("refs/heads/{}", branch.trim())
        }
    };
    let act = tools::act(sh)?;
    // The commit a pull request's payload names (none outside a git checkout).
    let head = cmd!(sh, "git rev-parse HEAD")
        .quiet()
        .ignore_stderr()
        .read()
        .map(|sha| sha.trim().to_owned())
        .unwrap_or_default();
    let host = crate::release::dist::host_target(sh)?;

    // Unique per run on this machine, and a number, as GitHub's run ids are.
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default();
    let run_dir = root.join(RUNS).join(run_id.to_string());
    let artifacts = run_dir.join("artifacts");
    std::fs::create_dir_all(&artifacts)
        .with_context(|| format!("creating {}", artifacts.display()))?;
    let event_file = run_dir.join("event.json");
    std::fs::write(
        &event_file,
        serde_json::to_vec_pretty(&event_payload(&event, &git_ref, &head, &args.inputs))?,
    )?;

    // The API the jobs read their approvals from and publish to: the fake, with the plan's
    // environments.
    let repository = repository();
    let github = FakeGitHub::serve(&repository);
    stand_in_environments(&github, &project::plan_path())?;
    // The registry a release pushes to, unless the caller names one.
    let mut vars = args.vars.clone();
    let wants_registry = text.contains(&format!("vars.{REGISTRY_VAR}"))
        && !vars.iter().any(|(k, _)| k == REGISTRY_VAR);
    let _registry = if wants_registry {
        let binary = tools::debian::ensure_program("docker-registry", "docker-registry")?;
        let registry = LocalRegistry::start(&binary, &run_dir.join("registry"), None)?;
        println!(
            "xtask: registry {} for the run's pushes (storage {}/{run_id}/registry)",
            registry.host(),
            RUNS
        );
        vars.push((REGISTRY_VAR.to_owned(), registry.host().to_owned()));
        Some(registry)
    } else {
        None
    };

    let mut command = Command::new(&act);
    command
        .current_dir(&root)
        .arg(&event)
        .arg("--workflows")
        .arg(&file)
        .arg("--eventpath")
        .arg(&event_file)
        .args(["--json", "--no-skip-checkout", "--actor", &actor()])
        .arg("--secret")
        .arg(format!("GITHUB_TOKEN={}", FakeGitHub::TOKEN));
    for label in &source.labels {
        command.args(["--platform", &format!("{label}=-self-hosted")]);
    }
    if let Some(job) = &args.job {
        anyhow::ensure!(
            source.jobs.contains(job),
            "{} has no job {job} (it has: {})",
            file.display(),
            source.jobs.join(", ")
        );
        command.args(["--job", job]);
    }
    // A matrix over Rust targets runs the host's leg only: the others need their own runners
    // (GitHub's arm runners), as there is no cross toolchain here.
    if source.matrix_targets.contains(&host) {
        command.args(["--matrix", &format!("target:{host}")]);
        let others: Vec<&str> = source
            .matrix_targets
            .iter()
            .filter(|t| **t != host)
            .map(String::as_str)
            .collect();
        if !others.is_empty() {
            println!(
                "xtask: the matrix legs of {} are left to their runners on GitHub; {host} runs here",
                others.join(", ")
            );
        }
    }
    for (action, dir) in &stand_ins {
        command
            .arg("--local-repository")
            .arg(format!("{action}={}", dir.display()));
    }
    let env = [
        ("AKIDB_STAND_IN_WORKSPACE", root.display().to_string()),
        ("AKIDB_STAND_IN_ARTIFACTS", artifacts.display().to_string()),
        ("GITHUB_RUN_ID", run_id.to_string()),
        (
            "GITHUB_REPOSITORY_OWNER",
            repository
                .split_once('/')
                .map_or(repository.as_str(), |(owner, _)| owner)
                .to_owned(),
        ),
        ("GITHUB_REPOSITORY", repository),
        ("AKIDB_GITHUB_API_URL", github.url()),
    ];
    for (key, value) in env {
        command.arg("--env").arg(format!("{key}={value}"));
    }
    for (key, value) in &args.inputs {
        command.arg("--input").arg(format!("{key}={value}"));
    }
    for (key, value) in &vars {
        command.arg("--var").arg(format!("{key}={value}"));
    }
    for (key, value) in &args.secrets {
        command.arg("--secret").arg(format!("{key}={value}"));
    }
    println!(
        "xtask: running {} on {event} ({git_ref}) under act, run {run_id}",
        file.display()
    );
    let (results, act_succeeded) = stream(command, &run_dir.join("act.jsonl"))?;
    let published = run_dir.join("github.json");
    std::fs::write(
        &published,
        serde_json::to_vec_pretty(&github_state(&github))?,
    )
    .with_context(|| format!("writing {}", published.display()))?;
    Ok(RunOutcome {
        run_id,
        jobs: results.of(&source.jobs),
        act_succeeded,
    })
}

/// The variable naming the registry a release pushes to (`vars.AKIDB_RELEASE_REGISTRY` in
/// release.yml; ghcr.io when unset).
pub const REGISTRY_VAR: &str = "AKIDB_RELEASE_REGISTRY";

/// What the jobs left on the fake GitHub: releases, their assets (name, size, sha256),
/// workflow dispatches and every request with its status; the run's `github.json`.
fn github_state(github: &FakeGitHub) -> serde_json::Value {
    use sha2::{Digest, Sha256};
    let assets: Vec<serde_json::Value> = github
        .assets()
        .iter()
        .map(|a| {
            serde_json::json!({
                "release": a.release,
                "name": a.name,
                "size": a.bytes.len(),
                "sha256": hex::encode(Sha256::digest(&a.bytes)),
            })
        })
        .collect();
    let dispatches: Vec<serde_json::Value> = github
        .dispatches()
        .into_iter()
        .map(|(workflow, payload)| serde_json::json!({"workflow": workflow, "payload": payload}))
        .collect();
    let requests: Vec<String> = github
        .seen()
        .iter()
        .map(|s| format!("{} {} {}", s.method, s.path, s.status))
        .collect();
    serde_json::json!({
        "releases": github.releases(),
        "assets": assets,
        "dispatches": dispatches,
        "requests": requests,
    })
}

/// The repository the run pretends to be in: the workspace's `repository` (`owner/name`).
fn repository() -> String {
    env!("CARGO_PKG_REPOSITORY")
        .trim_end_matches('/')
        .trim_start_matches("https://github.com/")
        .to_owned()
}

/// The reviewer the fake records for every environment, named as what it is.
pub const STAND_IN_REVIEWER: &str = "stand-in-reviewer";

/// Protects each environment of the plan at `plan` on the fake as the plan declares it, and
/// approves it for every run as [`STAND_IN_REVIEWER`].
fn stand_in_environments(github: &FakeGitHub, plan: &Path) -> anyhow::Result<()> {
    let plan = crate::rollout::load::load(plan)?;
    for name in plan.environment_names() {
        let declared = plan.environments.get(name);
        // An undeclared environment needs an approval: give it a stand-in team.
        let teams: Vec<String> = match declared {
            Some(env) => env.reviewers.iter().map(ToString::to_string).collect(),
            None => vec!["team:stand-in-reviewers".to_owned()],
        };
        // Users become teams of the same name here: the run only asks whether any reviewer
        // is required, and who approved.
        let teams: Vec<&str> = teams
            .iter()
            .map(|r| r.split_once(':').map_or(r.as_str(), |(_, name)| name))
            .collect();
        let branches: Vec<&str> = declared
            .map(|env| env.branches.iter().map(String::as_str).collect())
            .unwrap_or_default();
        let prevent = declared.is_none_or(|env| env.prevent_self_review);
        github.put_environment(name, &teams, prevent, &branches);
        github.review_every_run(FakeReview::new(
            name,
            "approved",
            STAND_IN_REVIEWER,
            "approved by the fake GitHub of `cargo xtask workflows run`",
        ));
    }
    Ok(())
}

/// Who the run is by: the git user, else the login.
fn actor() -> String {
    project::git_user()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "operator".to_owned())
}

/// Runs act, echoing its log as `[job] message`, keeping the JSON in `log`.
fn stream(mut command: Command, log: &Path) -> anyhow::Result<(Results, bool)> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {:?}", command.get_program()))?;
    let stderr = child.stderr.take().context("act's stderr")?;
    // act warns that it found no Docker; host mode needs none.
    let errors = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !line.contains("valid docker connection") {
                eprintln!("act: {line}");
            }
        }
    });
    let mut file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut results = Results::default();
    let stdout = child.stdout.take().context("act's stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading act's output")?;
        writeln!(file, "{line}")?;
        match LogLine::parse(&line) {
            Some(entry) => {
                results.observe(&entry);
                let job = entry.job_id.as_deref().unwrap_or("act");
                // A step's script is its name: its first line says enough.
                let msg = entry.msg.lines().next().unwrap_or_default().trim_end();
                // act says where each stand-in came from, twice per job and action.
                if !msg.is_empty() && !msg.starts_with("LocalRepositoryCache") {
                    println!("[{job}] {msg}");
                }
            }
            None => println!("{line}"),
        }
    }
    let status = child.wait().context("waiting for act")?;
    let _ = errors.join();
    Ok((results, status.success()))
}
