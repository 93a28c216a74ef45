//! The gRPC transport: `akidb.embedding.v1.EmbeddingService` (the v1.x contract), gRPC health
//! checking and server reflection.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::infer::{EmbedCall, Infer, ServiceError};

/// Code generated from `proto/akidb/embedding/v1/embedding.proto`.
pub mod proto {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("akidb.embedding.v1");
}

/// Descriptor set of the proto, for reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("embedding_descriptor");

/// Fully qualified service name, as health checks name it.
pub const SERVICE_NAME: &str = "akidb.embedding.v1.EmbeddingService";

/// Rejects calls without a valid `authorization: Bearer <key>` when API keys are configured.
pub fn require_key(
    keys: Arc<crate::auth::ApiKeys>,
) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |request: Request<()>| {
        if !keys.enabled() {
            return Ok(request);
        }
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(crate::auth::bearer);
        match token {
            Some(t) if keys.accepts(t) => Ok(request),
            Some(_) => Err(Status::unauthenticated("invalid API key")),
            None => Err(Status::unauthenticated(
                "missing API key: send metadata authorization: Bearer <key>",
            )),
        }
    }
}

/// The service implementation.
pub struct EmbeddingGrpc {
    infer: Arc<Infer>,
}

impl EmbeddingGrpc {
    /// A service over `infer`.
    pub fn new(infer: Arc<Infer>) -> Self {
        Self { infer }
    }
}

/// The gRPC code of each service error (the v1.x codes, plus NOT_FOUND and RESOURCE_EXHAUSTED).
fn code_of(error: &ServiceError) -> tonic::Code {
    match error {
        ServiceError::EmptyInput
        | ServiceError::TooManyTexts(_)
        | ServiceError::TextTooLong { .. }
        | ServiceError::InvalidArgument(_) => tonic::Code::InvalidArgument,
        ServiceError::UnknownModel { .. } => tonic::Code::NotFound,
        ServiceError::Overloaded(_) => tonic::Code::ResourceExhausted,
        ServiceError::NotReady(_) | ServiceError::TimedOut(_) => tonic::Code::Unavailable,
        ServiceError::Inference(_) => tonic::Code::Internal,
    }
}

fn status(error: ServiceError) -> Status {
    let message = match &error {
        ServiceError::Inference(reason) => format!("Embedding failed: {reason}"),
        other => other.to_string(),
    };
    Status::new(code_of(&error), message)
}

#[tonic::async_trait]
impl proto::embedding_service_server::EmbeddingService for EmbeddingGrpc {
    async fn embed(
        &self,
        request: Request<proto::EmbedRequest>,
    ) -> Result<Response<proto::EmbedResponse>, Status> {
        let started = std::time::Instant::now();
        let req = request.into_inner();
        let call = EmbedCall {
            texts: req.texts,
            model: req.model,
            pooling: req.pooling,
            normalize: req.normalize,
        };
        let metrics = &self.infer.metrics;
        let result = self.infer.embed(call, Some(true)).await;
        let (model, code) = match &result {
            Ok(reply) => (reply.model.name.clone(), "OK".to_string()),
            Err(e) => (String::new(), format!("{:?}", code_of(e))),
        };
        metrics
            .requests
            .with_label_values(&["grpc.Embed", &model, &code])
            .inc();
        metrics
            .request_duration
            .with_label_values(&["grpc.Embed"])
            .observe(started.elapsed().as_secs_f64());
        let reply = result.map_err(|e| {
            metrics.errors.with_label_values(&[e.kind()]).inc();
            status(e)
        })?;
        Ok(Response::new(proto::EmbedResponse {
            dimension: reply.model.dimension as u32,
            model: reply.model.name,
            usage: Some(proto::UsageInfo {
                total_tokens: reply.total_tokens as u64,
                duration_ms: reply.duration.as_millis() as u64,
            }),
            embeddings: reply
                .vectors
                .into_iter()
                .map(|values| proto::Embedding { values })
                .collect(),
        }))
    }

    async fn get_model_info(
        &self,
        _request: Request<proto::GetModelInfoRequest>,
    ) -> Result<Response<proto::GetModelInfoResponse>, Status> {
        let info = self
            .infer
            .served()
            .and_then(|s| s.default_info())
            .ok_or_else(|| Status::unavailable("models are still loading"))?;
        Ok(Response::new(proto::GetModelInfoResponse {
            model: info.name,
            dimension: info.dimension as u32,
            max_tokens: info.max_seq_length as u64,
        }))
    }
}
