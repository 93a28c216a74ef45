//! One loaded embedding model: tokenizer, encoder, pooling and normalisation together.

use std::path::Path;

use candle_core::{Device, Tensor};

use super::{
    arch::{self, bert::Implementation, Encoder},
    device::Precision,
    error::{EngineError, Result},
    layout::ModelLayout,
    pooling::{l2_normalize, Pooling},
    quantization,
    tokenizer::{TextTokenizer, TokenBatch},
};

/// What a caller may override per request; `None` keeps the model's own setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EmbedOptions {
    /// Pooling to use instead of the model's.
    pub pooling: Option<Pooling>,
    /// Whether to L2-normalise, instead of the model's setting.
    pub normalize: Option<bool>,
}

/// How a model is loaded, beyond its folder and device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Precision of weights and activations (reduced precision is opt-in: vectors drift from
    /// the f32 reference; see docs/BENCHMARKS.md).
    pub precision: Precision,
    /// The implementation asked for; [`Implementation::choose`] keeps it where it runs.
    pub encoder: Implementation,
}

/// The vectors of one call, in input order.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// One vector per input.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens of each input after truncation, special tokens included.
    pub token_counts: Vec<usize>,
}

impl Embeddings {
    /// Tokens of the whole call.
    pub fn total_tokens(&self) -> usize {
        self.token_counts.iter().sum()
    }
}

/// What a model is, for listings and responses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModelInfo {
    /// Short name (the folder's name).
    pub name: String,
    /// Hub id, when known.
    pub hub_id: Option<String>,
    /// Length of each vector.
    pub dimension: usize,
    /// Tokens per input after truncation.
    pub max_seq_length: usize,
    /// Default pooling.
    pub pooling: Pooling,
    /// Whether vectors are L2-normalised by default.
    pub normalize: bool,
    /// `model_type` of the architecture.
    pub architecture: String,
}

/// A model ready to embed text.
pub struct EmbeddingModel {
    info: ModelInfo,
    tokenizer: TextTokenizer,
    encoder: Box<dyn Encoder>,
    device: Device,
    precision: Precision,
    load_duration: std::time::Duration,
}

impl EmbeddingModel {
    /// Loads the model in `dir` on the CPU.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        Self::load(ModelLayout::read(dir)?, &Device::Cpu)
    }

    /// Loads a model folder that has been read, in f32, in the implementation best for
    /// `device`.
    pub fn load(layout: ModelLayout, device: &Device) -> Result<Self> {
        Self::load_with(layout, device, LoadOptions::default())
    }

    /// Loads a model folder that has been read on `device` as `options` say.
    pub fn load_with(layout: ModelLayout, device: &Device, options: LoadOptions) -> Result<Self> {
        let implementation = Implementation::choose(device, options.precision, options.encoder);
        Self::load_as(layout, device, implementation, options.precision)
    }

    /// Loads the model in `dir` in a chosen implementation (to compare them).
    pub fn from_dir_as(dir: impl AsRef<Path>, implementation: Implementation) -> Result<Self> {
        Self::load_as(
            ModelLayout::read(dir)?,
            &Device::Cpu,
            implementation,
            Precision::F32,
        )
    }

    fn load_as(
        layout: ModelLayout,
        device: &Device,
        implementation: Implementation,
        precision: Precision,
    ) -> Result<Self> {
        let started = std::time::Instant::now();
        let (encoder, tokenizer) = arch::load(&layout, device, implementation, precision)?;
        let info = ModelInfo {
            name: layout.name.clone(),
            hub_id: layout.hub_id.clone(),
            dimension: encoder.hidden_size(),
            max_seq_length: layout.max_seq_length,
            pooling: layout.pooling,
            normalize: layout.normalize,
            architecture: layout.model_type.clone(),
        };
        let mut model = Self {
            info,
            tokenizer,
            encoder,
            device: device.clone(),
            precision,
            load_duration: started.elapsed(),
        };
        if precision == Precision::Int8 {
            // The f32 model, only to check the int8 one against it, then dropped.
            let reference = Self::load_as(layout, device, implementation, Precision::F32)?;
            let lowest = quantization::lowest_cosine(&model, &reference)?;
            tracing::info!(
                model = %model.info.name,
                lowest_cosine = lowest,
                promised = quantization::INT8_MIN_COSINE,
                "int8 against f32 on the calibration texts"
            );
            quantization::keep_promise(&model.info.name, lowest, quantization::INT8_MIN_COSINE)?;
            model.load_duration = started.elapsed();
        }
        Ok(model)
    }

    /// What this model is.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The precision of its weights and activations.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// How long loading took (weights, tokenizer).
    pub fn load_duration(&self) -> std::time::Duration {
        self.load_duration
    }

    /// The model's tokenizer (truncating at its `max_seq_length`).
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Whether a forward pass costs only real tokens (no work on padding).
    pub fn skips_padding(&self) -> bool {
        self.encoder.skips_padding()
    }

    /// Id of the padding token.
    pub fn pad_id(&self) -> u32 {
        self.encoder.pad_token_id()
    }

    /// Tokenizes `texts` as one padded batch.
    pub fn tokenize(&self, texts: &[&str]) -> Result<TokenBatch> {
        self.tokenizer
            .encode_batch(texts, self.encoder.pad_token_id())
    }

    /// Contextual token states (batch, seq, hidden) of a tokenized batch, and its mask.
    pub fn token_states(&self, batch: &TokenBatch) -> Result<(Tensor, Tensor)> {
        let (ids, type_ids, mask) = arch::batch_tensors(batch, &self.device)?;
        let states = self.encoder.forward(&ids, &type_ids, &mask)?;
        Ok((states, mask))
    }

    /// Embeds a tokenized batch.
    pub fn embed_batch(&self, batch: &TokenBatch, options: EmbedOptions) -> Result<Embeddings> {
        self.embed_each(batch, &vec![options; batch.len()])
    }

    /// Embeds a tokenized batch whose inputs each have their own options (`options[i]` for
    /// input *i*): one encoder pass for all of them, pooling and normalisation applied per
    /// input after it, so requests with different options can share a pass.
    pub fn embed_each(&self, batch: &TokenBatch, options: &[EmbedOptions]) -> Result<Embeddings> {
        if options.len() != batch.len() {
            return Err(EngineError::BatchFailed(format!(
                "{} options for {} inputs",
                options.len(),
                batch.len()
            )));
        }
        if batch.is_empty() {
            return Ok(Embeddings {
                vectors: Vec::new(),
                token_counts: Vec::new(),
            });
        }
        let pooling: Vec<Pooling> = options
            .iter()
            .map(|o| o.pooling.unwrap_or(self.info.pooling))
            .collect();
        let mut vectors = self.encoder.pooled(batch, &pooling)?;
        for (vector, options) in vectors.iter_mut().zip(options) {
            if options.normalize.unwrap_or(self.info.normalize) {
                l2_normalize(vector);
            }
        }
        Ok(Embeddings {
            vectors,
            token_counts: batch.lengths.clone(),
        })
    }

    /// Embeds `texts` in one batch, in input order.
    pub fn embed(&self, texts: &[&str], options: EmbedOptions) -> Result<Embeddings> {
        let batch = self.tokenize(texts)?;
        self.embed_batch(&batch, options)
    }
}
