//! Matrix products on a weight packed once, at load time, into panels of [`NR`] outputs: the
//! order in which the micro-kernels ([`Micro`]: AVX-512, AVX2 + FMA, portable) read it.
//!
//! The `gemm` crate packs the weight again on every call. Here nothing is packed per call: the
//! kernel reads its rows of activations in place (six sequential streams), the weight panels of
//! a k-block stay in L1 while every row tile of a block passes, and the block's rows stay in L2
//! while every panel passes. Measured against packing the rows as well, reading them in place
//! was as fast on 320–4,096 rows and 1.2–1.9× faster on 10 (`examples/products.rs`).
//!
//! Each tile of a panel also pulls a share of the next panel into L2 (`Ahead`; the AVX2
//! micro-kernel does, the others ignore it): without it the weight streams from memory only
//! while a panel's first tile runs and memory idles while the others reuse the panel from L1,
//! which is what bounds a few rows' products (one text: 1.3–1.4× faster on an AVX2 EPYC). After
//! the last panel of a range that threads share out, the tiles pull the panel that follows it,
//! which the same thread most often takes next.

mod aligned;
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
mod avx2;
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
mod avx512;
mod portable;

use std::ops::Range;

use aligned::Aligned;

/// Outputs per panel: one AVX-512 register, two AVX ones.
pub const NR: usize = 16;
/// Rows of a block, whose activations (`MC` rows of a k-block, at most 72 KiB) stay in L2.
const MC: usize = 48;

/// A micro-kernel over the panels: one per instruction set, all on the same packed layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Micro {
    /// 6 rows × 64 outputs (four panels) in 24 AVX-512 registers.
    Avx512,
    /// 6 rows × 16 outputs in 12 AVX2 registers, with FMA.
    Avx2,
    /// Plain Rust that the compiler vectorises for the target: any CPU.
    Portable,
}

impl Micro {
    /// Every micro-kernel, fastest first.
    pub const ALL: [Micro; 3] = [Micro::Avx512, Micro::Avx2, Micro::Portable];

    /// Its name: `avx512`, `avx2`, `portable`.
    pub fn name(self) -> &'static str {
        match self {
            Micro::Avx512 => "avx512",
            Micro::Avx2 => "avx2",
            Micro::Portable => "portable",
        }
    }

    /// The micro-kernel of that [`Micro::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Whether this CPU can run it (and this build has it: the `portable` feature leaves only
    /// the portable one).
    pub fn available(self) -> bool {
        match self {
            #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
            Micro::Avx512 => avx512::available(),
            #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
            Micro::Avx2 => avx2::available(),
            Micro::Portable => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The micro-kernel of the dense kernel the process's configuration ([`crate::config`])
    /// resolves to on this CPU; the fastest it can run where that is `gemm`.
    pub fn detect() -> Self {
        match crate::config::current().dense.resolve() {
            crate::linear::Kernel::Panels(micro) => micro,
            crate::linear::Kernel::Gemm
            | crate::linear::Kernel::Int8(_)
            | crate::linear::Kernel::Amx => Self::best(),
        }
    }

    /// The fastest this CPU can run.
    pub fn best() -> Self {
        Self::ALL
            .into_iter()
            .find(|m| m.available())
            .unwrap_or(Micro::Portable)
    }

    /// Rows per tile.
    fn rows(self) -> usize {
        match self {
            #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
            Micro::Avx512 => avx512::MR,
            #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
            Micro::Avx2 => avx2::MR,
            _ => portable::MR,
        }
    }

    /// Fewest rows a tile keeps the multiply-add units busy with (see the kernels' `FULL_ROWS`).
    fn full_rows(self) -> usize {
        match self {
            #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
            Micro::Avx512 => avx512::FULL_ROWS,
            #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
            Micro::Avx2 => avx2::FULL_ROWS,
            _ => portable::FULL_ROWS,
        }
    }

    /// Panels per tile.
    fn panels(self) -> usize {
        match self {
            #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
            Micro::Avx512 => avx512::PANELS,
            #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
            Micro::Avx2 => avx2::PANELS,
            _ => portable::PANELS,
        }
    }

    /// Deepest k-block: the tile's panels over it (`NR` floats a step each) stay in L1. Deeper
    /// products are cut into equal blocks, so that each tile of the output is loaded and
    /// stored as few times as the depth allows.
    fn depth(self) -> usize {
        match self {
            // Four panels: 4 × 128 × 64 bytes, 32 KiB.
            Micro::Avx512 => 128,
            // One panel: 384 × 64 bytes, 24 KiB.
            _ => 384,
        }
    }

    /// Runs one tile (see the micro-kernels' `tile`).
    ///
    /// # Safety
    /// As the micro-kernel's `tile`; `self` is available.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    unsafe fn tile(
        self,
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
        ahead: Ahead,
    ) {
        let kernel = match self {
            #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
            Micro::Avx512 => avx512::tile,
            #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
            Micro::Avx2 => avx2::tile,
            _ => portable::tile,
        };
        kernel(
            rows,
            a,
            lda,
            b,
            panel_stride,
            depth,
            c,
            ldc,
            cols,
            bias,
            load,
            ahead,
        )
    }
}

