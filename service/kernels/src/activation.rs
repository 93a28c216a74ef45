//! Activation functions of the feed-forward layers, in place over a slice.

use crate::math;

/// The activation a model's `hidden_act` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact GELU, `x·Φ(x)` with the error function (`gelu`).
    Gelu,
    /// GELU's tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    /// `max(x, 0)`.
    Relu,
}

impl Activation {
    /// Applies the activation to every element of `x`.
    pub fn apply(self, x: &mut [f32]) {
        match self {
            #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
            // SAFETY: the CPU has AVX-512F.
            Activation::Gelu if is_x86_feature_detected!("avx512f") => unsafe { avx512::gelu(x) },
            #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
            // SAFETY: the CPU has AVX2 and FMA.
            Activation::Gelu if avx2::available() => unsafe { avx2::gelu(x) },
            Activation::Gelu => gelu(x),
            Activation::GeluTanh => gelu_tanh(x),
            Activation::Relu => relu(x),
        }
    }

    /// As [`Activation::apply`], split across the threads when called in the kernel pool.
    pub fn apply_split(self, x: &mut [f32]) {
        crate::threads::for_chunks(x, 1 << 14, |c| self.apply(c));
    }
}

#[cfg_attr(
    not(feature = "portable"),
    multiversion::multiversion(targets(
        "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+avx+fma",
        "x86_64+avx2+avx+fma",
    ))
)]
fn gelu(x: &mut [f32]) {
    for v in x.iter_mut() {
        let a = *v;
        *v = 0.5 * a * (1.0 + math::erf(a * std::f32::consts::FRAC_1_SQRT_2));
    }
}

#[cfg_attr(
    not(feature = "portable"),
    multiversion::multiversion(targets(
        "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+avx+fma",
        "x86_64+avx2+avx+fma",
    ))
)]
fn gelu_tanh(x: &mut [f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    for v in x.iter_mut() {
        let a = *v;
        *v = 0.5 * a * (1.0 + math::tanh(SQRT_2_OVER_PI * (a + 0.044_715 * a * a * a)));
    }
}

fn relu(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = v.max(0.0));
}

/// Exact GELU in AVX-512 intrinsics: the same formula as [`gelu`] ([`math::erf`], [`math::exp`]),
/// with the reciprocal in `erf` from `vrcp14ps` and one Newton step instead of a division (one
/// port, several times the cost of the rest), and `2^n` from `vscalefps`.
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
mod avx512 {
    use std::arch::x86_64::*;

    use crate::math;

    /// GELU of every element of `x`, in place; a ragged end through lane masks.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn gelu(x: &mut [f32]) {
        let n = x.len();
        let mut at = 0;
        while at < n {
            let lanes = (n - at).min(16);
            let mask = ((1u32 << lanes) - 1) as __mmask16;
            let p = x.as_mut_ptr().add(at);
            let v = _mm512_maskz_loadu_ps(mask, p);
            _mm512_mask_storeu_ps(p, mask, gelu16(v));
            at += 16;
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn gelu16(v: __m512) -> __m512 {
        let half = _mm512_set1_ps(0.5);
        let one = _mm512_set1_ps(1.0);
        let scaled = _mm512_mul_ps(v, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
        let erf = erf16(scaled);
        _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(one, erf))
    }

    /// [`crate::math::erf`] on sixteen lanes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn erf16(x: __m512) -> __m512 {
        let one = _mm512_set1_ps(1.0);
        let a = _mm512_abs_ps(x);
        let d = _mm512_fmadd_ps(_mm512_set1_ps(math::ERF_P), a, one);
        // 1/d: 14 bits, then one Newton step (t·(2 − d·t)) to the float's precision.
        let t = _mm512_rcp14_ps(d);
        let t = _mm512_mul_ps(t, _mm512_fnmadd_ps(d, t, _mm512_set1_ps(2.0)));
        let mut p = _mm512_set1_ps(math::ERF_SERIES[0]);
        for c in &math::ERF_SERIES[1..] {
            p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(*c));
        }
        let e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(a, a)));
        let y = _mm512_fnmadd_ps(_mm512_mul_ps(p, t), e, one);
        // copysign(y, x): y ≥ 0 here, so or-ing x's sign bit in is enough.
        let sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(i32::MIN));
        _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(y), sign))
    }

    /// [`crate::math::exp`] on sixteen lanes.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn exp16(x: __m512) -> __m512 {
        let x = _mm512_min_ps(
            _mm512_max_ps(x, _mm512_set1_ps(-87.0)),
            _mm512_set1_ps(88.0),
        );
        let n =
            _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(_mm512_fmadd_ps(
                x,
                _mm512_set1_ps(std::f32::consts::LOG2_E),
                _mm512_set1_ps(0.5),
            ));
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(math::LN2_HI), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(math::LN2_LO), r);
        let mut p = _mm512_set1_ps(math::EXP_SERIES[0]);
        for c in &math::EXP_SERIES[1..] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(*c));
        }
        _mm512_scalef_ps(p, n)
    }
}

