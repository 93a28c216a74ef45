//! A repository's deployment environments: how GitHub protects one (required reviewers,
//! self-review, deployment branches), how that differs from what the plan declares, and the
//! requests that make GitHub match (`cargo xtask workflows environments [--apply]`).

use std::collections::BTreeSet;

use octocrab::Octocrab;
use serde::Deserialize;
use serde_json::json;

use super::{status, GitHubError, Repository};
use crate::rollout::plan::environment::{Environment, Reviewer};

/// How GitHub protects one environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Protection {
    /// The required reviewers; empty: nobody has to approve.
    pub reviewers: BTreeSet<Reviewer>,
    /// Whether the person who started a run may not approve it.
    pub prevent_self_review: bool,
    /// The branch name patterns allowed to deploy; `None`: any branch.
    pub branches: Option<BTreeSet<String>>,
}

impl Protection {
    /// What the plan's declaration asks of GitHub.
    pub fn wanted(environment: &Environment) -> Protection {
        Protection {
            reviewers: environment.reviewers.iter().cloned().collect(),
            prevent_self_review: environment.prevent_self_review && environment.needs_approval(),
            branches: (!environment.branches.is_empty())
                .then(|| environment.branches.iter().cloned().collect()),
        }
    }

    /// Each way `self` (GitHub's) falls short of `wanted`, in words; empty when they agree.
    pub fn differences(&self, wanted: &Protection) -> Vec<String> {
        let mut out = Vec::new();
        if self.reviewers != wanted.reviewers {
            out.push(format!(
                "required reviewers: GitHub has {}, the plan wants {}",
                listed(&self.reviewers),
                listed(&wanted.reviewers)
            ));
        }
        if self.prevent_self_review != wanted.prevent_self_review {
            out.push(format!(
                "prevent self-review: GitHub has {}, the plan wants {}",
                self.prevent_self_review, wanted.prevent_self_review
            ));
        }
        if self.branches != wanted.branches {
            let show = |b: &Option<BTreeSet<String>>| match b {
                None => "any branch".to_owned(),
                Some(set) => listed(set),
            };
            out.push(format!(
                "deployment branches: GitHub has {}, the plan wants {}",
                show(&self.branches),
                show(&wanted.branches)
            ));
        }
        out
    }
}

fn listed<T: std::fmt::Display>(items: &BTreeSet<T>) -> String {
    if items.is_empty() {
        return "none".to_owned();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Deserialize)]
struct ApiEnvironment {
    #[serde(default)]
    protection_rules: Vec<ApiRule>,
    #[serde(default)]
    deployment_branch_policy: Option<ApiBranchPolicy>,
}

#[derive(Deserialize)]
struct ApiRule {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    prevent_self_review: bool,
    #[serde(default)]
    reviewers: Vec<ApiReviewer>,
}

#[derive(Deserialize)]
struct ApiReviewer {
    #[serde(rename = "type")]
    kind: String,
    reviewer: ApiAccount,
}

#[derive(Deserialize)]
struct ApiAccount {
    #[serde(default)]
    login: Option<String>,
    #[serde(default)]
    slug: Option<String>,
}

#[derive(Deserialize)]
struct ApiBranchPolicy {
    protected_branches: bool,
    custom_branch_policies: bool,
}

#[derive(Deserialize)]
struct ApiBranchPolicies {
    branch_policies: Vec<ApiNamedPolicy>,
}

#[derive(Deserialize)]
struct ApiNamedPolicy {
    id: u64,
    name: String,
}

fn api_error(what: String) -> impl FnOnce(octocrab::Error) -> GitHubError {
    move |source| GitHubError::Api { what, source }
}

