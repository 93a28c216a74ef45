//! AkiDB's Candle embedding service.
//!
//! The crate is split the way a request flows: [`engine`] turns text into vectors (model files,
//! tokenization, the forward pass, pooling) and knows nothing about HTTP or gRPC; the transports
//! built on top of it only translate requests and errors.

pub mod api;
pub mod auth;
pub mod config;
pub mod engine;
pub mod failure;
pub mod grpc;
pub mod infer;
pub mod memory;
pub mod metrics;
pub mod server;
pub mod startup;
pub mod telemetry;
