//! The files of a model folder in HuggingFace layout, and what the sentence-transformers files
//! among them say about pooling, normalisation and sequence length.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{
    error::{EngineError, Result},
    pooling::Pooling,
};

/// The weights file of a model folder.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The transformer configuration of a model folder.
pub const CONFIG_FILE: &str = "config.json";
/// The tokenizer of a model folder.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// The project's own description of where a folder came from (its Hub id, its sources).
pub const PROVENANCE_FILE: &str = "akidb-model.json";

/// A model folder, read and checked, before any weights are loaded.
#[derive(Debug, Clone)]
pub struct ModelLayout {
    /// The folder.
    pub dir: PathBuf,
    /// Short name: the folder's name.
    pub name: String,
    /// The Hub id the folder was made from, when known (`sentence-transformers/all-MiniLM-L6-v2`).
    pub hub_id: Option<String>,
    /// `model_type` of `config.json` (`bert`, ...).
    pub model_type: String,
    /// `config.json` as read, for the architecture to interpret.
    pub config: serde_json::Value,
    /// Pooling from `1_Pooling/config.json` (mean when the folder has no sentence-transformers files).
    pub pooling: Pooling,
    /// Whether `modules.json` ends in a `Normalize` module.
    pub normalize: bool,
    /// Tokens per input after truncation, special tokens included.
    pub max_seq_length: usize,
}

#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
}

#[derive(Deserialize)]
struct Provenance {
    id: Option<String>,
}

#[derive(Deserialize)]
struct CommonConfig {
    model_type: Option<String>,
    max_position_embeddings: Option<usize>,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => EngineError::MissingFile {
            path: path.to_path_buf(),
        },
        _ => EngineError::invalid(path, e),
    })?;
    serde_json::from_str(&text)
        .map_err(|e| EngineError::invalid(path, format!("invalid JSON: {e}")))
}

fn read_optional_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    if path.exists() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

impl ModelLayout {
    /// Reads and checks the folder: every required file is present, the sentence-transformers
    /// files parse and name a pooling this engine implements.
    pub fn read(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(EngineError::MissingFolder { path: dir });
        }
        for file in [CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE] {
            let path = dir.join(file);
            if !path.is_file() {
                return Err(EngineError::MissingFile { path });
            }
        }
        let config_path = dir.join(CONFIG_FILE);
        let config: serde_json::Value = read_json(&config_path)?;
        let common: CommonConfig = serde_json::from_value(config.clone())
            .map_err(|e| EngineError::invalid(&config_path, e))?;
        let model_type = common
            .model_type
            .ok_or_else(|| EngineError::invalid(&config_path, "no \"model_type\" field"))?;

        let (pooling, normalize) = Self::read_modules(&dir)?;
        let positions = common.max_position_embeddings.unwrap_or(512);
        let st_path = dir.join("sentence_bert_config.json");
        let max_seq_length = read_optional_json::<SentenceBertConfig>(&st_path)?
            .and_then(|c| c.max_seq_length)
            .unwrap_or(positions)
            .min(positions);
        if max_seq_length < 2 {
            return Err(EngineError::invalid(
                &st_path,
                format!("max_seq_length {max_seq_length} leaves no room for [CLS] and [SEP]"),
            ));
        }
        let hub_id =
            read_optional_json::<Provenance>(&dir.join(PROVENANCE_FILE))?.and_then(|p| p.id);
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
        Ok(Self {
            dir,
            name,
            hub_id,
            model_type,
            config,
            pooling,
            normalize,
            max_seq_length,
        })
    }

    /// Pooling and normalisation from `modules.json` and the pooling module's config.
    fn read_modules(dir: &Path) -> Result<(Pooling, bool)> {
        let modules_path = dir.join("modules.json");
        let Some(modules) = read_optional_json::<Vec<ModuleEntry>>(&modules_path)? else {
            return Ok((Pooling::Mean, false));
        };
        let normalize = modules.iter().any(|m| m.kind.ends_with(".Normalize"));
        let pooling = match modules.iter().find(|m| m.kind.ends_with(".Pooling")) {
            None => Pooling::Mean,
            Some(module) => {
                let path = dir.join(&module.path).join("config.json");
                let cfg: PoolingConfig = read_json(&path)?;
                match (cfg.pooling_mode_cls_token, cfg.pooling_mode_mean_tokens) {
                    _ if cfg.pooling_mode_max_tokens
                        || cfg.pooling_mode_mean_sqrt_len_tokens
                        || cfg.pooling_mode_weightedmean_tokens
                        || cfg.pooling_mode_lasttoken =>
                    {
                        return Err(EngineError::invalid(
                            &path,
                            "unsupported pooling mode (supported: mean, cls)",
                        ))
                    }
                    (true, false) => Pooling::Cls,
                    (false, true) => Pooling::Mean,
                    _ => {
                        return Err(EngineError::invalid(
                            &path,
                            "exactly one of pooling_mode_cls_token and pooling_mode_mean_tokens must be true",
                        ))
                    }
                }
            }
        };
        Ok((pooling, normalize))
    }

    /// Path of a file of the folder.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}
