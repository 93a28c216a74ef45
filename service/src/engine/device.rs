//! Where a model runs and at what precision: `cpu` or `cuda[:N]`, `f32` (default), `f16`,
//! `bf16` or `int8`.

use std::{fmt, str::FromStr};

use candle_core::{DType, Device};

use super::error::{EngineError, Result};

/// Numeric precision of weights and activations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// 32-bit floats everywhere: the reference vectors' precision (default).
    #[default]
    F32,
    /// IEEE half precision (opt-in; for GPUs).
    F16,
    /// bfloat16 (opt-in; for GPUs and CPUs with native bf16).
    Bf16,
    /// The dense layers' products in 8-bit integers, everything else in f32 (opt-in; the
    /// packed encoder on the CPU). A model whose int8 vectors fall short of
    /// [`crate::engine::quantization::INT8_MIN_COSINE`] to its f32 ones is refused at load.
    Int8,
}

impl Precision {
    /// The Candle dtype of weights and activations.
    pub fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F16 => DType::F16,
            Precision::Bf16 => DType::BF16,
            // Activations and every other weight stay in f32.
            Precision::Int8 => DType::F32,
        }
    }

    /// The name used in configuration and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F16 => "f16",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for a precision name that is not one of ours.
#[derive(Debug, thiserror::Error)]
#[error("unknown precision {0:?}: expected \"f32\", \"f16\", \"bf16\" or \"int8\"")]
pub struct UnknownPrecision(pub String);

impl FromStr for Precision {
    type Err = UnknownPrecision;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" | "float32" => Ok(Precision::F32),
            "f16" | "fp16" | "float16" => Ok(Precision::F16),
            "bf16" | "bfloat16" => Ok(Precision::Bf16),
            "int8" | "i8" => Ok(Precision::Int8),
            _ => Err(UnknownPrecision(s.to_string())),
        }
    }
}

/// Opens the device named `spec`: `cpu`, `cuda` (GPU 0) or `cuda:N`.
///
/// A CUDA device in a build without the `cuda` feature, or on a machine without one, is a clear
/// error rather than a silent fallback to the CPU.
pub fn open(spec: &str) -> Result<Device> {
    let spec = spec.trim().to_ascii_lowercase();
    let ordinal = match spec.as_str() {
        "cpu" => return Ok(Device::Cpu),
        "cuda" | "gpu" => 0,
        other => match other.strip_prefix("cuda:") {
            Some(n) => n.parse::<usize>().map_err(|_| EngineError::Device {
                spec: spec.clone(),
                reason: "expected cuda:N with N a GPU index".into(),
            })?,
            None => {
                return Err(EngineError::Device {
                    spec: spec.clone(),
                    reason: "expected \"cpu\", \"cuda\" or \"cuda:N\"".into(),
                })
            }
        },
    };
    if !candle_core::utils::cuda_is_available() {
        return Err(EngineError::Device {
            spec,
            reason: "this build has no CUDA support (build with `--features cuda`)".into(),
        });
    }
    Device::new_cuda(ordinal).map_err(|e| EngineError::Device {
        spec,
        reason: e.to_string(),
    })
}

/// A short description of `device` for logs and bench output (`cpu`, `cuda:0`).
pub fn describe(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_precisions_and_rejects_others() {
        assert_eq!("bf16".parse::<Precision>().unwrap(), Precision::Bf16);
        assert_eq!("FP16".parse::<Precision>().unwrap(), Precision::F16);
        assert_eq!("f32".parse::<Precision>().unwrap(), Precision::F32);
        let err = "int4".parse::<Precision>().unwrap_err();
        assert!(err.to_string().contains("int4"), "{err}");
    }

    #[test]
    fn opens_the_cpu_and_rejects_bad_names() {
        assert!(open("cpu").unwrap().is_cpu());
        let err = open("tpu").unwrap_err().to_string();
        assert!(err.contains("tpu") && err.contains("cuda:N"), "{err}");
        let err = open("cuda:x").unwrap_err().to_string();
        assert!(err.contains("GPU index"), "{err}");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_a_clear_error() {
        let err = open("cuda:0").unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }
}
