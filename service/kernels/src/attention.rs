//! Multi-head self-attention over packed sequences: each input attends only to its own tokens,
//! so padding is never computed, and no mask is needed.

use std::{cell::RefCell, ops::Range};

use rayon::prelude::*;

use crate::{
    math,
    panel::{Micro, Scratch},
    rows,
};

/// How the hidden state splits into attention heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heads {
    /// Number of heads.
    pub count: usize,
    /// Width of each head.
    pub dim: usize,
}

impl Heads {
    /// Width of the hidden state.
    pub fn hidden(self) -> usize {
        self.count * self.dim
    }
}

/// Sequences up to this many tokens attend on the panels' micro-kernel (keys and values packed
/// per head), longer ones on `gemm`. Measured with `akidb-embed bench-engine` at batch 32 on an
/// AVX-512 host: panels 3–8% faster at 10 tokens, even at 32, `gemm` 1–4% faster at 64 and 128
/// (where packing costs more than its reuse saves).
const PANELS_UP_TO: usize = 32;

thread_local! {
    /// The scores, keys and values of the (sequence, head) pair a thread works on, reused
    /// across calls.
    static SCRATCH: RefCell<(Vec<f32>, Scratch, Scratch)> = RefCell::default();
}

/// A pointer that may cross threads: every task writes its own disjoint block through it.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: tasks write disjoint (rows × head columns) blocks; see `attention`.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

/// `softmax(q·kᵀ/√d)·v` for every head of every sequence.
///
/// `qkv` holds one row per token: the query, key and value projections side by side
/// (`3 × hidden` wide); `sequences` are the token rows of each input; `context` receives one
/// `hidden`-wide row per token, heads side by side. With `parallel`, (sequence, head) pairs are
/// spread over the current thread pool.
///
/// # Panics
/// When the buffers' sizes do not match `heads` and `sequences`.
pub fn attention(
    qkv: &[f32],
    sequences: &[Range<usize>],
    heads: Heads,
    context: &mut [f32],
    parallel: bool,
) {
    let hidden = heads.hidden();
    let tokens = rows(qkv, 3 * hidden);
    assert_eq!(
        context.len(),
        tokens * hidden,
        "context rows do not match qkv rows"
    );
    assert!(
        sequences
            .iter()
            .all(|s| s.start <= s.end && s.end <= tokens),
        "a sequence lies outside the token rows"
    );
    assert!(
        sequences.windows(2).all(|w| w[0].end <= w[1].start),
        "sequences overlap or are out of order"
    );
    let out = SharedOut(context.as_mut_ptr());
    let micro = Micro::detect();
    let task = |(seq, head): (usize, usize)| {
        let range = sequences[seq].clone();
        // SAFETY: sequences are disjoint, in-bounds row ranges (checked above), and each task
        // writes only the columns of its own head in its own rows.
        unsafe { attend(qkv, range, head, heads, micro, out) };
    };
    let pairs = (0..sequences.len()).flat_map(|s| (0..heads.count).map(move |h| (s, h)));
    if parallel {
        pairs.collect::<Vec<_>>().into_par_iter().for_each(task);
    } else {
        pairs.for_each(task);
    }
}

