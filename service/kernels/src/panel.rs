//! Matrix products on a weight packed once, at load time, into panels of [`NR`] outputs: the
//! order in which an AVX2 + FMA micro-kernel of [`MR`] rows × [`NR`] outputs reads it.
//!
//! The `gemm` crate packs the weight again on every call, and has no kernel shaped for CPUs
//! with AVX2 but no AVX-512. Here nothing is packed per call: the kernel reads its rows of
//! activations in place (six sequential streams), the weight panel of a k-block stays in L1
//! while every row tile of a block passes, and the block's rows stay in L2 while every panel
//! passes. Measured against packing the rows as well, reading them in place was as fast on
//! 320–4,096 rows and 1.2–1.9× faster on 10 (`examples/products.rs`).

use std::ops::Range;

/// Outputs per panel: two AVX registers.
pub const NR: usize = 16;
/// Rows per tile: 6 × 2 accumulators, two weight registers and one broadcast fill the sixteen.
pub const MR: usize = 6;
/// Deepest k-block: a panel's block is at most `KC × NR` floats (24 KiB) and stays in L1.
/// Deeper products are cut into equal blocks, so that each tile of the output is loaded and
/// stored as few times as the depth allows.
const KC: usize = 384;
/// Rows of a block, whose activations (`MC × KC` floats, 144 KiB) stay in L2.
const MC: usize = 48;
/// Floats per cache line: panels and packed rows start on one.
const LINE: usize = 16;

/// A `Vec<f32>` whose contents start on a cache line.
#[derive(Debug, Clone, Default)]
struct Aligned {
    data: Vec<f32>,
    offset: usize,
    len: usize,
}

impl Aligned {
    fn zeroed(len: usize) -> Self {
        let data = vec![0f32; len + LINE];
        let misalign = (data.as_ptr() as usize / std::mem::size_of::<f32>()) % LINE;
        let offset = (LINE - misalign) % LINE;
        Self { data, offset, len }
    }

    fn as_slice(&self) -> &[f32] {
        &self.data[self.offset..self.offset + self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data[self.offset..self.offset + self.len]
    }
}

/// A weight of `outputs × inputs` packed into panels; panel `j` holds outputs `j·NR..` for
/// every input, `NR` floats per input (zeros past the last output).
#[derive(Debug, Clone)]
pub struct Panels {
    data: Aligned,
    inputs: usize,
    outputs: usize,
}

impl Panels {
    /// Packs a PyTorch-layout weight (`outputs × inputs`, row-major).
    ///
    /// # Panics
    /// When `weight` is not `outputs × inputs`.
    pub fn pack(weight: &[f32], inputs: usize, outputs: usize) -> Self {
        assert_eq!(
            weight.len(),
            outputs * inputs,
            "weight is not outputs × inputs"
        );
        let panels = outputs.div_ceil(NR);
        let mut data = Aligned::zeroed(panels * inputs * NR);
        let packed = data.as_mut_slice();
        for (o, row) in weight.chunks_exact(inputs).enumerate() {
            let (panel, lane) = (o / NR, o % NR);
            let base = panel * inputs * NR + lane;
            for (i, &w) in row.iter().enumerate() {
                packed[base + i * NR] = w;
            }
        }
        Self {
            data,
            inputs,
            outputs,
        }
    }

    /// The weight back in PyTorch's layout (`outputs × inputs`).
    pub fn unpack(&self) -> Vec<f32> {
        let (k, packed) = (self.inputs, self.data.as_slice());
        let mut weight = vec![0f32; self.outputs * k];
        for (o, row) in weight.chunks_exact_mut(k).enumerate() {
            let base = (o / NR) * k * NR + o % NR;
            for (i, w) in row.iter_mut().enumerate() {
                *w = packed[base + i * NR];
            }
        }
        weight
    }

    /// Width of an input row.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Width of an output row.
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// Whether this CPU can run the kernel.
    pub fn available() -> bool {
        crate::skinny::available()
    }

    /// `y += x·Wᵀ` over the rows of `x` (each `inputs` wide) and of `y` (each `outputs` wide).
    /// In the kernel pool (`parallel`), rows or panels are split across its threads.
    ///
    /// # Panics
    /// When [`Panels::available`] is false, or the buffers' rows do not match.
    pub fn accumulate(&self, x: &[f32], y: &mut [f32], parallel: bool) {
        self.accumulate_then(x, y, parallel, None)
    }