/// Lines of the packed weight a tile pulls toward the core while it computes (one line is one
/// step of a panel: [`NR`] floats, 64 bytes): the next panel's share, so that the weight keeps
/// streaming from memory while the tiles of a panel reuse it from L1.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(
    any(not(target_arch = "x86_64"), feature = "portable"),
    allow(dead_code)
)]
pub(crate) struct Ahead {
    /// The first line.
    pub(crate) at: *const f32,
    /// How many lines, at most the tile's depth.
    pub(crate) lines: usize,
}

impl Ahead {
    /// Nothing to pull.
    pub(crate) const NONE: Ahead = Ahead {
        at: std::ptr::null(),
        lines: 0,
    };
}

/// What a product is added to.
#[derive(Debug, Clone, Copy)]
pub enum Base<'a> {
    /// The output's own values: `y += x·Wᵀ`.
    Output,
    /// A bias, overwriting the output: `y = b + x·Wᵀ`, `y` not read.
    Bias(&'a [f32]),
    /// The output's values and a bias: `y += b + x·Wᵀ` (a residual sum).
    OutputAndBias(&'a [f32]),
}

impl<'a> Base<'a> {
    /// The bias, if any.
    pub(crate) fn bias(self) -> Option<&'a [f32]> {
        match self {
            Base::Output => None,
            Base::Bias(b) | Base::OutputAndBias(b) => Some(b),
        }
    }

    /// Whether the output's values are read (added to).
    pub(crate) fn reads_output(self) -> bool {
        !matches!(self, Base::Bias(_))
    }
}

/// A weight of `outputs × inputs` packed into panels; panel `j` holds outputs `j·NR..` for
/// every input, `NR` floats per input (zeros past the last output).
#[derive(Debug, Clone)]
pub struct Panels {
    data: Aligned,
    inputs: usize,
    outputs: usize,
    micro: Micro,
}

impl Panels {
    /// Packs a PyTorch-layout weight (`outputs × inputs`, row-major) for the micro-kernel
    /// [`Micro::detect`] picks.
    ///
    /// # Panics
    /// When `weight` is not `outputs × inputs`.
    pub fn pack(weight: &[f32], inputs: usize, outputs: usize) -> Self {
        Self::pack_for(weight, inputs, outputs, Micro::detect())
    }

    /// As [`Panels::pack`], for a chosen micro-kernel.
    ///
    /// # Panics
    /// When `weight` is not `outputs × inputs`, or this CPU cannot run `micro`.
    pub fn pack_for(weight: &[f32], inputs: usize, outputs: usize, micro: Micro) -> Self {
        assert!(
            micro.available(),
            "this CPU cannot run the {micro:?} kernel"
        );
        assert_eq!(
            weight.len(),
            outputs * inputs,
            "weight is not outputs × inputs"
        );
        let panels = outputs.div_ceil(NR);
        let mut data = Aligned::zeroed(panels * inputs * NR);
        let packed = data.as_mut_slice();
        for (o, row) in weight.chunks_exact(inputs).enumerate() {
            place_row(packed, o, row);
        }
        Self {
            data,
            inputs,
            outputs,
            micro,
        }
    }

