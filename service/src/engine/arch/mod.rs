//! Transformer architectures, one file each, behind the [`Encoder`] trait.

pub mod bert;

use candle_core::{Device, Tensor};

use super::{
    error::{EngineError, Result},
    layout::{ModelLayout, CONFIG_FILE},
};

/// Architectures this engine implements, by `config.json` `model_type`.
pub const SUPPORTED: &[&str] = &["bert"];

/// A loaded transformer that turns token ids into contextual token states.
pub trait Encoder: Send + Sync {
    /// Token states (batch, seq, hidden) for `ids`, `type_ids` and `mask` (all (batch, seq), u32).
    fn forward(
        &self,
        ids: &Tensor,
        type_ids: &Tensor,
        mask: &Tensor,
    ) -> candle_core::Result<Tensor>;
    /// Width of the token states.
    fn hidden_size(&self) -> usize;
    /// Rows of the word-embedding table.
    fn vocab_size(&self) -> usize;
    /// Id of the padding token.
    fn pad_token_id(&self) -> u32;
}

/// Loads the encoder a model folder describes.
pub fn load(layout: &ModelLayout, device: &Device) -> Result<Box<dyn Encoder>> {
    match layout.model_type.as_str() {
        "bert" => Ok(Box::new(bert::Bert::load(layout, device)?)),
        other => Err(EngineError::UnsupportedArchitecture {
            path: layout.file(CONFIG_FILE),
            model_type: other.to_string(),
            supported: SUPPORTED.join(", "),
        }),
    }
}
