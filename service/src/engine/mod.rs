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
pub mod quantization;
pub mod registry;
pub mod tokenizer;
pub mod tokenizing;

use akidb_kernels::{choice::Choice, KernelConfig, KernelRequest};

pub use arch::bert::Implementation;
pub use device::Precision;
pub use error::EngineError;
pub use layout::ModelLayout;
pub use model::{EmbedOptions, EmbeddingModel, Embeddings, LoadOptions, ModelInfo};
pub use pooling::Pooling;
pub use registry::ModelRegistry;

/// What [`init_compute`] set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compute {
    /// Threads of the kernel pool.
    pub threads: usize,
    /// The kernels that run.
    pub kernels: Choice,
}

/// Sizes the inference thread pools (`threads`, 0: one thread per core) and picks the dense
/// layers' kernel (`matmul`), once per process, before the first model loads; logs the choice.
///
/// Rayon's global pool, which Candle's own CPU kernels (`Implementation::Candle`) run on,
/// gets the same size. A micro-kernel this CPU cannot run is a warning, and the fastest it can
/// run is used instead.
pub fn init_compute(threads: usize, matmul: KernelRequest) -> Compute {
    let requested = (threads > 0).then_some(threads);
    if let Some(n) = requested {
        if let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
        {
            tracing::warn!(error = %e, "rayon's global pool was already started: its size stays");
        }
    }
    let config = KernelConfig {
        dense: matmul,
        threads: requested,
    };
    let threads = akidb_kernels::configure(config).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "the kernels keep their first configuration");
        akidb_kernels::threads::count()
    });
    let kernels = Choice::detect();
    if !matmul.available() {
        tracing::warn!(
            requested = %matmul,
            running = %kernels.dense.name(),
            "this CPU cannot run the requested kernel (embedding.matmul); the fastest it can \
             run is used instead"
        );
    }
    tracing::info!(threads, kernels = %kernels, "compute");
    Compute { threads, kernels }
}