    /// The weight back in PyTorch's layout (`outputs × inputs`).
    pub fn unpack(&self) -> Vec<f32> {
        let (k, packed) = (self.inputs, self.data.as_slice());
        let mut weight = vec![0f32; self.outputs * k];
        for (o, row) in weight.chunks_exact_mut(k).enumerate() {
            let base = row_start(o, k);
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

    /// The micro-kernel its products run on.
    pub fn micro(&self) -> Micro {
        self.micro
    }

    /// `y += x·Wᵀ` over the rows of `x` (each `inputs` wide) and of `y` (each `outputs` wide).
    /// In the kernel pool (`parallel`), rows or panels are split across its threads.
    ///
    /// # Panics
    /// When the buffers' rows do not match.
    pub fn accumulate(&self, x: &[f32], y: &mut [f32], parallel: bool) {
        self.product(x, y, Base::Output, parallel, None)
    }

    /// `y = base + x·Wᵀ` (see [`Base`]: a bias is added as the first k-block is written, not
    /// in a pass of its own over the output), then `finish` on each piece of an output row as
    /// soon as its block is complete, while it is still in L2 (an activation, on every thread,
    /// without a pass of its own over the whole output).
    ///
    /// # Panics
    /// As [`Panels::accumulate`]; when a bias is not `outputs` long.
    pub fn product(
        &self,
        x: &[f32],
        y: &mut [f32],
        base: Base<'_>,
        parallel: bool,
        finish: Option<Finish<'_>>,
    ) {
        let (k, n) = (self.inputs, self.outputs);
        let m = product_rows(x, y, k, n, base);
        let panels = n.div_ceil(NR);
        let threads = crate::threads::sharing(parallel);
        let (x_addr, y_addr) = (x.as_ptr() as usize, y.as_mut_ptr() as usize);
        // SAFETY (for every call below): work items cover disjoint (rows × panels) rectangles
        // of `y`; `x` is only read; sizes were checked above.
        let item = |rows: Range<usize>, panels: Range<usize>| unsafe {
            self.block(
                x_addr as *const f32,
                rows,
                panels,
                y_addr as *mut f32,
                base,
                finish,
            )
        };
        if threads == 1 || m * n * k < MIN_PARALLEL_WORK {
            let size = block_rows(m, self.micro.rows());
            for start in (0..m).step_by(size) {
                item(start..(start + size).min(m), 0..panels);
            }
            return;
        }
        let (mr, per_tile) = (self.micro.rows(), self.micro.panels());
        if m >= 4 * mr * threads {
            // Row blocks, a multiple of the threads in number, each a multiple of a tile's rows.
            let blocks = m.div_ceil(MC).div_ceil(threads) * threads;
            let size = m.div_ceil(blocks).div_ceil(mr) * mr;
            rayon::prelude::ParallelIterator::for_each(
                rayon::prelude::IntoParallelIterator::into_par_iter(0..m.div_ceil(size)),
                |b| item(b * size..((b + 1) * size).min(m), 0..panels),
            );
        } else {
            // Few rows: the threads share out the panels, each streaming its part of the weight,
            // in groups of whole tiles.
            let groups = (4 * threads).min(panels);
            let size = panels.div_ceil(groups).div_ceil(per_tile) * per_tile;
            rayon::prelude::ParallelIterator::for_each(
                rayon::prelude::IntoParallelIterator::into_par_iter(0..panels.div_ceil(size)),
                |g| item(0..m, g * size..((g + 1) * size).min(panels)),
            );
        }
    }

    /// The product for `rows` × the outputs of `panels`, k-block by k-block.
    ///
    /// # Safety
    /// `x` is `m × inputs` and `y` is `m × outputs` with `rows` in
    /// `0..m`; no other thread writes this rectangle of `y`; a bias is `outputs` long.
    unsafe fn block(
        &self,
        x: *const f32,
        rows: Range<usize>,
        panels: Range<usize>,
        y: *mut f32,
        base: Base<'_>,
        finish: Option<Finish<'_>>,
    ) {
        let (k, n, micro) = (self.inputs, self.outputs, self.micro);
        let (mr, per_tile) = (micro.rows(), micro.panels());
        let block_depth = k.div_ceil(k.div_ceil(micro.depth()));
        let packed = self.data.as_slice().as_ptr();
        let (tiles, total) = (rows.len().div_ceil(mr), n.div_ceil(NR));
        let mut start = 0;
        while start < k {
            let depth = (k - start).min(block_depth);
            // The base goes in with the first k-block; later ones add to what is written.
            let first = start == 0;
            let (bias, load) = (base.bias().filter(|_| first), !first || base.reads_output());
            for panel in panels.clone().step_by(per_tile) {
                let b = packed.add((panel * k + start) * NR);
                let tile_panels = (panels.end - panel).min(per_tile);
                let cols = (n - panel * NR).min(tile_panels * NR);
                let bias = bias.map_or(std::ptr::null(), |b| b[panel * NR..].as_ptr());
                let next = next_lines(
                    &panels,
                    total,
                    panel,
                    per_tile,
                    k,
                    start..start + depth,
                    block_depth,
                );
                for (t, tile_rows) in row_tiles(rows.clone(), micro).enumerate() {
                    let (row, valid) = (tile_rows.start, tile_rows.len());
                    let (a, c) = (x.add(row * k + start), y.add(row * n + panel * NR));
                    let ahead = next.map_or(Ahead::NONE, |(line, lines)| {
                        let share = share(t, tiles, lines);
                        Ahead {
                            at: packed.add((line + share.start) * NR),
                            lines: share.len(),
                        }
                    });
                    micro.tile(valid, a, k, b, k * NR, depth, c, n, cols, bias, load, ahead);
                }
            }
            start += depth;
        }
        // The block's rows are complete (and still in L2).
        if let Some(finish) = finish {
            finish_rows(
                finish,
                y,
                n,
                rows,
                panels.start * NR..(panels.end * NR).min(n),
            );
        }
    }
}

/// The weight lines (steps of [`NR`] floats, counted from the packed weight's start) that the
/// tiles of `panel` at the k-block `block` pull ahead, as (first line, how many): the next
/// tile's panel over the same k-block, else the range's first panel over the next k-block
/// (blocks of `block_depth`, the last one shorter); after the range's last, the first k-block
/// of the panel that follows the range (of the weight's `total` panels), which the same thread
/// most often takes next when a product's panels are split into ranges; none after the last.
fn next_lines(
    panels: &Range<usize>,
    total: usize,
    panel: usize,
    per_tile: usize,
    inputs: usize,
    block: Range<usize>,
    block_depth: usize,
) -> Option<(usize, usize)> {
    if panel + per_tile < panels.end {
        Some(((panel + per_tile) * inputs + block.start, block.len()))
    } else if block.end < inputs {
        let lines = (inputs - block.end).min(block_depth);
        Some((panels.start * inputs + block.end, lines))
    } else if panels.end < total {
        Some((panels.end * inputs, inputs.min(block_depth)))
    } else {
        None
    }
}

/// Tile `t`'s part of `lines` shared out over `tiles` tiles: contiguous, in order, sizes within
/// one of each other.
fn share(t: usize, tiles: usize, lines: usize) -> Range<usize> {
    t * lines / tiles..(t + 1) * lines / tiles
}

/// Rows of a product `y = base + x·Wᵀ` of `inputs` × `outputs`.
///
/// # Panics
/// When `x` does not hold whole rows of `inputs`, `y` does not hold as many of `outputs`, or a
/// bias is not `outputs` long.
pub(crate) fn product_rows(
    x: &[f32],
    y: &[f32],
    inputs: usize,
    outputs: usize,
    base: Base<'_>,
) -> usize {
    let m = x.len() / inputs;
    assert_eq!(x.len(), m * inputs, "input rows are not `inputs` wide");
    assert_eq!(y.len(), m * outputs, "output rows do not match input rows");
    if let Some(bias) = base.bias() {
        assert_eq!(bias.len(), outputs, "the bias is not `outputs` long");
    }
    m
}

/// Writes output row `o`, its weights for each input in `row`, into a weight packed as
/// [`Panels`] lays it out.
fn place_row(packed: &mut [f32], o: usize, row: &[f32]) {
    let base = row_start(o, row.len());
    for (i, &w) in row.iter().enumerate() {
        packed[base + i * NR] = w;
    }
}

/// Where output `o`'s weight for input 0 lies in a packed weight of `inputs` inputs; input `i`'s
/// is `i × NR` floats further.
fn row_start(o: usize, inputs: usize) -> usize {
    (o / NR) * inputs * NR + o % NR
}

/// Runs `finish` on columns `cols` of each of `rows` of `y` (rows `width` floats apart): one
/// call per row, not per tile, since a call costs a dispatch and a loop start.
///
/// # Safety
/// `y` holds the rows; no other thread touches this rectangle.
pub(crate) unsafe fn finish_rows(
    finish: Finish<'_>,
    y: *mut f32,
    width: usize,
    rows: Range<usize>,
    cols: Range<usize>,
) {
    for row in rows {
        let piece = y.add(row * width + cols.start);
        finish(std::slice::from_raw_parts_mut(piece, cols.len()));
    }
}

/// Rows per block for `m` rows on a micro-kernel of `mr` rows: the nearest whole number of
/// blocks to `m / MC`, of equal size rounded up to whole tiles (a short last block would
/// stream the weight once more for a few rows).
fn block_rows(m: usize, mr: usize) -> usize {
    let blocks = ((m + MC / 2) / MC).max(1);
    m.div_ceil(blocks).div_ceil(mr) * mr
}

/// `rows` cut into tiles of `micro`'s rows, the last one shorter; but where that one would
/// have fewer than `micro`'s full rows (one or two rows on AVX2: too few accumulators to hide
/// the multiply-add latency, costing what four rows do), into as many tiles of sizes that
/// differ by one at most (13 rows on AVX2: 5, 4, 4, not 6, 6, 1).
fn row_tiles(rows: Range<usize>, micro: Micro) -> impl Iterator<Item = Range<usize>> {
    let (mr, len) = (micro.rows(), rows.len());
    let tiles = len.div_ceil(mr);
    let last = len - tiles.saturating_sub(1) * mr;
    let (size, larger) = if tiles > 1 && last < micro.full_rows() {
        (len / tiles, len % tiles)
    } else {
        (mr, 0)
    };
    (0..tiles).scan(rows.start, move |start, t| {
        let tile = *start..(*start + size + usize::from(t < larger)).min(rows.end);
        *start = tile.end;
        Some(tile)
    })
}

/// Work on finished pieces of output rows.
pub type Finish<'a> = &'a (dyn Fn(&mut [f32]) + Sync);

/// Panels packed per call from activations (attention's keys and values), in a buffer reused
/// from call to call.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    data: Aligned,
    inputs: usize,
    outputs: usize,
}

impl Scratch {
    /// Packs a weight whose `outputs` rows of `inputs` lie `stride` floats apart from `rows`
    /// (the keys of a head: one row per token, a head's columns of each).
    ///
    /// # Safety
    /// `rows` holds `outputs` rows `stride` apart of `inputs` floats each.
    pub(crate) unsafe fn pack_rows(
        &mut self,
        rows: *const f32,
        stride: usize,
        outputs: usize,
        inputs: usize,
    ) {
        self.shape(inputs, outputs);
        let packed = self.data.as_mut_slice();
        for o in 0..outputs {
            place_row(
                packed,
                o,
                std::slice::from_raw_parts(rows.add(o * stride), inputs),
            );
        }
    }

