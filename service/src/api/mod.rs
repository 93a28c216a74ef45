//! The REST transport: the v1 legacy API, the OpenAI-compatible API, health and metrics.
//! Handlers only translate between HTTP and [`crate::infer`].

mod auth;
mod error;
mod health;
mod legacy;
mod observe;
mod openai;

use std::sync::Arc;

use axum::{
    extract::DefaultBodyLimit,
    middleware,
    routing::{get, post},
    Router,
};
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};

use crate::infer::Infer;

pub use crate::auth::ApiKeys;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The engine handle.
    pub infer: Arc<Infer>,
    /// Accepted API keys (empty: no authentication).
    pub keys: Arc<ApiKeys>,
}

impl AppState {
    /// Counts a failed request in `candle_errors_total`.
    pub fn count_error(&self, kind: &str) {
        self.infer.metrics.errors.with_label_values(&[kind]).inc();
    }
}

/// The model that served a response, for the request metrics.
#[derive(Clone)]
pub struct ServedModel(pub String);

/// Header that carries the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// Builds the REST router.
pub fn router(state: AppState) -> Router {
    let body_limit = state.infer.limits().max_body_bytes;
    let embedding = Router::new()
        .route("/api/v1/embed", post(legacy::embed))
        .route("/v1/embeddings", post(openai::embeddings))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ));
    let open = Router::new()
        .route("/api/v1/models", get(legacy::models))
        .route("/v1/models", get(openai::models))
        .route("/health", get(health::legacy_health))
        .route("/ready", get(health::legacy_ready))
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(observe::metrics));
    let request_id = axum::http::HeaderName::from_static(REQUEST_ID);
    embedding
        .merge(open)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            observe::record,
        ))
        .layer(TraceLayer::new_for_http().make_span_with(observe::make_span))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}
