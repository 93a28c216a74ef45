//! The AVX2 int8 micro-kernel, for CPUs without VNNI: the same integer sums as `vpdpbusd`, from
//! instructions every AVX2 CPU has. Each input byte is turned back into its signed value
//! (`q = byte ^ 0x80`); `vpmaddubsw` then multiplies `|q|` by the weight carrying `q`'s sign and
//! adds pairs (at most 2 · 127 · 127, so no 16-bit sum saturates), and `vpmaddwd` by ones adds
//! the pairs of each output. That is `Σ q·w`, which is `Σ (q + 128)·w − 128·Σ w`: the VNNI
//! kernel's sum less its shift, so the outputs are the same bits.

use std::arch::x86_64::*;

use super::{Tile, NR};

/// Rows per pass over a panel: two accumulators per row (sixteen outputs).
const ROWS: usize = 3;

/// Whether this CPU can run the kernel.
pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
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
        for r in 0..R {
            let row = t.a.add((first_row + r) * t.lda);
            let a4 = (row.add(g * 4) as *const i32).read_unaligned();
            let q = _mm256_xor_si256(_mm256_set1_epi32(a4), flip);
            let magnitude = _mm256_sign_epi8(q, q);
            for h in 0..2 {
                let pairs = _mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(w[h], q));
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
