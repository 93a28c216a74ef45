//! BERT on Candle's `BertEncoder` (padded batches, any device, any precision).
//!
//! Candle's `BertModel` builds its attention mask from `f32::MIN`, which is `-inf` in f16 and
//! bf16, and `0 × -inf` turns every padded batch into NaNs at reduced precision. So the
//! embeddings and the mask are ours (a large finite negative, exact in every precision) and the
//! transformer layers are Candle's.

use candle_core::{DType, Device, Tensor};
use candle_nn::{embedding, layer_norm, Embedding, LayerNorm, Module, VarBuilder};
use candle_transformers::models::bert::{BertEncoder, Config};

use crate::engine::{arch::Encoder, device::Precision, error::Result, layout::ModelLayout};

/// Added to the attention scores of padding: exp of it is 0 in any precision, and unlike
/// `f32::MIN` it stays finite in f16 and bf16.
const MASKED_SCORE: f64 = -1e4;

/// Word, position and token-type embeddings, summed and normalised.
struct Embeddings {
    words: Embedding,
    positions: Embedding,
    token_types: Embedding,
    norm: LayerNorm,
}

impl Embeddings {
    fn load(vb: VarBuilder, config: &Config) -> candle_core::Result<Self> {
        let hidden = config.hidden_size;
        Ok(Self {
            words: embedding(config.vocab_size, hidden, vb.pp("word_embeddings"))?,
            positions: embedding(
                config.max_position_embeddings,
                hidden,
                vb.pp("position_embeddings"),
            )?,
            token_types: embedding(
                config.type_vocab_size,
                hidden,
                vb.pp("token_type_embeddings"),
            )?,
            norm: layer_norm(hidden, config.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    fn forward(&self, ids: &Tensor, type_ids: &Tensor) -> candle_core::Result<Tensor> {
        let seq = ids.dim(1)?;
        let positions = Tensor::arange(0u32, seq as u32, ids.device())?;
        let summed = (self.words.forward(ids)? + self.token_types.forward(type_ids)?)?
            .broadcast_add(&self.positions.forward(&positions)?)?;
        self.norm.forward(&summed)
    }
}

/// A BERT encoder on Candle's layers.
pub struct Bert {
    embeddings: Embeddings,
    encoder: BertEncoder,
    config: Config,
    device: Device,
}

impl Bert {
    /// Loads `model.safetensors` with the shapes `config.json` gives, at `precision`.
    pub fn load(layout: &ModelLayout, device: &Device, precision: Precision) -> Result<Self> {
        let config = super::config(layout)?;
        let vb = super::weights(layout, &config, device, precision.dtype())?;
        let corrupt = |e| super::corrupt(layout, e);
        Ok(Self {
            embeddings: Embeddings::load(vb.pp("embeddings"), &config).map_err(corrupt)?,
            encoder: BertEncoder::load(vb.pp("encoder"), &config).map_err(corrupt)?,
            config,
            device: device.clone(),
        })
    }
}

/// The additive attention mask (batch, 1, 1, seq) of a (batch, seq) 0/1 mask, in `dtype`.
fn additive_mask(mask: &Tensor, dtype: DType) -> candle_core::Result<Tensor> {
    let keep = mask.unsqueeze(1)?.unsqueeze(1)?.to_dtype(DType::F32)?;
    // (1 - keep) * MASKED_SCORE: 0 for real tokens, MASKED_SCORE for padding.
    keep.affine(-MASKED_SCORE, MASKED_SCORE)?.to_dtype(dtype)
}

impl Encoder for Bert {
    fn forward(
        &self,
        ids: &Tensor,
        type_ids: &Tensor,
        mask: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let states = self.embeddings.forward(ids, type_ids)?;
        let mask = additive_mask(mask, states.dtype())?;
        self.encoder.forward(&states, &mask)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mask_is_zero_for_tokens_and_finite_for_padding_in_every_precision() {
        let mask = Tensor::new(&[[1u32, 1, 0]], &Device::Cpu).unwrap();
        for dtype in [DType::F32, DType::F16, DType::BF16] {
            let m = additive_mask(&mask, dtype)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert_eq!(m[0], 0.0, "{dtype:?}");
            assert_eq!(m[1], 0.0, "{dtype:?}");
            assert!(m[2].is_finite() && m[2] <= -9_000.0, "{dtype:?}: {}", m[2]);
        }
    }
}
