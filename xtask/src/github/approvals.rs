//! Who approved a workflow run's deployment to an environment, as GitHub recorded it
//! (`GET /repos/{owner}/{repo}/actions/runs/{run_id}/approvals`). On GitHub this is the only
//! approval the runner counts: a variable anyone can export approves nothing.

use octocrab::Octocrab;
use serde::{Deserialize, Serialize};

use super::{environments, GitHubError, Repository};

/// The run the runner is part of, from the variables GitHub Actions sets.
#[derive(Clone, Debug)]
pub struct WorkflowRun {
    /// The API's base URL (`AKIDB_GITHUB_API_URL`, else `GITHUB_API_URL`).
    pub api_url: String,
    /// `GITHUB_REPOSITORY`.
    pub repository: Repository,
    /// `GITHUB_RUN_ID`.
    pub run_id: u64,
    /// `GITHUB_TOKEN`: read access to the repository's actions suffices. Only a stage with
    /// an environment needs it (the rollout workflow gives it to those jobs only).
    pub token: Option<String>,
}

impl WorkflowRun {
    /// The run this process belongs to when it runs inside GitHub Actions (`GITHUB_ACTIONS` is
    /// `true`, as under act too); `None` elsewhere. Inside a job, a missing repository or run
    /// id is an error: without them no approval can be checked.
    pub fn from_env() -> Result<Option<WorkflowRun>, GitHubError> {
        if std::env::var("GITHUB_ACTIONS").as_deref() != Ok("true") {
            return Ok(None);
        }
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let missing = |name: &str| {
            GitHubError::Repository(format!(
                "{name} is not set: inside GitHub Actions the runner reads the run's approvals \
                 from GitHub and needs GITHUB_REPOSITORY and GITHUB_RUN_ID"
            ))
        };
        let repository = var("GITHUB_REPOSITORY")
            .ok_or_else(|| missing("GITHUB_REPOSITORY"))?
            .parse()?;
        let run_id = var("GITHUB_RUN_ID")
            .ok_or_else(|| missing("GITHUB_RUN_ID"))?
            .parse()
            .map_err(|_| GitHubError::Repository("GITHUB_RUN_ID is not a number".into()))?;
        let token = var("GITHUB_TOKEN");
        let api_url = super::api_url_from_env();
        Ok(Some(WorkflowRun {
            api_url,
            repository,
            run_id,
            token,
        }))
    }
}

/// One review of a run's deployment, as the API returns it.
#[derive(Clone, Debug, Deserialize)]
struct ApiReview {
    environments: Vec<ApiEnvironment>,
    state: String,
    user: ApiUser,
    #[serde(default)]
    comment: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
struct ApiEnvironment {
    name: String,
}

#[derive(Clone, Debug, Deserialize)]
struct ApiUser {
    login: String,
}

/// A reviewer's decision on one environment, kept in the run's state and the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// The reviewer's login.
    pub login: String,
    /// `approved` or `rejected`, as GitHub says.
    pub state: String,
    /// What they wrote, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// What GitHub says of a run's deployment to one environment.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Approved, by these reviews (every review of the environment, in GitHub's order).
    Approved(Vec<Review>),
    /// The plan declares the environment without reviewers: nobody needs to approve.
    NotRequired,
    /// Not approved, with why, in words for the log.
    Refused(String),
}

/// Reads the run's reviews of `environment` and decides. `needs_approval` is the plan's word;
/// when it wants reviewers, the environment on GitHub must require some, or whatever GitHub
/// "approved" was nobody's decision.
pub async fn verdict(
    run: &WorkflowRun,
    environment: &str,
    needs_approval: bool,
) -> Result<Verdict, GitHubError> {
    if !needs_approval {
        return Ok(Verdict::NotRequired);
    }
    let token = run.token.clone().ok_or_else(|| {
        GitHubError::Repository(format!(
            "GITHUB_TOKEN is not set: reading the approvals of environment `{environment}` needs \
             the job's token (`actions: read`)"
        ))
    })?;
    let client = super::client(&run.api_url, token)?;
    let protection = environments::read(&client, &run.repository, environment).await?;
    if protection.is_none_or(|p| p.reviewers.is_empty()) {
        return Ok(Verdict::Refused(format!(
            "environment `{environment}` of {} has no required reviewers on GitHub, so nobody \
             approved this job: run `cargo xtask workflows environments --apply`, or declare it \
             with `reviewers: []` in the plan when its stages need no approval",
            run.repository
        )));
    }
    let reviews = reviews(&client, run, environment).await?;
    Ok(decide(environment, run.run_id, reviews))
}

/// The run's reviews of `environment`.
async fn reviews(
    client: &Octocrab,
    run: &WorkflowRun,
    environment: &str,
) -> Result<Vec<Review>, GitHubError> {
    let Repository { owner, name } = &run.repository;
    let route = format!(
        "/repos/{owner}/{name}/actions/runs/{}/approvals",
        run.run_id
    );
    let all: Vec<ApiReview> =
        client
            .get(&route, None::<&()>)
            .await
            .map_err(|source| GitHubError::Api {
                what: format!("reading the approvals of run {}", run.run_id),
                source,
            })?;
    Ok(all
        .into_iter()
        .filter(|review| review.environments.iter().any(|e| e.name == environment))
        .map(|review| Review {
            login: review.user.login,
            state: review.state,
            comment: review.comment.filter(|c| !c.trim().is_empty()),
        })
        .collect())
}

