//! A FAKE Kubernetes API server for tests: HTTP on 127.0.0.1 speaking the real paths and
//! answers of the objects the rollout touches, so that kube's real client runs against it.
//!
//! It serves Deployments (and their `scale` subresource), Ingresses, Services, ConfigMaps,
//! PersistentVolumeClaims, `autoscaling/v2` HorizontalPodAutoscalers and `batch/v1` Jobs under
//! `/api/v1/namespaces/{ns}/...` and `/apis/{group}/{version}/namespaces/{ns}/...`:
//! get, list (with an equality `labelSelector`), JSON merge patch and strategic merge patch
//! (treated as a merge patch: the rollout patches only maps and scalars, where the two agree),
//! and delete. Every write bumps `resourceVersion`; a patch carrying a stale one is answered
//! 409 Conflict, and [`FakeApiServer::inject_conflicts`] makes a concurrent writer change the
//! object just before the next patches. Missing objects are 404 `Status` objects. A simulated
//! Deployment controller makes `readyReplicas` follow `spec.replicas` after a short delay.
//! Objects can be created (POST to the collection; an existing name is 409 AlreadyExists). A
//! simulated Job controller completes a Job after [`FakeApiServer::set_job_run`]'s duration, and
//! while any Job runs a simulated HPA controller adds a replica per request, up to the maximum.
//! It is not an API server: no validation, admission or watches.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, Method, StatusCode, Uri},
    response::{IntoResponse, Response},
    Json, Router,
};
use serde_json::{json, Value};

/// One request the fake received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The method.
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string, if any.
    pub query: Option<String>,
    /// The `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The body as text.
    pub body: String,
}

#[derive(Default)]
struct Store {
    /// `collection path` (e.g. `apis/apps/v1/namespaces/p/deployments`) -> name -> object.
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    version: u64,
    conflicts: u32,
    received: Vec<Received>,
    /// Deployments whose pods become ready at the instant given.
    rollouts: BTreeMap<(String, String), Instant>,
    ready_delay: Duration,
    /// Jobs running, (collection, name), and when they end.
    jobs: BTreeMap<(String, String), Instant>,
    /// How long a created Job runs, and whether it then succeeds.
    job_run: (Duration, bool),
}

type Shared = Arc<Mutex<Store>>;

/// The running fake; stops when dropped.
pub struct FakeApiServer {
    address: SocketAddr,
    store: Shared,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The API group/version and kind of a collection's objects.
fn kind_of(plural: &str) -> Option<(&'static str, &'static str)> {
    Some(match plural {
        "deployments" => ("apps/v1", "Deployment"),
        "ingresses" => ("networking.k8s.io/v1", "Ingress"),
        "services" => ("v1", "Service"),
        "configmaps" => ("v1", "ConfigMap"),
        "persistentvolumeclaims" => ("v1", "PersistentVolumeClaim"),
        "horizontalpodautoscalers" => ("autoscaling/v2", "HorizontalPodAutoscaler"),
        "jobs" => ("batch/v1", "Job"),
        _ => return None,
    })
}

/// The collection path of `plural` in `namespace`.
fn collection(namespace: &str, plural: &str) -> String {
    let (api_version, _) = kind_of(plural).unwrap_or(("v1", ""));
    let prefix = if api_version == "v1" { "api" } else { "apis" };
    format!("{prefix}/{api_version}/namespaces/{namespace}/{plural}")
}

/// A parsed request path: the collection, the object's name and subresource.
struct Target {
    collection: String,
    plural: String,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let at = parts.iter().position(|p| *p == "namespaces")?;
    let namespace = parts.get(at + 1)?;
    let (plural, name, subresource) = match &parts[at + 2..] {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(*name), None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub)),
        _ => return None,
    };
    kind_of(plural)?;
    let collection = collection(namespace, plural);
    // The kind must be asked for under its own group and version.
    if !collection.starts_with(&format!("{}/namespaces/", parts[..at].join("/"))) {
        return None;
    }
    Some(Target {
        collection,
        plural: plural.to_string(),
        name: name.map(str::to_string),
        subresource: subresource.map(str::to_string),
    })
}

/// A `Status` answer, as the API server sends for failures.
fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    (code, Json(body)).into_response()
}

