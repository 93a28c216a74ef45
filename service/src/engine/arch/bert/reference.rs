//! BERT on Candle's `BertModel` (padded batches, any device).

use candle_core::{Device, Tensor};
use candle_transformers::models::bert::{BertModel, Config};

use crate::engine::{arch::Encoder, error::Result, layout::ModelLayout};

/// A BERT encoder on Candle's `BertModel`.
pub struct Bert {
    model: BertModel,
    config: Config,
    device: Device,
}

impl Bert {
    /// Loads `model.safetensors` with the shapes `config.json` gives.
    pub fn load(layout: &ModelLayout, device: &Device) -> Result<Self> {
        let config = super::config(layout)?;
        let vb = super::weights(layout, &config, device)?;
        let model = BertModel::load(vb, &config).map_err(|e| super::corrupt(layout, e))?;
        Ok(Self {
            model,
            config,
            device: device.clone(),
        })
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

    fn device(&self) -> &Device {
        &self.device
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
