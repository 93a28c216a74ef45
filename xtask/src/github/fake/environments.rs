//! The fake's environments (protection rules, deployment branch policies), a run's approvals,
//! and the lookups of users and teams.

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{delete, get},
    Json, Router,
};
use serde_json::{json, Value};

use super::{error, not_found, Shared};

/// A review as the fake returns it for a run.
#[derive(Clone, Debug)]
pub struct FakeReview {
    pub(super) environment: String,
    pub(super) state: String,
    pub(super) login: String,
    pub(super) comment: String,
}

impl FakeReview {
    /// `login`'s `state` (`approved`/`rejected`) on `environment`, with `comment`.
    pub fn new(environment: &str, state: &str, login: &str, comment: &str) -> FakeReview {
        FakeReview {
            environment: environment.into(),
            state: state.into(),
            login: login.into(),
            comment: comment.into(),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub(super) struct FakeEnvironment {
    /// `(type, name, id)`: `("Team", slug, id)` or `("User", login, id)`.
    pub(super) reviewers: Vec<(String, String, u64)>,
    pub(super) prevent_self_review: bool,
    /// `None`: any branch; else `(id, name)` of each custom policy.
    pub(super) branches: Option<Vec<(u64, String)>>,
}

/// Users and teams the fake knows, with their ids.
pub(super) const USERS: [(&str, u64); 3] = [
    ("reviewer-a", 101),
    ("reviewer-b", 102),
    ("reviewer-c", 103),
];
pub(super) const TEAMS: [(&str, u64); 2] = [("release-managers", 201), ("sre-oncall", 202)];

/// Where GitHub documents these endpoints.
const DOCS: &str = "deployments/environments";

/// The routes of this part of the API.
pub(super) fn routes() -> Router<Shared> {
    let repo = "/repos/{owner}/{repo}";
    Router::new()
        .route(
            &format!("{repo}/environments/{{name}}"),
            get(get_environment).put(put_environment),
        )
        .route(
            &format!("{repo}/environments/{{name}}/deployment-branch-policies"),
            get(list_policies).post(add_policy),
        )
        .route(
            &format!("{repo}/environments/{{name}}/deployment-branch-policies/{{id}}"),
            delete(delete_policy),
        )
        .route(
            &format!("{repo}/actions/runs/{{run}}/approvals"),
            get(approvals),
        )
        .route("/users/{login}", get(user))
        .route("/orgs/{org}/teams/{slug}", get(team))
}

fn environment_json(name: &str, environment: &FakeEnvironment) -> Value {
    let mut rules = Vec::new();
    if !environment.reviewers.is_empty() {
        let reviewers: Vec<Value> = environment
            .reviewers
            .iter()
            .map(|(kind, name, id)| {
                let account = if kind == "Team" {
                    json!({"id": id, "slug": name, "name": name})
                } else {
                    json!({"id": id, "login": name, "type": "User"})
                };
                json!({"type": kind, "reviewer": account})
            })
            .collect();
        rules.push(json!({
            "id": 3755, "node_id": "MDQ6R2F0ZTM3NTU=", "type": "required_reviewers",
            "prevent_self_review": environment.prevent_self_review, "reviewers": reviewers,
        }));
    }
    if environment.branches.is_some() {
        rules.push(json!({"id": 3756, "node_id": "MDQ6R2F0ZTM3NTY=", "type": "branch_policy"}));
    }
    json!({
        "id": 161088068,
        "node_id": "MDExOkVudmlyb25tZW50MTYxMDg4MDY4",
        "name": name,
        "url": format!("https://api.github.com/repos/akidb/akidb/environments/{name}"),
        "html_url": format!("https://github.com/akidb/akidb/deployments/activity_log?environments_filter={name}"),
        "created_at": "2026-11-01T00:00:00Z",
        "updated_at": "2026-11-01T00:00:00Z",
        "protection_rules": rules,
        "deployment_branch_policy": environment.branches.as_ref().map(|_| {
            json!({"protected_branches": false, "custom_branch_policies": true})
        }),
    })
}

async fn get_environment(
    State(shared): State<Shared>,
    Path((_, _, name)): Path<(String, String, String)>,
) -> Response {
    let data = shared.lock().unwrap();
    match data.environments.get(&name) {
        Some(environment) => Json(environment_json(&name, environment)).into_response(),
        None => not_found(),
    }
}

async fn put_environment(
    State(shared): State<Shared>,
    Path((_, _, name)): Path<(String, String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let mut data = shared.lock().unwrap();
    let mut reviewers = Vec::new();
    for reviewer in body["reviewers"].as_array().into_iter().flatten() {
        let (Some(kind), Some(id)) = (reviewer["type"].as_str(), reviewer["id"].as_u64()) else {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request.", DOCS);
        };
        let known = if kind == "Team" {
            &TEAMS[..]
        } else {
            &USERS[..]
        };
        let Some((name, _)) = known.iter().find(|(_, i)| *i == id) else {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Reviewer not found", DOCS);
        };
        reviewers.push((kind.to_owned(), (*name).to_owned(), id));
    }
    let custom = body["deployment_branch_policy"]["custom_branch_policies"].as_bool();
    let old = data.environments.get(&name).cloned().unwrap_or_default();
    let environment = FakeEnvironment {
        reviewers,
        prevent_self_review: body["prevent_self_review"].as_bool().unwrap_or(false),
        branches: match custom {
            Some(true) => Some(old.branches.unwrap_or_default()),
            _ => None,
        },
    };
    let answer = environment_json(&name, &environment);
    data.environments.insert(name, environment);
    Json(answer).into_response()
}

async fn list_policies(
    State(shared): State<Shared>,
    Path((_, _, name)): Path<(String, String, String)>,
) -> Response {
    let data = shared.lock().unwrap();
    let Some(environment) = data.environments.get(&name) else {
        return not_found();
    };
    let policies: Vec<Value> = environment
        .branches
        .iter()
        .flatten()
        .map(|(id, name)| json!({"id": id, "node_id": "MDE2OkdhdGVCcmFuY2hQb2xpY3k=", "name": name, "type": "branch"}))
        .collect();
    Json(json!({"total_count": policies.len(), "branch_policies": policies})).into_response()
}

async fn add_policy(
    State(shared): State<Shared>,
    Path((_, _, name)): Path<(String, String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let mut data = shared.lock().unwrap();
    data.next_id += 1;
    let id = data.next_id;
    let Some(environment) = data.environments.get_mut(&name) else {
        return not_found();
    };
    let Some(policies) = environment.branches.as_mut() else {
        // GitHub refuses custom policies unless the environment's policy allows them.
        return error(
            StatusCode::NOT_FOUND,
            "Custom branch policies are not enabled for this environment",
            DOCS,
        );
    };
    let Some(branch) = body["name"].as_str() else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request.", DOCS);
    };
    policies.push((id, branch.to_owned()));
    Json(json!({"id": id, "name": branch, "type": "branch"})).into_response()
}

async fn delete_policy(
    State(shared): State<Shared>,
    Path((_, _, name, id)): Path<(String, String, String, u64)>,
) -> Response {
    let mut data = shared.lock().unwrap();
    let Some(policies) = data
        .environments
        .get_mut(&name)
        .and_then(|e| e.branches.as_mut())
    else {
        return not_found();
    };
    let before = policies.len();
    policies.retain(|(i, _)| *i != id);
    if policies.len() == before {
        return not_found();
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn approvals(
    State(shared): State<Shared>,
    Path((_, _, run)): Path<(String, String, u64)>,
) -> Response {
    let data = shared.lock().unwrap();
    let reviews: Vec<Value> = data
        .reviews
        .iter()
        .filter(|(id, _)| id.is_none_or(|id| id == run))
        .map(|(_, review)| {
            let id = USERS
                .iter()
                .find(|(login, _)| *login == review.login)
                .map_or(199, |u| u.1);
            json!({
                "environments": [{
                    "id": 161088068,
                    "node_id": "MDExOkVudmlyb25tZW50MTYxMDg4MDY4",
                    "name": review.environment,
                    "url": format!("https://api.github.com/repos/akidb/akidb/environments/{}", review.environment),
                    "html_url": "https://github.com/akidb/akidb/deployments",
                    "created_at": "2026-11-01T00:00:00Z",
                    "updated_at": "2026-11-01T00:00:00Z",
                }],
                "state": review.state,
                "comment": review.comment,
                "user": {"login": review.login, "id": id, "type": "User", "site_admin": false},
            })
        })
        .collect();
    Json(reviews).into_response()
}

async fn user(Path(login): Path<String>) -> Response {
    match USERS.iter().find(|(l, _)| *l == login) {
        Some((login, id)) => {
            Json(json!({"login": login, "id": id, "type": "User"})).into_response()
        }
        None => not_found(),
    }
}

async fn team(State(shared): State<Shared>, Path((org, slug)): Path<(String, String)>) -> Response {
    let owner = shared.lock().unwrap().repository.split('/').next() == Some(org.as_str());
    match TEAMS.iter().find(|(s, _)| *s == slug) {
        Some((slug, id)) if owner => {
            Json(json!({"id": id, "slug": slug, "name": slug})).into_response()
        }
        _ => not_found(),
    }
}
