//! The micro-kernel in plain Rust, for any CPU: [`MR`] rows × one panel of [`NR`] outputs, in
//! arrays the compiler keeps in vector registers where the target has them (NEON, SSE).

use super::NR;

/// Rows per tile.
pub(super) const MR: usize = 4;
/// Fewest rows a tile is worth: any (the compiler schedules this kernel).
pub(super) const FULL_ROWS: usize = 1;
/// Panels per tile.
pub(super) const PANELS: usize = 1;

/// `c[r][j] = base + Σ a[r][i]·b[i][j]` over `i < depth` for the `rows` rows (at most [`MR`])
/// and first `cols` columns (at most [`NR`]) of a tile, where `base` is `c[r][j]` when `load`,
/// plus `bias[j]` when `bias` is not null; `a`'s rows are `lda` apart, `c`'s `ldc`.
///
/// # Safety
/// `a` holds `rows` rows of `depth` floats, `b` `depth × NR`, `c` the tile's rows and
/// columns, and `bias`, when not null, `cols` floats.
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
    _ahead: super::Ahead,
) {
    let out = (c, ldc, cols, bias, load);
    match rows {
        4 => rows_of::<4>(a, lda, b, depth, out),
        3 => rows_of::<3>(a, lda, b, depth, out),
        2 => rows_of::<2>(a, lda, b, depth, out),
        _ => rows_of::<1>(a, lda, b, depth, out),
    }
}

#[allow(clippy::needless_range_loop)]
unsafe fn rows_of<const R: usize>(
    a: *const f32,
    lda: usize,
    b: *const f32,
    depth: usize,
    (c, ldc, cols, bias, load): (*mut f32, usize, usize, *const f32, bool),
) {
    let weights = std::slice::from_raw_parts(b, depth * NR);
    let mut acc = [[0f32; NR]; R];
    for (i, w) in weights.chunks_exact(NR).enumerate() {
        for r in 0..R {
            let av = *a.add(r * lda + i);
            for j in 0..NR {
                acc[r][j] += av * w[j];
            }
        }
    }
    for r in 0..R {
        let row = std::slice::from_raw_parts_mut(c.add(r * ldc), cols);
        for (j, (y, v)) in row.iter_mut().zip(&acc[r]).enumerate() {
            let base = if load { *y } else { 0.0 };
            let bias = if bias.is_null() { 0.0 } else { *bias.add(j) };
            *y = base + bias + v;
        }
    }
}
