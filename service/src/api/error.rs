//! How service errors become HTTP responses: plain text for the v1 API (as v1.x answered),
//! OpenAI's JSON envelope for `/v1/*`.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::infer::ServiceError;

/// OpenAI's error envelope, the error body of every `/v1/*` route.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiErrorBody {
    /// What went wrong.
    pub error: OpenAiErrorDetail,
}

/// The inside of [`OpenAiErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiErrorDetail {
    /// Human-readable message.
    pub message: String,
    /// `invalid_request_error`, `rate_limit_error` or `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The offending parameter, if any.
    pub param: Option<String>,
    /// A machine-readable code, if any.
    pub code: Option<String>,
}

/// A client error on any REST route, in the route's own error shape: plain text on the v1
/// routes (as v1.x answered), OpenAI's envelope on `/v1/*`.
pub fn client_error(
    path: &str,
    status: StatusCode,
    message: String,
    code: &'static str,
) -> Response {
    if path.starts_with("/v1/") {
        OpenAiError {
            status,
            message,
            kind: "invalid_request_error",
            param: None,
            code: Some(code),
        }
        .into_response()
    } else {
        (status, message).into_response()
    }
}

/// Seconds a client should wait after 429 or 503.
const RETRY_AFTER_SECS: &str = "1";

fn with_retry_after(status: StatusCode, mut response: Response) -> Response {
    if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        );
    }
    response
}

/// An error of the v1 API: a plain-text body, as v1.x sent.
pub struct LegacyError(pub ServiceError);

impl IntoResponse for LegacyError {
    fn into_response(self) -> Response {
        let status = self.0.answer().status;
        with_retry_after(status, (status, self.0.legacy_message()).into_response())
    }
}

/// An error of the OpenAI-compatible API, in OpenAI's envelope.
pub struct OpenAiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable message.
    pub message: String,
    /// OpenAI's error type (`invalid_request_error`, ...).
    pub kind: &'static str,
    /// The offending parameter, if any.
    pub param: Option<&'static str>,
    /// A machine-readable code, if any.
    pub code: Option<&'static str>,
}

impl OpenAiError {
    /// A 400 `invalid_request_error` about `param`.
    pub fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param),
            code: None,
        }
    }
}

impl From<ServiceError> for OpenAiError {
    fn from(error: ServiceError) -> Self {
        let answer = error.answer();
        Self {
            status: answer.status,
            message: error.to_string(),
            kind: answer.openai_type,
            param: answer.param,
            code: answer.code,
        }
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let body = OpenAiErrorBody {
            error: OpenAiErrorDetail {
                message: self.message,
                kind: self.kind.to_string(),
                param: self.param.map(String::from),
                code: self.code.map(String::from),
            },
        };
        with_retry_after(self.status, (self.status, Json(body)).into_response())
    }
}
