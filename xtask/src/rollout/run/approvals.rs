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

/// Records an approval for `stage` in an existing run (`cargo xtask rollout approve`).
pub fn approve(files: &RunFiles, plan: &Plan, stage: &str) -> anyhow::Result<()> {
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
    let audit = AuditLog::new(files.audit(), actor());
    state.approvals.insert(
        stage.to_string(),
        Approval {
            actor: actor(),
            via: "approve command".into(),
            time: audit::now(),
        },
    );
    state.save(&files.state())?;
    audit.record(
        stage,
        "approve",
        "approved",
        &format!(
            "environment {}",
            found.environment.as_deref().unwrap_or("(none)")
        ),
    )
}
