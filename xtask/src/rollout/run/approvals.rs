//! Approvals: who let a stage with an environment go ahead, and how.

use super::*;

/// Environments GitHub Actions has approved for this job (the rollout workflow sets
/// `AKIDB_ROLLOUT_APPROVED` to the job's environment, which GitHub only runs once approved).
fn ci_approved() -> Vec<String> {
    std::env::var("AKIDB_ROLLOUT_APPROVED")
        .map(|v| {
            v.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

impl Runner<'_> {
    pub(super) fn approved(&mut self, stage: &Stage, state: &mut RunState) -> anyhow::Result<bool> {
        let Some(environment) = &stage.environment else {
            return Ok(true);
        };
        if state.approvals.contains_key(&stage.id) {
            return Ok(true);
        }
        let via = if self
            .options
            .approve
            .iter()
            .any(|a| a == &stage.id || a == "all")
        {
            Some("--approve")
        } else if ci_approved().iter().any(|e| e == environment) {
            Some("CI environment")
        } else if !self.options.non_interactive && std::io::stdin().is_terminal() {
            use std::io::Write;
            print!(
                "Approve stage {} (environment `{environment}`)? [y/N] ",
                stage.id
            );
            std::io::stdout().flush()?;
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer)?;
            answer.trim().eq_ignore_ascii_case("y").then_some("prompt")
        } else if self.options.drill_approvals {
            Some("drill")
        } else {
            None
        };
        let Some(via) = via else {
            return Ok(false);
        };
        state.approvals.insert(
            stage.id.clone(),
            Approval {
                actor: self.audit.actor().to_string(),
                via: via.to_string(),
                time: audit::now(),
                comment: None,
            },
        );
        self.save(state)?;
        self.audit.record(
            &stage.id,
            "approve",
            "approved",
            &format!("environment {environment} via {via}"),
        )?;
        self.observe(Event::Approval {
            stage: stage.id.clone(),
            actor: self.audit.actor().into(),
            via: via.into(),
        });
        Ok(true)
    }
}

/// Who approves at this machine: the git user (`user.name`), else the login.
fn approver() -> String {
    std::process::Command::new("git")
        .args(["config", "user.name"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(actor)
}

/// Records an approval for `stage` in an existing run (`cargo xtask rollout approve`), with who
/// approved and what they said.
pub fn approve(
    files: &RunFiles,
    plan: &Plan,
    stage: &str,
    comment: Option<&str>,
) -> anyhow::Result<()> {
    let _lock = RunLock::acquire(&files.dir)?;
    let Some(found) = plan.stages().iter().find(|s| s.id == stage) else {
        bail!("the plan has no stage {stage}");
    };
    let Some(mut state) = RunState::load(&files.state())? else {
        bail!(
            "no run in {}: start one with `cargo xtask rollout run`",
            files.dir.display()
        );
    };
    let who = approver();
    let audit = AuditLog::new(files.audit(), who.clone());
    let comment = comment.map(str::trim).filter(|c| !c.is_empty());
    state.approvals.insert(
        stage.to_string(),
        Approval {
            actor: who,
            via: "approve command".into(),
            time: audit::now(),
            comment: comment.map(str::to_string),
        },
    );
    state.save(&files.state())?;
    let environment = found.environment.as_deref().unwrap_or("(none)");
    audit.record(
        stage,
        "approve",
        "approved",
        &match comment {
            Some(comment) => format!("environment {environment}: {comment}"),
            None => format!("environment {environment}"),
        },
    )
}
