//! CPU kernels for transformer encoders.
//!
//! Dense layers run on weights packed once into panels for an AVX2 + FMA micro-kernel
//! ([`panel`]) on CPUs without AVX-512, and on the [`gemm`] crate (the one Candle uses) with its
//! AVX-512 kernels enabled elsewhere ([`linear::Kernel`]); the element-wise work around them — GELU, softmax, LayerNorm — runs in loops that
//! are compiled once per instruction set (AVX-512, AVX2 + FMA, baseline) and chosen at run time,
//! with branch-free `exp`/`erf` approximations so that they vectorise. Attention works on
//! *packed* sequences: every input keeps its own length, so no work is spent on padding.

pub mod activation;
pub mod attention;
pub mod linear;
pub mod math;
pub mod norm;
pub mod panel;
pub mod skinny;
pub mod threads;

/// Rows of length `width` in `data`.
#[inline]
pub(crate) fn rows(data: &[f32], width: usize) -> usize {
    debug_assert_eq!(data.len() % width, 0);
    data.len() / width
}