    /// Packs the transpose of `inputs` rows of `outputs` floats `stride` apart from `rows`
    /// (the values of a head: the weight's outputs are the head's columns, its inputs the
    /// tokens), [`NR`] floats at a time.
    ///
    /// # Safety
    /// `rows` holds `inputs` rows `stride` apart of `outputs` floats each.
    pub(crate) unsafe fn pack_columns(
        &mut self,
        rows: *const f32,
        stride: usize,
        outputs: usize,
        inputs: usize,
    ) {
        self.shape(inputs, outputs);
        let packed = self.data.as_mut_slice();
        for panel in 0..outputs.div_ceil(NR) {
            let width = (outputs - panel * NR).min(NR);
            for i in 0..inputs {
                let from = std::slice::from_raw_parts(rows.add(i * stride + panel * NR), width);
                let at = (panel * inputs + i) * NR;
                packed[at..at + width].copy_from_slice(from);
            }
        }
    }

    fn shape(&mut self, inputs: usize, outputs: usize) {
        let len = outputs.div_ceil(NR) * inputs * NR;
        self.data.resize(len);
        // Lanes past the last output stay zero: only a partial last panel has them.
        if !outputs.is_multiple_of(NR) {
            let last = outputs / NR * inputs * NR;
            self.data.as_mut_slice()[last..].fill(0.0);
        }
        (self.inputs, self.outputs) = (inputs, outputs);
    }