/// How GitHub protects `environment`; `None` when the repository has no such environment.
pub async fn read(
    client: &Octocrab,
    repository: &Repository,
    environment: &str,
) -> Result<Option<Protection>, GitHubError> {
    let Repository { owner, name } = repository;
    let route = format!("/repos/{owner}/{name}/environments/{environment}");
    let found: ApiEnvironment = match client.get(&route, None::<&()>).await {
        Ok(found) => found,
        Err(error) if status(&error) == Some(404) => return Ok(None),
        Err(source) => {
            return Err(GitHubError::Api {
                what: format!("reading environment `{environment}` of {repository}"),
                source,
            })
        }
    };
    let mut protection = Protection {
        reviewers: BTreeSet::new(),
        prevent_self_review: false,
        branches: None,
    };
    for rule in found
        .protection_rules
        .iter()
        .filter(|r| r.kind == "required_reviewers")
    {
        protection.prevent_self_review = rule.prevent_self_review;
        for entry in &rule.reviewers {
            let reviewer = match (entry.kind.as_str(), &entry.reviewer) {
                (
                    "Team",
                    ApiAccount {
                        slug: Some(slug), ..
                    },
                ) => Reviewer::Team(slug.clone()),
                (
                    _,
                    ApiAccount {
                        login: Some(login), ..
                    },
                ) => Reviewer::User(login.clone()),
                _ => continue,
            };
            protection.reviewers.insert(reviewer);
        }
    }
    protection.branches = match found.deployment_branch_policy {
        None => None,
        Some(policy) if policy.custom_branch_policies => Some(
            branch_policies(client, repository, environment)
                .await?
                .into_iter()
                .map(|p| p.name)
                .collect(),
        ),
        // Protected branches only: not a set of names the plan can state.
        Some(policy) if policy.protected_branches => {
            Some(BTreeSet::from(["(protected branches)".to_owned()]))
        }
        Some(_) => None,
    };
    Ok(Some(protection))
}

async fn branch_policies(
    client: &Octocrab,
    repository: &Repository,
    environment: &str,
) -> Result<Vec<ApiNamedPolicy>, GitHubError> {
    let Repository { owner, name } = repository;
    let route =
        format!("/repos/{owner}/{name}/environments/{environment}/deployment-branch-policies");
    let page: ApiBranchPolicies = client
        .get(&route, Some(&[("per_page", "100")]))
        .await
        .map_err(api_error(format!(
            "reading the deployment branches of `{environment}` in {repository}"
        )))?;
    Ok(page.branch_policies)
}

/// The numeric id GitHub gives `reviewer` (what the environment API takes).
async fn reviewer_id(
    client: &Octocrab,
    repository: &Repository,
    reviewer: &Reviewer,
) -> Result<(&'static str, u64), GitHubError> {
    #[derive(Deserialize)]
    struct Id {
        id: u64,
    }
    let (kind, route) = match reviewer {
        Reviewer::User(login) => ("User", format!("/users/{login}")),
        Reviewer::Team(slug) => ("Team", format!("/orgs/{}/teams/{slug}", repository.owner)),
    };
    let found: Id = client
        .get(&route, None::<&()>)
        .await
        .map_err(api_error(format!("looking up reviewer {reviewer}")))?;
    Ok((kind, found.id))
}

