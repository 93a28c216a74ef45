//! CPU kernels for transformer encoders.
//!
//! Dense layers run on weights packed once into panels ([`panel`]) for a micro-kernel chosen at
//! run time — AVX-512 (6 rows × 64 outputs), AVX2 + FMA (6 × 16) — on Intel AMX tiles where the
//! CPU and OS run them ([`amx`]: f32 split into two bf16 halves, products within ~2⁻¹⁶ of f32
//! ones), and on the [`gemm`] crate (the one Candle uses) on other CPUs ([`linear::Kernel`]);
//! [`choice`] names what runs. The
//! element-wise work around them — GELU, softmax, LayerNorm — runs in loops that are compiled
//! once per instruction set (AVX-512, AVX2 + FMA, baseline) and chosen at run time, with
//! branch-free `exp`/`erf` approximations so that they vectorise (GELU in AVX-512 intrinsics
//! where the CPU has it; GELU and softmax in AVX2 + FMA intrinsics where it has AVX2 but not
//! AVX-512, since the loops' polynomials compile to separate multiplies and adds). Attention works on *packed* sequences: every input keeps its own
//! length, so no work is spent on padding; short ones run on the panels' micro-kernels, long ones
//! on `gemm`. [`int8`] holds dense layers quantized to 8 bits (AVX-512 VNNI, AVX2, or portable),
//! for an opt-in int8 precision.
//!
//! The `portable` feature leaves only the code other CPUs than x86-64 run (a portable
//! micro-kernel, `gemm`, element-wise loops for the baseline), so that it is built and tested
//! on x86 too.
//!
//! The crate reads no environment: the program that uses it passes its choices once, with
//! [`configure`], before the first layer is built.

pub mod activation;
pub mod amx;
pub mod attention;
pub mod choice;
pub mod config;
pub mod int8;
pub mod linear;
pub mod math;
pub mod norm;
pub mod panel;
pub mod peak;
pub mod skinny;
pub mod threads;

pub use config::{configure, KernelConfig, KernelRequest};

/// Rows of length `width` in `data`.
#[inline]
pub(crate) fn rows(data: &[f32], width: usize) -> usize {
    debug_assert_eq!(data.len() % width, 0);
    data.len() / width
}

/// `n` test values in [-1, 1), spread without a pattern the products could exploit, different
/// for each `seed`.
#[cfg(test)]
pub(crate) fn test_values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i + seed) * 2_654_435_761) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}