fn not_found(plural: &str, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{plural} \"{name}\" not found"),
    )
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(target), Some(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (_, Some(patch)) => {
            *target = json!({});
            merge(target, &Value::Object(patch.clone()));
        }
        _ => *target = patch.clone(),
    }
}

/// Whether `labels` satisfy an equality selector (`a=b,c==d`); `None` for other selectors.
fn selects(selector: &str, labels: &Value) -> Option<bool> {
    let mut all = true;
    for term in selector.split(',').filter(|t| !t.is_empty()) {
        let (key, value) = term.split_once('=')?;
        let value = value.trim_start_matches('=');
        if key.ends_with('!') {
            return None;
        }
        all &= labels.get(key).and_then(Value::as_str) == Some(value);
    }
    Some(all)
}

impl Store {
    fn bump(&mut self) -> String {
        self.version += 1;
        self.version.to_string()
    }

    /// The simulated Job and HPA controllers: a Job ends when its time is up; while one runs,
    /// every HPA gains a replica (up to its maximum) at each request.
    fn reconcile_jobs(&mut self) {
        let now = Instant::now();
        let ended: Vec<(String, String)> = self
            .jobs
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(key, _)| key.clone())
            .collect();
        let succeeded = self.job_run.1;
        for key in ended {
            self.jobs.remove(&key);
            let version = self.bump();
            if let Some(job) = self.objects.get_mut(&key.0).and_then(|c| c.get_mut(&key.1)) {
                let (kind, count) = if succeeded {
                    ("Complete", "succeeded")
                } else {
                    ("Failed", "failed")
                };
                job["status"] = json!({
                    count: 1,
                    "conditions": [{ "type": kind, "status": "True", "reason": "Fake" }],
                });
                job["metadata"]["resourceVersion"] = json!(version);
            }
        }
        if self.jobs.is_empty() {
            return;
        }
        for (collection, objects) in &mut self.objects {
            if !collection.ends_with("/horizontalpodautoscalers") {
                continue;
            }
            for hpa in objects.values_mut() {
                let max = hpa["spec"]["maxReplicas"].as_i64().unwrap_or(1);
                let current = hpa["status"]["currentReplicas"].as_i64().unwrap_or(0);
                hpa["status"]["currentReplicas"] = json!((current + 1).min(max));
            }
        }
    }

    /// Stores a new object POSTed to `target`'s collection.
    fn create(&mut self, target: &Target, body: &[u8]) -> Response {
        let Ok(mut object) = serde_json::from_slice::<Value>(body) else {
            return status(StatusCode::BAD_REQUEST, "BadRequest", "not JSON".into());
        };
        let Some(name) = object["metadata"]["name"].as_str().map(str::to_string) else {
            return status(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                "no name".into(),
            );
        };
        if self
            .objects
            .get(&target.collection)
            .is_some_and(|c| c.contains_key(&name))
        {
            let message = format!("{} \"{name}\" already exists", target.plural);
            return status(StatusCode::CONFLICT, "AlreadyExists", message);
        }
        let version = self.bump();
        let namespace = target
            .collection
            .split('/')
            .rev()
            .nth(1)
            .unwrap_or_default();
        object["metadata"]["namespace"] = json!(namespace);
        object["metadata"]["resourceVersion"] = json!(version);
        object["metadata"]["uid"] = json!(format!("fake-{version}"));
        if target.plural == "jobs" {
            object["status"] = json!({ "active": 1 });
            let ends = Instant::now() + self.job_run.0;
            self.jobs
                .insert((target.collection.clone(), name.clone()), ends);
        }
        self.objects
            .entry(target.collection.clone())
            .or_default()
            .insert(name, object.clone());
        (StatusCode::CREATED, Json(object)).into_response()
    }

    /// The simulated Deployment controller: status follows spec once a rollout's delay passed.
    fn reconcile(&mut self) {
        self.reconcile_jobs();
        let now = Instant::now();
        let done: Vec<(String, String)> = self
            .rollouts
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in done {
            self.rollouts.remove(&key);
            let version = self.bump();
            if let Some(object) = self.objects.get_mut(&key.0).and_then(|c| c.get_mut(&key.1)) {
                let replicas = object["spec"]["replicas"].as_i64().unwrap_or(1);
                let generation = object["metadata"]["generation"].clone();
                let mut status = json!({
                    "observedGeneration": generation,
                    "replicas": replicas,
                    "updatedReplicas": replicas,
                });
                if replicas > 0 {
                    status["readyReplicas"] = json!(replicas);
                    status["availableReplicas"] = json!(replicas);
                }
                object["status"] = status;
                object["metadata"]["resourceVersion"] = json!(version);
            }
        }
    }

    fn list(&mut self, target: &Target, query: &BTreeMap<String, String>) -> Response {
        let Some((api_version, kind)) = kind_of(&target.plural) else {
            return not_found(&target.plural, "");
        };
        let selector = query.get("labelSelector").map(String::as_str).unwrap_or("");
        let mut items = Vec::new();
        for object in self
            .objects
            .get(&target.collection)
            .into_iter()
            .flatten()
            .map(|(_, o)| o)
        {
            match selects(selector, &object["metadata"]["labels"]) {
                Some(true) => items.push(object.clone()),
                Some(false) => {}
                None => {
                    return status(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        format!("the fake only takes equality selectors, not `{selector}`"),
                    )
                }
            }
        }
        Json(json!({
            "apiVersion": api_version,
            "kind": format!("{kind}List"),
            "metadata": { "resourceVersion": self.version.to_string() },
            "items": items,
        }))
        .into_response()
    }

    fn scale_of(deployment: &Value) -> Value {
        json!({
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {
                "name": deployment["metadata"]["name"],
                "namespace": deployment["metadata"]["namespace"],
                "resourceVersion": deployment["metadata"]["resourceVersion"],
            },
            "spec": { "replicas": deployment["spec"]["replicas"] },
            "status": { "replicas": deployment["status"]["replicas"].as_i64().unwrap_or(0) },
        })
    }

    fn patch(&mut self, target: &Target, name: &str, content_type: &str, body: &[u8]) -> Response {
        if !matches!(
            content_type,
            "application/merge-patch+json" | "application/strategic-merge-patch+json"
        ) {
            return status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                format!("the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/strategic-merge-patch+json (got {content_type})"),
            );
        }
        let Ok(patch) = serde_json::from_slice::<Value>(body) else {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "the patch is not JSON".into(),
            );
        };
        if self.conflicts > 0 {
            // Another writer changes the object just before this patch lands.
            self.conflicts -= 1;
            let version = self.bump();
            if let Some(object) = self
                .objects
                .get_mut(&target.collection)
                .and_then(|c| c.get_mut(name))
            {
                object["metadata"]["resourceVersion"] = json!(version);
            }
        }
        let version = self.bump();
        let Some(object) = self
            .objects
            .get_mut(&target.collection)
            .and_then(|c| c.get_mut(name))
        else {
            return not_found(&target.plural, name);
        };
        if let Some(wanted) = patch["metadata"]["resourceVersion"].as_str() {
            if object["metadata"]["resourceVersion"].as_str() != Some(wanted) {
                return status(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {} \"{name}\": the object has been \
                         modified; please apply your changes to the latest version and try again",
                        target.plural
                    ),
                );
            }
        }
        let spec_before = object["spec"].clone();
        match target.subresource.as_deref() {
            Some("scale") => {
                if let Some(replicas) = patch["spec"]["replicas"].as_i64() {
                    object["spec"]["replicas"] = json!(replicas);
                }
            }
            Some(other) => return not_found(other, name),
            None => {
                let mut patch = patch;
                if let Some(metadata) = patch["metadata"].as_object_mut() {
                    metadata.remove("resourceVersion");
                }
                merge(object, &patch);
            }
        }
        object["metadata"]["resourceVersion"] = json!(version);
        if object["spec"] != spec_before {
            let generation = object["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            object["metadata"]["generation"] = json!(generation);
            if target.plural == "deployments" {
                // The controller sees the new spec at once; the pods take a while.
                object["status"]["observedGeneration"] = json!(generation);
                let key = (target.collection.clone(), name.to_string());
                self.rollouts.insert(key, Instant::now() + self.ready_delay);
            }
        }
        let object = object.clone();
        match target.subresource.as_deref() {
            Some(_) => Json(Self::scale_of(&object)).into_response(),
            None => Json(object).into_response(),
        }
    }
}

