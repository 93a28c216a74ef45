//! Health routes: the v1.x `/health` and `/ready` shapes, and the Kubernetes-style
//! `/health/live` and `/health/ready` the probes and the rollout's checks use.

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

use super::AppState;
use crate::infer::Readiness;

fn readiness(state: &AppState) -> (Readiness, String) {
    let failure = state.infer.failure();
    let readiness = state.infer.readiness();
    let message = match readiness {
        Readiness::Ready => {
            let names: Vec<String> = state
                .infer
                .served()
                .map(|s| s.infos().into_iter().map(|i| i.name).collect())
                .unwrap_or_default();
            format!("models loaded and warmed up: {}", names.join(", "))
        }
        Readiness::Loading => "models are loading".to_string(),
        Readiness::Draining => "shutting down: not accepting new work".to_string(),
        Readiness::Failed => failure.unwrap_or_default().to_string(),
    };
    (readiness, message)
}

/// Why no models are listed yet: still loading, or start-up failed.
pub(super) fn not_loaded(state: &AppState) -> String {
    match state.infer.failure() {
        Some(reason) => format!("start-up failed: {reason}"),
        None => "models are still loading".to_string(),
    }
}

fn not_ready(body: serde_json::Value) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        Json(body),
    )
        .into_response()
}

/// `GET /health` (v1.x shape): healthy unless start-up failed.
pub async fn legacy_health(State(state): State<AppState>) -> Response {
    match state.infer.failure() {
        None => Json(json!({
            "status": "healthy",
            "message": format!("akidb-embed {} is running", env!("CARGO_PKG_VERSION")),
        }))
        .into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unhealthy", "message": reason})),
        )
            .into_response(),
    }
}

/// `GET /ready` (v1.x shape).
pub async fn legacy_ready(State(state): State<AppState>) -> Response {
    match readiness(&state) {
        (Readiness::Ready, message) => {
            Json(json!({"status": "ready", "message": message})).into_response()
        }
        (_, message) => not_ready(json!({"status": "not_ready", "message": message})),
    }
}

/// `GET /health/live`: the process is up and answering.
pub async fn live() -> Response {
    Json(json!({"status": "alive"})).into_response()
}

/// `GET /health/ready`: ready only when the default model is loaded, a warm-up inference
/// passed, and the service is not draining.
pub async fn ready(State(state): State<AppState>) -> Response {
    let (readiness, message) = readiness(&state);
    let models: Vec<String> = state
        .infer
        .served()
        .map(|s| s.infos().into_iter().map(|i| i.name).collect())
        .unwrap_or_default();
    let status = match readiness {
        Readiness::Ready => "ready",
        Readiness::Loading => "loading",
        Readiness::Draining => "draining",
        Readiness::Failed => "failed",
    };
    let body = json!({"status": status, "message": message, "models": models});
    if readiness == Readiness::Ready {
        Json(body).into_response()
    } else {
        not_ready(body)
    }
}
