//! Optional Bearer API keys on the embedding routes. Keys are kept only as SHA-256 digests and
//! compared in constant time; neither keys nor presented tokens are ever logged.

use axum::{
    extract::{Request, State},
    http::{header, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{error::OpenAiError, AppState};

/// The accepted keys.
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl ApiKeys {
    /// Keys from configuration; an empty list disables authentication.
    pub fn new(keys: &[String]) -> Self {
        Self {
            digests: keys
                .iter()
                .map(|k| Sha256::digest(k.as_bytes()).into())
                .collect(),
        }
    }

    /// Whether authentication is on.
    pub fn enabled(&self) -> bool {
        !self.digests.is_empty()
    }

    /// Whether `token` is one of the keys. Every key is compared, in constant time, so timing
    /// tells neither which key matched nor how much of one did.
    pub fn accepts(&self, token: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.digests
            .iter()
            .fold(subtle::Choice::from(0), |acc, d| acc | d.ct_eq(&presented))
            .into()
    }
}

/// Middleware: 401 unless the request carries `Authorization: Bearer <key>` with a valid key.
pub async fn require_key(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !state.keys.enabled() {
        return next.run(request).await;
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if token.is_some_and(|t| state.keys.accepts(t)) {
        return next.run(request).await;
    }
    state.count_error("unauthorized");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_configured_keys() {
        let keys = ApiKeys::new(&["k".repeat(20), "other-key-0123456789".into()]);
        assert!(keys.accepts(&"k".repeat(20)));
        assert!(keys.accepts("other-key-0123456789"));
        assert!(!keys.accepts(&"k".repeat(19)));
        assert!(!keys.accepts(""));
        assert!(!ApiKeys::new(&[]).enabled());
    }
}
