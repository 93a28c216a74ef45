//! The AVX2 + FMA micro-kernel: [`MR`] rows × one panel of [`NR`] outputs, 6 × 2 accumulators,
//! two weight registers and one broadcast in the sixteen `ymm` registers.

use std::arch::x86_64::*;

use super::{Ahead, NR};

/// Rows per tile.
pub(super) const MR: usize = 6;
/// Fewest rows that keep both FMA units busy: two accumulators a row, and a multiply-add's
/// four cycles of latency times two units want eight chains.
pub(super) const FULL_ROWS: usize = 4;
/// Panels per tile.
pub(super) const PANELS: usize = 1;

/// Whether this CPU can run the kernel.
pub(super) fn available() -> bool {
    crate::math::avx2::available()
}

/// `c[r][j] = base + Σ a[r][i]·b[i][j]` over `i < depth` for the `rows` rows (at most [`MR`])
/// and first `cols` columns (at most [`NR`]) of a tile, where `base` is `c[r][j]` when `load`,
/// plus `bias[j]` when `bias` is not null; `a`'s rows are `lda` apart, `c`'s `ldc`. Meanwhile
/// it prefetches the lines of `ahead`.
///
/// # Safety
/// AVX2 and FMA are present; `a` holds `rows` rows of `depth` floats, `b` `depth × NR`
/// (aligned to 32 bytes), `c` the tile's rows and columns, `bias`, when not null, `cols`
/// floats, and `ahead.at` `ahead.lines` lines of `NR` floats.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn tile(
    rows: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    _panel_stride: usize,
    depth: usize,
    c: *mut f32,
    ldc: usize,
    cols: usize,
    bias: *const f32,
    load: bool,
    ahead: Ahead,
) {
    let out = (c, ldc, cols, bias, load);
    match rows {
        6 => rows_of::<6>(a, lda, b, depth, ahead, out),
        5 => rows_of::<5>(a, lda, b, depth, ahead, out),
        4 => rows_of::<4>(a, lda, b, depth, ahead, out),
        3 => rows_of::<3>(a, lda, b, depth, ahead, out),
        2 => rows_of::<2>(a, lda, b, depth, ahead, out),
        _ => rows_of::<1>(a, lda, b, depth, ahead, out),
    }
}

// Indexed loops over the const-sized register arrays: they unroll fully.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_of<const R: usize>(
    a: *const f32,
    lda: usize,
    mut b: *const f32,
    depth: usize,
    ahead: Ahead,
    (c, ldc, cols, bias, load): (*mut f32, usize, usize, *const f32, bool),
) {
    if load {
        for r in 0..R {
            let p = c.add(r * ldc);
            _mm_prefetch::<_MM_HINT_T0>(p as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(p.add(NR - 1) as *const i8);
        }
    }
    let mut rows = [a; R];
    for r in 0..R {
        rows[r] = a.add(r * lda);
    }
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    // One line of `ahead` every `every` steps, spread over the tile, into L2: `T1` measured
    // faster than `T0` (which competes with this tile's panel for L1) and than `T2`.
    let every = depth.checked_div(ahead.lines).unwrap_or(usize::MAX).max(1);
    let (mut line, mut due) = (0, 0);
    for i in 0..depth {
        if i == due && line < ahead.lines {
            let at = ahead.at.add(line * NR) as *const i8;
            _mm_prefetch::<_MM_HINT_T1>(at);
            line += 1;
            due += every;
        }
        let b0 = _mm256_load_ps(b);
        let b1 = _mm256_load_ps(b.add(8));
        for r in 0..R {
            let av = _mm256_broadcast_ss(&*rows[r].add(i));
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
        }
        b = b.add(NR);
    }
    if cols == NR {
        let start = if bias.is_null() {
            [_mm256_setzero_ps(); 2]
        } else {
            [_mm256_loadu_ps(bias), _mm256_loadu_ps(bias.add(8))]
        };
        for r in 0..R {
            let p = c.add(r * ldc);
            for h in 0..2 {
                let q = p.add(8 * h);
                let base = if load {
                    _mm256_add_ps(_mm256_loadu_ps(q), start[h])
                } else {
                    start[h]
                };
                _mm256_storeu_ps(q, _mm256_add_ps(base, acc[r][h]));
            }
        }
    } else {
        let mut tile = [0f32; MR * NR];
        for r in 0..R {
            _mm256_storeu_ps(tile.as_mut_ptr().add(r * NR), acc[r][0]);
            _mm256_storeu_ps(tile.as_mut_ptr().add(r * NR + 8), acc[r][1]);
        }
        for r in 0..R {
            for j in 0..cols {
                let y = c.add(r * ldc + j);
                let base = if load { *y } else { 0.0 };
                let bias = if bias.is_null() { 0.0 } else { *bias.add(j) };
                *y = base + bias + tile[r * NR + j];
            }
        }
    }
}