async fn handle(
    State(store): State<Shared>,
    method: Method,
    uri: Uri,
    Query(query): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Ok(mut store) = store.lock() else {
        return status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "poisoned".into(),
        );
    };
    store.received.push(Received {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        content_type: content_type.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    store.reconcile();
    let Some(target) = parse(uri.path()) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!(
                "the server could not find the requested resource ({})",
                uri.path()
            ),
        );
    };
    let Some(name) = target.name.clone() else {
        return match method {
            Method::GET => store.list(&target, &query),
            Method::POST => store.create(&target, &body),
            _ => status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "not served by the fake".into(),
            ),
        };
    };
    match method {
        Method::GET => {
            let Some(object) = store
                .objects
                .get(&target.collection)
                .and_then(|c| c.get(&name))
            else {
                return not_found(&target.plural, &name);
            };
            match target.subresource.as_deref() {
                Some("scale") => Json(Store::scale_of(object)).into_response(),
                Some(other) => not_found(other, &name),
                None => Json(object.clone()).into_response(),
            }
        }
        Method::PATCH => store.patch(&target, &name, content_type.as_deref().unwrap_or(""), &body),
        Method::DELETE => {
            let removed = store
                .objects
                .get_mut(&target.collection)
                .and_then(|c| c.remove(&name));
            match removed {
                Some(object) => Json(object).into_response(),
                None => not_found(&target.plural, &name),
            }
        }
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "not served by the fake".into(),
        ),
    }
}

