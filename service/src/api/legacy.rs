//! The v1 API, unchanged for v1.x clients: `POST /api/v1/embed` and `GET /api/v1/models`.

use axum::{
    extract::{rejection::JsonRejection, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{error::LegacyError, AppState, ServedModel};
use crate::infer::{EmbedCall, ServiceError};

/// Request of `POST /api/v1/embed`.
#[derive(Debug, Deserialize)]
pub struct LegacyEmbedRequest {
    /// The inputs.
    pub texts: Vec<String>,
    /// Model name or Hub id (v1.x echoed it; v2 honours it).
    #[serde(default)]
    pub model: Option<String>,
    /// `mean` or `cls` (v1.x echoed it; v2 honours it).
    #[serde(default)]
    pub pooling: Option<String>,
    /// L2-normalise (default `true`).
    #[serde(default)]
    pub normalize: Option<bool>,
}

/// Response of `POST /api/v1/embed`.
#[derive(Debug, Serialize)]
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
#[derive(Debug, Serialize)]
pub struct LegacyUsage {
    /// Tokens processed, special tokens included.
    pub total_tokens: usize,
    /// Server-side time in whole milliseconds.
    pub duration_ms: u64,
}

/// JSON rejections keep axum's text and status (400, 415, 422, 413), as v1.x answered them.
pub(super) fn reject(state: &AppState, rejection: JsonRejection) -> Response {
    let kind = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        "payload_too_large"
    } else {
        "bad_request"
    };
    state.count_error(kind);
    rejection.into_response()
}

/// `POST /api/v1/embed`.
pub async fn embed(
    State(state): State<AppState>,
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
    state.count_error(error.kind());
    LegacyError(error).into_response()
}

/// `GET /api/v1/models`: every served model with its shape.
pub async fn models(State(state): State<AppState>) -> Response {
    let Some(served) = state.infer.served() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::RETRY_AFTER, "1")],
            Json(json!({"default": null, "models": [], "message": super::health::not_loaded(&state)})),
        )
            .into_response();
    };
    let infos = served.infos();
    let default = infos.first().map(|i| i.name.clone());
    let models: Vec<_> = infos
        .iter()
        .map(|i| {
            json!({
                "id": i.name,
                "aliases": i.hub_id.iter().collect::<Vec<_>>(),
                "dimension": i.dimension,
                "max_tokens": i.max_seq_length,
                "pooling": i.pooling,
                "normalize": i.normalize,
                "architecture": i.architecture,
                "loaded": true,
                "default": Some(&i.name) == default.as_ref(),
            })
        })
        .collect();
    Json(json!({"default": default, "models": models})).into_response()
}
