//! Dense products on Intel AMX (Sapphire Rapids and later) with f32 in and out: each f32 is
//! split into a bf16 `hi` (rounded to nearest) and the bf16 `lo` of what `hi` leaves out, and a
//! product is taken as `hi·hi + lo·hi + hi·lo` in bf16 tile products that sum in f32. The term
//! left out (`lo·lo`) and `lo`'s own rounding are ~2⁻¹⁶ of each product, against ~2⁻²⁴ for
//! f32 multiply-adds: the tests below bound an output at 2⁻¹⁵ of the sum of its products'
//! magnitudes; over a row of hundreds of products the errors partly cancel (about 10⁻⁶ of that
//! sum measured in a 320 × 384 × 1,536 product), and the served vectors stay within a cosine of
//! 1 − 10⁻⁹ of the f32 panels' (`service/tests/cli.rs`). The weight is split and laid out in
//! tiles once, at load time; the activations on every call.
//!
//! One AMX tile product is 16 × 16 × 32 multiply-adds in 16 cycles, so three of them still
//! reach several times what the AVX-512 micro-kernel does on one core.

#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
pub(crate) mod tiles;

use std::{ops::Range, sync::OnceLock};

use crate::panel::{finish_rows, product_rows, Base, Finish};

/// A cache line of bf16: tiles and activation rows start on one.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct Line([u16; 32]);

/// Inputs per chunk of depth (one tile product), and outputs per weight tile.
const CHUNK: usize = 32;
const TILE_OUTPUTS: usize = 16;
/// Rows and outputs of one block of the output (four accumulator tiles).
const BLOCK: usize = 32;
/// Activations (both halves) of a group of row blocks kept in L2 while the weight streams past.
const GROUP_BYTES: usize = 512 * 1024;
/// Below this many multiply-adds a product runs on one thread.
const MIN_PARALLEL_WORK: usize = 1 << 20;

/// Whether this CPU and OS run AMX with bf16: CPUID says AMX-TILE and AMX-BF16, and Linux
/// grants this process the tile state (`arch_prctl(ARCH_REQ_XCOMP_PERM)`, asked once).
pub fn available() -> bool {
    support().bf16
}

/// Whether this CPU and OS run AMX with int8 (AMX-INT8, as [`available`] for bf16).
pub fn available_int8() -> bool {
    support().int8
}

/// The AMX products this process may use.
#[derive(Debug, Clone, Copy, Default)]
struct Support {
    bf16: bool,
    int8: bool,
}

