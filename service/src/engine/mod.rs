//! The embedding engine: model folders in HuggingFace layout, tokenization, the forward pass on
//! Candle, pooling and normalisation. Not for transport concerns (status codes, wire formats).

pub mod arch;
pub mod batcher;
pub mod device;
pub mod error;
pub mod hub;
pub mod layout;
pub mod model;
pub mod pooling;
pub mod registry;
pub mod tokenizer;
pub mod tokenizing;

pub use arch::bert::Implementation;
pub use device::Precision;
pub use error::EngineError;
pub use layout::ModelLayout;
pub use model::{EmbedOptions, EmbeddingModel, Embeddings, ModelInfo};
pub use pooling::Pooling;
pub use registry::ModelRegistry;

/// Sizes the inference thread pools (0: one thread per core) before the first model runs;
/// returns the size in effect.
pub fn init_threads(threads: usize) -> usize {
    if threads > 0 {
        // Candle's own CPU kernels (the reference implementation) size their pool from this.
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
    akidb_kernels::threads::init((threads > 0).then_some(threads))
}
