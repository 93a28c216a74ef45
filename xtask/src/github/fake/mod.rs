//! A FAKE of the parts of GitHub's REST API the project uses, speaking the real protocol (paths,
//! JSON shapes, status codes and error bodies as documented) and checking what GitHub checks: a
//! `User-Agent` (403 without), the token (401 without or when wrong), the one repository it
//! serves (404 for others). Environments and a run's approvals ([`environments`]); the
//! repository, releases, assets and workflow dispatches ([`releases`]).
//!
//! The unit tests use it, the release integration test includes this folder, and `cargo xtask
//! workflows run` serves it to the jobs it runs under act (where it approves each environment
//! as a named stand-in reviewer). The real API is exercised by the workflows on GitHub.

mod environments;
mod releases;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    Json, Router,
};
use serde_json::{json, Value};

pub use environments::FakeReview;
use environments::{FakeEnvironment, TEAMS};

/// One request as the fake saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// `GET`, `POST`...
    pub method: String,
    /// The URL's path.
    pub path: String,
    /// The status it answered.
    pub status: u16,
}

/// A release asset it holds.
#[derive(Clone, Debug)]
pub struct FakeAsset {
    /// The release's id.
    pub release: u64,
    /// The asset's id.
    pub id: u64,
    /// Its file name.
    pub name: String,
    /// Its content.
    pub bytes: Vec<u8>,
}

#[derive(Default)]
struct Data {
    /// `owner/name` of the one repository it serves.
    repository: String,
    /// The one token it accepts.
    token: String,
    /// Its own base URL (for the URLs in its answers).
    base: String,
    environments: BTreeMap<String, FakeEnvironment>,
    /// Each review with its run; `None`: a review of every run.
    reviews: Vec<(Option<u64>, FakeReview)>,
    releases: Vec<Value>,
    assets: Vec<FakeAsset>,
    /// `workflow_dispatch` requests: (workflow file, payload).
    dispatches: Vec<(String, Value)>,
    /// A tag whose release another writer creates right after a lookup found none.
    racing: Option<String>,
    seen: Vec<Seen>,
    next_id: u64,
}

type Shared = Arc<Mutex<Data>>;

/// The fake, serving on a thread of its own until dropped.
pub struct FakeGitHub {
    address: SocketAddr,
    data: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeGitHub {
    /// The token [`FakeGitHub::serve`] accepts.
    pub const TOKEN: &str = "fake-github-token";

    /// Serves repository `akidb/akidb` on a free loopback port.
    #[cfg(test)]
    pub fn start() -> FakeGitHub {
        Self::serve("akidb/akidb")
    }

    /// Serves `repository` (`owner/name`) to holders of [`FakeGitHub::TOKEN`] on a free
    /// loopback port.
    pub fn serve(repository: &str) -> FakeGitHub {
        Self::serve_to(repository, Self::TOKEN)
    }

    /// Serves `repository` (`owner/name`) to holders of `token` on a free loopback port.
    pub fn serve_to(repository: &str, token: &str) -> FakeGitHub {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("nonblocking");
        let address = listener.local_addr().expect("address");
        let data = Arc::new(Mutex::new(Data {
            repository: repository.to_owned(),
            token: token.to_owned(),
            base: format!("http://{address}"),
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
                let app = Router::new()
                    .merge(environments::routes())
                    .merge(releases::routes())
                    .fallback(|uri: axum::http::Uri| async move {
                        error(StatusCode::NOT_FOUND, &format!("Not Found: {uri}"), "")
                    })
                    .layer(axum::middleware::from_fn_with_state(state.clone(), admit))
                    // Release assets are archives of tens of MB (GitHub takes up to 2 GiB);
                    // axum's default limit is 2 MB.
                    .layer(axum::extract::DefaultBodyLimit::disable())
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
        self.seen()
            .into_iter()
            .map(|s| format!("{} {}", s.method, s.path))
            .collect()
    }

    /// Every request so far, with the status it got.
    pub fn seen(&self) -> Vec<Seen> {
        self.data.lock().unwrap().seen.clone()
    }

    /// Another writer will create `tag`'s release just after the next lookup that finds none.
    // Only the release integration test (which includes this folder) races.
    #[allow(dead_code)]
    pub fn race_on(&self, tag: &str) {
        self.data.lock().unwrap().racing = Some(tag.to_owned());
    }

    /// The `workflow_dispatch` requests it accepted: (workflow, payload).
    pub fn dispatches(&self) -> Vec<(String, Value)> {
        self.data.lock().unwrap().dispatches.clone()
    }

    /// The releases it holds.
    pub fn releases(&self) -> Vec<Value> {
        self.data.lock().unwrap().releases.clone()
    }

    /// The assets it holds, in upload order.
    pub fn assets(&self) -> Vec<FakeAsset> {
        self.data.lock().unwrap().assets.clone()
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

/// GitHub's error body; `docs` is the page under docs.github.com/rest.
fn error(status: StatusCode, message: &str, docs: &str) -> Response {
    let body = json!({
        "message": message,
        "documentation_url": format!("https://docs.github.com/rest/{docs}"),
        "status": status.as_u16().to_string(),
    });
    (status, Json(body)).into_response()
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not Found", "")
}

/// GitHub's gatekeeping, in its order (a User-Agent, the token, the repository), then the
/// request is recorded with the status it got.
async fn admit(
    State(shared): State<Shared>,
    headers: HeaderMap,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let refusal = refusal(&shared, &headers, &path);
    let response = match refusal {
        Some(refused) => refused,
        None => next.run(request).await,
    };
    shared.lock().unwrap().seen.push(Seen {
        method,
        path,
        status: response.status().as_u16(),
    });
    response
}

/// Why GitHub would refuse the request before looking at it, if it would.
fn refusal(shared: &Shared, headers: &HeaderMap, path: &str) -> Option<Response> {
    const AUTH: &str = "overview/authenticating-to-the-rest-api";
    if headers.get("user-agent").is_none() {
        return Some(error(
            StatusCode::FORBIDDEN,
            "Request forbidden by administrative rules. Please make sure your request has a \
             User-Agent header",
            "overview/resources-in-the-rest-api#user-agent-required",
        ));
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("token "))
        });
    let data = shared.lock().unwrap();
    match token {
        None => Some(error(
            StatusCode::UNAUTHORIZED,
            "Requires authentication",
            AUTH,
        )),
        Some(token) if token != data.token => {
            Some(error(StatusCode::UNAUTHORIZED, "Bad credentials", AUTH))
        }
        Some(_) => {
            let served = format!("/repos/{}", data.repository);
            let other_repository = path.starts_with("/repos/")
                && path != served
                && !path.starts_with(&format!("{served}/"));
            other_repository.then(not_found)
        }
    }
}
