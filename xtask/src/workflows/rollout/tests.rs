//! The generated workflow against the plans that exercise each rule.

use std::path::Path;

use super::super::model::{Job, JobStep};
use super::job::REQUIRED_VARIABLES;
use super::*;
use crate::rollout::load;

fn plan(text: &str) -> Plan {
    match load::parse(text, Path::new("plan.yaml")) {
        Ok(plan) => plan,
        Err(error) => panic!("{error}"),
    }
}

const TWO_STAGES: &str = "\
name: t
time_scale: 1.0
slos: { error_rate: 0.1%, p50: 20ms, p95: 35ms, p99: 50ms }
rollback:
  - name: errors
    urgency: immediate
    when:
      error_rate: { above: 1%, for: 5m }
stages:
  - id: prep
    name: Prep
    steps:
      - wait: { duration: 1h }
  - id: ramp
    name: Ramp
    needs: [prep]
    environment: canary
    promotion: true
    steps:
      - canary: { weight: 100 }
      - soak: { duration: 10h }
      - slo_check: { window: 10h, min_requests: 1000 }
";

#[test]
fn one_job_per_stage_in_order_with_needs_environment_and_approval() {
    let workflow = workflow(&plan(TWO_STAGES)).expect("generates");
    let ids: Vec<&String> = workflow.jobs.keys().collect();
    assert_eq!(ids, ["prep", "ramp"]);
    let ramp = &workflow.jobs["ramp"];
    assert_eq!(ramp.needs, ["prep"]);
    assert_eq!(ramp.environment.as_deref(), Some("canary"));
    // Nothing exported approves: the run step gets a token to read GitHub's approvals.
    fn run_step(job: &Job) -> &JobStep {
        job.steps
            .iter()
            .find(|s| {
                s.run
                    .as_deref()
                    .is_some_and(|r| r.contains("cargo xtask rollout"))
            })
            .expect("a run step")
    }
    assert!(
        ramp.env.keys().all(|k| !k.contains("APPROVED")),
        "{:?}",
        ramp.env
    );
    assert_eq!(run_step(ramp).env["GITHUB_TOKEN"], "${{ github.token }}");
    let prep = &workflow.jobs["prep"];
    assert!(prep.environment.is_none());
    assert!(!run_step(prep).env.contains_key("GITHUB_TOKEN"));
    let stage = &workflow.on.workflow_dispatch.inputs["stage"];
    assert_eq!(stage.options, ["prep", "ramp"]);
    // The state comes only from the stage before (this run or the named one), after any
    // cached copy is removed, and goes on as this stage's artifact.
    let names: Vec<&str> = ramp
        .steps
        .iter()
        .filter_map(|s| s.name.as_deref())
        .collect();
    let clean = names.iter().position(|n| *n == "No stale state");
    let download = names.iter().position(|n| n.starts_with("State after prep"));
    assert!(clean.is_some() && clean < download, "{names:?}");
    let upload = ramp
        .steps
        .iter()
        .find(|s| s.uses.as_deref() == Some("actions/upload-artifact@v6"));
    assert_eq!(
        upload.map(|s| s.with["name"].as_str()),
        Some("rollout-state-ramp")
    );
    let run = ramp
        .steps
        .iter()
        .filter_map(|s| s.run.as_deref())
        .find(|r| r.contains("cargo xtask rollout"));
    assert!(
        run.is_some_and(|r| r.contains("--target \"$TARGET\" --stage ramp --non-interactive")),
        "{run:?}"
    );
}

#[test]
fn a_stage_is_skipped_when_a_later_one_is_chosen() {
    let workflow = workflow(&plan(TWO_STAGES)).expect("generates");
    let prep = workflow.jobs["prep"].condition.as_deref().unwrap_or("");
    assert!(prep.contains("inputs.stage != 'ramp'"), "{prep}");
    let ramp = workflow.jobs["ramp"].condition.as_deref().unwrap_or("");
    assert!(!ramp.contains("inputs.stage"), "{ramp}");
}

#[test]
fn long_holds_go_to_self_hosted_runners() {
    let workflow = workflow(&plan(TWO_STAGES)).expect("generates");
    assert_eq!(workflow.jobs["prep"].runs_on, "ubuntu-24.04");
    assert_eq!(workflow.jobs["prep"].timeout_minutes, 60 + 60);
    assert_eq!(workflow.jobs["ramp"].runs_on, "self-hosted");
    let too_long = TWO_STAGES.replace("10h", "6d");
    assert!(matches!(
        workflow_of(&too_long),
        Err(GenerateError::TooLong { stage, .. }) if stage == "ramp"
    ));
}

fn workflow_of(text: &str) -> Result<Workflow, GenerateError> {
    workflow(&plan(text))
}

fn script<'a>(job: &'a Job, needle: &str) -> &'a JobStep {
    job.steps
        .iter()
        .find(|s| s.run.as_deref().is_some_and(|r| r.contains(needle)))
        .unwrap_or_else(|| panic!("{} has no step running {needle}", job.name))
}