/// A rejection wins over any approval; otherwise one approval suffices, as on GitHub.
fn decide(environment: &str, run_id: u64, reviews: Vec<Review>) -> Verdict {
    if let Some(rejected) = reviews.iter().find(|r| r.state == "rejected") {
        return Verdict::Refused(format!(
            "{} rejected the deployment of run {run_id} to `{environment}`{}",
            rejected.login,
            rejected
                .comment
                .as_deref()
                .map(|c| format!(": {c}"))
                .unwrap_or_default()
        ));
    }
    if reviews.iter().any(|r| r.state == "approved") {
        return Verdict::Approved(reviews);
    }
    Verdict::Refused(format!(
        "GitHub has no approval of run {run_id}'s deployment to `{environment}`"
    ))
}

#[cfg(test)]
mod tests {
    use super::super::fake::{FakeGitHub, FakeReview};
    use super::*;

    fn run(fake: &FakeGitHub) -> WorkflowRun {
        WorkflowRun {
            api_url: fake.url(),
            repository: "akidb/akidb".parse().unwrap(),
            run_id: 4242,
            token: Some(FakeGitHub::TOKEN.into()),
        }
    }

    fn protected(fake: &FakeGitHub, environment: &str) {
        fake.put_environment(environment, &["release-managers"], true, &["main"]);
    }

    fn verdict_of(fake: &FakeGitHub, environment: &str, needs: bool) -> Verdict {
        let run = run(fake);
        fake.block_on(async { verdict(&run, environment, needs).await.unwrap() })
    }

    #[test]
    fn an_approval_on_github_is_counted_with_every_reviewer_and_comment() {
        let fake = FakeGitHub::start();
        protected(&fake, "canary-10");
        fake.review(
            4242,
            FakeReview::new("canary-10", "approved", "reviewer-a", "dashboards clean"),
        );
        fake.review(
            4242,
            FakeReview::new("canary-10", "approved", "reviewer-b", ""),
        );
        fake.review(
            4242,
            FakeReview::new("canary-1", "rejected", "reviewer-c", "other stage"),
        );
        fake.review(
            7,
            FakeReview::new("canary-10", "rejected", "reviewer-c", "other run"),
        );
        let Verdict::Approved(reviews) = verdict_of(&fake, "canary-10", true) else {
            panic!("not approved");
        };
        assert_eq!(
            reviews,
            [
                Review {
                    login: "reviewer-a".into(),
                    state: "approved".into(),
                    comment: Some("dashboards clean".into()),
                },
                Review {
                    login: "reviewer-b".into(),
                    state: "approved".into(),
                    comment: None,
                },
            ]
        );
        assert!(fake
            .requests()
            .iter()
            .any(|r| r == "GET /repos/akidb/akidb/actions/runs/4242/approvals"));
    }

    #[test]
    fn no_review_or_a_rejection_approves_nothing() {
        let fake = FakeGitHub::start();
        protected(&fake, "production");
        let Verdict::Refused(why) = verdict_of(&fake, "production", true) else {
            panic!("approved without a review");
        };
        assert!(why.contains("no approval of run 4242"), "{why}");
        fake.review(
            4242,
            FakeReview::new("production", "approved", "reviewer-a", ""),
        );
        fake.review(
            4242,
            FakeReview::new("production", "rejected", "reviewer-b", "error budget spent"),
        );
        let Verdict::Refused(why) = verdict_of(&fake, "production", true) else {
            panic!("a rejection was overruled");
        };
        assert!(
            why.contains("reviewer-b rejected") && why.contains("error budget spent"),
            "{why}"
        );
    }

    #[test]
    fn an_environment_github_does_not_protect_fails_unless_the_plan_needs_no_approval() {
        let fake = FakeGitHub::start();
        // Approved on paper, but the environment requires nobody: GitHub ran the job unasked.
        fake.put_environment("canary-1", &[], false, &[]);
        fake.review(
            4242,
            FakeReview::new("canary-1", "approved", "reviewer-a", ""),
        );
        let Verdict::Refused(why) = verdict_of(&fake, "canary-1", true) else {
            panic!("an unprotected environment approved a stage");
        };
        assert!(why.contains("no required reviewers"), "{why}");
        let Verdict::Refused(why) = verdict_of(&fake, "missing", true) else {
            panic!("a missing environment approved a stage");
        };
        assert!(why.contains("workflows environments --apply"), "{why}");
        assert_eq!(verdict_of(&fake, "canary-1", false), Verdict::NotRequired);
    }

    #[test]
    fn a_wrong_token_is_githubs_error_not_a_refusal() {
        let fake = FakeGitHub::start();
        protected(&fake, "canary-1");
        let mut run = run(&fake);
        run.token = Some("wrong".into());
        let error = fake
            .block_on(async { verdict(&run, "canary-1", true).await })
            .unwrap_err();
        assert!(error.to_string().contains("401"), "{error}");
        run.token = None;
        let error = fake
            .block_on(async { verdict(&run, "canary-1", true).await })
            .unwrap_err();
        assert!(
            error.to_string().contains("GITHUB_TOKEN is not set"),
            "{error}"
        );
    }
}