/// One head of one sequence (a short one on `micro`).
///
/// # Safety
/// `rows` must be in bounds of `qkv` and of the context `out` points to, and no other thread may
/// write the same rows and head columns at the same time; `micro` is available.
unsafe fn attend(
    qkv: &[f32],
    rows: Range<usize>,
    head: usize,
    heads: Heads,
    micro: Micro,
    out: SharedOut,
) {
    let len = rows.len();
    if len == 0 {
        return;
    }
    let hidden = heads.hidden();
    let stride = 3 * hidden;
    let q = qkv.as_ptr().add(rows.start * 3 * hidden + head * heads.dim);
    let k = q.add(hidden);
    let v = q.add(2 * hidden);
    let ctx = out.0.add(rows.start * hidden + head * heads.dim);
    let scale = 1.0 / (heads.dim as f32).sqrt();
    SCRATCH.with_borrow_mut(|(scores, keys, values)| {
        scores.resize(len * len, 0.0);
        if len <= PANELS_UP_TO {
            // The keys and values as panels, so that both products run on the dense layers'
            // micro-kernel (reading the queries and the scores in place).
            keys.pack_rows(k, stride, len, heads.dim);
            values.pack_columns(v, stride, heads.dim, len);
            // scores = Q·Kᵀ (len × len), then softmax(scores/√d)
            keys.multiply(micro, q, stride, len, scores.as_mut_ptr(), len);
            softmax_rows_scaled(scores, len, scale);
            // context = scores·V (len × dim)
            values.multiply(micro, scores.as_ptr(), len, len, ctx, hidden);
            return;
        }
        let stride = stride as isize;
        // scores = scale · Q·Kᵀ  (len × len)
        gemm::gemm(
            len,
            len,
            heads.dim,
            scores.as_mut_ptr(),
            1,
            len as isize,
            false,
            q,
            1,
            stride,
            k,
            stride,
            1,
            0.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
        softmax_rows(scores, len);
        // context = scores·V  (len × dim)
        gemm::gemm(
            len,
            heads.dim,
            len,
            ctx,
            1,
            hidden as isize,
            false,
            scores.as_ptr(),
            1,
            len as isize,
            v,
            1,
            stride,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    });
}

/// Softmax of each `width`-wide row of `x`, in place.
pub fn softmax_rows(x: &mut [f32], width: usize) {
    softmax_rows_scaled(x, width, 1.0)
}

/// Softmax of each `width`-wide row of `x` times `scale` (positive), in place.
pub fn softmax_rows_scaled(x: &mut [f32], width: usize, scale: f32) {
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    if avx2::chosen() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { avx2::softmax_rows_scaled(x, width, scale) };
    }
    softmax_rows_looped(x, width, scale)
}

/// [`softmax_rows_scaled`] in a loop compiled for each instruction set.
#[cfg_attr(
    not(feature = "portable"),
    multiversion::multiversion(targets(
        "x86_64+avx512f+avx512bw+avx512dq+avx512vl+avx2+avx+fma",
        "x86_64+avx2+avx+fma",
    ))
)]
fn softmax_rows_looped(x: &mut [f32], width: usize, scale: f32) {
    /// Lanes of the widest vectors: every loop below runs on whole vectors of them.
    const LANES: usize = 16;
    for row in x.chunks_exact_mut(width) {
        // A row's ragged end goes through a full vector padded with -inf (whose exp is 0), so
        // short rows (ten tokens: one query) are not exponentiated lane by lane.
        let whole = row.len() / LANES * LANES;
        let (body, rest) = row.split_at_mut(whole);
        let mut tail = [f32::NEG_INFINITY; LANES];
        tail[..rest.len()].copy_from_slice(rest);
        let mut most = tail;
        for chunk in body.chunks_exact(LANES) {
            for (m, v) in most.iter_mut().zip(chunk) {
                *m = larger(*m, *v);
            }
        }
        let max = across(most, larger);
        let mut lanes = [0f32; LANES];
        for chunk in body.chunks_exact_mut(LANES).chain([&mut tail[..]]) {
            for (lane, v) in lanes.iter_mut().zip(chunk.iter_mut()) {
                *v = math::exp((*v - max) * scale);
                *lane += *v;
            }
        }
        let inv = 1.0 / across(lanes, |a, b| a + b);
        body.iter_mut().for_each(|v| *v *= inv);
        for (v, t) in rest.iter_mut().zip(tail) {
            *v = t * inv;
        }
    }
}

