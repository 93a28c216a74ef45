//! BERT and the BERT-family encoders that share its weights layout (MiniLM, bge, e5, ...).
//!
//! Two implementations of the same network: [`packed::PackedBert`], the CPU path, which packs
//! the inputs of a batch without padding and runs on this project's kernels; and
//! [`reference::Bert`], Candle's `BertModel`, for other devices (CUDA) and as the reference the
//! packed path is tested against.

pub mod packed;
pub mod reference;

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::Config;

use crate::engine::{
    device::Precision,
    error::{EngineError, Result},
    layout::{ModelLayout, CONFIG_FILE, WEIGHTS_FILE},
};

/// Which implementation runs a BERT model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Implementation {
    /// This project's CPU kernels on packed (unpadded) batches.
    Packed,
    /// Candle's `BertModel` on padded batches.
    Reference,
}

/// The environment variable that picks the implementation: `packed` (the default on the CPU) or
/// `candle` (Candle's `BertModel`, for comparisons).
pub const IMPLEMENTATION_ENV: &str = "AKIDB_ENCODER";

impl Implementation {
    /// The implementation for `device` at `precision`, unless `AKIDB_ENCODER` asks for
    /// Candle's: the packed encoder where it applies (CPU, f32), else Candle's.
    pub fn choose(device: &Device, precision: Precision) -> Self {
        let requested = std::env::var(IMPLEMENTATION_ENV).unwrap_or_default();
        if device.is_cpu() && precision == Precision::F32 && requested != "candle" {
            Implementation::Packed
        } else {
            Implementation::Reference
        }
    }
}

/// The parsed `config.json` of a BERT model.
pub(crate) fn config(layout: &ModelLayout) -> Result<Config> {
    let path = layout.file(CONFIG_FILE);
    serde_json::from_value(layout.config.clone())
        .map_err(|e| EngineError::invalid(&path, format!("not a BERT config: {e}")))
}

/// The model's weights, read into memory as `dtype`, under the prefix its tensors use (`bert.`, the
/// `model_type`, or none).
pub(crate) fn weights(
    layout: &ModelLayout,
    config: &Config,
    device: &Device,
    dtype: DType,
) -> Result<VarBuilder<'static>> {
    let path = layout.file(WEIGHTS_FILE);
    // Read into memory rather than mmap: a file truncated or replaced while mapped would crash
    // the process instead of failing the load.
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => EngineError::MissingFile { path: path.clone() },
        _ => EngineError::invalid(&path, e),
    })?;
    let vb = VarBuilder::from_buffered_safetensors(bytes, dtype, device)
        .map_err(|e| corrupt(layout, e))?;
    let probe = "embeddings.word_embeddings.weight";
    let prefixes = ["bert"].into_iter().chain(config.model_type.as_deref());
    for prefix in prefixes {
        if vb.contains_tensor(&format!("{prefix}.{probe}")) {
            return Ok(vb.pp(prefix));
        }
    }
    Ok(vb)
}

/// The error for weights that do not fit the architecture.
pub(crate) fn corrupt(layout: &ModelLayout, e: candle_core::Error) -> EngineError {
    EngineError::CorruptWeights {
        path: layout.file(WEIGHTS_FILE),
        reason: e.to_string(),
    }
}
