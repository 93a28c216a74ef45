//! The gRPC transport: `akidb.embedding.v1.EmbeddingService` (the v1.x contract), gRPC health
//! checking and server reflection.

use std::{sync::Arc, time::Instant};

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

fn status(error: ServiceError) -> Status {
    Status::new(error.answer().grpc, error.legacy_message())
}

#[tonic::async_trait]
impl proto::embedding_service_server::EmbeddingService for EmbeddingGrpc {
    async fn embed(
        &self,
        request: Request<proto::EmbedRequest>,
    ) -> Result<Response<proto::EmbedResponse>, Status> {
        let arrived = Instant::now();
        let req = request.into_inner();
        let call = EmbedCall {
            texts: req.texts,
            model: req.model,
            pooling: req.pooling,
            normalize: req.normalize,
            arrived,
        };
        let metrics = &self.infer.metrics;
        let observation = metrics.start_request("grpc.Embed");
        let result = self.infer.embed(call, Some(true)).await;
        match &result {
            Ok(reply) => observation.finish(&reply.model.name, 200),
            Err(e) => observation.finish("", e.answer().status.as_u16()),
        }
        let reply = result.map_err(|e| {
            metrics
                .errors
                .with_label_values(&[e.answer().kind.label()])
                .inc();
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