    /// `c = a·Wᵀ` for `m` rows of `a` (`lda` apart; `c`'s `ldc` apart) on `micro`, on this
    /// thread.
    ///
    /// # Safety
    /// `micro` is available; `a` holds `m` rows of the packed weight's inputs, `c` `m` rows of
    /// its outputs; `c` does not overlap `a` or the scratch.
    pub(crate) unsafe fn multiply(
        &self,
        micro: Micro,
        a: *const f32,
        lda: usize,
        m: usize,
        c: *mut f32,
        ldc: usize,
    ) {
        let (k, n) = (self.inputs, self.outputs);
        let per_tile = micro.panels();
        let packed = self.data.as_slice().as_ptr();
        for panel in (0..n.div_ceil(NR)).step_by(per_tile) {
            let cols = (n - panel * NR).min(per_tile * NR);
            let b = packed.add(panel * k * NR);
            for tile_rows in row_tiles(0..m, micro) {
                let (row, rows) = (tile_rows.start, tile_rows.len());
                let (a, c) = (a.add(row * lda), c.add(row * ldc + panel * NR));
                micro.tile(
                    rows,
                    a,
                    lda,
                    b,
                    k * NR,
                    k,
                    c,
                    ldc,
                    cols,
                    std::ptr::null(),
                    false,
                    Ahead::NONE,
                );
            }
        }
    }
}

/// Below this many multiply-adds a product stays on one thread (tens of microseconds).
const MIN_PARALLEL_WORK: usize = 1 << 18;

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_values as values;

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

