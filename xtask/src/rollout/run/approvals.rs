//! Approvals: who let a stage with an environment go ahead, and how. Inside GitHub Actions
//! only the run's approvals on GitHub count (read through its API); on a machine, `--approve`,
//! `rollout approve`, the terminal's prompt or the plan's drill.

use super::*;
use crate::github::approvals::{self as github, Verdict, WorkflowRun};

impl Runner<'_> {
    /// Whether `stage` may start: `None` once approved (and recorded), else why not.
    pub(super) fn approval(
        &mut self,
        stage: &Stage,
        state: &mut RunState,
    ) -> anyhow::Result<Option<String>> {
        let Some(environment) = &stage.environment else {
            return Ok(None);
        };
        if state.approvals.contains_key(&stage.id) {
            return Ok(None);
        }
        let approval = match self.options.github.clone() {
            Some(run) => match self.github_verdict(&run, environment)? {
                Ok(approval) => approval,
                Err(why) => return Ok(Some(why)),
            },
            None => match self.local_approval(stage, environment)? {
                Some(approval) => approval,
                None => {
                    return Ok(Some(format!(
                        "stage {} waits for approval of environment `{environment}`: run `cargo \
                         xtask rollout approve {}` (or pass --approve {}), then `cargo xtask \
                         rollout resume`",
                        stage.id, stage.id, stage.id
                    )))
                }
            },
        };
        let detail = match &approval.comment {
            Some(comment) => format!("environment {environment} via {}: {comment}", approval.via),
            None => format!("environment {environment} via {}", approval.via),
        };
        let actor = approval.actor.clone();
        let via = approval.via.clone();
        state.approvals.insert(stage.id.clone(), approval);
        self.save(state)?;
        self.audit
            .record(&stage.id, "approve", "approved", &detail)?;
        self.observe(Event::Approval {
            stage: stage.id.clone(),
            actor,
            via,
        });
        Ok(None)
    }

    /// The approval given on this machine, if any.
    fn local_approval(
        &mut self,
        stage: &Stage,
        environment: &str,
    ) -> anyhow::Result<Option<Approval>> {
        let via = if self
            .options
            .approve
            .iter()
            .any(|a| a == &stage.id || a == "all")
        {
            Some("--approve")
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
        Ok(via.map(|via| Approval {
            actor: self.audit.actor().to_string(),
            via: via.to_string(),
            time: audit::now(),
            comment: None,
            reviews: Vec::new(),
        }))
    }

    /// GitHub's word on this run's deployment to `environment`: the approval with each
    /// reviewer, or why there is none.
    fn github_verdict(
        &mut self,
        run: &WorkflowRun,
        environment: &str,
    ) -> anyhow::Result<Result<Approval, String>> {
        let needs = self.plan.needs_approval(environment);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let verdict = runtime.block_on(github::verdict(run, environment, needs))?;
        Ok(match verdict {
            Verdict::Approved(reviews) => {
                let approvers: Vec<&str> = reviews
                    .iter()
                    .filter(|r| r.state == "approved")
                    .map(|r| r.login.as_str())
                    .collect();
                let comments: Vec<String> = reviews
                    .iter()
                    .filter_map(|r| r.comment.as_ref().map(|c| format!("{}: {c}", r.login)))
                    .collect();
                Ok(Approval {
                    actor: approvers.join(", "),
                    via: format!("GitHub review of run {}", run.run_id),
                    time: audit::now(),
                    comment: (!comments.is_empty()).then(|| comments.join("; ")),
                    reviews,
                })
            }
            Verdict::NotRequired => Ok(Approval {
                actor: self.audit.actor().to_string(),
                via: "the plan (no reviewers)".into(),
                time: audit::now(),
                comment: None,
                reviews: Vec::new(),
            }),
            Verdict::Refused(why) => Err(why),
        })
    }
}

/// Who approves at this machine: the git user (`user.name`), else the login.
fn approver() -> String {
    crate::project::git_user().unwrap_or_else(actor)
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
    anyhow::ensure!(
        std::env::var("GITHUB_ACTIONS").as_deref() != Ok("true"),
        "inside GitHub Actions a stage is approved by its environment's reviewers on GitHub, \
         never by `rollout approve`"
    );
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
            reviews: Vec::new(),
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
