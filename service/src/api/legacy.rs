//! The v1 API, unchanged for v1.x clients: `POST /api/v1/embed` and `GET /api/v1/models`.

use axum::{
    extract::{rejection::JsonRejection, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{error::LegacyError, AppState, Arrival, ServedModel};
use crate::failure::FailureKind;
use crate::infer::{EmbedCall, ServiceError};

/// Request of `POST /api/v1/embed`. Unknown fields are ignored, as v1.x ignored them.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LegacyEmbedRequest {
    /// The inputs (at most `limits.max_texts_per_request`).
    #[schema(min_items = 1, example = json!(["hello world"]))]
    pub texts: Vec<String>,
    /// Model name or Hub id (v1.x echoed it; v2 honours it); the default model when absent.
    #[serde(default)]
    #[schema(example = "all-MiniLM-L6-v2")]
    pub model: Option<String>,
    /// Pooling instead of the model's own (v1.x echoed it; v2 honours it).
    #[serde(default)]
    #[schema(value_type = Option<PoolingName>)]
    pub pooling: Option<String>,
    /// L2-normalise (default `true`).
    #[serde(default)]
    pub normalize: Option<bool>,
}

/// Pooling names a request may give.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum PoolingName {
    /// Mean of the token vectors.
    Mean,
    /// The first (`[CLS]`) token vector.
    Cls,
}

/// Response of `POST /api/v1/embed`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LegacyEmbedResponse {
    /// One vector per input, in input order.
    pub embeddings: Vec<Vec<f32>>,
    /// The model that served the request.
    pub model: String,
    /// Length of each vector.
    pub dimension: usize,
    /// Tokens and server time.
    pub usage: LegacyUsage,
}

/// `usage` of the v1 response.
#[derive(Debug, Serialize, ToSchema)]
pub struct LegacyUsage {
    /// Tokens processed, special tokens included.
    pub total_tokens: usize,
    /// Server-side time in whole milliseconds.
    pub duration_ms: u64,
}

/// JSON rejections keep axum's text and status (400, 415, 422, 413), as v1.x answered them.
pub(super) fn reject(state: &AppState, rejection: JsonRejection) -> Response {
    state.count_error(FailureKind::of_status(rejection.status()));
    rejection.into_response()
}

/// `POST /api/v1/embed`: one vector per text. Errors are plain text, as v1.x sent them.
#[utoipa::path(
    post,
    path = "/api/v1/embed",
    tag = "v1",
    request_body = LegacyEmbedRequest,
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "One vector per text, in input order", body = LegacyEmbedResponse),
        (status = 400, description = "Empty `texts`, more texts than the limit, unknown pooling, or a body that is not JSON", body = String, content_type = "text/plain"),
        (status = 401, description = "Missing or invalid API key (when keys are configured)", body = String, content_type = "text/plain",
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "The model is not served; the body lists the served models", body = String, content_type = "text/plain"),
        (status = 408, description = "The body was not received within `server.body_read_timeout_seconds`", body = String, content_type = "text/plain"),
        (status = 413, description = "The body is over `limits.max_body_bytes`, or a text over `limits.max_chars_per_text`", body = String, content_type = "text/plain"),
        (status = 415, description = "The body is not declared `Content-Type: application/json`", body = String, content_type = "text/plain"),
        (status = 422, description = "A field has the wrong type or `texts` is missing", body = String, content_type = "text/plain"),
        (status = 429, description = "The model's queue is full", body = String, content_type = "text/plain",
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
        (status = 500, description = "Inference failed", body = String, content_type = "text/plain"),
        (status = 503, description = "Not ready, shutting down, or the request waited longer than `server.timeout_seconds`", body = String, content_type = "text/plain",
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn embed(
    State(state): State<AppState>,
    Arrival(arrived): Arrival,
    payload: Result<Json<LegacyEmbedRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match payload {
        Ok(json) => json,
        Err(rejection) => return reject(&state, rejection),
    };
    let call = EmbedCall {
        texts: request.texts,
        model: request.model,
        pooling: request.pooling,
        normalize: request.normalize,
        arrived,
    };
    match state.infer.embed(call, Some(true)).await {
        Ok(reply) => {
            let name = reply.model.name.clone();
            let body = LegacyEmbedResponse {
                dimension: reply.model.dimension,
                model: reply.model.name,
                embeddings: reply.vectors,
                usage: LegacyUsage {
                    total_tokens: reply.total_tokens,
                    duration_ms: reply.duration.as_millis() as u64,
                },
            };
            let mut response = Json(body).into_response();
            response.extensions_mut().insert(ServedModel(name));
            response
        }
        Err(error) => failure(&state, error),
    }
}

fn failure(state: &AppState, error: ServiceError) -> Response {
    state.count_error(error.answer().kind);
    LegacyError(error).into_response()
}

/// Response of `GET /api/v1/models`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LegacyModels {
    /// Name of the default model (`null` until models are loaded).
    pub default: Option<String>,
    /// Every served model, default first.
    pub models: Vec<LegacyModel>,
    /// Why no model is listed (only while not loaded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One served model.
#[derive(Debug, Serialize, ToSchema)]
pub struct LegacyModel {
    /// Short name.
    pub id: String,
    /// Other accepted names (the Hub id).
    pub aliases: Vec<String>,
    /// Length of each vector.
    pub dimension: usize,
    /// Tokens per text the model reads; longer texts are truncated.
    pub max_tokens: usize,
    /// The model's own pooling.
    pub pooling: String,
    /// Whether the model's vectors are L2-normalised by default.
    pub normalize: bool,
    /// Encoder architecture.
    pub architecture: String,
    /// Always `true`: only loaded models are listed.
    pub loaded: bool,
    /// Whether requests without `model` get this one.
    pub default: bool,
}

/// `GET /api/v1/models`: every served model with its shape.
#[utoipa::path(
    get,
    path = "/api/v1/models",
    operation_id = "v1_models",
    tag = "v1",
    responses(
        (status = 200, description = "The served models", body = LegacyModels),
        (status = 503, description = "Models are not loaded (yet); `message` says why", body = LegacyModels,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn models(State(state): State<AppState>) -> Response {
    let Some(served) = state.infer.served() else {
        let body = LegacyModels {
            default: None,
            models: Vec::new(),
            message: Some(super::health::not_loaded(&state)),
        };
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::RETRY_AFTER, "1")],
            Json(body),
        )
            .into_response();
    };
    let infos = served.infos();
    let default = infos.first().map(|i| i.name.clone());
    let models = infos
        .iter()
        .map(|i| LegacyModel {
            id: i.name.clone(),
            aliases: i.hub_id.iter().cloned().collect(),
            dimension: i.dimension,
            max_tokens: i.max_seq_length,
            pooling: i.pooling.to_string(),
            normalize: i.normalize,
            architecture: i.architecture.clone(),
            loaded: true,
            default: Some(&i.name) == default.as_ref(),
        })
        .collect();
    Json(LegacyModels {
        default,
        models,
        message: None,
    })
    .into_response()
}