fn support() -> Support {
    static SUPPORT: OnceLock<Support> = OnceLock::new();
    *SUPPORT.get_or_init(detect)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux", not(feature = "portable")))]
fn detect() -> Support {
    // SAFETY: CPUID leaf 7 exists on every x86-64 CPU that reports it as its maximum leaf or
    // more (checked first). (`__cpuid` became a safe function in later Rust versions.)
    #[allow(unused_unsafe)]
    let leaf7 = unsafe {
        if std::arch::x86_64::__cpuid(0).eax < 7 {
            return Support::default();
        }
        std::arch::x86_64::__cpuid_count(7, 0)
    };
    let bit = |n: u32| leaf7.edx & (1 << n) != 0;
    if !bit(24) {
        return Support::default();
    }
    extern "C" {
        fn syscall(number: std::ffi::c_long, ...) -> std::ffi::c_long;
    }
    const SYS_ARCH_PRCTL: std::ffi::c_long = 158;
    const ARCH_REQ_XCOMP_PERM: std::ffi::c_long = 0x1023;
    const XFEATURE_XTILEDATA: std::ffi::c_long = 18;
    // SAFETY: asks the kernel for a permission; no memory is passed.
    let granted = unsafe { syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 };
    Support {
        bf16: granted && bit(22),
        int8: granted && bit(25),
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux", not(feature = "portable"))))]
fn detect() -> Support {
    Support::default()
}

/// `x` rounded to the nearest bf16 (ties to even), as its bits.
#[inline(always)]
fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// The f32 a bf16 stands for.
#[inline(always)]
fn from_bf16(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// `x` as `hi + lo`, both bf16.
#[inline(always)]
fn split(x: f32) -> (u16, u16) {
    let hi = to_bf16(x);
    (hi, to_bf16(x - from_bf16(hi)))
}

/// A weight of `outputs × inputs` split into `hi` and `lo` and laid out as AMX weight tiles:
/// tile (outputs block `o`, chunk `c`) holds, for the 16 outputs `16·o..` and the 32 inputs
/// `32·c..`, 16 rows of 16 pairs of consecutive inputs (zeros past the edges); the chunks of a
/// block follow each other, and the number of blocks is even.
#[derive(Debug, Clone)]
pub struct AmxPanels {
    hi: Vec<Line>,
    lo: Vec<Line>,
    inputs: usize,
    outputs: usize,
}

impl AmxPanels {
    /// Splits and lays out a PyTorch-layout weight (`outputs × inputs`, row-major).
    ///
    /// # Panics
    /// When `weight` is not `outputs × inputs`.
    pub fn pack(weight: &[f32], inputs: usize, outputs: usize) -> Self {
        assert_eq!(
            weight.len(),
            outputs * inputs,
            "weight is not outputs × inputs"
        );
        let (chunks, blocks) = (inputs.div_ceil(CHUNK), Self::blocks_for(outputs));
        let lines = blocks * chunks * TILE_OUTPUTS;
        let (mut hi, mut lo) = (vec![Line::default(); lines], vec![Line::default(); lines]);
        for (o, row) in weight.chunks_exact(inputs).enumerate() {
            for (i, &w) in row.iter().enumerate() {
                let (line, lane) = Self::place(chunks, o, i);
                let (h, l) = split(w);
                hi[line].0[lane] = h;
                lo[line].0[lane] = l;
            }
        }
        Self {
            hi,
            lo,
            inputs,
            outputs,
        }
    }

    /// Weight tiles of 16 outputs: an even number, for blocks of 32.
    fn blocks_for(outputs: usize) -> usize {
        outputs.div_ceil(BLOCK) * 2
    }

    /// The line and lane that hold output `o`'s weight for input `i`.
    fn place(chunks: usize, o: usize, i: usize) -> (usize, usize) {
        let (block, chunk) = (o / TILE_OUTPUTS, i / CHUNK);
        let pair = (i % CHUNK) / 2;
        let tile = block * chunks + chunk;
        (tile * TILE_OUTPUTS + pair, (o % TILE_OUTPUTS) * 2 + i % 2)
    }

    /// The weight back in PyTorch's layout, each weight `hi + lo` (within ~2⁻¹⁶ of what was
    /// packed).
    pub fn unpack(&self) -> Vec<f32> {
        let chunks = self.inputs.div_ceil(CHUNK);
        let mut weight = vec![0f32; self.outputs * self.inputs];
        for (o, row) in weight.chunks_exact_mut(self.inputs).enumerate() {
            for (i, w) in row.iter_mut().enumerate() {
                let (line, lane) = Self::place(chunks, o, i);
                *w = from_bf16(self.hi[line].0[lane]) + from_bf16(self.lo[line].0[lane]);
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

    /// `y = base + x·Wᵀ` (see [`Base`]), then `finish` on each finished piece of output rows,
    /// as [`crate::panel::Panels::product`] does. In the kernel pool (`parallel`), row groups
    /// or output blocks are split across its threads.
    ///
    /// # Panics
    /// As [`crate::panel::Panels::product`]; when AMX is not [`available`].
    pub fn product(
        &self,
        x: &[f32],
        y: &mut [f32],
        base: Base<'_>,
        parallel: bool,
        finish: Option<Finish<'_>>,
    ) {
        assert!(available(), "this CPU or OS does not run AMX");
        let (k, n) = (self.inputs, self.outputs);
        let m = product_rows(x, y, k, n, base);
        if m == 0 {
            return;
        }
        let (row_blocks, out_blocks) = (m.div_ceil(BLOCK), n.div_ceil(BLOCK));
        let lines = k.div_ceil(CHUNK);
        let group = (GROUP_BYTES / (lines * 2 * 64 * BLOCK)).max(1);
        let threads = crate::threads::sharing(parallel);
        let work = Work {
            row_blocks,
            out_blocks,
            group,
        };
        let plan = work.plan(threads, m * n * k < MIN_PARALLEL_WORK);
        // Shared out by outputs, every item reads every row: they are split once, here. Else
        // each item splits its own rows.
        let all = matches!(plan, Plan::Outputs(_)).then(|| {
            let mut rows = SPLIT_ROWS.take();
            rows.fill(x, 0..m, k);
            rows
        });
        let (x_addr, y_addr) = (x.as_ptr() as usize, y.as_mut_ptr() as usize);
        // SAFETY (for every call below): items cover disjoint (rows × outputs) rectangles of
        // `y`; `x` and the split rows are only read; sizes were checked above.
        work.run(plan, |blocks, outs| unsafe {
            self.item(
                x_addr as *const f32,
                m,
                blocks,
                outs,
                y_addr as *mut f32,
                base,
                finish,
                all.as_ref(),
            )
        });
        if let Some(rows) = all {
            SPLIT_ROWS.set(rows);
        }
    }

    /// The product for row blocks `blocks` × output blocks `outs` (32 each), written into `y`
    /// with its base, then finished. The rows are `split` (all `m` of them), or split here.
    ///
    /// # Safety
    /// `x` is `m × inputs` and `y` is `m × outputs`; no other thread writes this rectangle of
    /// `y`; a bias is `outputs` long; `split`, when given, holds the `m` rows of `x`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn item(
        &self,
        x: *const f32,
        m: usize,
        blocks: Range<usize>,
        outs: Range<usize>,
        y: *mut f32,
        base: Base<'_>,
        finish: Option<Finish<'_>>,
        split: Option<&SplitRows>,
    ) {
        if blocks.is_empty() || outs.is_empty() {
            return;
        }
        let (k, n) = (self.inputs, self.outputs);
        let rows = blocks.start * BLOCK..(blocks.end * BLOCK).min(m);
        // Taken out while in use, not borrowed: a thread waiting in the pool may run another
        // product meanwhile.
        let mut own = None;
        let (split, first_block) = match split {
            Some(all) => (all, 0),
            None => {
                let mut buffer = SPLIT_ROWS.take();
                let x = std::slice::from_raw_parts(x, m * k);
                buffer.fill(x, rows.clone(), k);
                (&*own.insert(buffer), blocks.start)
            }
        };
        self.blocks(split, first_block, m, blocks.clone(), outs.clone(), y, base);
        if let Some(buffer) = own {
            SPLIT_ROWS.set(buffer);
        }
        if let Some(finish) = finish {
            finish_rows(
                finish,
                y,
                n,
                rows,
                outs.start * BLOCK..(outs.end * BLOCK).min(n),
            );
        }
    }
}

impl AmxPanels {
    /// The tile products of row blocks `blocks` × output blocks `outs`, each block's sums
    /// written into `y` on top of its base; `split` holds the rows from block `first_block`.
    ///
    /// # Safety
    /// As [`AmxPanels::item`]; AMX is [`available`].
    #[allow(clippy::too_many_arguments)]
    unsafe fn blocks(
        &self,
        split: &SplitRows,
        first_block: usize,
        m: usize,
        blocks: Range<usize>,
        outs: Range<usize>,
        y: *mut f32,
        base: Base<'_>,
    ) {
        let (k, n) = (self.inputs, self.outputs);
        let chunks = k.div_ceil(CHUNK);
        let line = split.lines;
        let mut out = [0f32; BLOCK * BLOCK];
        #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
        tiles::configure();
        for o in outs.clone() {
            let tile = 2 * o * chunks * TILE_OUTPUTS;
            for b in blocks.clone() {
                let first = (b - first_block) * BLOCK * line;
                let (r0, c0) = (b * BLOCK, o * BLOCK);
                let from = Block {
                    a_hi: split.hi[first..].as_ptr().cast(),
                    a_lo: split.lo[first..].as_ptr().cast(),
                    row_bytes: line * 64,
                    w_hi: self.hi[tile..].as_ptr().cast(),
                    w_lo: self.lo[tile..].as_ptr().cast(),
                    next_outputs: chunks * 1024,
                    chunks,
                };
                tile_products(&from, m - r0 <= BLOCK / 2, &mut out);
                let (r1, c1) = ((r0 + BLOCK).min(m), (c0 + BLOCK).min(n));
                for r in r0..r1 {
                    let sums = &out[(r - r0) * BLOCK..][..c1 - c0];
                    let dst = std::slice::from_raw_parts_mut(y.add(r * n + c0), c1 - c0);
                    write(dst, sums, base, c0);
                }
            }
        }
        #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
        tiles::release();
    }
}

/// Where one 32 × 32 block of outputs reads from.
#[cfg_attr(
    not(all(target_arch = "x86_64", not(feature = "portable"))),
    allow(dead_code)
)]
struct Block {
    /// The `hi` and `lo` halves of the block's first activation row; 32 rows `row_bytes` apart,
    /// 32 bf16 per chunk of depth.
    a_hi: *const u16,
    a_lo: *const u16,
    row_bytes: usize,
    /// The weight tiles of the block's first 16 outputs over the depth, chunk after chunk
    /// (1 KiB each); the next 16 outputs' are `next_outputs` bytes further.
    w_hi: *const u16,
    w_lo: *const u16,
    next_outputs: usize,
    /// Chunks of 32 inputs.
    chunks: usize,
}

/// The sums of one block into `out` (32 rows of 32): of its first 16 rows only when `half`.
///
/// # Safety
/// The tiles are configured on this thread; `from` holds what [`Block`] says.
#[inline]
unsafe fn tile_products(from: &Block, half: bool, out: &mut [f32; BLOCK * BLOCK]) {
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    tiles::block(from, half, out);
    #[cfg(not(all(target_arch = "x86_64", not(feature = "portable"))))]
    unreachable!(
        "AMX is not available in this build ({}, {half}, {})",
        from.chunks,
        out.len()
    )
}

/// A product's blocks of 32 rows × 32 outputs, to share out across the pool's threads.
pub(crate) struct Work {
    pub row_blocks: usize,
    pub out_blocks: usize,
    /// Row blocks whose inputs stay in L2 together while the weight streams past.
    pub group: usize,
}

/// How [`Work`] is shared out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// On the calling thread, a row group at a time.
    Serial,
    /// This many row groups (a multiple of the threads), each streaming the whole weight past
    /// its rows.
    Rows(usize),
    /// Few rows: this many parts of the output blocks, each streaming its part of the weight.
    Outputs(usize),
}

impl Work {
    /// The plan for `threads` threads; serial for one, or for a `small` product.
    pub(crate) fn plan(&self, threads: usize, small: bool) -> Plan {
        if threads == 1 || small {
            Plan::Serial
        } else if self.row_blocks >= 2 * threads {
            Plan::Rows(self.row_blocks.div_ceil(self.group).div_ceil(threads) * threads)
        } else {
            Plan::Outputs((2 * threads).min(self.out_blocks))
        }
    }

    /// `item(row blocks, output blocks)` over the whole product, as `plan` shares it out.
    pub(crate) fn run(&self, plan: Plan, item: impl Fn(Range<usize>, Range<usize>) + Sync) {
        use rayon::prelude::*;
        let (rows, outs) = (self.row_blocks, self.out_blocks);
        match plan {
            Plan::Serial => {
                for start in (0..rows).step_by(self.group) {
                    item(start..(start + self.group).min(rows), 0..outs);
                }
            }
            Plan::Rows(groups) => (0..groups)
                .into_par_iter()
                .for_each(|g| item(share(rows, groups, g), 0..outs)),
            Plan::Outputs(groups) => (0..groups)
                .into_par_iter()
                .for_each(|g| item(0..rows, share(outs, groups, g))),
        }
    }
}

/// Part `g` of `0..total` cut into `parts` nearly equal ones.
fn share(total: usize, parts: usize, g: usize) -> Range<usize> {
    total * g / parts..total * (g + 1) / parts
}

/// Writes a block's sums for one row into `dst` (columns from `col`) on top of its base.
#[inline]
fn write(dst: &mut [f32], sums: &[f32], base: Base<'_>, col: usize) {
    match base {
        Base::Output => dst.iter_mut().zip(sums).for_each(|(d, s)| *d += s),
        Base::Bias(bias) => dst
            .iter_mut()
            .zip(sums.iter().zip(&bias[col..]))
            .for_each(|(d, (s, b))| *d = b + s),
        Base::OutputAndBias(bias) => dst
            .iter_mut()
            .zip(sums.iter().zip(&bias[col..]))
            .for_each(|(d, (s, b))| *d += b + s),
    }
}

thread_local! {
    /// Each thread's buffer of split input rows, reused from product to product.
    static SPLIT_ROWS: std::cell::Cell<SplitRows> = std::cell::Cell::default();
}

/// Input rows split into `hi` and `lo`, each row whole lines (zeros past its inputs), room for
/// a whole number of blocks of rows.
#[derive(Debug, Default)]
struct SplitRows {
    hi: Vec<Line>,
    lo: Vec<Line>,
    /// Lines (of 32 bf16) per row.
    lines: usize,
}

impl SplitRows {
    /// Splits rows `rows` of `k` inputs of `x` (the first of them becomes row 0).
    fn fill(&mut self, x: &[f32], rows: Range<usize>, k: usize) {
        self.lines = k.div_ceil(CHUNK);
        let len = rows.len().div_ceil(BLOCK) * BLOCK * self.lines;
        // Rows past the last are left as they are: an output row depends on its own input
        // row only, and theirs are not written out.
        for half in [&mut self.hi, &mut self.lo] {
            if half.len() < len {
                half.resize(len, Line::default());
            }
        }
        for (r, row) in x[rows.start * k..rows.end * k].chunks_exact(k).enumerate() {
            let at = r * self.lines;
            let hi = &mut self.hi[at..at + self.lines];
            let lo = &mut self.lo[at..at + self.lines];
            for ((inputs, hi), lo) in row.chunks(CHUNK).zip(hi).zip(lo) {
                split_line(inputs, hi, lo);
            }
        }
    }
}

/// Splits up to 32 inputs into a line of `hi` and one of `lo` (zeros past the inputs).
#[inline]
fn split_line(inputs: &[f32], hi: &mut Line, lo: &mut Line) {
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    if inputs.len() == CHUNK {
        // SAFETY: AMX runs only on CPUs with AVX-512 (checked again here, once per process in
        // the standard library's cache); 32 inputs.
        if std::arch::is_x86_feature_detected!("avx512f") {
            unsafe { split_line_avx512(inputs.as_ptr(), hi, lo) };
            return;
        }
    }
    (*hi, *lo) = (Line::default(), Line::default());
    for (lane, &v) in inputs.iter().enumerate() {
        let (h, l) = split(v);
        hi.0[lane] = h;
        lo.0[lane] = l;
    }
}

/// [`split_line`] on 32 inputs, 16 lanes at a time.
///
/// # Safety
/// AVX-512F is present; `inputs` holds 32 floats.
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
#[target_feature(enable = "avx512f")]
unsafe fn split_line_avx512(inputs: *const f32, hi: &mut Line, lo: &mut Line) {
    use std::arch::x86_64::*;
    // Rounded to the nearest bf16, ties to even, as 32-bit lanes holding the 16 bits.
    let round = |v: __m512| {
        let bits = _mm512_castps_si512(v);
        let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
        let up = _mm512_add_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(0x7fff)), odd);
        _mm512_srli_epi32::<16>(up)
    };
    for half in 0..2 {
        let v = _mm512_loadu_ps(inputs.add(16 * half));
        let h = round(v);
        let rest = _mm512_sub_ps(v, _mm512_castsi512_ps(_mm512_slli_epi32::<16>(h)));
        let l = round(rest);
        let at = 16 * half;
        _mm256_storeu_si256(hi.0[at..].as_mut_ptr().cast(), _mm512_cvtepi32_epi16(h));
        _mm256_storeu_si256(lo.0[at..].as_mut_ptr().cast(), _mm512_cvtepi32_epi16(l));
    }
}

#[cfg(test)]
mod tests;
