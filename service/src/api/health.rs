//! Health routes: the v1.x `/health` and `/ready` shapes, and the Kubernetes-style
//! `/health/live` and `/health/ready` the probes and the rollout's checks use.

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::infer::Readiness;

/// Body of `/health` and `/ready` (the v1.x shape).
#[derive(Debug, Serialize, ToSchema)]
pub struct LegacyStatus {
    /// `healthy`/`unhealthy` (`/health`), `ready`/`not_ready` (`/ready`).
    pub status: &'static str,
    /// Details.
    pub message: String,
}

/// Body of `/health/live`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Liveness {
    /// Always `alive`.
    pub status: &'static str,
}

/// Body of `/health/ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadinessBody {
    /// `ready`, `loading`, `draining` or `failed`.
    pub status: &'static str,
    /// Details (the start-up error when `failed`).
    pub message: String,
    /// The served models.
    pub models: Vec<String>,
}

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
        Readiness::Loading if state.infer.served().is_some() => {
            "models loaded; warming up".to_string()
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

fn not_ready(body: impl Serialize) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        Json(body),
    )
        .into_response()
}

/// `GET /health` (v1.x shape): healthy unless start-up failed.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    responses(
        (status = 200, description = "Running", body = LegacyStatus),
        (status = 503, description = "Start-up failed; `message` says why", body = LegacyStatus),
    )
)]
pub async fn legacy_health(State(state): State<AppState>) -> Response {
    match state.infer.failure() {
        None => Json(LegacyStatus {
            status: "healthy",
            message: format!("akidb-embed {} is running", env!("CARGO_PKG_VERSION")),
        })
        .into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(LegacyStatus {
                status: "unhealthy",
                message: reason.to_string(),
            }),
        )
            .into_response(),
    }
}

/// `GET /ready` (v1.x shape).
#[utoipa::path(
    get,
    path = "/ready",
    tag = "health",
    responses(
        (status = 200, description = "Ready to embed", body = LegacyStatus),
        (status = 503, description = "Loading, draining or failed", body = LegacyStatus,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn legacy_ready(State(state): State<AppState>) -> Response {
    match readiness(&state) {
        (Readiness::Ready, message) => Json(LegacyStatus {
            status: "ready",
            message,
        })
        .into_response(),
        (_, message) => not_ready(LegacyStatus {
            status: "not_ready",
            message,
        }),
    }
}

/// `GET /health/live`: the process is up and answering.
#[utoipa::path(
    get,
    path = "/health/live",
    tag = "health",
    responses((status = 200, description = "Alive", body = Liveness))
)]
pub async fn live() -> Response {
    Json(Liveness { status: "alive" }).into_response()
}

/// `GET /health/ready`: ready only when the default model is loaded, a warm-up inference
/// passed, and the service is not draining.
#[utoipa::path(
    get,
    path = "/health/ready",
    tag = "health",
    responses(
        (status = 200, description = "Ready to embed", body = ReadinessBody),
        (status = 503, description = "Loading, draining or failed", body = ReadinessBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    )
)]
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
    let body = ReadinessBody {
        status,
        message,
        models,
    };
    if readiness == Readiness::Ready {
        Json(body).into_response()
    } else {
        not_ready(body)
    }
}
