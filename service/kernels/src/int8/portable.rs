//! The int8 micro-kernel in plain Rust: the same integer sums and the same rounding as the
//! VNNI one, for CPUs without it and as its reference.

use super::{accumulate, scales, Tile, GROUP, NR, ZERO};

/// Computes `tile`.
///
/// # Safety
/// `tile`'s pointers hold what [`Tile`] says.
pub(super) unsafe fn tile(tile: &Tile) {
    for r in 0..tile.rows {
        let a = std::slice::from_raw_parts(tile.a.add(r * tile.lda), tile.groups * GROUP);
        let a_scale = *tile.a_scale.add(r);
        for j in 0..tile.cols {
            let panel = tile.b.add((j / NR) * tile.panel_stride);
            let lane = j % NR;
            let mut sum = 0i32;
            for (g, a4) in a.chunks_exact(GROUP).enumerate() {
                let w = panel.add((g * NR + lane) * GROUP);
                for (i, &av) in a4.iter().enumerate() {
                    sum += i32::from(av) * i32::from(*w.add(i));
                }
            }
            let base = tile.base(r, j);
            *tile.c.add(r * tile.ldc + j) =
                accumulate(sum, *tile.shift.add(j), a_scale, *tile.w_scale.add(j), base);
        }
    }
}

/// Quantizes `row` into `out`; returns its scale.
pub(super) fn quantize_row(row: &[f32], out: &mut [u8]) -> f32 {
    let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
    let (scale, inverse) = scales(max);
    for (o, v) in out.iter_mut().zip(row) {
        let q = (v * inverse).round_ties_even().clamp(-127.0, 127.0) as i32;
        *o = (q + i32::from(ZERO)) as u8;
    }
    scale
}