    /// As [`Panels::accumulate`], then `finish` on each piece of an output row as soon as its
    /// block is complete, while it is still in L2 (an activation, on every thread, without a
    /// pass of its own over the whole output).
    ///
    /// # Panics
    /// As [`Panels::accumulate`].
    pub fn accumulate_then(
        &self,
        x: &[f32],
        y: &mut [f32],
        parallel: bool,
        finish: Option<Finish<'_>>,
    ) {
        assert!(Self::available(), "the panel kernel needs AVX2 and FMA");
        let (k, n) = (self.inputs, self.outputs);
        let m = x.len() / k;
        assert_eq!(x.len(), m * k, "input rows are not `inputs` wide");
        assert_eq!(y.len(), m * n, "output rows do not match input rows");
        let panels = n.div_ceil(NR);
        let threads = if parallel && rayon::current_thread_index().is_some() {
            rayon::current_num_threads()
        } else {
            1
        };
        let (x_addr, y_addr) = (x.as_ptr() as usize, y.as_mut_ptr() as usize);
        // SAFETY (for every call below): work items cover disjoint (rows × panels) rectangles
        // of `y`; `x` is only read; sizes were checked above.
        let item = |rows: Range<usize>, panels: Range<usize>| unsafe {
            self.block(
                x_addr as *const f32,
                rows,
                panels,
                y_addr as *mut f32,
                finish,
            )
        };
        if threads == 1 || m * n * k < MIN_PARALLEL_WORK {
            for start in (0..m).step_by(MC) {
                item(start..(start + MC).min(m), 0..panels);
            }
            return;
        }
        if m >= 4 * MR * threads {
            // Row blocks, a multiple of the threads in number, each a multiple of MR rows.
            let blocks = m.div_ceil(MC).div_ceil(threads) * threads;
            let size = m.div_ceil(blocks).div_ceil(MR) * MR;
            rayon::prelude::ParallelIterator::for_each(
                rayon::prelude::IntoParallelIterator::into_par_iter(0..m.div_ceil(size)),
                |b| item(b * size..((b + 1) * size).min(m), 0..panels),
            );
        } else {
            // Few rows: the threads share out the panels, each streaming its part of the weight.
            let groups = (4 * threads).min(panels);
            let size = panels.div_ceil(groups);
            rayon::prelude::ParallelIterator::for_each(
                rayon::prelude::IntoParallelIterator::into_par_iter(0..panels.div_ceil(size)),
                |g| item(0..m, g * size..((g + 1) * size).min(panels)),
            );
        }
    }

    /// The product for `rows` × the outputs of `panels`, k-block by k-block.
    ///
    /// # Safety
    /// AVX2 and FMA are present; `x` is `m × inputs` and `y` is `m × outputs` with `rows` in
    /// `0..m`; no other thread writes this rectangle of `y`.
    unsafe fn block(
        &self,
        x: *const f32,
        rows: Range<usize>,
        panels: Range<usize>,
        y: *mut f32,
        finish: Option<Finish<'_>>,
    ) {
        let (k, n) = (self.inputs, self.outputs);
        let block_depth = k.div_ceil(k.div_ceil(KC));
        let mut start = 0;
        while start < k {
            let depth = (k - start).min(block_depth);
            for panel in panels.clone() {
                let b = self.data.as_slice().as_ptr().add((panel * k + start) * NR);
                let cols = (n - panel * NR).min(NR);
                for row in rows.clone().step_by(MR) {
                    let valid = (rows.end - row).min(MR);
                    let (a, c) = (x.add(row * k + start), y.add(row * n + panel * NR));
                    match valid {
                        6 => avx2::tile::<6>(a, k, b, depth, c, n, cols),
                        5 => avx2::tile::<5>(a, k, b, depth, c, n, cols),
                        4 => avx2::tile::<4>(a, k, b, depth, c, n, cols),
                        3 => avx2::tile::<3>(a, k, b, depth, c, n, cols),
                        2 => avx2::tile::<2>(a, k, b, depth, c, n, cols),
                        _ => avx2::tile::<1>(a, k, b, depth, c, n, cols),
                    }
                }
            }
            start += depth;
        }
        // The block's rows are complete (and still in L2): one call per row, not per tile,
        // since a call costs a dispatch and a loop start.
        if let Some(finish) = finish {
            let cols = panels.start * NR..(panels.end * NR).min(n);
            for row in rows {
                let piece = y.add(row * n + cols.start);
                finish(std::slice::from_raw_parts_mut(piece, cols.len()));
            }
        }
    }
}

/// Work on finished pieces of output rows.
pub type Finish<'a> = &'a (dyn Fn(&mut [f32]) + Sync);

/// Below this many multiply-adds a product stays on one thread (tens of microseconds).
const MIN_PARALLEL_WORK: usize = 1 << 18;

mod avx2 {
    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::*;