/// The larger of two scores: a plain comparison, which compiles to one vector instruction
/// (`f32::max` also orders NaN, at a cost per lane). Scores are never NaN.
#[inline(always)]
fn larger(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// Folds a vector's lanes with `op` in halves (shuffles, not a lane-by-lane chain).
#[inline(always)]
fn across<const N: usize>(mut lanes: [f32; N], op: impl Fn(f32, f32) -> f32) -> f32 {
    let mut half = N / 2;
    while half > 0 {
        for i in 0..half {
            lanes[i] = op(lanes[i], lanes[i + half]);
        }
        half /= 2;
    }
    lanes[0]
}

/// Softmax in AVX2 + FMA intrinsics, for CPUs without AVX-512: the loop's `exp` compiles to
/// separate multiplies and adds (Rust does not fuse them); [`crate::math::avx2::exp8`] is
/// `vfmadd`s. AVX-512 CPUs keep the loop compiled for sixteen lanes.
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
mod avx2 {
    use std::arch::x86_64::*;

    use crate::math::avx2::exp8;

    /// Whether [`softmax_rows_scaled`] is the one this CPU runs.
    pub(super) fn chosen() -> bool {
        crate::math::avx2::available() && !is_x86_feature_detected!("avx512f")
    }

    /// As [`super::softmax_rows_scaled`]; rows under eight wide through masked loads and stores,
    /// a wider row's ragged end through the row's last eight floats.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn softmax_rows_scaled(x: &mut [f32], width: usize, scale: f32) {
        let whole = width / 8 * 8;
        let ragged = width - whole;
        let scale = _mm256_set1_ps(scale);
        if width < 8 {
            // One masked vector a row (the rest read as -inf, whose exp is 0).
            let mask = _mm256_loadu_si256(ON_OFF[8 - width..].as_ptr() as *const __m256i);
            let neg_inf = _mm256_set1_ps(f32::NEG_INFINITY);
            for row in x.chunks_exact_mut(width) {
                let p = row.as_mut_ptr();
                let v = _mm256_maskload_ps(p, mask);
                let v = _mm256_blendv_ps(neg_inf, v, _mm256_castsi256_ps(mask));
                let max = across(v, |a, b| _mm256_max_ps(a, b));
                let e = exp8(_mm256_mul_ps(_mm256_sub_ps(v, max), scale));
                let total = across(e, |a, b| _mm256_add_ps(a, b));
                _mm256_maskstore_ps(p, mask, _mm256_div_ps(e, total));
            }
            return;
        }
        // A ragged end is the row's last eight floats, overlapping the body: its lanes over the
        // body give the same values as the body's (and count in the max, not in the sum), so
        // nothing is read or written outside the row, and the next row's loads never wait on
        // this row's stores.
        let fresh = _mm256_castsi256_ps(_mm256_loadu_si256(
            OFF_ON[ragged..].as_ptr() as *const __m256i
        ));
        for row in x.chunks_exact_mut(width) {
            let p = row.as_mut_ptr();
            let end = p.add(width - 8);
            let end_in = _mm256_loadu_ps(end);
            let mut most = end_in;
            for at in (0..whole).step_by(8) {
                most = _mm256_max_ps(most, _mm256_loadu_ps(p.add(at)));
            }
            let max = across(most, |a, b| _mm256_max_ps(a, b));
            let exp = |v: __m256| exp8(_mm256_mul_ps(_mm256_sub_ps(v, max), scale));
            // Without a ragged end the last eight floats are the body's: nothing to add.
            let end_out = if ragged > 0 {
                exp(end_in)
            } else {
                _mm256_setzero_ps()
            };
            let mut sum = _mm256_and_ps(end_out, fresh);
            for at in (0..whole).step_by(8) {
                let e = exp(_mm256_loadu_ps(p.add(at)));
                _mm256_storeu_ps(p.add(at), e);
                sum = _mm256_add_ps(sum, e);
            }
            let total = across(sum, |a, b| _mm256_add_ps(a, b));
            let inv = _mm256_div_ps(_mm256_set1_ps(1.0), total);
            for at in (0..whole).step_by(8) {
                _mm256_storeu_ps(p.add(at), _mm256_mul_ps(_mm256_loadu_ps(p.add(at)), inv));
            }
            if ragged > 0 {
                _mm256_storeu_ps(end, _mm256_mul_ps(end_out, inv));
            }
        }
    }

    /// Eight lanes on, then eight off: the eight from `8 − n` on are the mask of the first `n`.
    static ON_OFF: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];
    /// Eight lanes off, then eight on: the eight from `n` on are the mask of the last `n`.
    static OFF_ON: [i32; 16] = [0, 0, 0, 0, 0, 0, 0, 0, -1, -1, -1, -1, -1, -1, -1, -1];

    /// `op` over a vector's eight lanes, in every lane: halves, quarters, pairs swapped in.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn across(v: __m256, op: impl Fn(__m256, __m256) -> __m256) -> __m256 {
        let v = op(v, _mm256_permute2f128_ps::<1>(v, v));
        let v = op(v, _mm256_permute_ps::<0b0100_1110>(v));
        op(v, _mm256_permute_ps::<0b1011_0001>(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i + seed) * 2_654_435_761) % 1000) as f32 / 250.0 - 2.0)
            .collect()
    }

    /// Attention of one sequence computed the textbook way, in f64.
    fn naive(qkv: &[f32], range: Range<usize>, heads: Heads) -> Vec<f64> {
        let hidden = heads.hidden();
        let at = |t: usize, part: usize, h: usize, c: usize| {
            qkv[t * 3 * hidden + part * hidden + h * heads.dim + c] as f64
        };
        let mut out = vec![0f64; range.len() * hidden];
        for h in 0..heads.count {
            for (i, ti) in range.clone().enumerate() {
                let scores: Vec<f64> = range
                    .clone()
                    .map(|tj| {
                        (0..heads.dim)
                            .map(|c| at(ti, 0, h, c) * at(tj, 1, h, c))
                            .sum::<f64>()
                            / (heads.dim as f64).sqrt()
                    })
                    .collect();
                let max = scores.iter().cloned().fold(f64::MIN, f64::max);
                let exps: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f64 = exps.iter().sum();
                for c in 0..heads.dim {
                    out[i * hidden + h * heads.dim + c] = range
                        .clone()
                        .zip(&exps)
                        .map(|(tj, e)| e / total * at(tj, 2, h, c))
                        .sum();
                }
            }
        }
        out
    }

    #[test]
    fn packed_sequences_attend_only_to_themselves() {
        // Heads narrower than a panel and as wide as MiniLM's (two panels); sequences of one
        // token and of a few (on panels, ragged ends) and over `PANELS_UP_TO` (on `gemm`).
        for (heads, sequences) in [
            (Heads { count: 3, dim: 8 }, vec![0..5, 5..6, 6..23]),
            (Heads { count: 2, dim: 32 }, vec![0..1, 1..71, 71..84]),
        ] {
            packed_sequences_attend_only_to_themselves_with(heads, &sequences);
        }
    }

    fn packed_sequences_attend_only_to_themselves_with(heads: Heads, sequences: &[Range<usize>]) {
        let tokens = sequences.last().map_or(0, |s| s.end);
        let qkv = values(tokens * 3 * heads.hidden(), 5);
        for parallel in [false, true] {
            let mut context = vec![f32::NAN; tokens * heads.hidden()];
            crate::threads::run(parallel, || {
                attention(&qkv, sequences, heads, &mut context, parallel)
            });
            for range in sequences {
                let want = naive(&qkv, range.clone(), heads);
                let got = &context[range.start * heads.hidden()..range.end * heads.hidden()];
                for (g, w) in got.iter().zip(&want) {
                    assert!((*g as f64 - w).abs() < 1e-5, "{g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn softmax_rows_match_the_textbook_softmax() {
        // One score, shorter than a vector, a whole number of them, and a ragged end after some.
        for width in [1, 5, 10, 16, 37, 128] {
            let mut x = values(width * 4, 9 + width);
            x[width / 2] = 80.0; // large logits must not overflow
            let input = x.clone();
            // What this CPU runs, and the loop every CPU without AVX2 (or with AVX-512) runs.
            let mut looped = x.clone();
            softmax_rows(&mut x, width);
            softmax_rows_looped(&mut looped, width, 1.0);
            let rows = x.chunks(width).chain(looped.chunks(width));
            for (row, row_in) in rows.zip(input.chunks(width).cycle()) {
                let max = row_in.iter().fold(f64::MIN, |m, v| m.max(*v as f64));
                let total: f64 = row_in.iter().map(|v| (*v as f64 - max).exp()).sum();
                for (got, v) in row.iter().zip(row_in) {
                    let want = (*v as f64 - max).exp() / total;
                    assert!(
                        (*got as f64 - want).abs() < 1e-6,
                        "width {width}: {got} vs {want}"
                    );
                }
            }
        }
    }
}