/// Exact GELU in AVX2 + FMA intrinsics, as [`avx512`] on eight lanes: the multiversioned loop
/// compiles each `a·b + c` of the polynomials to a multiply and an add (Rust does not fuse
/// them) and `erf`'s reciprocal to a division; here they are `vfmadd`s and `vrcpps` with one
/// Newton step.
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
mod avx2 {
    use std::arch::x86_64::*;

    use crate::math;

    pub(super) use crate::math::avx2::available;

    /// GELU of every element of `x`, in place; a ragged end through a padded vector.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gelu(x: &mut [f32]) {
        let mut chunks = x.chunks_exact_mut(8);
        for chunk in &mut chunks {
            let p = chunk.as_mut_ptr();
            _mm256_storeu_ps(p, gelu8(_mm256_loadu_ps(p)));
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let mut tail = [0f32; 8];
            tail[..rest.len()].copy_from_slice(rest);
            _mm256_storeu_ps(tail.as_mut_ptr(), gelu8(_mm256_loadu_ps(tail.as_ptr())));
            rest.copy_from_slice(&tail[..rest.len()]);
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn gelu8(v: __m256) -> __m256 {
        let scaled = _mm256_mul_ps(v, _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
        let half = _mm256_mul_ps(_mm256_set1_ps(0.5), v);
        _mm256_fmadd_ps(half, erf8(scaled), half)
    }

    /// [`crate::math::erf`] on eight lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn erf8(x: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        let sign_bit = _mm256_set1_ps(-0.0);
        let a = _mm256_andnot_ps(sign_bit, x);
        let d = _mm256_fmadd_ps(_mm256_set1_ps(math::ERF_P), a, one);
        // 1/d: 12 bits, then one Newton step (t·(2 − d·t)) to about the float's precision.
        let t = _mm256_rcp_ps(d);
        let t = _mm256_mul_ps(t, _mm256_fnmadd_ps(d, t, _mm256_set1_ps(2.0)));
        let mut p = _mm256_set1_ps(math::ERF_SERIES[0]);
        for c in &math::ERF_SERIES[1..] {
            p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(*c));
        }
        let e = crate::math::avx2::exp8(_mm256_mul_ps(_mm256_sub_ps(_mm256_setzero_ps(), a), a));
        let y = _mm256_fnmadd_ps(_mm256_mul_ps(p, t), e, one);
        // copysign(y, x): y ≥ 0 here, so or-ing x's sign bit in is enough.
        _mm256_or_ps(y, _mm256_and_ps(x, sign_bit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_is_exact_gelu() {
        // What `apply` runs here, and the loop every other CPU runs; a ragged end.
        let input: Vec<f32> = (-800..801).map(|i| i as f32 * 0.01).collect();
        let mut applied = input.clone();
        Activation::Gelu.apply(&mut applied);
        let mut looped = input.clone();
        gelu(&mut looped);
        // The AVX2 kernel, which an AVX-512 CPU does not pick, wherever it runs.
        let mut vectored = input.clone();
        #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
        if avx2::available() {
            // SAFETY: the CPU has AVX2 and FMA.
            unsafe { avx2::gelu(&mut vectored) };
        } else {
            println!("no AVX2 + FMA here: its GELU is not tested");
            gelu(&mut vectored);
        }
        #[cfg(any(not(target_arch = "x86_64"), feature = "portable"))]
        gelu(&mut vectored);
        let paths = [&applied, &looped, &vectored];
        for (a, got) in paths.into_iter().flat_map(|p| input.iter().zip(p.iter())) {
            let a64 = *a as f64;
            let want = 0.5 * a64 * (1.0 + libm::erf(a64 / std::f64::consts::SQRT_2));
            assert!(
                (*got as f64 - want).abs() < 1e-6,
                "gelu({a}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn gelu_tanh_and_relu() {
        let mut x = vec![-3.0f32, -0.5, 0.0, 0.5, 3.0];
        let mut r = x.clone();
        Activation::GeluTanh.apply(&mut x);
        let want = [-0.003_637_4, -0.154_286, 0.0, 0.345_714, 2.996_363];
        for (got, want) in x.iter().zip(want) {
            assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        }
        Activation::Relu.apply(&mut r);
        assert_eq!(r, [0.0, 0.0, 0.0, 0.5, 3.0]);
    }
}
