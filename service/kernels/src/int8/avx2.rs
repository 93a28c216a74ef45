//! The AVX2 int8 micro-kernel, for CPUs without VNNI: the same integer sums as `vpdpbusd`, from
//! instructions every AVX2 CPU has. Each input byte is turned back into its signed value
//! (`q = byte ^ 0x80`); `vpmaddubsw` then multiplies the weight's magnitude `|w|` (taken once a
//! step for all the rows) by `q` carrying the weight's sign, and adds pairs (at most
//! 2 · 127 · 127, since weights and inputs are quantized to ±127, so no 16-bit sum saturates),
//! and `vpmaddwd` by ones adds the pairs of each output. That is `Σ q·w`, which is
//! `Σ (q + 128)·w − 128·Σ w`: the VNNI kernel's sum less its shift, so the outputs are the same
//! bits.

use std::arch::x86_64::*;

use super::{scales, Tile, NR, ZERO};

/// Rows per pass over a panel: two accumulators per row (sixteen outputs).
const ROWS: usize = 3;

/// Whether this CPU can run the kernel.
pub(super) fn available() -> bool {
    crate::math::avx2::available()
}

/// Computes `tile`.
///
/// # Safety
/// [`available`]; `tile`'s pointers hold what [`Tile`] says.
pub(super) unsafe fn tile(tile: &Tile) {
    for first in (0..tile.cols).step_by(NR) {
        let panel = tile.b.add((first / NR) * tile.panel_stride);
        let mut r = 0;
        while r < tile.rows {
            match tile.rows - r {
                1 => rows_of::<1>(tile, r, panel, first),
                2 => rows_of::<2>(tile, r, panel, first),
                _ => rows_of::<ROWS>(tile, r, panel, first),
            }
            r += ROWS.min(tile.rows - r);
        }
    }
}

// Indexed loops over the const-sized register arrays: they unroll fully.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_of<const R: usize>(t: &Tile, first_row: usize, panel: *const i8, first: usize) {
    let flip = _mm256_set1_epi8(i8::MIN);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [[_mm256_setzero_si256(); 2]; R];
    for g in 0..t.groups {
        let w = [
            _mm256_loadu_si256(panel.add(g * NR * 4) as *const __m256i),
            _mm256_loadu_si256(panel.add(g * NR * 4 + 32) as *const __m256i),
        ];
        // The weights' magnitudes once for the rows; each row's values carry the weights' signs.
        let magnitude = [_mm256_abs_epi8(w[0]), _mm256_abs_epi8(w[1])];
        for r in 0..R {
            let row = t.a.add((first_row + r) * t.lda);
            let a4 = (row.add(g * 4) as *const i32).read_unaligned();
            let q = _mm256_xor_si256(_mm256_set1_epi32(a4), flip);
            for h in 0..2 {
                let pairs = _mm256_maddubs_epi16(magnitude[h], _mm256_sign_epi8(q, w[h]));
                acc[r][h] = _mm256_add_epi32(acc[r][h], _mm256_madd_epi16(pairs, ones));
            }
        }
    }
    let lanes = (t.cols - first).min(NR);
    for h in 0..2 {
        let at = first + h * 8;
        let w_scale = _mm256_loadu_ps(t.w_scale.add(at));
        for r in 0..R {
            let row = first_row + r;
            let sums = _mm256_cvtepi32_ps(acc[r][h]);
            let scale = _mm256_mul_ps(w_scale, _mm256_set1_ps(*t.a_scale.add(row)));
            let c = t.c.add(row * t.ldc + at);
            let n = lanes.saturating_sub(h * 8).min(8);
            if n == 8 {
                let mut base = if t.load {
                    _mm256_loadu_ps(c)
                } else {
                    _mm256_setzero_ps()
                };
                if !t.bias.is_null() {
                    base = _mm256_add_ps(base, _mm256_loadu_ps(t.bias.add(at)));
                }
                _mm256_storeu_ps(c, _mm256_fmadd_ps(sums, scale, base));
            } else if n > 0 {
                let mut out = [0f32; 8];
                _mm256_storeu_ps(out.as_mut_ptr(), sums);
                let mut s = [0f32; 8];
                _mm256_storeu_ps(s.as_mut_ptr(), scale);
                for j in 0..n {
                    *c.add(j) = out[j].mul_add(s[j], t.base(row, at + j));
                }
            }
        }
    }
}

/// Quantizes `row` into `out` (as long); returns its scale. The portable rounding (to nearest,
/// ties to even: the default mode of `vcvtps2dq`) in eight lanes, thirty-two values a step; the
/// portable loop compiled for the baseline calls `rintf` once a value.
///
/// # Safety
/// [`available`].
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn quantize_row(row: &[f32], out: &mut [u8]) -> f32 {
    debug_assert_eq!(row.len(), out.len());
    let n = row.len();
    let p = row.as_ptr();
    let sign = _mm256_set1_ps(-0.0);
    let mut max = _mm256_setzero_ps();
    let mut at = 0;
    while at + 8 <= n {
        // The new value first: `vmaxps` returns its second operand where either is NaN, so
        // a NaN is passed over, as `f32::max` does.
        max = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(p.add(at))), max);
        at += 8;
    }
    let mut lanes = [0f32; 8];
    _mm256_storeu_ps(lanes.as_mut_ptr(), max);
    let max = row[at..]
        .iter()
        .chain(&lanes)
        .fold(0f32, |m, v| m.max(v.abs()));
    let (scale, inverse) = scales(max);
    let inverse_lanes = _mm256_set1_ps(inverse);
    let (low, high, zero) = (
        _mm256_set1_epi32(-127),
        _mm256_set1_epi32(127),
        _mm256_set1_epi32(i32::from(ZERO)),
    );
    let quantized = |at: usize| {
        let q = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(p.add(at)), inverse_lanes));
        _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(q, low), high), zero)
    };
    // The packs work within 128-bit halves: dwords come out as a0 b0 c0 d0 | a1 b1 c1 d1 (each
    // four bytes), put back in order by one permute. Values are 1..=255: nothing saturates.
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let mut at = 0;
    while at + 32 <= n {
        let ab = _mm256_packs_epi32(quantized(at), quantized(at + 8));
        let cd = _mm256_packs_epi32(quantized(at + 16), quantized(at + 24));
        let bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(ab, cd), order);
        _mm256_storeu_si256(out.as_mut_ptr().add(at) as *mut __m256i, bytes);
        at += 32;
    }
    for (o, v) in out[at..].iter_mut().zip(&row[at..]) {
        let q = (v * inverse).round_ties_even().clamp(-127.0, 127.0) as i32;
        *o = (q + i32::from(ZERO)) as u8;
    }
    scale
}
