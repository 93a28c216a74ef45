//! A fake of the parts of GitHub's REST API the environments and approvals use, speaking the
//! real protocol (paths, JSON shapes, status codes and error bodies as documented): environments
//! with their protection rules and deployment branch policies, a run's approvals, and the
//! lookups of users and teams. The tests use it, and `cargo xtask workflows run` serves it to the
//! jobs it runs under act (where it approves each environment as a named stand-in reviewer).
//! The real API is exercised by the workflows on GitHub.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{delete, get},
    Json, Router,
};
use serde_json::{json, Value};

/// A review as the fake returns it for a run.
#[derive(Clone, Debug)]
pub struct FakeReview {
    environment: String,
    state: String,
    login: String,
    comment: String,
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
struct FakeEnvironment {
    /// `(type, name, id)`: `("Team", slug, id)` or `("User", login, id)`.
    reviewers: Vec<(String, String, u64)>,
    prevent_self_review: bool,
    /// `None`: any branch; else `(id, name)` of each custom policy.
    branches: Option<Vec<(u64, String)>>,
}

#[derive(Default)]
struct Data {
    /// `owner/name` of the one repository it serves.
    repository: String,
    environments: BTreeMap<String, FakeEnvironment>,
    /// Each review with its run; `None`: a review of every run.
    reviews: Vec<(Option<u64>, FakeReview)>,
    requests: Vec<String>,
    next_id: u64,
}

/// Users and teams the fake knows, with their ids.
const USERS: [(&str, u64); 3] = [
    ("reviewer-a", 101),
    ("reviewer-b", 102),
    ("reviewer-c", 103),
];
const TEAMS: [(&str, u64); 2] = [("release-managers", 201), ("sre-oncall", 202)];

/// The fake, serving on a thread of its own until dropped.
pub struct FakeGitHub {
    address: SocketAddr,
    data: Arc<Mutex<Data>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeGitHub {
    /// The one token it accepts.
    pub const TOKEN: &str = "fake-github-token";

    /// Serves repository `akidb/akidb` on a free loopback port.
    #[cfg(test)]
    pub fn start() -> FakeGitHub {
        Self::serve("akidb/akidb")
    }

    /// Serves `repository` (`owner/name`) on a free loopback port.
    pub fn serve(repository: &str) -> FakeGitHub {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("nonblocking");
        let address = listener.local_addr().expect("address");
        let data = Arc::new(Mutex::new(Data {
            repository: repository.to_owned(),
            next_id: 1000,
            ..Data::default()
        }));
        let state = data.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let repo = "/repos/{owner}/{repo}";
                let app = Router::new()
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
                    .fallback(|| async { not_found() })
                    .layer(axum::middleware::from_fn_with_state(state.clone(), admit))
                    .with_state(state);
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("serve");
            });
        });
        FakeGitHub {
            address,
            data,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Runs `future` on a runtime of the caller's (octocrab needs one).
    #[cfg(test)]
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    /// Sets an environment as an administrator would in the settings, with teams (by slug) as
    /// its required reviewers.
    pub fn put_environment(
        &self,
        name: &str,
        teams: &[&str],
        prevent_self_review: bool,
        branches: &[&str],
    ) {
        let mut data = self.data.lock().unwrap();
        let mut environment = FakeEnvironment {
            prevent_self_review,
            ..FakeEnvironment::default()
        };
        for &slug in teams {
            let id = TEAMS.iter().find(|(s, _)| *s == slug).map_or(299, |t| t.1);
            environment.reviewers.push(("Team".into(), slug.into(), id));
        }
        if !branches.is_empty() {
            let mut policies = Vec::new();
            for branch in branches {
                data.next_id += 1;
                policies.push((data.next_id, (*branch).to_owned()));
            }
            environment.branches = Some(policies);
        }
        data.environments.insert(name.into(), environment);
    }

    /// Records a review of run `run_id`.
    #[cfg(test)]
    pub fn review(&self, run_id: u64, review: FakeReview) {
        self.data
            .lock()
            .unwrap()
            .reviews
            .push((Some(run_id), review));
    }

    /// Records a review that every run's approvals list.
    pub fn review_every_run(&self, review: FakeReview) {
        self.data.lock().unwrap().reviews.push((None, review));
    }

    /// Every request so far, as `METHOD /path`.
    #[cfg(test)]
    pub fn requests(&self) -> Vec<String> {
        self.data.lock().unwrap().requests.clone()
    }
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

type Shared = Arc<Mutex<Data>>;

fn error(status: StatusCode, message: &str) -> Response {
    let body = json!({
        "message": message,
        "documentation_url": "https://docs.github.com/rest",
        "status": status.as_u16().to_string(),
    });
    (status, Json(body)).into_response()
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not Found")
}

/// Records the request, then GitHub's gatekeeping: a User-Agent, the token, the repository.
async fn admit(
    State(shared): State<Shared>,
    headers: HeaderMap,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path().to_owned();
    shared
        .lock()
        .unwrap()
        .requests
        .push(format!("{} {path}", request.method()));
    if headers.get("user-agent").is_none() {
        return error(
            StatusCode::FORBIDDEN,
            "Request forbidden by administrative rules",
        );
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("token "))
        });
    match token {
        None => return error(StatusCode::UNAUTHORIZED, "Requires authentication"),
        Some(token) if token != FakeGitHub::TOKEN => {
            return error(StatusCode::UNAUTHORIZED, "Bad credentials")
        }
        Some(_) => {}
    }
    let served = format!("/repos/{}/", shared.lock().unwrap().repository);
    if path.starts_with("/repos/") && !path.starts_with(&served) {
        return not_found();
    }
    next.run(request).await
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
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request.");
        };
        let known = if kind == "Team" {
            &TEAMS[..]
        } else {
            &USERS[..]
        };
        let Some((name, _)) = known.iter().find(|(_, i)| *i == id) else {
            return error(StatusCode::UNPROCESSABLE_ENTITY, "Reviewer not found");
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
        );
    };
    let Some(branch) = body["name"].as_str() else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request.");
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
