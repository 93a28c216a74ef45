//! The OpenAI-compatible API: `POST /v1/embeddings` and `GET /v1/models`, so OpenAI SDKs,
//! LangChain and LlamaIndex work unchanged.

use std::time::Instant;

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{
    error::{OpenAiError, OpenAiErrorBody},
    AppState, Arrival, ServedModel,
};
use crate::{
    engine::pooling::l2_normalize,
    failure::FailureKind,
    infer::{EmbedCall, ServiceError},
};

/// Request of `POST /v1/embeddings`. Unknown fields are ignored.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EmbeddingsRequest {
    /// A string or an array of strings.
    #[schema(value_type = InputSchema)]
    pub input: Input,
    /// Model id; the default model when absent.
    #[serde(default)]
    #[schema(example = "all-MiniLM-L6-v2")]
    pub model: Option<String>,
    /// `float` (default) or `base64` (little-endian f32).
    #[serde(default)]
    #[schema(value_type = Option<EncodingFormat>)]
    pub encoding_format: Option<String>,
    /// Keep the first `dimensions` values (1 to the model's dimension); re-normalised when the
    /// model's vectors are normalised, as OpenAI's are.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub dimensions: Option<i64>,
    /// End-user id; accepted for compatibility, not stored.
    #[serde(default)]
    pub user: Option<String>,
}

/// `input` as documented: text only (token arrays are answered 400).
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum InputSchema {
    /// One text.
    One(String),
    /// Several texts (at least one, at most `limits.max_texts_per_request`).
    Many(Vec<String>),
}

/// Encodings of the vectors.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum EncodingFormat {
    /// Arrays of numbers.
    Float,
    /// Base64 of little-endian f32 values.
    Base64,
}

/// Response of `POST /v1/embeddings`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingsResponse {
    /// Always `list`.
    pub object: &'static str,
    /// One item per input, in input order.
    pub data: Vec<EmbeddingItem>,
    /// The model that served the request.
    pub model: String,
    /// Tokens processed.
    pub usage: EmbeddingsUsage,
}

/// One vector of [`EmbeddingsResponse`].
#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingItem {
    /// Always `embedding`.
    pub object: &'static str,
    /// Position of the input.
    pub index: usize,
    /// The vector, as asked by `encoding_format`.
    pub embedding: Vector,
}

/// A vector as numbers or as base64.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Vector {
    /// `encoding_format: float`.
    Float(Vec<f32>),
    /// `encoding_format: base64`: little-endian f32 values.
    Base64(String),
}

/// `usage` of [`EmbeddingsResponse`].
#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingsUsage {
    /// Tokens of all inputs, special tokens included.
    pub prompt_tokens: usize,
    /// Same as `prompt_tokens`.
    pub total_tokens: usize,
}

/// Response of `GET /v1/models`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: &'static str,
    /// The served models, default first.
    pub data: Vec<ModelCard>,
}

/// One served model, in OpenAI's shape plus its dimensions.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelCard {
    /// Short name.
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    /// Always 0.
    pub created: u64,
    /// Always `akidb`.
    pub owned_by: &'static str,
    /// Other accepted names (the Hub id).
    pub aliases: Vec<String>,
    /// Length of each vector.
    pub dimension: usize,
    /// Tokens per text the model reads.
    pub max_tokens: usize,
    /// The model's own pooling.
    pub pooling: String,
    /// Always `true`.
    pub loaded: bool,
}

