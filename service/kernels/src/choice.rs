//! Which kernels this process runs: chosen at run time from the CPU and the configuration
//! ([`crate::config`]), and named for benchmarks and logs.

use std::fmt;

use crate::{config::KernelRequest, linear::Kernel};

/// The kernels chosen on this CPU, in this build and configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The dense layers' kernel as asked for.
    pub requested: KernelRequest,
    /// The dense layers' kernel that runs ([`KernelRequest::resolve`]).
    pub dense: Kernel,
    /// Whether products of a few rows on `gemm` take the AVX2 skinny kernel instead.
    pub skinny: bool,
    /// The instruction set the element-wise loops (GELU, softmax, LayerNorm, attention) are
    /// compiled for: `avx512`, `avx2` or `baseline`.
    pub elementwise: &'static str,
}

impl Choice {
    /// What this process would run now, with its configuration.
    pub fn detect() -> Self {
        Self::of(crate::config::current().dense)
    }

    /// What this process would run if `requested` were configured.
    pub fn of(requested: KernelRequest) -> Self {
        let dense = requested.resolve();
        Self {
            requested,
            dense,
            skinny: dense == Kernel::Gemm && crate::skinny::available(),
            elementwise: elementwise(),
        }
    }
}

impl fmt::Display for Choice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dense {}", self.dense.name())?;
        if self.skinny {
            write!(f, " (skinny/avx2 up to {} rows)", crate::skinny::MAX_ROWS)?;
        }
        write!(f, ", element-wise {}", self.elementwise)?;
        if self.requested != KernelRequest::Auto {
            write!(f, ", requested {}", self.requested)?;
        }
        Ok(())
    }
}

/// The first of the element-wise loops' targets (`multiversion`) that this CPU has.
fn elementwise() -> &'static str {
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    {
        let has = |features: &[bool]| features.iter().all(|&f| f);
        if has(&[
            is_x86_feature_detected!("avx512f"),
            is_x86_feature_detected!("avx512bw"),
            is_x86_feature_detected!("avx512dq"),
            is_x86_feature_detected!("avx512vl"),
            is_x86_feature_detected!("avx2"),
            is_x86_feature_detected!("fma"),
        ]) {
            return "avx512";
        }
        if has(&[
            is_x86_feature_detected!("avx2"),
            is_x86_feature_detected!("fma"),
        ]) {
            return "avx2";
        }
    }
    "baseline"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::panel::Micro;

    #[test]
    fn names_the_dense_kernel_and_the_element_wise_instruction_set() {
        let choice = Choice::detect();
        let shown = choice.to_string();
        assert!(
            shown.starts_with(&format!("dense {}", choice.dense.name())),
            "{shown}"
        );
        assert!(
            shown.contains(&format!("element-wise {}", choice.elementwise)),
            "{shown}"
        );
        assert_eq!(shown.contains("skinny"), choice.skinny);
        assert_eq!(
            shown.contains("requested"),
            choice.requested != KernelRequest::Auto
        );
        #[cfg(any(not(target_arch = "x86_64"), feature = "portable"))]
        assert_eq!(
            (choice.dense, choice.skinny, choice.elementwise),
            (Kernel::Gemm, false, "baseline")
        );
    }

    #[test]
    fn a_request_is_named_beside_what_runs() {
        let choice = Choice::of(KernelRequest::Gemm);
        assert_eq!(choice.dense, Kernel::Gemm);
        assert!(choice.to_string().ends_with(", requested gemm"), "{choice}");
        let unavailable = Micro::ALL.into_iter().find(|m| !m.available());
        if let Some(micro) = unavailable {
            let choice = Choice::of(KernelRequest::Micro(micro));
            assert_eq!(choice.dense, Kernel::best());
            let shown = choice.to_string();
            assert!(
                shown.ends_with(&format!(", requested {}", micro.name())),
                "{shown}"
            );
        }
        assert!(!Choice::of(KernelRequest::Auto)
            .to_string()
            .contains("requested"));
    }
}