/// Creates or updates `environment` so that GitHub protects it as `wanted` says: reviewers,
/// self-review, and exactly the wanted deployment branches.
pub async fn apply(
    client: &Octocrab,
    repository: &Repository,
    environment: &str,
    wanted: &Protection,
) -> Result<(), GitHubError> {
    let mut reviewers = Vec::new();
    for reviewer in &wanted.reviewers {
        let (kind, id) = reviewer_id(client, repository, reviewer).await?;
        reviewers.push(json!({"type": kind, "id": id}));
    }
    let branch_policy = wanted
        .branches
        .as_ref()
        .map(|_| json!({"protected_branches": false, "custom_branch_policies": true}));
    let Repository { owner, name } = repository;
    let route = format!("/repos/{owner}/{name}/environments/{environment}");
    let body = json!({
        "prevent_self_review": wanted.prevent_self_review,
        "reviewers": reviewers,
        "deployment_branch_policy": branch_policy,
    });
    let _: serde_json::Value =
        client
            .put(&route, Some(&body))
            .await
            .map_err(api_error(format!(
                "updating environment `{environment}` of {repository}"
            )))?;
    let Some(branches) = &wanted.branches else {
        return Ok(());
    };
    let policies = format!("{route}/deployment-branch-policies");
    let existing = branch_policies(client, repository, environment).await?;
    for policy in existing.iter().filter(|p| !branches.contains(&p.name)) {
        let response = client
            ._delete(format!("{policies}/{}", policy.id), None::<&()>)
            .await
            .map_err(api_error(format!(
                "removing deployment branch `{}` of `{environment}`",
                policy.name
            )))?;
        if !response.status().is_success() {
            return Err(GitHubError::Repository(format!(
                "removing deployment branch `{}` of `{environment}`: GitHub answered {}",
                policy.name,
                response.status()
            )));
        }
    }
    for branch in branches {
        if existing.iter().any(|p| &p.name == branch) {
            continue;
        }
        let _: serde_json::Value = client
            .post(&policies, Some(&json!({"name": branch, "type": "branch"})))
            .await
            .map_err(api_error(format!(
                "adding deployment branch `{branch}` to `{environment}`"
            )))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::fake::FakeGitHub;
    use super::*;

    fn wanted(reviewers: &[&str], branches: &[&str]) -> Protection {
        Protection::wanted(&Environment {
            reviewers: reviewers.iter().map(|r| r.parse().unwrap()).collect(),
            prevent_self_review: true,
            branches: branches.iter().map(|b| b.to_string()).collect(),
        })
    }

    #[test]
    fn applying_makes_github_match_and_a_second_read_finds_no_difference() {
        let fake = FakeGitHub::start();
        let repository: Repository = "akidb/akidb".parse().unwrap();
        let want = wanted(
            &["team:release-managers", "user:reviewer-a"],
            &["main", "release/*"],
        );
        fake.put_environment(
            "production",
            &["sre-oncall"],
            false,
            &["old-branch", "main"],
        );
        fake.block_on(async {
            let client = super::super::client(&fake.url(), FakeGitHub::TOKEN.into()).unwrap();
            let before = read(&client, &repository, "production")
                .await
                .unwrap()
                .unwrap();
            let differences = before.differences(&want);
            assert_eq!(differences.len(), 3, "{differences:?}");
            assert!(
                differences[0].contains("GitHub has team:sre-oncall"),
                "{differences:?}"
            );
            apply(&client, &repository, "production", &want)
                .await
                .unwrap();
            let after = read(&client, &repository, "production")
                .await
                .unwrap()
                .unwrap();
            assert_eq!(after, want);
            assert_eq!(after.differences(&want), Vec::<String>::new());
            // A new environment is created by the same call.
            assert_eq!(read(&client, &repository, "canary-1").await.unwrap(), None);
            apply(&client, &repository, "canary-1", &want)
                .await
                .unwrap();
            assert_eq!(
                read(&client, &repository, "canary-1").await.unwrap(),
                Some(want.clone())
            );
        });
        let requests = fake.requests();
        assert!(requests.contains(&"PUT /repos/akidb/akidb/environments/production".to_owned()));
        assert!(requests.iter().any(|r| r.starts_with(
            "DELETE /repos/akidb/akidb/environments/production/deployment-branch-policies/"
        )));
    }

    #[test]
    fn an_unknown_reviewer_is_githubs_404_and_changes_nothing() {
        let fake = FakeGitHub::start();
        let repository: Repository = "akidb/akidb".parse().unwrap();
        let error = fake.block_on(async {
            let client = super::super::client(&fake.url(), FakeGitHub::TOKEN.into()).unwrap();
            apply(
                &client,
                &repository,
                "canary-1",
                &wanted(&["team:nobody"], &[]),
            )
            .await
            .unwrap_err()
        });
        assert!(error.to_string().contains("team:nobody"), "{error}");
        assert!(!fake.requests().iter().any(|r| r.starts_with("PUT ")));
    }

    #[test]
    fn an_environment_without_reviewers_wants_no_self_review_rule() {
        let none = wanted(&[], &[]);
        assert!(!none.prevent_self_review);
        assert_eq!(none.branches, None);
    }
}
