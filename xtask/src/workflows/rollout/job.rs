//! One stage job of `rollout.yml`: its environment, the settings check that fails it within
//! seconds, the state it takes from the job before and leaves for the next, and the runner's
//! command for its part of the stage.

use indexmap::IndexMap;

use super::super::model::{Job, JobStep};
use super::parts::{artifact, first_publish, job_id, last_job, minutes, steps_of, Part, Previous};
use super::{
    GenerateError, CREDENTIAL_LIMIT_MINUTES, HOSTED_LIMIT_MINUTES, MARGIN_MINUTES,
    SELF_HOSTED_LIMIT_MINUTES,
};
use crate::rollout::{
    plan::{step::Step as PlanStep, Plan, Stage},
    publish,
};

/// GitHub variables every stage job on a cluster needs (the kubernetes target's option of
/// the same name falls back to it).
pub const REQUIRED_VARIABLES: [&str; 3] = [
    "AKIDB_PROMETHEUS_URL",
    "AKIDB_CANARY_URL",
    "AKIDB_LEGACY_URL",
];

/// GitHub variables a stage job passes on when set (the target's defaults apply otherwise).
pub const OPTIONAL_VARIABLES: [&str; 9] = [
    "AKIDB_KUBE_CONTEXT",
    "AKIDB_KUBE_NAMESPACE",
    "AKIDB_CANARY_INGRESS",
    "AKIDB_CANARY_DEPLOYMENT",
    "AKIDB_LEGACY_DEPLOYMENT",
    "AKIDB_LEGACY_SELECTOR",
    "AKIDB_CANARY_JOB",
    "AKIDB_STABLE_JOB",
    "AKIDB_ROLLOUT_TIMEOUT",
];

