//! Branch-free scalar approximations written so that loops over them vectorise.
//!
//! Each function is `#[inline(always)]`: it is meant to be called inside a loop of a
//! multiversioned kernel, which then compiles it for that kernel's instruction set.

const LOG2_E: f32 = std::f32::consts::LOG2_E;
// ln 2 split in a part exact in f32 and the rest (Cody–Waite reduction).
pub(crate) const LN2_HI: f32 = 0.693_145_75;
pub(crate) const LN2_LO: f32 = 1.428_606_8e-6;

/// The Taylor series of `e^r` to degree 7, highest degree first: what [`exp`] and its vector
/// forms evaluate on `|r| <= ln2/2` (Horner's scheme).
pub(crate) const EXP_SERIES: [f32; 8] = [
    1.0 / 5040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
    1.0,
];

/// Abramowitz and Stegun 7.1.26's polynomial in `t = 1/(1 + ERF_P·|x|)`, highest degree first
/// and without the constant term: what [`erf`] and its vector forms evaluate.
pub(crate) const ERF_SERIES: [f32; 5] = [
    1.061_405_4,
    -1.453_152,
    1.421_413_8,
    -0.284_496_74,
    0.254_829_6,
];
/// Abramowitz and Stegun 7.1.26's `p`.
pub(crate) const ERF_P: f32 = 0.327_591_1;

/// `e^x` for `x` in [-87, 88], relative error below 2e-7; outside, the value at the nearer
/// end (e^-87 ≈ 1.6e-38 is as good as 0 for softmax and `erf`).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2_E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = EXP_SERIES[1..].iter().fold(EXP_SERIES[0], |p, c| p * r + c);
    p * pow2(n)
}

/// `2^n` for an integer-valued `n` in [-126, 127], built from `n`'s bits: adding 1.5·2^23 puts
/// `n` in the low bits of the mantissa. Rust's `n as i32` saturates (NaN to 0), which compiles
/// to a compare and a move per lane and keeps the loops around it from vectorising.
#[inline(always)]
fn pow2(n: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0;
    let n = (n + SHIFT).to_bits().wrapping_sub(SHIFT.to_bits());
    f32::from_bits(n.wrapping_add(127) << 23)
}

/// The error function, absolute error below 5e-7 (Abramowitz and Stegun 7.1.26).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + ERF_P * a);
    let p = ERF_SERIES[1..].iter().fold(ERF_SERIES[0], |p, c| p * t + c);
    let y = 1.0 - p * t * exp(-a * a);
    y.copysign(x)
}

/// `tanh(x)`, from [`exp`].
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    // 1 - 2 / (e^2x + 1): exact at both saturations, no cancellation issue at the precision
    // GELU needs.
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// Vector forms of the functions above, for the intrinsic kernels.
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    /// Whether this CPU has AVX2 and FMA, what every AVX2 kernel of the crate needs.
    pub(crate) fn available() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    /// [`crate::math::exp`] on eight lanes; `2^n` built from `n`'s bits.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn exp8(x: __m256) -> __m256 {
        let x = _mm256_min_ps(
            _mm256_max_ps(x, _mm256_set1_ps(-87.0)),
            _mm256_set1_ps(88.0),
        );
        let n = _mm256_round_ps::<{ _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC }>(_mm256_fmadd_ps(
            x,
            _mm256_set1_ps(std::f32::consts::LOG2_E),
            _mm256_set1_ps(0.5),
        ));
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(super::LN2_HI), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(super::LN2_LO), r);
        let mut p = _mm256_set1_ps(super::EXP_SERIES[0]);
        for c in &super::EXP_SERIES[1..] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(*c));
        }
        // n in [-126, 127]: its bits at the exponent's place, biased.
        let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(n),
            _mm256_set1_epi32(127),
        ));
        _mm256_mul_ps(p, _mm256_castsi256_ps(bits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> impl Iterator<Item = f32> {
        (-20_000..=20_000).map(|i| i as f32 * 0.005)
    }

    #[test]
    fn exp_matches_the_standard_library() {
        for x in samples()
            .filter(|x| (-87.0..=88.0).contains(x))
            .chain((-87..=88).map(|i| i as f32))
        {
            let want = x.exp();
            let got = exp(x);
            assert!(
                ((got - want) / want).abs() < 2e-7,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert_eq!(exp(-200.0), exp(-87.0));
        assert!(exp(-200.0) < 2e-38);
    }

    #[test]
    fn powers_of_two_are_exact_over_the_whole_range() {
        for n in -126..=127 {
            assert_eq!(pow2(n as f32), 2f32.powi(n), "2^{n}");
        }
    }

    #[test]
    fn erf_matches_libm() {
        for x in samples() {
            let want = libm::erf(x as f64);
            let got = erf(x) as f64;
            assert!((got - want).abs() < 5e-7, "erf({x}) = {got}, want {want}");
        }
    }

    #[test]
    fn tanh_matches_the_standard_library() {
        for x in samples() {
            let want = x.tanh();
            assert!((tanh(x) - want).abs() < 4e-7, "tanh({x})");
        }
    }
}