/// `input` of the request.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a string or an array of strings")]
pub enum Input {
    /// One text.
    One(String),
    /// Several texts.
    Many(Vec<String>),
    /// Token ids (OpenAI accepts them; this server embeds text only, so they are only recognised
    /// to answer with a clear error).
    Tokens(#[allow(dead_code)] Vec<serde::de::IgnoredAny>),
}

/// The request's fields, as an error's `param` names them.
const FIELDS: &[&str] = &["input", "model", "encoding_format", "dimensions", "user"];

/// Decodes a request body as the handler does, with the error it would answer: `param` names
/// the field whose value is wrong (`input` when it is missing), none for a body that is not JSON.
pub fn parse(bytes: &[u8]) -> Result<EmbeddingsRequest, OpenAiError> {
    let invalid = |inner: &serde_json::Error, param: Option<&'static str>| OpenAiError {
        status: StatusCode::BAD_REQUEST,
        message: format!("invalid request body: {inner}"),
        kind: "invalid_request_error",
        param,
        code: None,
    };
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let request = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let field = match e.path().iter().next() {
            Some(serde_path_to_error::Segment::Map { key }) => {
                FIELDS.iter().copied().find(|f| *f == key.as_str())
            }
            _ => None,
        };
        let param = match e.inner().classify() {
            serde_json::error::Category::Data => field.or(Some("input")),
            _ => None,
        };
        invalid(e.inner(), param)
    })?;
    // Characters after the object are an error, as `serde_json::from_slice` makes them.
    deserializer.end().map_err(|e| invalid(&e, None))?;
    Ok(request)
}

/// Shortens each vector to its first `dimensions` values. As OpenAI's API does, a shortened
/// vector of a model whose vectors are L2-normalised is normalised again (so it stays a unit
/// vector); a model served unnormalised keeps the values as they are.
pub fn shorten(vectors: &mut [Vec<f32>], dimensions: usize, normalized: bool) {
    for v in vectors {
        v.truncate(dimensions);
        if normalized {
            l2_normalize(v);
        }
    }
}

/// `POST /v1/embeddings`: OpenAI's embeddings API. Errors are in OpenAI's envelope.
#[utoipa::path(
    post,
    path = "/v1/embeddings",
    tag = "openai",
    request_body = EmbeddingsRequest,
    security((), ("api_key" = [])),
    responses(
        (status = 200, description = "One vector per input, in input order", body = EmbeddingsResponse),
        (status = 400, description = "Invalid request: empty input, too many texts, token arrays, bad field values, or a body that is not JSON", body = OpenAiErrorBody),
        (status = 401, description = "Missing or invalid API key (when keys are configured)", body = OpenAiErrorBody,
            headers(("WWW-Authenticate" = String, description = "`Bearer`"))),
        (status = 404, description = "The model is not served (`model_not_found`)", body = OpenAiErrorBody),
        (status = 408, description = "The body was not received within `server.body_read_timeout_seconds`", body = OpenAiErrorBody),
        (status = 413, description = "The body or a text is over its limit", body = OpenAiErrorBody),
        (status = 429, description = "The model's queue is full", body = OpenAiErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
        (status = 500, description = "Inference failed", body = OpenAiErrorBody),
        (status = 503, description = "Not ready, shutting down, or the request waited longer than `server.timeout_seconds`", body = OpenAiErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn embeddings(
    State(state): State<AppState>,
    Arrival(arrived): Arrival,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match serve(&state, arrived, body).await {
        Ok(response) => response,
        Err(Failure { kind, error }) => {
            state.count_error(kind);
            error.into_response()
        }
    }
}

/// An error answer and the `kind` it is counted under in `candle_errors_total`: the same kind
/// the legacy route counts for the same failure.
struct Failure {
    kind: FailureKind,
    error: OpenAiError,
}

impl From<ServiceError> for Failure {
    fn from(error: ServiceError) -> Self {
        Self {
            kind: error.answer().kind,
            error: error.into(),
        }
    }
}

/// The handler's own errors: the request as sent is refused.
impl From<OpenAiError> for Failure {
    fn from(error: OpenAiError) -> Self {
        Self {
            kind: FailureKind::of_status(error.status),
            error,
        }
    }
}

async fn serve(
    state: &AppState,
    arrived: Instant,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Failure> {
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
            return Err(Failure::from(OpenAiError::invalid(
                "input",
                "token arrays are not supported: send text (a string or an array of strings)",
            )))
        }
    };
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(Failure::from(OpenAiError::invalid(
                "encoding_format",
                format!("unknown encoding_format {other:?}: expected \"float\" or \"base64\""),
            )))
        }
    };
    let _ = request.user;
    let call = EmbedCall {
        texts,
        model: request.model,
        pooling: None,
        normalize: None,
        arrived,
    };
    // `dimensions` is checked against the model before any inference is spent on the request.
    let dimensions = match (request.dimensions, state.infer.served()) {
        (Some(dimensions), Some(served)) => {
            let info = served.info(call.model.as_deref())?;
            let full = info.dimension;
            if dimensions < 1 || dimensions as usize > full {
                return Err(Failure::from(OpenAiError::invalid(
                    "dimensions",
                    format!(
                        "dimensions must be between 1 and {full} for model {}",
                        info.name
                    ),
                )));
            }
            Some(dimensions as usize)
        }
        // Not serving yet: the call below answers 503 first.
        _ => None,
    };
    let reply = state.infer.embed(call, None).await?;
    let mut vectors = reply.vectors;
    if let Some(dimensions) = dimensions {
        shorten(&mut vectors, dimensions, reply.model.normalize);
    }
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Vector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Vector::Float(v)
            };
            EmbeddingItem {
                object: "embedding",
                index,
                embedding,
            }
        })
        .collect();
    let name = reply.model.name.clone();
    let body = EmbeddingsResponse {
        object: "list",
        data,
        model: reply.model.name,
        usage: EmbeddingsUsage {
            prompt_tokens: reply.total_tokens,
            total_tokens: reply.total_tokens,
        },
    };
    let mut response = Json(body).into_response();
    response.extensions_mut().insert(ServedModel(name));
    Ok(response)
}