pub(super) fn build(
    plan: &Plan,
    stage: &Stage,
    part: Part,
    previous: Previous<'_>,
    later: &[Stage],
) -> Result<Job, GenerateError> {
    let mut needs: Vec<String> = stage
        .needs
        .iter()
        .filter_map(|need| plan.stages().iter().find(|s| &s.id == need))
        .map(|need| last_job(plan, need))
        .collect();
    let previous_job = match previous {
        Previous::None => None,
        Previous::Stage(before) => Some(last_job(plan, before)),
        Previous::Part(same, part) => Some(job_id(same, part)),
    };
    if let Some(previous) = &previous_job {
        if !needs.contains(previous) {
            needs.push(previous.clone());
        }
    }
    // Skipped needs would skip this job too; `!cancelled() && !failure()` lets it run after
    // skipped ones and still stops it after a failed one.
    let mut condition = "!cancelled() && !failure()".to_owned();
    for stage in later {
        condition.push_str(&format!(" && inputs.stage != '{}'", stage.id));
    }
    let runs = steps_of(stage, part);
    let hold_minutes = minutes(plan, runs);
    if hold_minutes > SELF_HOSTED_LIMIT_MINUTES {
        return Err(GenerateError::TooLong {
            stage: stage.id.clone(),
            minutes: hold_minutes,
        });
    }
    let publishes = runs.iter().any(publish::publishes);
    if publishes && hold_minutes > CREDENTIAL_LIMIT_MINUTES {
        return Err(GenerateError::CredentialOutlived {
            stage: stage.id.clone(),
            minutes: hold_minutes,
        });
    }
    // A stage that only just fits gets less margin; a job cut off is resumed by re-running it.
    let minutes = hold_minutes
        .saturating_add(MARGIN_MINUTES)
        .min(SELF_HOSTED_LIMIT_MINUTES);
    let runs_on = if minutes <= HOSTED_LIMIT_MINUTES {
        "ubuntu-24.04"
    } else {
        "self-hosted"
    };
    let mut env = IndexMap::new();
    env.insert(
        "TARGET".to_owned(),
        "${{ inputs.target || 'kubernetes' }}".to_owned(),
    );
    env.insert(
        "TIME_SCALE".to_owned(),
        "${{ inputs.time_scale }}".to_owned(),
    );
    // The webhooks of `notify` steps and rollbacks: one secret, a JSON map of channel to URL.
    let webhooks = crate::rollout::notify::WEBHOOKS_MAP;
    env.insert(
        webhooks.to_owned(),
        format!("${{{{ secrets.{webhooks} }}}}"),
    );
    for name in REQUIRED_VARIABLES.iter().chain(&OPTIONAL_VARIABLES) {
        env.insert((*name).to_owned(), format!("${{{{ vars.{name} }}}}"));
    }

    let mut steps = vec![
        JobStep::run(
            "Inputs",
            "if [ -n \"$TIME_SCALE\" ] && [ \"$TARGET\" != local ]; then\n  \
             echo \"::error::time_scale speeds up the local target only (target is $TARGET)\"\n  \
             exit 1\nfi\n",
        ),
        JobStep::run("Cluster settings", &settings_check(stage))
            .when("env.TARGET == 'kubernetes'")
            .with_env(&[("KUBECONFIG_CONTENT", "${{ secrets.KUBECONFIG }}")]),
        JobStep::uses("Check out", "actions/checkout@v6", &[]),
        JobStep::uses("Rust", "dtolnay/rust-toolchain@stable", &[]),
        JobStep::uses(
            "Cargo cache",
            "actions/cache@v5",
            &[
                ("path", "~/.cargo/registry\n~/.cargo/git\ntarget\n"),
                (
                    "key",
                    "rollout-${{ runner.os }}-${{ hashFiles('Cargo.lock') }}",
                ),
            ],
        ),
        // Only the state handed over below counts, never one a cache or an old run left.
        JobStep::run("No stale state", "rm -rf target/rollout\n"),
    ];
    match previous {
        Previous::None => {}
        Previous::Part(same, before) => {
            steps.push(JobStep::uses(
                &format!("State after {}", job_id(same, before)),
                "actions/download-artifact@v7",
                &[
                    ("name", &artifact(same, before)),
                    ("path", "target/rollout"),
                ],
            ));
        }
        Previous::Stage(before) => {
            let name = artifact(before, Part::Whole);
            let id = &before.id;
            let job = last_job(plan, before);
            steps.push(
                JobStep::uses(
                    &format!("State after {id} (this run)"),
                    "actions/download-artifact@v7",
                    &[("name", &name), ("path", "target/rollout")],
                )
                .when(&format!("needs.{job}.result == 'success'")),
            );
            steps.push(
                JobStep::run(
                    "A continued rollout names its earlier run",
                    &format!(
                        "echo \"::error::starting at {} needs state_from_run: the id of the run that finished {id}\"\nexit 1\n",
                        stage.id
                    ),
                )
                .when(&format!(
                    "needs.{job}.result == 'skipped' && inputs.state_from_run == ''"
                )),
            );
            steps.push(
                JobStep::uses(
                    &format!("State after {id} (run ${{{{ inputs.state_from_run }}}})"),
                    "actions/download-artifact@v7",
                    &[
                        ("name", &name),
                        ("path", "target/rollout"),
                        ("run-id", "${{ inputs.state_from_run }}"),
                        ("github-token", "${{ github.token }}"),
                    ],
                )
                .when(&format!("needs.{job}.result == 'skipped'")),
            );
        }
    }
    steps.push(
        JobStep::run(
            "Cluster credentials",
            "mkdir -p ~/.kube\nprintf '%s' \"$KUBECONFIG_CONTENT\" > ~/.kube/config\nchmod 600 ~/.kube/config\n",
        )
        .when("env.TARGET == 'kubernetes'")
        .with_env(&[("KUBECONFIG_CONTENT", "${{ secrets.KUBECONFIG }}")]),
    );
    let id = &stage.id;
    // A job that tags, pushes the chart or pushes the image publishes for real on a cluster:
    // registry credentials from the workflow's token (fresh: the job's holds are shorter than
    // the token's life), and the image built here as an OCI archive.
    let mut run_env: Vec<(&str, &str)> = Vec::new();
    if runs.iter().any(|s| matches!(s, PlanStep::ImagePush(_))) {
        steps.push(
            JobStep::uses("Buildx", "docker/setup-buildx-action@v4", &[])
                .when("env.TARGET == 'kubernetes'"),
        );
        steps.push(
            JobStep::run(
                "Image as an OCI archive",
                "docker buildx build -f service/Dockerfile --output type=oci,dest=target/image.oci.tar .\n",
            )
            .when("env.TARGET == 'kubernetes'"),
        );
        run_env.push(("AKIDB_IMAGE_ARCHIVE", "target/image.oci.tar"));
    }
    if stage.environment.is_some() && !publishes {
        // GitHub starts this job only once the environment's reviewers approved it; the runner
        // reads who did through the API when the stage starts (a read: `actions: read`).
        run_env.push(("GITHUB_TOKEN", "${{ github.token }}"));
    }
    if publishes {
        run_env.extend([
            ("GITHUB_TOKEN", "${{ github.token }}"),
            ("AKIDB_REGISTRY_USERNAME", "${{ github.actor }}"),
            ("AKIDB_REGISTRY_PASSWORD", "${{ github.token }}"),
            ("GITHUB_REPOSITORY", "${{ github.repository }}"),
        ]);
    }
    let mode = match part {
        Part::BeforePublish => "set -- \"$@\" --stop-before-publish\n",
        _ if publishes => {
            "# The release steps publish from a cluster rollout only; a local one rehearses them.\n\
             if [ \"$TARGET\" = kubernetes ]; then set -- \"$@\" --publish; fi\n"
        }
        _ => "",
    };
    steps.push(
        JobStep::run(
            &format!("Run {}", job_id(stage, part)),
            &format!(
                "# A run continues from the state it was given; the first stage starts one.\n\
                 if [ -f target/rollout/state.json ]; then verb=resume; else verb=run; fi\n\
                 # Variables the environment does not set arrive empty: the defaults apply.\n\
                 for name in $(env | sed -n 's/^\\(AKIDB_[A-Z_]*\\)=$/\\1/p'); do unset \"$name\"; done\n\
                 set -- --target \"$TARGET\" --stage {id} --non-interactive\n\
                 if [ -n \"$TIME_SCALE\" ]; then set -- \"$@\" --time-scale \"$TIME_SCALE\"; fi\n\
                 {mode}\
                 cargo xtask rollout \"$verb\" \"$@\"\n"
            ),
        )
        .with_env(&run_env),
    );
    let check = match part {
        Part::BeforePublish => {
            let upto = first_publish(stage).unwrap_or(stage.steps.len());
            format!(
                "# The runner pauses before the release steps: every step before them must be done.\n\
                 jq -e --arg stage {id} --argjson upto {upto} \\\n  \
                 '[range(0; $upto)] - (.stages[$stage].done // []) == []' target/rollout/state.json >/dev/null \\\n  \
                 || {{ echo \"::error::stage {id} did not get to its release steps: $(jq -c .status target/rollout/state.json)\"; exit 1; }}\n"
            )
        }
        _ => format!(
            "# The runner also stops without an error when a stage pauses: only a finished stage\n\
             # lets the next job start.\n\
             jq -e --arg stage {id} '.stages[$stage].finished == true' target/rollout/state.json >/dev/null \\\n  \
             || {{ echo \"::error::stage {id} did not finish: $(jq -c .status target/rollout/state.json)\"; exit 1; }}\n"
        ),
    };
    let finished = match part {
        Part::BeforePublish => format!("Stage {id} reached its release steps"),
        _ => format!("Stage {id} finished"),
    };
    steps.push(JobStep::run(&finished, &check));
    steps.push(
        JobStep::run(
            "Report",
            "if [ -f target/rollout/report.md ]; then cat target/rollout/report.md >> \"$GITHUB_STEP_SUMMARY\"; fi\n",
        )
        .when("always()"),
    );
    steps.push(
        JobStep::uses(
            "Keep the state",
            "actions/upload-artifact@v6",
            &[
                ("name", &artifact(stage, part)),
                ("path", "target/rollout"),
                ("if-no-files-found", "ignore"),
                ("retention-days", "90"),
            ],
        )
        .when("always()"),
    );
    let name = match part {
        Part::Publish => format!("{id}: {} (release steps)", stage.name),
        _ => format!("{id}: {}", stage.name),
    };
    Ok(Job {
        name,
        needs,
        condition: Some(format!("${{{{ {condition} }}}}")),
        runs_on: runs_on.to_owned(),
        environment: stage.environment.clone(),
        timeout_minutes: minutes,
        env,
        steps,
    })
}

/// The script that fails a cluster job within seconds, before it changes anything, when its
/// environment lacks a setting, naming every missing one.
fn settings_check(stage: &Stage) -> String {
    let mut script = String::from(
        "missing=()\n[ -n \"$KUBECONFIG_CONTENT\" ] || missing+=(\"secret KUBECONFIG\")\n",
    );
    for name in REQUIRED_VARIABLES {
        script.push_str(&format!(
            "[ -n \"${name}\" ] || missing+=(\"variable {name}\")\n"
        ));
    }
    let environment = stage
        .environment
        .as_deref()
        .map_or("the repository".to_owned(), |e| format!("environment {e}"));
    script.push_str(&format!(
        "if [ ${{#missing[@]}} -gt 0 ]; then\n  \
         echo \"::error::{environment} lacks: ${{missing[*]}} (docs/RUNBOOK.md, GitHub section)\"\n  \
         exit 1\nfi\n"
    ));
    script
}
