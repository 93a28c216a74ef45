//! The AVX-512 VNNI micro-kernel: [`MR`] rows × up to [`PANELS`] panels of [`NR`] outputs, one
//! `zmm` of 32-bit sums per row and panel. Each step multiplies four inputs of a row (broadcast)
//! by the same four inputs of sixteen outputs (one load per panel) with `vpdpbusd`; the sums
//! are turned into floats, scaled and added to the output in one pass at the end.

use std::arch::x86_64::*;

use super::{scales, Tile, MR, NR, PANELS, ZERO};

/// Whether this CPU can run the kernel.
pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vnni")
}

/// Computes `tile`.
///
/// # Safety
/// [`available`]; `tile`'s pointers hold what [`Tile`] says.
pub(super) unsafe fn tile(tile: &Tile) {
    macro_rules! dispatch {
        ($($r:literal),*) => {
            match (tile.rows, tile.cols.div_ceil(NR)) {
                $(
                    ($r, 4) => rows_of::<$r, 4>(tile),
                    ($r, 3) => rows_of::<$r, 3>(tile),
                    ($r, 2) => rows_of::<$r, 2>(tile),
                    ($r, _) => rows_of::<$r, 1>(tile),
                )*
                _ => unreachable!("a tile has 1 to {MR} rows"),
            }
        };
    }
    const _: () = assert!(PANELS == 4);
    dispatch!(6, 5, 4, 3, 2, 1)
}

// Indexed loops over the const-sized register arrays: they unroll fully.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn rows_of<const R: usize, const P: usize>(t: &Tile) {
    let mut rows = [t.a; R];
    for r in 0..R {
        rows[r] = t.a.add(r * t.lda);
    }
    let mut panels = [t.b; P];
    for q in 0..P {
        panels[q] = t.b.add(q * t.panel_stride);
    }
    let mut acc = [[_mm512_setzero_si512(); P]; R];
    for g in 0..t.groups {
        let mut w = [_mm512_setzero_si512(); P];
        for q in 0..P {
            w[q] = _mm512_loadu_si512(panels[q].add(g * NR * 4) as *const __m512i);
        }
        for r in 0..R {
            let a4 = (rows[r].add(g * 4) as *const i32).read_unaligned();
            let av = _mm512_set1_epi32(a4);
            for q in 0..P {
                acc[r][q] = _mm512_dpbusd_epi32(acc[r][q], av, w[q]);
            }
        }
    }
    for q in 0..P {
        let first = q * NR;
        let w_scale = _mm512_loadu_ps(t.w_scale.add(first));
        let shift = _mm512_loadu_si512(t.shift.add(first) as *const __m512i);
        let lanes = (t.cols - first).min(NR);
        let mask = if lanes == NR {
            !0
        } else {
            ((1u32 << lanes) - 1) as __mmask16
        };
        let bias = if t.bias.is_null() {
            None
        } else {
            Some(_mm512_maskz_loadu_ps(mask, t.bias.add(first)))
        };
        for r in 0..R {
            let c = t.c.add(r * t.ldc + first);
            write_sums(
                acc[r][q],
                shift,
                w_scale,
                *t.a_scale.add(r),
                bias,
                c,
                mask,
                t.load,
            );
        }
    }
}

/// One row's 16 integer sums of a panel into the `mask` lanes of `c`:
/// `(sum − shift) · (w_scale · a_scale) + base` in one fused multiply-add, the base being `c`'s
/// values when `load`, plus `bias`. What every int8 kernel on AVX-512 writes (VNNI, AMX).
///
/// # Safety
/// AVX-512F is present; `c` holds the lanes of `mask`.
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn write_sums(
    acc: __m512i,
    shift: __m512i,
    w_scale: __m512,
    a_scale: f32,
    bias: Option<__m512>,
    c: *mut f32,
    mask: __mmask16,
    load: bool,
) {
    let sums = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc, shift));
    let scale = _mm512_mul_ps(w_scale, _mm512_set1_ps(a_scale));
    let mut base = if load {
        _mm512_maskz_loadu_ps(mask, c)
    } else {
        _mm512_setzero_ps()
    };
    if let Some(bias) = bias {
        base = _mm512_add_ps(base, bias);
    }
    _mm512_mask_storeu_ps(c, mask, _mm512_fmadd_ps(sums, scale, base));
}

/// Quantizes `row` into `out` (as long); returns its scale.
///
/// # Safety
/// AVX-512F and BW are present.
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn quantize_row(row: &[f32], out: &mut [u8]) -> f32 {
    debug_assert_eq!(row.len(), out.len());
    let n = row.len();
    let mask = |at: usize| -> __mmask16 {
        let lanes = (n - at).min(16);
        if lanes == 16 {
            !0
        } else {
            ((1u32 << lanes) - 1) as __mmask16
        }
    };
    let mut max = _mm512_setzero_ps();
    for at in (0..n).step_by(16) {
        let v = _mm512_maskz_loadu_ps(mask(at), row.as_ptr().add(at));
        max = _mm512_max_ps(max, _mm512_abs_ps(v));
    }
    let (scale, inverse) = scales(_mm512_reduce_max_ps(max));
    let inverse = _mm512_set1_ps(inverse);
    let (low, high, zero) = (
        _mm512_set1_epi32(-127),
        _mm512_set1_epi32(127),
        _mm512_set1_epi32(i32::from(ZERO)),
    );
    for at in (0..n).step_by(16) {
        let m = mask(at);
        let v = _mm512_maskz_loadu_ps(m, row.as_ptr().add(at));
        // The default rounding: to nearest, ties to even.
        let q = _mm512_cvtps_epi32(_mm512_mul_ps(v, inverse));
        let q = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(q, low), high), zero);
        _mm512_mask_cvtepi32_storeu_epi8(out.as_mut_ptr().add(at) as *mut i8, m, q);
    }
    scale
}