impl FakeApiServer {
    /// Starts the fake on a free port of 127.0.0.1; pods become ready `ready_delay` after a
    /// Deployment's replicas change.
    pub fn start(ready_delay: Duration) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let store: Shared = Arc::new(Mutex::new(Store {
            ready_delay,
            job_run: (ready_delay, true),
            ..Store::default()
        }));
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new().fallback(handle).with_state(store.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        Ok(Self {
            address,
            store,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `object` (its `kind` picks the collection) as if it had been created; a
    /// Deployment starts with every replica ready.
    pub fn insert(&self, namespace: &str, mut object: Value) {
        let plural = match object["kind"].as_str().unwrap_or_default() {
            "Deployment" => "deployments",
            "Ingress" => "ingresses",
            "Service" => "services",
            "ConfigMap" => "configmaps",
            "PersistentVolumeClaim" => "persistentvolumeclaims",
            "HorizontalPodAutoscaler" => "horizontalpodautoscalers",
            "Job" => "jobs",
            other => panic!("the fake does not serve kind {other:?}"),
        };
        let mut store = self.store();
        let version = store.bump();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        object["metadata"]["namespace"] = json!(namespace);
        object["metadata"]["resourceVersion"] = json!(version);
        object["metadata"]["generation"] = json!(1);
        object["metadata"]["uid"] = json!(format!("fake-{version}"));
        if plural == "deployments" {
            let replicas = object["spec"]["replicas"].as_i64().unwrap_or(1);
            object["status"] = json!({
                "observedGeneration": 1,
                "replicas": replicas,
                "readyReplicas": replicas,
                "updatedReplicas": replicas,
                "availableReplicas": replicas,
            });
        }
        store
            .objects
            .entry(collection(namespace, plural))
            .or_default()
            .insert(name, object);
    }

    /// The stored object, if any (`plural` as in the API path: `deployments`, `ingresses`...).
    pub fn object(&self, namespace: &str, plural: &str, name: &str) -> Option<Value> {
        self.store()
            .objects
            .get(&collection(namespace, plural))
            .and_then(|c| c.get(name))
            .cloned()
    }

    /// Names of the stored objects of `plural`.
    pub fn names(&self, namespace: &str, plural: &str) -> Vec<String> {
        self.store()
            .objects
            .get(&collection(namespace, plural))
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Makes another writer change the object of each of the next `count` patches just before
    /// it lands (so a patch carrying the version it read gets 409 Conflict).
    pub fn inject_conflicts(&self, count: u32) {
        self.store().conflicts = count;
    }

    /// Makes each Job created from now on run for `duration`, then succeed or fail.
    pub fn set_job_run(&self, duration: Duration, succeed: bool) {
        self.store().job_run = (duration, succeed);
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.store().received.clone()
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