#[test]
fn a_stage_that_publishes_after_long_holds_gets_a_fresh_job_for_its_release_steps() {
    let text = TWO_STAGES.replace(
            "      - slo_check: { window: 10h, min_requests: 1000 }\n",
            "      - slo_check: { window: 10h, min_requests: 1000 }\n      - soak: { duration: 11h }\n      - ga_tag: { tag: v2.0.0 }\n",
        );
    let workflow = workflow_of(&text).expect("generates");
    let ids: Vec<&String> = workflow.jobs.keys().collect();
    assert_eq!(ids, ["prep", "ramp", "ramp-publish"]);
    let holds = &workflow.jobs["ramp"];
    let run = script(holds, "cargo xtask rollout");
    assert!(run
        .run
        .as_deref()
        .is_some_and(|r| r.contains("--stop-before-publish")));
    // Only the token that reads the approvals as the stage starts; nothing that publishes
    // after 21 h of holds, and the credential check agrees (its use is at minute 0).
    assert_eq!(
        run.env.keys().collect::<Vec<_>>(),
        ["GITHUB_TOKEN"],
        "{:?}",
        run.env
    );
    let uses = super::super::credentials::latest_uses(
        &plan(&text),
        &render(&plan(&text)).expect("renders"),
    )
    .expect("reads back");
    let ramp_use = uses
        .iter()
        .find(|u| u.job == "ramp")
        .expect("ramp uses a token");
    assert_eq!(ramp_use.minutes, 0, "{uses:?}");
    let release = &workflow.jobs["ramp-publish"];
    assert_eq!(release.needs, ["prep", "ramp"]);
    assert_eq!(release.environment.as_deref(), Some("canary"));
    assert_eq!(
        release.timeout_minutes, 60,
        "no holds left, only the margin"
    );
    let run = script(release, "cargo xtask rollout");
    assert_eq!(run.env["GITHUB_TOKEN"], "${{ github.token }}");
    assert!(run.run.as_deref().is_some_and(|r| r.contains("--publish")));
    let download = release
        .steps
        .iter()
        .find(|s| s.uses.as_deref() == Some("actions/download-artifact@v7"));
    assert_eq!(
        download.map(|s| s.with["name"].as_str()),
        Some("rollout-state-ramp-before-publish")
    );
    // A short stage publishes in its own job.
    let short = TWO_STAGES.replace("10h", "1h").replace(
        "      - slo_check: { window: 1h, min_requests: 1000 }\n",
        "      - slo_check: { window: 1h, min_requests: 1000 }\n      - ga_tag: { tag: v2.0.0 }\n",
    );
    let workflow = workflow_of(&short).expect("generates");
    assert_eq!(workflow.jobs.keys().collect::<Vec<_>>(), ["prep", "ramp"]);
    let run = script(&workflow.jobs["ramp"], "cargo xtask rollout");
    assert_eq!(run.env["GITHUB_TOKEN"], "${{ github.token }}");
}

#[test]
fn long_holds_after_a_release_step_are_refused() {
    let text = TWO_STAGES
            .replace(
                "      - canary: { weight: 100 }\n",
                "      - canary: { weight: 100 }\n      - slo_check: { window: 1m, min_requests: 10 }\n      - ga_tag: { tag: v2.0.0 }\n",
            )
            .replace("soak: { duration: 10h }", "soak: { duration: 21h }");
    let error = workflow_of(&text).err().map(|e| e.to_string());
    assert!(
        error
            .as_deref()
            .is_some_and(|e| e.contains("stage `ramp`") && e.contains("release steps")),
        "{error:?}"
    );
}

#[test]
fn a_cluster_job_checks_its_settings_first_and_time_scale_is_for_the_local_target() {
    let workflow = workflow_of(TWO_STAGES).expect("generates");
    let inputs = &workflow.on.workflow_dispatch.inputs;
    assert_eq!(inputs["target"].options, ["kubernetes", "local"]);
    assert_eq!(inputs["target"].default.as_deref(), Some("kubernetes"));
    let ramp = &workflow.jobs["ramp"];
    assert_eq!(ramp.steps[0].name.as_deref(), Some("Inputs"));
    assert!(ramp.steps[0]
        .run
        .as_deref()
        .is_some_and(|r| r.contains("[ \"$TARGET\" != local ]")));
    let settings = &ramp.steps[1];
    assert_eq!(
        settings.condition.as_deref(),
        Some("env.TARGET == 'kubernetes'")
    );
    let check = settings.run.as_deref().unwrap_or("");
    for name in REQUIRED_VARIABLES {
        assert!(check.contains(&format!("variable {name}")), "{check}");
        assert_eq!(ramp.env[name], format!("${{{{ vars.{name} }}}}"));
    }
    assert!(check.contains("secret KUBECONFIG"), "{check}");
    assert!(check.contains("environment canary lacks"), "{check}");
}

#[test]
fn a_stage_id_that_cannot_be_a_job_id_is_refused() {
    let text = TWO_STAGES
        .replace("id: prep", "id: \"9 prep\"")
        .replace("needs: [prep]", "needs: [\"9 prep\"]");
    let error = workflow_of(&text).err().map(|e| e.to_string());
    assert_eq!(
        error.as_deref().map(|e| e.starts_with("stage id `9 prep`")),
        Some(true),
        "{error:?}"
    );
}

#[test]
fn renders_with_the_generated_header() {
    let text = render(&plan(TWO_STAGES)).expect("renders");
    assert!(text.starts_with("# GENERATED by `cargo xtask workflows`"));
    let back: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("YAML");
    assert_eq!(back["jobs"]["ramp"]["environment"].as_str(), Some("canary"));
}
