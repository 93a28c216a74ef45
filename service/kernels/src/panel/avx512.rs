//! The AVX-512 micro-kernel: [`MR`] rows × [`PANELS`] panels of [`NR`] outputs, one `zmm`
//! accumulator per row and panel (24 of the 32 registers), the panels' weights in four more and
//! each row's value broadcast from memory into the multiply-add. Ragged right edges are written
//! through lane masks.

use std::arch::x86_64::*;

use super::NR;

/// Rows per tile: the same six streams of activations as the AVX2 kernel.
pub(super) const MR: usize = 6;
/// Fewest rows that keep both FMA units busy: up to four accumulators a row (one a panel),
/// and eight chains (four cycles of latency, two units) are enough.
pub(super) const FULL_ROWS: usize = 2;
/// Panels per tile: 64 outputs, four weight loads for 24 multiply-adds per step.
pub(super) const PANELS: usize = 4;

/// Whether this CPU can run the kernel.
pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx512f")
}

/// `c[r][j] = base + Σ a[r][i]·b[i][j]` over `i < depth` for the `rows` rows (at most [`MR`])
/// and first `cols` columns (at most `PANELS × NR`) of a tile, where `base` is `c[r][j]` when
/// `load`, plus `bias[j]` when `bias` is not null; `a`'s rows are `lda` apart, `c`'s `ldc`;
/// panel `p` of the tile starts `p × panel_stride` floats after `b`.
///
/// # Safety
/// AVX-512F is present; `a` holds `rows` rows of `depth` floats; each of the
/// `cols.div_ceil(NR)` panels holds `depth × NR` floats aligned to 64 bytes; `c` holds the
/// tile's rows and columns; `bias`, when not null, `cols` floats.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn tile(
    rows: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    panel_stride: usize,
    depth: usize,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    bias: *const f32,
    load: bool,
    _ahead: super::Ahead,
) {
    macro_rules! dispatch {
        ($($r:literal),*) => {
            match (rows, cols.div_ceil(NR)) {
                $(
                    ($r, 4) => rows_of::<$r, 4>(a, lda, b, panel_stride, depth, c, ldc, cols, bias, load),
                    ($r, 3) => rows_of::<$r, 3>(a, lda, b, panel_stride, depth, c, ldc, cols, bias, load),
                    ($r, 2) => rows_of::<$r, 2>(a, lda, b, panel_stride, depth, c, ldc, cols, bias, load),
                    ($r, _) => rows_of::<$r, 1>(a, lda, b, panel_stride, depth, c, ldc, cols, bias, load),
                )*
                _ => unreachable!("a tile has 1 to {MR} rows"),
            }
        };
    }
    dispatch!(6, 5, 4, 3, 2, 1)
}

// Indexed loops over the const-sized register arrays: they unroll fully.
#[allow(clippy::needless_range_loop, clippy::too_many_arguments)]
#[target_feature(enable = "avx512f")]
unsafe fn rows_of<const R: usize, const P: usize>(
    a: *const f32,
    lda: usize,
    b: *const f32,
    panel_stride: usize,
    depth: usize,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    bias: *const f32,
    load: bool,
) {
    if load {
        for r in 0..R {
            let p = c.add(r * ldc);
            for q in 0..P {
                _mm_prefetch::<_MM_HINT_T0>(p.add(q * NR) as *const i8);
            }
        }
    }
    let mut rows = [a; R];
    for r in 0..R {
        rows[r] = a.add(r * lda);
    }
    let mut panels = [b; P];
    for q in 0..P {
        panels[q] = b.add(q * panel_stride);
    }
    let mut acc = [[_mm512_setzero_ps(); P]; R];
    for i in 0..depth {
        let mut w = [_mm512_setzero_ps(); P];
        for q in 0..P {
            w[q] = _mm512_load_ps(panels[q].add(i * NR));
        }
        for r in 0..R {
            let av = _mm512_set1_ps(*rows[r].add(i));
            for q in 0..P {
                acc[r][q] = _mm512_fmadd_ps(av, w[q], acc[r][q]);
            }
        }
    }
    // In the order of a bias written first and the sums added to it.
    let mut start = [_mm512_setzero_ps(); P];
    if !bias.is_null() {
        for q in 0..P {
            start[q] = _mm512_maskz_loadu_ps(lanes_of(cols, q), bias.add(q * NR));
        }
    }
    for r in 0..R {
        let row = c.add(r * ldc);
        for q in 0..P {
            let p = row.add(q * NR);
            let mask = lanes_of(cols, q);
            let base = if load {
                _mm512_add_ps(_mm512_maskz_loadu_ps(mask, p), start[q])
            } else {
                start[q]
            };
            _mm512_mask_storeu_ps(p, mask, _mm512_add_ps(base, acc[r][q]));
        }
    }
}

/// The lanes of panel `q` that hold one of the tile's `cols` columns.
#[inline(always)]
fn lanes_of(cols: usize, q: usize) -> __mmask16 {
    let lanes = (cols - q * NR).min(NR);
    ((1u32 << lanes) - 1) as __mmask16
}
