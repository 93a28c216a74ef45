//! BERT and the BERT-family encoders that share its weights layout (MiniLM, bge, e5, ...).

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};

use super::Encoder;
use crate::engine::{
    error::{EngineError, Result},
    layout::{ModelLayout, CONFIG_FILE, WEIGHTS_FILE},
};

/// A BERT encoder on Candle.
pub struct Bert {
    model: BertModel,
    config: Config,
}

impl Bert {
    /// Loads `model.safetensors` with the shapes `config.json` gives.
    pub fn load(layout: &ModelLayout, device: &Device) -> Result<Self> {
        let config_path = layout.file(CONFIG_FILE);
        let config: Config = serde_json::from_value(layout.config.clone())
            .map_err(|e| EngineError::invalid(&config_path, format!("not a BERT config: {e}")))?;
        let weights_path = layout.file(WEIGHTS_FILE);
        // Read into memory rather than mmap: a file truncated or replaced while mapped would
        // crash the process instead of failing the load.
        let bytes = std::fs::read(&weights_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => EngineError::MissingFile {
                path: weights_path.clone(),
            },
            _ => EngineError::invalid(&weights_path, e),
        })?;
        let corrupt = |e: candle_core::Error| EngineError::CorruptWeights {
            path: weights_path.clone(),
            reason: e.to_string(),
        };
        let vb =
            VarBuilder::from_buffered_safetensors(bytes, DType::F32, device).map_err(corrupt)?;
        let model = BertModel::load(vb, &config).map_err(corrupt)?;
        Ok(Self { model, config })
    }
}

impl Encoder for Bert {
    fn forward(
        &self,
        ids: &Tensor,
        type_ids: &Tensor,
        mask: &Tensor,
    ) -> candle_core::Result<Tensor> {
        self.model.forward(ids, type_ids, Some(mask))
    }

    fn hidden_size(&self) -> usize {
        self.config.hidden_size
    }

    fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    fn pad_token_id(&self) -> u32 {
        self.config.pad_token_id as u32
    }
}
