//! BERT and the BERT-family encoders that share its weights layout (MiniLM, bge, e5, ...).
//!
//! Two implementations of the same network: [`packed::PackedBert`], the CPU path, which packs
//! the inputs of a batch without padding and runs on this project's kernels; and
//! [`candle_bert::Bert`], Candle's `BertModel`, for other devices (CUDA) and as the reference the
//! packed path is tested against.

pub mod candle_bert;
pub mod packed;

use std::{fmt, str::FromStr};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::Config;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::engine::{
    device::Precision,
    error::{EngineError, Result},
    layout::{ModelLayout, CONFIG_FILE, WEIGHTS_FILE},
};

/// Which implementation runs a BERT model; as a setting (`packed`, `candle`), the one asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Implementation {
    /// This project's CPU kernels on packed (unpadded) batches (`packed`, the default).
    #[default]
    Packed,
    /// Candle's `BertModel` on padded batches (`candle`).
    Candle,
}

impl Implementation {
    /// Every name [`Implementation::from_str`] takes.
    pub const NAMES: [&'static str; 2] = ["packed", "candle"];

    /// The implementation for `device` at `precision`: the `requested` one where it runs, and
    /// Candle's where the packed encoder does not (devices other than the CPU, precisions other
    /// than f32 and int8; int8 runs on the packed encoder only, so loading it elsewhere fails).
    pub fn choose(device: &Device, precision: Precision, requested: Implementation) -> Self {
        let packed_precision = matches!(precision, Precision::F32 | Precision::Int8);
        if requested == Implementation::Packed && device.is_cpu() && packed_precision {
            Implementation::Packed
        } else {
            Implementation::Candle
        }
    }

    /// Its name as a setting: `packed` or `candle`.
    pub fn as_str(self) -> &'static str {
        match self {
            Implementation::Packed => "packed",
            Implementation::Candle => "candle",
        }
    }
}

impl fmt::Display for Implementation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An encoder name that is not one of [`Implementation::NAMES`].
#[derive(Debug, thiserror::Error)]
#[error("unknown encoder {0:?}: expected \"packed\" or \"candle\"")]
pub struct UnknownImplementation(pub String);

impl FromStr for Implementation {
    type Err = UnknownImplementation;

    /// `packed` or `candle`; an empty name is the default, `packed`.
    fn from_str(name: &str) -> std::result::Result<Self, Self::Err> {
        match name {
            "" | "packed" => Ok(Implementation::Packed),
            "candle" => Ok(Implementation::Candle),
            other => Err(UnknownImplementation(other.to_string())),
        }
    }
}

impl Serialize for Implementation {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Implementation {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packed_encoder_runs_where_it_can_and_only_when_asked() {
        let cpu = Device::Cpu;
        for (precision, requested, want) in [
            (
                Precision::F32,
                Implementation::Packed,
                Implementation::Packed,
            ),
            (
                Precision::F32,
                Implementation::Candle,
                Implementation::Candle,
            ),
            (
                Precision::F16,
                Implementation::Packed,
                Implementation::Candle,
            ),
            (
                Precision::Bf16,
                Implementation::Packed,
                Implementation::Candle,
            ),
        ] {
            assert_eq!(Implementation::choose(&cpu, precision, requested), want);
        }
    }

    #[test]
    fn names_parse_back_and_an_unknown_one_lists_the_allowed() {
        for name in Implementation::NAMES {
            assert_eq!(name.parse::<Implementation>().unwrap().as_str(), name);
        }
        assert_eq!(
            "".parse::<Implementation>().unwrap(),
            Implementation::Packed
        );
        let err = "onnx".parse::<Implementation>().unwrap_err().to_string();
        assert!(
            err.contains("onnx") && err.contains("packed") && err.contains("candle"),
            "{err}"
        );
    }
}
