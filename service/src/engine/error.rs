//! Typed errors of the engine. Every error that comes from a model folder names the file.

use std::path::PathBuf;

/// What can go wrong while loading a model or embedding text.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The model folder itself does not exist or is not a folder.
    #[error("model folder {path} does not exist or is not a directory")]
    MissingFolder { path: PathBuf },
    /// A file the model needs is missing from its folder.
    #[error("{path}: file is missing")]
    MissingFile { path: PathBuf },
    /// A file exists but could not be read or parsed.
    #[error("{path}: {reason}")]
    InvalidFile { path: PathBuf, reason: String },
    /// The weights file exists but is not usable safetensors for this architecture.
    #[error("{path}: corrupt or incompatible weights: {reason}")]
    CorruptWeights { path: PathBuf, reason: String },
    /// `config.json` names an architecture this engine does not implement.
    #[error("{path}: unsupported architecture {model_type:?} (supported: {supported})")]
    UnsupportedArchitecture {
        path: PathBuf,
        model_type: String,
        supported: String,
    },
    /// The tokenizer can produce ids the model's embedding table does not have.
    #[error(
        "{path}: tokenizer does not match the model: its vocabulary has {tokenizer} entries, \
         config.json says vocab_size {model}"
    )]
    VocabularyMismatch {
        path: PathBuf,
        tokenizer: usize,
        model: usize,
    },
    /// A model was requested that the registry does not serve.
    #[error("unknown model {requested:?}; served models: {}", served.join(", "))]
    UnknownModel {
        requested: String,
        served: Vec<String>,
    },
    /// Loading from the HuggingFace Hub failed or is not available in this build.
    #[error("hub: {0}")]
    Hub(String),
    /// A model's int8 vectors fall short of the parity the int8 precision promises.
    #[error(
        "model {model}: its int8 vectors reach a cosine of {cosine:.4} to its f32 ones on the \
         calibration texts, below the {promised} that int8 promises; serve it in f32"
    )]
    QuantizationParity {
        /// The model.
        model: String,
        /// The lowest cosine measured.
        cosine: f32,
        /// The lowest cosine promised.
        promised: f32,
    },
    /// The device asked for cannot be used.
    #[error("device {spec:?}: {reason}")]
    Device { spec: String, reason: String },
    /// Tokenization of the input failed.
    #[error("tokenization failed: {0}")]
    Tokenization(String),
    /// A forward pass shared by several requests failed (the cause, as text, goes to each).
    #[error("inference failed: {0}")]
    BatchFailed(String),
    /// The forward pass failed.
    #[error("inference failed: {0}")]
    Inference(#[from] candle_core::Error),
}

impl EngineError {
    pub(crate) fn invalid(path: impl Into<PathBuf>, reason: impl ToString) -> Self {
        Self::InvalidFile {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

/// Result type of the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
