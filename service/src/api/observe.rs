//! Request metrics, request spans (with W3C `traceparent`) and the `/metrics` route.

use axum::{
    extract::{MatchedPath, Request, State},
    http::header,
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{AppState, Arrival, ServedModel, REQUEST_ID};

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "observability",
    responses((status = 200, description = "Prometheus text format", body = String,
        content_type = "text/plain"))
)]
pub async fn metrics(State(state): State<AppState>) -> Response {
    state.infer.observe_queues();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.infer.metrics.render(),
    )
        .into_response()
}

/// Middleware: counts every request by route, model and status, and times it.
/// Stamps the request's [`Arrival`].
pub async fn record(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    request
        .extensions_mut()
        .insert(Arrival(std::time::Instant::now()));
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let observation = state.infer.metrics.start_request(&route);
    let response = next.run(request).await;
    let model = response
        .extensions()
        .get::<ServedModel>()
        .map(|m| m.0.as_str())
        .unwrap_or("");
    observation.finish(model, response.status().as_u16());
    response
}

/// The span of one request: method, path and request id, a child of the caller's trace when
/// the request carries `traceparent`.
pub fn make_span(request: &Request) -> tracing::Span {
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
    );
    crate::telemetry::set_parent_from_headers(&span, request.headers());
    span
}