/// `GET /v1/models`: the served models in OpenAI's list shape.
#[utoipa::path(
    get,
    path = "/v1/models",
    operation_id = "openai_models",
    tag = "openai",
    responses(
        (status = 200, description = "The served models", body = ModelList),
        (status = 503, description = "Models are not loaded (yet)", body = OpenAiErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying"))),
    )
)]
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
    let data = infos
        .iter()
        .map(|i| ModelCard {
            id: i.name.clone(),
            object: "model",
            created: 0,
            owned_by: "akidb",
            aliases: i.hub_id.iter().cloned().collect(),
            dimension: i.dimension,
            max_tokens: i.max_seq_length,
            pooling: i.pooling.to_string(),
            loaded: true,
        })
        .collect();
    Json(ModelList {
        object: "list",
        data,
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param_of(body: &str) -> Option<&'static str> {
        parse(body.as_bytes()).unwrap_err().param
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named_as_the_param() {
        for (body, param) in [
            (r#"{"input": "x", "dimensions": "10"}"#, Some("dimensions")),
            (r#"{"input": "x", "dimensions": 1.5}"#, Some("dimensions")),
            (r#"{"input": "x", "dimensions": [10]}"#, Some("dimensions")),
            (r#"{"input": "x", "model": 7}"#, Some("model")),
            (
                r#"{"input": "x", "encoding_format": 1}"#,
                Some("encoding_format"),
            ),
            (r#"{"input": "x", "user": {"id": 1}}"#, Some("user")),
            (r#"{"input": 42}"#, Some("input")),
            (r#"{"model": "m"}"#, Some("input")),
            (r#"{"input": "x""#, None),
            (r#"{"input": "x"} trailing"#, None),
            ("not json", None),
        ] {
            assert_eq!(param_of(body), param, "{body}");
        }
        let error = parse(br#"{"input": "x", "dimensions": "10"}"#).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert!(error.message.starts_with("invalid request body: "));
    }

    #[test]
    fn a_valid_body_parses() {
        let body = br#"{"input": ["a", "b"], "dimensions": 8, "unknown": 1}"#;
        let request = parse(body).unwrap_or_else(|e| panic!("{}", e.message));
        assert!(matches!(request.input, Input::Many(ref t) if t.len() == 2));
        assert_eq!(request.dimensions, Some(8));
    }

    #[test]
    fn shortening_renormalises_only_normalised_vectors() {
        let mut normalised = vec![vec![0.6f32, 0.0, 0.8]];
        shorten(&mut normalised, 1, true);
        assert_eq!(normalised, vec![vec![1.0]]);
        let mut raw = vec![vec![3f32, 4.0, 12.0]];
        shorten(&mut raw, 2, false);
        assert_eq!(raw, vec![vec![3.0, 4.0]]);
    }
}
