//! The embedding engine: model folders in HuggingFace layout, tokenization, the forward pass on
//! Candle, pooling and normalisation. Not for transport concerns (status codes, wire formats).

pub mod arch;
pub mod batcher;
pub mod error;
pub mod hub;
pub mod layout;
pub mod model;
pub mod pooling;
pub mod registry;
pub mod tokenizer;

pub use error::EngineError;
pub use layout::ModelLayout;
pub use model::{EmbedOptions, EmbeddingModel, Embeddings, ModelInfo};
pub use pooling::Pooling;
pub use registry::ModelRegistry;