    /// Every micro-kernel this CPU and build can run; a notice for those skipped.
    fn micros() -> Vec<Micro> {
        Micro::ALL
            .into_iter()
            .filter(|m| {
                let ok = m.available();
                if !ok {
                    println!("skipped: this CPU or build cannot run the {m:?} micro-kernel");
                }
                ok
            })
            .collect()
    }

    #[test]
    fn row_tiles_cover_the_rows_and_starve_no_tile_that_need_not_be() {
        for micro in Micro::ALL {
            let (mr, full) = (micro.rows(), micro.full_rows());
            for len in 0..40 {
                let tiles: Vec<_> = row_tiles(5..5 + len, micro).collect();
                assert_eq!(tiles.len(), len.div_ceil(mr), "{micro:?}, {len} rows");
                let mut at = 5;
                for tile in &tiles {
                    assert_eq!(tile.start, at, "{micro:?}, {len} rows: {tiles:?}");
                    assert!((1..=mr).contains(&tile.len()), "{micro:?}: {tiles:?}");
                    at = tile.end;
                }
                assert_eq!(at, 5 + len, "{micro:?}: {tiles:?}");
                // As few tiles as hold the rows, none below the full rows unless even shares
                // of the rows are.
                if let Some(smallest) = tiles.iter().map(|t| t.len()).min() {
                    let even = len / tiles.len();
                    assert!(smallest >= full.min(even), "{micro:?}: {tiles:?}");
                }
            }
        }
    }

    #[test]
    fn the_tiles_pull_ahead_every_line_they_read_but_the_first_panel_once_each() {
        // Lines of the packed weight a block reads (a tile's first panel), in its order, and
        // those pulled ahead; after the last, the first k-block of the panel that follows the
        // block's range, where the weight has one.
        for (inputs, panels, per_tile, block_depth, tiles) in [
            (384, 0..24, 1, 384, 7),
            (1536, 0..24, 1, 384, 2),
            (1000, 3..11, 1, 334, 3),
            (384, 0..7, 4, 128, 1),
            (300, 2..5, 1, 384, 9),
        ] {
            for total in [panels.end, panels.end + 3] {
                let (mut read, mut pulled) = (Vec::new(), Vec::new());
                let mut start = 0;
                while start < inputs {
                    let depth = (inputs - start).min(block_depth);
                    for panel in panels.clone().step_by(per_tile) {
                        read.extend((0..depth).map(|i| panel * inputs + start + i));
                        let next = next_lines(
                            &panels,
                            total,
                            panel,
                            per_tile,
                            inputs,
                            start..start + depth,
                            block_depth,
                        );
                        if let Some((line, lines)) = next {
                            assert!(lines <= block_depth, "more lines than a tile's steps");
                            for t in 0..tiles {
                                pulled.extend(share(t, tiles, lines).map(|i| line + i));
                            }
                        }
                    }
                    start += depth;
                }
                // A multi-panel tile reads (and pulls) its first panel's lines only, as listed.
                let first_block = block_depth.min(inputs);
                let mut want = read[first_block..].to_vec();
                if total > panels.end {
                    let following = panels.end * inputs;
                    want.extend(following..following + first_block);
                }
                assert_eq!(pulled, want, "{inputs} {panels:?} of {total}");
            }
        }
    }

