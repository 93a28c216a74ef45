//! Transformer architectures, one folder or file each, behind the [`Encoder`] trait.

pub mod bert;

use candle_core::{DType, Device, Tensor};

use super::{
    device::{describe, Precision},
    error::{EngineError, Result},
    layout::{ModelLayout, CONFIG_FILE, TOKENIZER_FILE},
    pooling::Pooling,
    quantization,
    tokenizer::{TextTokenizer, TokenBatch},
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

    /// One pooled (not normalised) vector per input of `batch`, input *i* pooled as
    /// `pooling[i]` says (one pass serves inputs with different poolings).
    ///
    /// The default runs [`Encoder::forward`] on the padded batch and pools the states;
    /// implementations that can skip the padding override it.
    fn pooled(
        &self,
        batch: &TokenBatch,
        pooling: &[Pooling],
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let (ids, type_ids, mask) = batch_tensors(batch, self.device())?;
        // Pooled in f32 whatever the model's precision: a mean over many tokens in 16 bits
        // loses digits for nothing.
        let states = self.forward(&ids, &type_ids, &mask)?.to_dtype(DType::F32)?;
        let mut out = vec![Vec::new(); batch.len()];
        // Each pooling the batch uses, once over the whole batch; each input keeps its own.
        for kind in [Pooling::Mean, Pooling::Cls] {
            if !pooling.contains(&kind) {
                continue;
            }
            let pooled = kind.pool(&states, &mask)?.to_vec2::<f32>()?;
            for ((slot, vector), wanted) in out.iter_mut().zip(pooled).zip(pooling) {
                if *wanted == kind {
                    *slot = vector;
                }
            }
        }
        Ok(out)
    }

    /// Whether a pass costs only its real tokens ([`Encoder::pooled`] skips padding), so that
    /// batches need not group inputs of similar length.
    fn skips_padding(&self) -> bool {
        false
    }

    /// The device the weights live on.
    fn device(&self) -> &Device;
    /// Width of the token states.
    fn hidden_size(&self) -> usize;
    /// Rows of the word-embedding table.
    fn vocab_size(&self) -> usize;
    /// Id of the padding token.
    fn pad_token_id(&self) -> u32;
}

/// The token ids, type ids and mask of a padded batch as (batch, seq) tensors on `device`.
pub(crate) fn batch_tensors(
    batch: &TokenBatch,
    device: &Device,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let shape = (batch.len(), batch.seq_len);
    Ok((
        Tensor::from_slice(&batch.ids, shape, device)?,
        Tensor::from_slice(&batch.type_ids, shape, device)?,
        Tensor::from_slice(&batch.mask, shape, device)?,
    ))
}

/// Loads the encoder a model folder describes, in the given implementation, and its tokenizer
/// (checked against the encoder's vocabulary; int8 tokenizes its smoothing texts with it).
pub fn load(
    layout: &ModelLayout,
    device: &Device,
    implementation: bert::Implementation,
    precision: Precision,
) -> Result<(Box<dyn Encoder>, TextTokenizer)> {
    let tokenizer_for = |encoder: &dyn Encoder| {
        TextTokenizer::load(
            &layout.file(TOKENIZER_FILE),
            layout.max_seq_length,
            encoder.vocab_size(),
        )
    };
    match layout.model_type.as_str() {
        "bert" => Ok(match implementation {
            bert::Implementation::Packed => {
                if !device.is_cpu() || !matches!(precision, Precision::F32 | Precision::Int8) {
                    return Err(EngineError::Device {
                        spec: describe(device),
                        reason: format!(
                            "the packed encoder runs on the CPU in f32 or int8 only, not {precision}"
                        ),
                    });
                }
                let encoder = bert::packed::PackedBert::load(layout)?;
                let tokenizer = tokenizer_for(&encoder)?;
                let encoder: Box<dyn Encoder> = Box::new(if precision == Precision::Int8 {
                    use akidb_kernels::int8::Int8Micro;
                    let micro = Int8Micro::best();
                    let slower = match micro {
                        Int8Micro::Amx | Int8Micro::Vnni => None,
                        Int8Micro::Avx2 => Some(
                            "this CPU has neither AMX-INT8 nor AVX-512 VNNI: int8 runs on AVX2, \
                             faster than f32 on single texts, about as fast on large batches",
                        ),
                        Int8Micro::Portable => Some(
                            "this CPU has no int8 vector kernel: int8 runs, no faster than f32 here",
                        ),
                    };
                    if let Some(message) = slower {
                        tracing::warn!(model = %layout.name, kernel = micro.name(), "{message}");
                    }
                    // The quantization's own log lines name the model.
                    let _model = tracing::info_span!("int8", model = %layout.name).entered();
                    let rows = tokenizer.encode_rows(&quantization::SMOOTHING_TEXTS)?;
                    let batch = TokenBatch::from_rows(rows.iter(), encoder.pad_token_id());
                    encoder.into_int8(&batch)?
                } else {
                    encoder
                });
                (encoder, tokenizer)
            }
            bert::Implementation::Candle => {
                if precision == Precision::Int8 {
                    return Err(EngineError::Device {
                        spec: describe(device),
                        reason: "int8 runs on the packed encoder on the CPU only \
                                 (embedding.encoder = \"packed\", device cpu)"
                            .into(),
                    });
                }
                let encoder = bert::candle_bert::Bert::load(layout, device, precision)?;
                let tokenizer = tokenizer_for(&encoder)?;
                (Box::new(encoder), tokenizer)
            }
        }),
        other => Err(EngineError::UnsupportedArchitecture {
            path: layout.file(CONFIG_FILE),
            model_type: other.to_string(),
            supported: SUPPORTED.join(", "),
        }),
    }
}
