//! The OpenAI-compatible API: `POST /v1/embeddings` and `GET /v1/models`, so OpenAI SDKs,
//! LangChain and LlamaIndex work unchanged.

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{error::OpenAiError, AppState, ServedModel};
use crate::infer::EmbedCall;

/// Request of `POST /v1/embeddings`.
#[derive(Debug, Deserialize)]
pub struct EmbeddingsRequest {
    /// A string or an array of strings.
    pub input: Input,
    /// Model id; the default model when absent.
    #[serde(default)]
    pub model: Option<String>,
    /// `float` (default) or `base64` (little-endian f32).
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Keep the first `dimensions` values, then re-normalise.
    #[serde(default)]
    pub dimensions: Option<i64>,
    /// End-user id; accepted for compatibility, not stored.
    #[serde(default)]
    pub user: Option<String>,
}

/// `input` of the request.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    /// One text.
    One(String),
    /// Several texts.
    Many(Vec<String>),
    /// Token ids (OpenAI accepts them; this server embeds text only, so they are only recognised
    /// to answer with a clear error).
    Tokens(#[allow(dead_code)] Vec<serde::de::IgnoredAny>),
}

fn parse(bytes: &[u8]) -> Result<EmbeddingsRequest, OpenAiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let param = if e.to_string().contains("input")
            || e.classify() == serde_json::error::Category::Data
        {
            Some("input")
        } else {
            None
        };
        OpenAiError {
            status: StatusCode::BAD_REQUEST,
            message: format!("invalid request body: {e}"),
            kind: "invalid_request_error",
            param,
            code: None,
        }
    })
}

/// `POST /v1/embeddings`.
pub async fn embeddings(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match serve(&state, body).await {
        Ok(response) => response,
        Err(error) => {
            state.count_error(match error.status {
                StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
                StatusCode::NOT_FOUND => "unknown_model",
                StatusCode::TOO_MANY_REQUESTS => "overloaded",
                StatusCode::SERVICE_UNAVAILABLE => "not_ready",
                s if s.is_server_error() => "inference",
                _ => "bad_request",
            });
            error.into_response()
        }
    }
}

async fn serve(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OpenAiError> {
    let bytes = body.map_err(|r| OpenAiError {
        status: r.status(),
        message: r.body_text(),
        kind: "invalid_request_error",
        param: None,
        code: None,
    })?;
    let request = parse(&bytes)?;
    let texts = match request.input {
        Input::One(text) => vec![text],
        Input::Many(texts) => texts,
        Input::Tokens(_) => {
            return Err(OpenAiError::invalid(
                "input",
                "token arrays are not supported: send text (a string or an array of strings)",
            ))
        }
    };
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(OpenAiError::invalid(
                "encoding_format",
                format!("unknown encoding_format {other:?}: expected \"float\" or \"base64\""),
            ))
        }
    };
    let _ = request.user;
    let call = EmbedCall {
        texts,
        model: request.model,
        pooling: None,
        normalize: None,
    };
    let reply = state.infer.embed(call, None).await?;
    let mut vectors = reply.vectors;
    if let Some(dimensions) = request.dimensions {
        let full = reply.model.dimension;
        if dimensions < 1 || dimensions as usize > full {
            return Err(OpenAiError::invalid(
                "dimensions",
                format!(
                    "dimensions must be between 1 and {full} for model {}",
                    reply.model.name
                ),
            ));
        }
        for v in &mut vectors {
            v.truncate(dimensions as usize);
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            if norm > 0.0 {
                v.iter_mut().for_each(|x| *x /= norm);
            }
        }
    }
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let name = reply.model.name.clone();
    let body = json!({
        "object": "list",
        "data": data,
        "model": reply.model.name,
        "usage": {"prompt_tokens": reply.total_tokens, "total_tokens": reply.total_tokens},
    });
    let mut response = Json(body).into_response();
    response.extensions_mut().insert(ServedModel(name));
    Ok(response)
}

/// `GET /v1/models`.
pub async fn models(State(state): State<AppState>) -> Response {
    let Some(served) = state.infer.served() else {
        return OpenAiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: super::health::not_loaded(&state),
            kind: "server_error",
            param: None,
            code: Some("unavailable"),
        }
        .into_response();
    };
    let infos = served.infos();
    let data: Vec<Value> = infos
        .iter()
        .map(|i| {
            json!({
                "id": i.name,
                "object": "model",
                "created": 0,
                "owned_by": "akidb",
                "aliases": i.hub_id.iter().collect::<Vec<_>>(),
                "dimension": i.dimension,
                "max_tokens": i.max_seq_length,
                "pooling": i.pooling,
                "loaded": true,
            })
        })
        .collect();
    Json(json!({"object": "list", "data": data})).into_response()
}