    #[test]
    fn the_finishing_step_sees_each_complete_sum_once() {
        // Depth over one k-block: a piece finished before its last block would be squared
        // too early and summed further.
        let (m, k, n) = (23, 1000, 40);
        let (x, w) = (values(m * k, 4), values(n * k, 5));
        let want = naive(&x, &w, k, n);
        let square: &(dyn Fn(&mut [f32]) + Sync) = &|p| p.iter_mut().for_each(|v| *v *= *v);
        for micro in micros() {
            let panels = Panels::pack_for(&w, k, n, micro);
            for parallel in [false, true] {
                let mut y = vec![0f32; m * n];
                crate::threads::run(parallel, || {
                    panels.product(&x, &mut y, Base::Output, parallel, Some(square))
                });
                for (g, w) in y.iter().zip(&want) {
                    assert!(
                        (g - w * w).abs() < 1e-2 * (1.0 + w * w),
                        "{micro:?}: {g} vs {}",
                        w * w
                    );
                }
            }
        }
    }

    #[test]
    fn products_of_every_edge_shape_match_a_plain_product() {
        // On every base (the output, a bias instead of it, both). Rows not a multiple of a tile's, outputs not a multiple of NR nor of a tile's panels
        // (1, 2, 3 panels left over), depth over one k-block and not a multiple of it, and
        // blocks enough to split across threads, by rows and by panels.
        let shapes = [
            (1, 1, 1),
            (5, 19, 11),
            (7, 300, 33),
            (13, 384, 48),
            (100, 513, 40),
            (200, 64, 17),
            (3, 130, 100),
            (11, 257, 64),
            (49, 129, 113),
            (2, 384, 1152),
            (60, 96, 200),
        ];
        for micro in micros() {
            for (m, k, n) in shapes {
                let (x, w) = (values(m * k, 1), values(n * k, 2));
                let panels = Panels::pack_for(&w, k, n, micro);
                assert_eq!(panels.unpack(), w);
                let want = naive(&x, &w, k, n);
                let (start, bias) = (values(m * n, 3), values(n, 8));
                let bases = [Base::Output, Base::Bias(&bias), Base::OutputAndBias(&bias)];
                for (base, parallel) in bases.into_iter().flat_map(|b| [(b, false), (b, true)]) {
                    // An output that is overwritten starts as NaN: reading it would show.
                    let mut y = if base.reads_output() {
                        start.clone()
                    } else {
                        vec![f32::NAN; m * n]
                    };
                    crate::threads::run(parallel, || {
                        panels.product(&x, &mut y, base, parallel, None)
                    });
                    for (i, g) in y.iter().enumerate() {
                        let mut expected = want[i];
                        if base.reads_output() {
                            expected += start[i];
                        }
                        if let Some(bias) = base.bias() {
                            expected += bias[i % n];
                        }
                        assert!(
                            (g - expected).abs() < 1e-3,
                            "{micro:?} {base:?} m={m} k={k} n={n} parallel={parallel} at {i}: \
                             {g} vs {expected}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_clone_computes_the_same_product() {
        // A clone's panels are a new allocation: the kernels' aligned loads need it on a
        // cache line as well (see `aligned`). Clones of clones, with allocations in between.
        let (m, k, n) = (9, 70, 50);
        let (x, w) = (values(m * k, 6), values(n * k, 7));
        for micro in micros() {
            let original = Panels::pack_for(&w, k, n, micro);
            let mut want = vec![0f32; m * n];
            original.accumulate(&x, &mut want, false);
            let mut clone = original.clone();
            drop(original);
            let mut keep = Vec::new();
            for round in 0..20 {
                keep.push(vec![0u8; 8 * round + 4]);
                let next = clone.clone();
                assert_eq!(next.micro(), micro);
                let mut got = vec![0f32; m * n];
                next.accumulate(&x, &mut got, false);
                assert_eq!(got, want, "{micro:?}, clone {round}");
                clone = next;
            }
        }
    }

    #[test]
    fn micro_kernels_are_named_and_run_only_where_available() {
        for micro in Micro::ALL {
            assert_eq!(Micro::from_name(micro.name()), Some(micro));
        }
        assert_eq!(Micro::from_name("sse"), None);
        assert!(Micro::Portable.available());
        assert!(Micro::best().available());
        #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
        assert_eq!(
            Micro::Avx512.available(),
            is_x86_feature_detected!("avx512f")
        );
        #[cfg(any(not(target_arch = "x86_64"), feature = "portable"))]
        assert_eq!(Micro::best(), Micro::Portable);
    }
}
