//! The service in-process: the real start-up (load, queues, warm-up) and the real REST router,
//! called without sockets.

use std::{path::Path, sync::Arc, time::Duration};

use akidb_embed::{
    api::{self, ApiKeys, AppState},
    config::{Limits, Settings},
    grpc::EmbeddingGrpc,
    infer::{Infer, Readiness},
    metrics::Metrics,
    startup,
};
use axum::{body::Body, http::Request, Router};
use serde_json::Value;
use tower::ServiceExt;

/// A started service.
pub struct Service {
    pub app: Router,
    pub infer: Arc<Infer>,
}

/// A reply: status and body (JSON when it parses, else a JSON string of the text).
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    /// The body as text (plain-text errors of the v1 API).
    pub fn text(&self) -> &str {
        self.body.as_str().unwrap_or_default()
    }
}

/// Starts the service on the model folders in `models_dir` (only `models` when not empty; the
/// first is the default) with `limits`, and waits until it is ready.
pub async fn start(models_dir: &Path, models: &[&str], limits: Limits) -> Service {
    let mut settings = Settings::default();
    settings.embedding.models_dir = models_dir.to_path_buf();
    settings.embedding.models = models.iter().map(|m| m.to_string()).collect();
    if let Some(first) = models.first() {
        settings.embedding.model = first.to_string();
    }
    settings.limits = limits;
    let metrics = Arc::new(Metrics::new("0.0.0", "test"));
    let infer = Arc::new(Infer::new(
        settings.limits.clone(),
        settings.timeout(),
        metrics,
    ));
    let (health, _) = tonic_health::server::health_reporter();
    startup::start(Arc::clone(&infer), settings, health).await;
    assert_eq!(
        infer.readiness(),
        Readiness::Ready,
        "start-up failed: {:?}",
        infer.failure()
    );
    let app = api::router(AppState {
        infer: Arc::clone(&infer),
        keys: Arc::new(ApiKeys::new(&[])),
        body_timeout: Duration::from_secs(10),
    });
    Service { app, infer }
}

impl Service {
    /// POSTs `body` as JSON to `path`.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        let request = Request::builder()
            .method("POST")
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(request).await
    }

    /// GETs `path`.
    pub async fn get(&self, path: &str) -> Reply {
        let request = Request::builder().uri(path).body(Body::empty()).unwrap();
        self.send(request).await
    }

    async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Reply { status, body }
    }

    /// The gRPC service over the same engine.
    pub fn grpc(&self) -> EmbeddingGrpc {
        EmbeddingGrpc::new(Arc::clone(&self.infer))
    }

    /// The value of the sample `name{labels}` of a `/metrics` scrape (labels exactly these).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.get("/metrics").await;
        let text = text.text();
        let mut wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        wanted.sort();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (metric, mut found) = match series.split_once('{') {
                Some((m, rest)) => (
                    m,
                    rest.trim_end_matches('}')
                        .split(',')
                        .map(str::to_string)
                        .collect::<Vec<_>>(),
                ),
                None => (series, Vec::new()),
            };
            found.sort();
            if metric == name && found == wanted {
                return value.parse().unwrap();
            }
        }
        panic!("no sample {name}{labels:?} in /metrics:\n{text}");
    }
}
