//! Products of a few rows by a weight matrix (`m` tokens ≪ outputs), as in a single short
//! request: each weight row is read once from memory and used for every token while it sits in
//! L1, with no packing. The `gemm` crate would repack the whole weight on every call, which costs
//! as much as the product at this size.

/// Most token rows this kernel takes; more and the packed `gemm` path is faster.
pub const MAX_ROWS: usize = 16;

/// Whether this CPU can run the kernel.
pub fn available() -> bool {
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(any(not(target_arch = "x86_64"), feature = "portable"))]
    {
        false
    }
}

/// `y[t][o] += x[t]·w[o]` for every token row `t` and every output `o` in `outputs`.
///
/// `x` is `m × k`, `w` is `n × k` (one row per output) and `y` is `m × n`, all row-major.
///
/// # Safety
/// [`available`] must be true; the buffers must have those sizes, `outputs` must lie within
/// `0..n`, and no other thread may write the same columns of `y` at the same time.
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
pub unsafe fn accumulate(
    x: *const f32,
    m: usize,
    k: usize,
    w: *const f32,
    outputs: std::ops::Range<usize>,
    y: *mut f32,
    n: usize,
) {
    avx2::accumulate(x, m, k, w, outputs, y, n)
}

#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
mod avx2 {
    use std::arch::x86_64::*;
    use std::ops::Range;

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// `O` outputs × `T` tokens: `O·T` accumulators, `O` weight loads and `T` token loads per
    /// eight multiply-adds of each pair (3 × 4 fills the sixteen AVX registers).
    // Indexed loops over the const-sized register arrays: they unroll fully, which iterator
    // chains over two arrays at once do not guarantee.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn block<const O: usize, const T: usize>(
        x: *const f32,
        k: usize,
        w: *const f32,
        y: *mut f32,
        n: usize,
    ) {
        let mut acc = [[_mm256_setzero_ps(); T]; O];
        let mut i = 0;
        while i + 8 <= k {
            let mut wv = [_mm256_setzero_ps(); O];
            for (o, v) in wv.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(w.add(o * k + i));
            }
            for t in 0..T {
                let xv = _mm256_loadu_ps(x.add(t * k + i));
                for o in 0..O {
                    acc[o][t] = _mm256_fmadd_ps(wv[o], xv, acc[o][t]);
                }
            }
            i += 8;
        }
        for (o, row) in acc.iter().enumerate() {
            for (t, v) in row.iter().enumerate() {
                let mut s = hsum(*v);
                for r in i..k {
                    s += *w.add(o * k + r) * *x.add(t * k + r);
                }
                *y.add(t * n + o) += s;
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn accumulate(
        x: *const f32,
        m: usize,
        k: usize,
        w: *const f32,
        outputs: Range<usize>,
        y: *mut f32,
        n: usize,
    ) {
        // Outputs outside, tokens inside: a few weight rows stay in L1 while every token passes.
        let mut o = outputs.start;
        while o < outputs.end {
            let ob = (outputs.end - o).min(3);
            let wo = w.add(o * k);
            let mut t = 0;
            while t < m {
                let tb = (m - t).min(4);
                let (xt, yt) = (x.add(t * k), y.add(t * n + o));
                match (ob, tb) {
                    (3, 4) => block::<3, 4>(xt, k, wo, yt, n),
                    (3, 3) => block::<3, 3>(xt, k, wo, yt, n),
                    (3, 2) => block::<3, 2>(xt, k, wo, yt, n),
                    (3, _) => block::<3, 1>(xt, k, wo, yt, n),
                    (2, 4) => block::<2, 4>(xt, k, wo, yt, n),
                    (2, 3) => block::<2, 3>(xt, k, wo, yt, n),
                    (2, 2) => block::<2, 2>(xt, k, wo, yt, n),
                    (2, _) => block::<2, 1>(xt, k, wo, yt, n),
                    (_, 4) => block::<1, 4>(xt, k, wo, yt, n),
                    (_, 3) => block::<1, 3>(xt, k, wo, yt, n),
                    (_, 2) => block::<1, 2>(xt, k, wo, yt, n),
                    _ => block::<1, 1>(xt, k, wo, yt, n),
                }
                t += tb;
            }
            o += ob;
        }
    }
}
