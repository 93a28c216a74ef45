//! The REST transport: the v1 legacy API, the OpenAI-compatible API, health and metrics.
//! Handlers only translate between HTTP and [`crate::infer`].

mod auth;
mod body;
mod error;
mod health;
mod legacy;
mod observe;
mod openai;
pub mod openapi;
pub mod serve;

use std::{sync::Arc, time::Duration};

use axum::{extract::DefaultBodyLimit, middleware, Extension, Router};
use tower_http::{
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::TraceLayer,
};
use utoipa::OpenApi as _;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::infer::Infer;

pub use crate::auth::ApiKeys;
// Request decoding, for the fuzz targets (service/fuzz).
pub use error::OpenAiError;
pub use legacy::{LegacyEmbedRequest, LegacyEmbedResponse, LegacyUsage};
pub use openai::{parse as parse_embeddings_request, EmbeddingsRequest, Input};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The engine handle.
    pub infer: Arc<Infer>,
    /// Accepted API keys (empty: no authentication).
    pub keys: Arc<ApiKeys>,
    /// How long a client may take to send a request body.
    pub body_timeout: Duration,
}

impl AppState {
    /// Counts a failed request in `candle_errors_total`.
    pub fn count_error(&self, kind: crate::failure::FailureKind) {
        self.infer
            .metrics
            .errors
            .with_label_values(&[kind.label()])
            .inc();
    }
}

/// When a request was accepted: stamped by the outermost middleware as soon as its headers
/// are read, so that a request accepted before draining began is served even if its body
/// arrives after.
#[derive(Clone, Copy)]
pub struct Arrival(pub std::time::Instant);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Arrival {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<Arrival>()
            .copied()
            .unwrap_or_else(|| Arrival(std::time::Instant::now())))
    }
}

/// The model that served a response, for the request metrics.
#[derive(Clone)]
pub struct ServedModel(pub String);

/// Header that carries the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// The routes with their OpenAPI document. Every route is added through `routes!`, which
/// takes its method and path from the handler's `#[utoipa::path]`: a route cannot be served
/// without being documented.
fn routes(state: &AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let embedding = OpenApiRouter::new()
        .routes(routes!(legacy::embed))
        .routes(routes!(openai::embeddings))
        // Layers run outside in: the key is checked before the body is read.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            body::read_body,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ));
    let open = OpenApiRouter::new()
        .routes(routes!(legacy::models))
        .routes(routes!(openai::models))
        .routes(routes!(health::legacy_health))
        .routes(routes!(health::legacy_ready))
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(observe::metrics))
        .routes(routes!(openapi::document));
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(embedding)
        .merge(open)
        .split_for_parts()
}

/// The OpenAPI document of the REST API.
pub fn document(state: &AppState) -> utoipa::openapi::OpenApi {
    routes(state).1
}

/// Builds the REST router.
pub fn router(state: AppState) -> Router {
    // The body reader enforces the limit with its own 413; this one only backs it up.
    let body_limit = state.infer.limits().max_body_bytes;
    let (routes, doc) = routes(&state);
    let request_id = axum::http::HeaderName::from_static(REQUEST_ID);
    routes
        .layer(Extension(openapi::ServedDocument(Arc::new(doc))))
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::{body::Body, http::Request};
    use tower::ServiceExt;

    use super::*;
    use crate::{config::Limits, metrics::Metrics};

    fn state() -> AppState {
        let metrics = Arc::new(Metrics::new("0.0.0", "test"));
        AppState {
            infer: Arc::new(Infer::new(
                Limits::default(),
                Duration::from_secs(5),
                metrics,
            )),
            keys: Arc::new(ApiKeys::new(&[])),
            body_timeout: Duration::from_secs(5),
        }
    }

    fn operations(doc: &utoipa::openapi::OpenApi) -> BTreeSet<(String, String)> {
        let value = serde_json::to_value(doc).unwrap();
        value["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(move |method| (method.to_uppercase(), path.clone()))
            })
            .collect()
    }

    #[test]
    fn the_document_is_openapi_3_and_lists_every_route_of_the_contract() {
        let doc = document(&state());
        let value = serde_json::to_value(&doc).unwrap();
        assert!(value["openapi"].as_str().unwrap().starts_with("3."));
        let expected: BTreeSet<(String, String)> = [
            ("POST", "/api/v1/embed"),
            ("GET", "/api/v1/models"),
            ("POST", "/v1/embeddings"),
            ("GET", "/v1/models"),
            ("GET", "/health"),
            ("GET", "/ready"),
            ("GET", "/health/live"),
            ("GET", "/health/ready"),
            ("GET", "/metrics"),
            ("GET", "/openapi.json"),
        ]
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
        assert_eq!(operations(&doc), expected);
        let ids: Vec<&str> = value["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
            .map(|op| op["operationId"].as_str().unwrap())
            .collect();
        let unique: BTreeSet<&str> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "operation ids repeat: {ids:?}");
    }

    #[tokio::test]
    async fn every_documented_operation_is_routed() {
        let state = state();
        let doc = document(&state);
        let app = router(state);
        for (method, path) in operations(&doc) {
            let request = Request::builder()
                .method(method.as_str())
                .uri(&path)
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            let status = response.status().as_u16();
            assert!(
                status != 404 && status != 405,
                "{method} {path} answered {status}"
            );
        }
        let unknown = Request::builder()
            .uri("/api/v2/embed")
            .body(Body::empty())
            .unwrap();
        assert_eq!(app.oneshot(unknown).await.unwrap().status(), 404);
    }
}
