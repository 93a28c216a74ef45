//! Optional Bearer API keys on the REST embedding routes (see [`crate::auth`]).

use super::{error::OpenAiError, AppState};
use axum::{
    extract::{Request, State},
    http::{header, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};

/// Middleware: 401 unless the request carries `Authorization: Bearer <key>` with a valid key.
pub async fn require_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !state.keys.enabled() {
        return next.run(request).await;
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::bearer);
    if token.is_some_and(|t| state.keys.accepts(t)) {
        return next.run(request).await;
    }
    state.count_error(crate::failure::FailureKind::Unauthorized);
    let message = if token.is_some() {
        "invalid API key"
    } else {
        "missing API key: send Authorization: Bearer <key>"
    };
    let mut response = if request.uri().path().starts_with("/v1/") {
        OpenAiError {
            status: StatusCode::UNAUTHORIZED,
            message: message.to_string(),
            kind: "invalid_request_error",
            param: None,
            code: Some("invalid_api_key"),
        }
        .into_response()
    } else {
        (StatusCode::UNAUTHORIZED, format!("Unauthorized: {message}")).into_response()
    };
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}