    use super::{MR, NR};

    /// `c[r][j] += Σ a[r][i]·b[i][j]` over `i < depth` for the `R` rows and first `cols`
    /// columns of a tile; `a`'s rows are `lda` apart, `c`'s `ldc`.
    ///
    /// # Safety
    /// AVX2 and FMA are present; `a` holds `R` rows of `depth` floats, `b` `depth × NR`
    /// (aligned to 32 bytes), and `c` the tile's rows and columns.
    #[allow(clippy::needless_range_loop)]
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile<const R: usize>(
        a: *const f32,
        lda: usize,
        mut b: *const f32,
        depth: usize,
        c: *mut f32,
        ldc: usize,
        cols: usize,
    ) {
        for r in 0..R {
            let p = c.add(r * ldc);
            _mm_prefetch::<_MM_HINT_T0>(p as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(p.add(NR - 1) as *const i8);
        }
        let mut rows = [a; R];
        for r in 0..R {
            rows[r] = a.add(r * lda);
        }
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for i in 0..depth {
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
            for r in 0..R {
                let p = c.add(r * ldc);
                _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), acc[r][0]));
                _mm256_storeu_ps(
                    p.add(8),
                    _mm256_add_ps(_mm256_loadu_ps(p.add(8)), acc[r][1]),
                );
            }
        } else {
            let mut tile = [0f32; MR * NR];
            for r in 0..R {
                _mm256_storeu_ps(tile.as_mut_ptr().add(r * NR), acc[r][0]);
                _mm256_storeu_ps(tile.as_mut_ptr().add(r * NR + 8), acc[r][1]);
            }
            for r in 0..R {
                for j in 0..cols {
                    *c.add(r * ldc + j) += tile[r * NR + j];
                }
            }
        }
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub(super) unsafe fn tile<const R: usize>(
        _: *const f32,
        _: *const f32,
        _: usize,
        _: *mut f32,
        _: usize,
        _: usize,
        _: usize,
    ) {
        unreachable!("the panel kernel runs only where `Panels::available()`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i + seed) * 2_654_435_761) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    fn naive(x: &[f32], w: &[f32], k: usize, n: usize) -> Vec<f32> {
        x.chunks(k)
            .flat_map(|row| {
                (0..n).map(move |o| {
                    row.iter()
                        .zip(&w[o * k..(o + 1) * k])
                        .map(|(a, b)| a * b)
                        .sum::<f32>()
                })
            })
            .collect()
    }

    #[test]
    fn the_finishing_step_sees_each_complete_sum_once() {
        if !Panels::available() {
            return;
        }
        // Depth over one k-block: a piece finished before its last block would be squared
        // too early and summed further.
        let (m, k, n) = (23, 1000, 40);
        let (x, w) = (values(m * k, 4), values(n * k, 5));
        let panels = Panels::pack(&w, k, n);
        let want = naive(&x, &w, k, n);
        let square: &(dyn Fn(&mut [f32]) + Sync) = &|p| p.iter_mut().for_each(|v| *v *= *v);
        for parallel in [false, true] {
            let mut y = vec![0f32; m * n];
            crate::threads::run(parallel, || {
                panels.accumulate_then(&x, &mut y, parallel, Some(square))
            });
            for (g, w) in y.iter().zip(&want) {
                assert!((g - w * w).abs() < 1e-2 * (1.0 + w * w), "{g} vs {}", w * w);
            }
        }
    }

    #[test]
    fn products_of_every_edge_shape_match_a_plain_product() {
        if !Panels::available() {
            return;
        }
        // Rows not a multiple of MR, outputs not a multiple of NR, depth over one k-block and
        // not a multiple of it, and blocks enough to split across threads.
        for (m, k, n) in [
            (1, 1, 1),
            (5, 19, 11),
            (7, 300, 33),
            (13, 384, 48),
            (100, 513, 40),
            (200, 64, 17),
        ] {
            let (x, w) = (values(m * k, 1), values(n * k, 2));
            let panels = Panels::pack(&w, k, n);
            let want = naive(&x, &w, k, n);
            let start = values(m * n, 3);
            for parallel in [false, true] {
                let mut y = start.clone();
                crate::threads::run(parallel, || panels.accumulate(&x, &mut y, parallel));
                for (i, ((g, w), s)) in y.iter().zip(&want).zip(&start).enumerate() {
                    assert!(
                        (g - (w + s)).abs() < 1e-3,
                        "m={m} k={k} n={n} parallel={parallel} at {i}: {g} vs {}",
                        w + s
                    );
                }
            }
        }
    }
}
