//! When a generated rollout job uses credentials, read back from the workflow file: a GitHub
//! token lives 24 hours at most, so no step may use one (or the registry credentials made from
//! it) more than 20 hours after its job started. The plan's scaled holds say when each step
//! of a job runs at the latest.

use serde_yaml_ng::Value;

use super::rollout::{steps_of, Part};
use crate::rollout::plan::{step::Step as PlanStep, Plan};

/// Expressions that hand a step a time-bound credential.
const CREDENTIALS: [&str; 2] = ["github.token", "secrets.GITHUB_TOKEN"];

/// A job's latest use of a credential.
#[derive(Debug, PartialEq, Eq)]
pub struct CredentialUse {
    /// The job's id.
    pub job: String,
    /// The step that uses it last.
    pub step: String,
    /// Minutes after the job's start at the latest, from the plan's scaled holds.
    pub minutes: u32,
}

fn script_of(step: &Value) -> &str {
    step.get("run").and_then(Value::as_str).unwrap_or("")
}

/// Every job of `workflow` (the rollout workflow's YAML) that uses a credential, with when.
pub fn latest_uses(plan: &Plan, workflow: &str) -> Result<Vec<CredentialUse>, String> {
    let doc: Value = serde_yaml_ng::from_str(workflow).map_err(|e| e.to_string())?;
    let jobs = doc
        .get("jobs")
        .and_then(Value::as_mapping)
        .ok_or("no jobs")?;
    let mut uses = Vec::new();
    for (id, job) in jobs {
        let id = id.as_str().ok_or("a job id is not a string")?;
        let steps = job
            .get("steps")
            .and_then(Value::as_sequence)
            .ok_or_else(|| format!("job {id} has no steps"))?;
        let run_at = steps
            .iter()
            .position(|s| script_of(s).contains("cargo xtask rollout"))
            .ok_or_else(|| format!("job {id} runs no stage"))?;
        let script = script_of(&steps[run_at]);
        let stage_id = script
            .split("--stage ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .ok_or_else(|| format!("job {id}: no --stage in its run step"))?;
        let stage = plan
            .stages()
            .iter()
            .find(|s| s.id == stage_id)
            .ok_or_else(|| format!("job {id}: the plan has no stage {stage_id}"))?;
        let part = if script.contains("--stop-before-publish") {
            Part::BeforePublish
        } else if id == format!("{stage_id}-publish") {
            Part::Publish
        } else {
            Part::Whole
        };
        let hold: std::time::Duration = steps_of(stage, part).iter().map(PlanStep::hold).sum();
        let hold = u32::try_from(plan.scaled(hold).as_secs().div_ceil(60)).unwrap_or(u32::MAX);
        let holds_credential = |v: &Value| {
            let text = serde_yaml_ng::to_string(v).unwrap_or_default();
            CREDENTIALS.iter().any(|c| text.contains(c))
        };
        // A credential in the job's env is there for every step, the last one included.
        let job_wide = job.get("env").is_some_and(holds_credential);
        let last = steps
            .iter()
            .enumerate()
            .rfind(|(_, step)| job_wide || holds_credential(step));
        if let Some((at, step)) = last {
            // Steps before the stage's run start within minutes. The run itself reads the
            // approvals when the stage starts and publishes last: a run that does not publish
            // uses its token at once. After the run, the holds have passed.
            let publishes = steps_of(stage, part)
                .iter()
                .any(crate::rollout::publish::publishes);
            let minutes = if at < run_at || (at == run_at && !publishes) {
                0
            } else {
                hold
            };
            let name = step
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("(unnamed)");
            uses.push(CredentialUse {
                job: id.to_owned(),
                step: name.to_owned(),
                minutes,
            });
        }
    }
    Ok(uses)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workflows::rollout::CREDENTIAL_LIMIT_MINUTES;

    #[test]
    fn a_token_in_a_long_jobs_env_is_caught() {
        let root = crate::project::root();
        let plan = crate::rollout::load::load(&root.join("rollout/plan.yaml")).expect("plan");
        let text = std::fs::read_to_string(root.join(".github/workflows/rollout.yml"))
            .expect("rollout.yml");
        let mut doc: Value = serde_yaml_ng::from_str(&text).expect("YAML");
        let env = doc["jobs"]["week-4"]["env"]
            .as_mapping_mut()
            .expect("week-4 has env");
        env.insert("GITHUB_TOKEN".into(), "${{ github.token }}".into());
        let edited = serde_yaml_ng::to_string(&doc).expect("YAML");
        let uses = latest_uses(&plan, &edited).expect("reads");
        let week_4 = uses.iter().find(|u| u.job == "week-4").expect("caught");
        // 96 h of holds: the token would be used long after it expired.
        assert_eq!(week_4.minutes, 96 * 60, "{week_4:?}");
        assert!(week_4.minutes > CREDENTIAL_LIMIT_MINUTES);
    }

    #[test]
    fn no_job_of_the_committed_workflow_uses_a_credential_after_20_hours() {
        let root = crate::project::root();
        let plan = crate::rollout::load::load(&root.join("rollout/plan.yaml")).expect("plan");
        let text = std::fs::read_to_string(root.join(".github/workflows/rollout.yml"))
            .expect("rollout.yml");
        let uses = latest_uses(&plan, &text).expect("reads");
        // The GA stage publishes: its release steps run in a job of their own, minutes long,
        // while the 72 h of holds before them run in a job that holds no token.
        let publish = uses.iter().find(|u| u.job == "week-5-publish");
        assert!(publish.is_some_and(|u| u.minutes < 60), "{uses:?}");
        assert!(
            !uses.iter().any(|u| u.job == "week-5" && u.minutes > 0),
            "{uses:?}"
        );
        for use_ in &uses {
            assert!(
                use_.minutes <= CREDENTIAL_LIMIT_MINUTES,
                "{} uses a credential in `{}` up to {} minutes after its start",
                use_.job,
                use_.step,
                use_.minutes
            );
        }
    }
}
