//! Int8 dense-layer products: `y += x·Wᵀ` with the weight quantized once, at load, and each
//! input row quantized as it arrives, multiplied in 8-bit integers and summed in 32-bit ones.
//!
//! - **Weights:** symmetric, one scale per output (`max |w| / 127`), packed into panels of
//!   [`NR`] outputs in the order `vpdpbusd` reads them: for each group of four inputs, the four
//!   bytes of each of the panel's outputs side by side (64 bytes, one `zmm` load).
//! - **Inputs:** symmetric, one scale per row, stored as `q + 128` in unsigned bytes (the
//!   instruction multiplies unsigned by signed bytes); the shift is taken back with each
//!   output's `128 · Σ w`, computed at load. Rows are padded to a multiple of four with the zero
//!   point.
//! - **Micro-kernels:** AMX tiles ([`Int8Micro::Amx`], `tdpbusd`, 32 rows × 32 outputs) where
//!   the CPU and OS run AMX-INT8, AVX-512 VNNI ([`Int8Micro::Vnni`], 6 rows × 64 outputs) where
//!   the CPU has it, AVX2 ([`Int8Micro::Avx2`], the same sums from `vpmaddubsw` on signed values) where it
//!   does not, else a portable one. All compute the very same integers and round the very same
//!   way, so they give bit-identical outputs ([`tests`]).
//!
//! Accuracy is the quantization's: about 1% of a row's largest product per output, before the
//! model's own normalisations. What it does to embeddings is measured against the f32 ones.

#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
mod amx;
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
mod avx2;
mod portable;
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
mod vnni;

use std::ops::Range;

use crate::panel::{finish_rows, Base, Finish};

/// Outputs per panel.
pub const NR: usize = 16;
/// Inputs per group: one 32-bit lane of `vpdpbusd` holds four products.
const GROUP: usize = 4;
/// Rows per tile.
const MR: usize = 6;
/// Rows of a block: finished (bias, activation) while they are in L2.
const MC: usize = 48;
/// Panels per tile (64 outputs).
const PANELS: usize = 4;
/// The zero point of quantized inputs.
const ZERO: u8 = 128;
/// Below this many multiply-adds a product stays on one thread.
const MIN_PARALLEL_WORK: usize = 1 << 20;
/// Below this many input values their quantization stays on one thread.
const MIN_PARALLEL_ROWS: usize = 1 << 15;

/// The int8 micro-kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Int8Micro {
    /// AMX-INT8 tiles (`tdpbusd`), 32 rows × 32 outputs, the VNNI kernel's sums.
    Amx,
    /// AVX-512 VNNI (`vpdpbusd`), 6 rows × 64 outputs.
    Vnni,
    /// AVX2 + FMA (`vpmaddubsw`, `vpmaddwd`), 3 rows × 16 outputs.
    Avx2,
    /// Plain Rust, any CPU.
    Portable,
}

impl Int8Micro {
    /// Every micro-kernel, fastest first.
    pub const ALL: [Int8Micro; 4] = [
        Int8Micro::Amx,
        Int8Micro::Vnni,
        Int8Micro::Avx2,
        Int8Micro::Portable,
    ];

    /// Its name, as the bench prints it.
    pub fn name(self) -> &'static str {
        match self {
            Int8Micro::Amx => "amx-int8",
            Int8Micro::Vnni => "avx512-vnni",
            Int8Micro::Avx2 => "avx2",
            Int8Micro::Portable => "portable",
        }
    }

    /// Whether this CPU runs it.
    pub fn available(self) -> bool {
        match self {
            #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
            Int8Micro::Amx => amx::available(),
            #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
            Int8Micro::Vnni => vnni::available(),
            #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
            Int8Micro::Avx2 => avx2::available(),
            #[cfg(not(all(target_arch = "x86_64", not(feature = "portable"))))]
            Int8Micro::Amx | Int8Micro::Vnni | Int8Micro::Avx2 => false,
            Int8Micro::Portable => true,
        }
    }

    /// The fastest this CPU runs.
    pub fn best() -> Self {
        Self::ALL
            .into_iter()
            .find(|m| m.available())
            .unwrap_or(Int8Micro::Portable)
    }
}

/// A dense layer's weight, quantized to int8 and packed for [`Int8Micro`].
#[derive(Debug, Clone)]
pub struct Int8Panels {
    inputs: usize,
    outputs: usize,
    /// Groups of [`GROUP`] inputs (the inputs rounded up).
    groups: usize,
    /// `panels × groups × NR × GROUP` bytes.
    weight: Vec<i8>,
    /// Each output's weight scale (padded to whole panels with zeros).
    scale: Vec<f32>,
    /// Each output's `ZERO · Σ w` (padded).
    shift: Vec<i32>,
    micro: Int8Micro,
    /// Per input, the factor each input row is multiplied by before it is quantized, when the
    /// layer was smoothed ([`Int8Panels::pack_smoothed`]).
    input_scale: Option<Vec<f32>>,
}

/// Input rows quantized for [`Int8Panels::forward_quantized`].
#[derive(Debug, Clone, Default)]
pub struct Int8Rows {
    /// `rows × width` bytes, `q + ZERO`.
    data: Vec<u8>,
    /// Each row's scale.
    scale: Vec<f32>,
    /// Bytes per row (the inputs rounded up to whole groups).
    width: usize,
}

impl Int8Rows {
    /// Quantizes the rows of `x` (each `inputs` wide) for `micro`, reusing this buffer; in the
    /// kernel pool (`parallel`) rows are shared out across its threads.
    pub fn quantize(&mut self, x: &[f32], inputs: usize, micro: Int8Micro, parallel: bool) {
        self.quantize_scaled(x, inputs, None, micro, parallel)
    }

    /// As [`Int8Rows::quantize`], each row multiplied by `factor` (one per input) first, a row
    /// at a time.
    fn quantize_scaled(
        &mut self,
        x: &[f32],
        inputs: usize,
        factor: Option<&[f32]>,
        micro: Int8Micro,
        parallel: bool,
    ) {
        assert!(
            inputs > 0 && x.len().is_multiple_of(inputs),
            "rows are not `inputs` wide"
        );
        let rows = x.len() / inputs;
        self.width = width(inputs, micro);
        // AMX reads whole blocks of rows: the rows past the last are there, and unused.
        let stored = if micro == Int8Micro::Amx {
            rows.div_ceil(BLOCK_ROWS) * BLOCK_ROWS
        } else {
            rows
        };
        self.data.clear();
        self.data.resize(stored * self.width, ZERO);
        self.scale.clear();
        self.scale.resize(rows, 0.0);
        let width = self.width;
        let one = |scaled: &mut Vec<f32>, (row, (out, scale)): (&[f32], (&mut [u8], &mut f32))| {
            let row = match factor {
                Some(factor) => {
                    scaled.clear();
                    scaled.extend(row.iter().zip(factor).map(|(v, f)| v * f));
                    &scaled[..]
                }
                None => row,
            };
            *scale = quantize_row(micro, row, &mut out[..inputs]);
        };
        if parallel && crate::threads::splitting() && x.len() >= MIN_PARALLEL_ROWS {
            use rayon::prelude::*;
            x.par_chunks_exact(inputs)
                .zip(
                    self.data
                        .par_chunks_exact_mut(width)
                        .zip(self.scale.par_iter_mut()),
                )
                .with_min_len(8)
                .for_each_init(Vec::new, one);
        } else {
            let mut scaled = Vec::new();
            x.chunks_exact(inputs)
                .zip(self.data.chunks_exact_mut(width).zip(self.scale.iter_mut()))
                .for_each(|item| one(&mut scaled, item));
        }
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.scale.len()
    }
}

impl Int8Panels {
    /// Quantizes and packs `weight` (PyTorch's layout: `outputs` rows of `inputs`) for the
    /// fastest micro-kernel this CPU runs.
    pub fn pack(weight: &[f32], inputs: usize, outputs: usize) -> Self {
        Self::pack_for(weight, inputs, outputs, Int8Micro::best())
    }

    /// As [`Int8Panels::pack`], for `micro` (which must be available).
    pub fn pack_for(weight: &[f32], inputs: usize, outputs: usize, micro: Int8Micro) -> Self {
        assert_eq!(
            weight.len(),
            inputs * outputs,
            "weight is not outputs × inputs"
        );
        assert!(micro.available(), "{} is not available here", micro.name());
        let groups = width(inputs, micro) / GROUP;
        // AMX reads the panels two at a time.
        let panels = if micro == Int8Micro::Amx {
            outputs.div_ceil(2 * NR) * 2
        } else {
            outputs.div_ceil(NR)
        };
        let padded = panels * NR;
        let mut packed = vec![0i8; panels * groups * NR * GROUP];
        let mut scale = vec![0f32; padded];
        let mut shift = vec![0i32; padded];
        for (o, row) in weight.chunks_exact(inputs).enumerate() {
            let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            // An all-zero row quantizes to zeros whatever its scale.
            let (s, inverse) = scales(max);
            scale[o] = s;
            let (panel, lane) = (o / NR, o % NR);
            let mut sum = 0i32;
            for (i, w) in row.iter().enumerate() {
                let q = (w * inverse).round().clamp(-127.0, 127.0) as i8;
                sum += i32::from(q);
                let at = ((panel * groups + i / GROUP) * NR + lane) * GROUP + i % GROUP;
                packed[at] = q;
            }
            shift[o] = i32::from(ZERO) * sum;
        }
        Self {
            inputs,
            outputs,
            groups,
            weight: packed,
            scale,
            shift,
            micro,
            input_scale: None,
        }
    }

    /// As [`Int8Panels::pack_for`], smoothed for inputs whose largest magnitudes per input are
    /// `input_max` (measured on calibration text): SmoothQuant's migration, which moves part of
    /// an outlying input channel's range into the weight's column (`x_j / s_j`, `w_j · s_j`,
    /// `s_j = input_max_j^alpha / weight_max_j^(1 - alpha)`), so that one scale per row
    /// quantizes the rest of the row finely. The product is the same before rounding.
    ///
    /// # Panics
    /// As [`Int8Panels::pack_for`], and when `input_max` is not one value per input.
    pub fn pack_smoothed(
        weight: &[f32],
        inputs: usize,
        outputs: usize,
        input_max: &[f32],
        alpha: f32,
        micro: Int8Micro,
    ) -> Self {
        assert_eq!(input_max.len(), inputs, "one maximum per input");
        let mut weight_max = vec![0f32; inputs];
        for row in weight.chunks_exact(inputs) {
            for (m, w) in weight_max.iter_mut().zip(row) {
                *m = m.max(w.abs());
            }
        }
        let factor: Vec<f32> = input_max
            .iter()
            .zip(&weight_max)
            .map(|(&x, &w)| {
                let s = x.powf(alpha) / w.powf(1.0 - alpha);
                // A channel never seen, or a zero column: nothing to move.
                if s.is_finite() && s > 0.0 {
                    s
                } else {
                    1.0
                }
            })
            .collect();
        let moved: Vec<f32> = weight
            .chunks_exact(inputs)
            .flat_map(|row| row.iter().zip(&factor).map(|(w, s)| w * s))
            .collect();
        let mut packed = Self::pack_for(&moved, inputs, outputs, micro);
        packed.input_scale = Some(factor.iter().map(|s| 1.0 / s).collect());
        packed
    }

    /// Inputs per row.
    pub fn inputs(&self) -> usize {
        self.inputs
    }

    /// Outputs per row.
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// The micro-kernel it was packed for.
    pub fn micro(&self) -> Int8Micro {
        self.micro
    }

    /// The weight as it is quantized, back in f32 and PyTorch's layout (not the original:
    /// every value rounded to its output's step).
    pub fn unpack(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.outputs * self.inputs];
        for (o, row) in out.chunks_exact_mut(self.inputs).enumerate() {
            let (panel, lane) = (o / NR, o % NR);
            for (i, v) in row.iter_mut().enumerate() {
                let at = ((panel * self.groups + i / GROUP) * NR + lane) * GROUP + i % GROUP;
                let smoothed = self.input_scale.as_ref().map_or(1.0, |s| s[i]);
                *v = f32::from(self.weight[at]) * self.scale[o] * smoothed;
            }
        }
        out
    }

    /// Bytes the packed weight and its per-output tables take.
    pub fn bytes(&self) -> usize {
        self.weight.len() + 8 * self.scale.len() + 4 * self.input_scale.as_ref().map_or(0, Vec::len)
    }

    /// `y += x·Wᵀ`: quantizes `x`'s rows into `rows` (a buffer to reuse), then multiplies.
    pub fn forward(&self, x: &[f32], y: &mut [f32], rows: &mut Int8Rows, parallel: bool) {
        self.product(x, y, Base::Output, rows, parallel, None)
    }

    /// `y = base + x·Wᵀ` (see [`Base`]; the bias is added as each tile is written), then
    /// `finish` on each piece of an output row as soon as its block of rows is complete, while
    /// it is still in L2 (as [`crate::panel::Panels::product`]). `x`'s rows are quantized into
    /// `rows`, a buffer to reuse (a smoothed layer's factors applied on the way). In the kernel
    /// pool (`parallel`) rows or panels are split across its threads.
    ///
    /// # Panics
    /// When `x` or `y` do not hold whole rows of the layer's widths, or a bias is not
    /// `outputs` long.
    pub fn product(
        &self,
        x: &[f32],
        y: &mut [f32],
        base: Base<'_>,
        rows: &mut Int8Rows,
        parallel: bool,
        finish: Option<Finish<'_>>,
    ) {
        rows.quantize_scaled(
            x,
            self.inputs,
            self.input_scale.as_deref(),
            self.micro,
            parallel,
        );
        self.product_quantized(rows, y, base, parallel, finish);
    }

    /// `y += x·Wᵀ` for rows already quantized.
    ///
    /// # Panics
    /// When `x` was quantized for another width or `y` does not hold its rows.
    pub fn forward_quantized(&self, x: &Int8Rows, y: &mut [f32], parallel: bool) {
        self.product_quantized(x, y, Base::Output, parallel, None)
    }

    /// [`Int8Panels::product`] for rows already quantized.
    fn product_quantized(
        &self,
        x: &Int8Rows,
        y: &mut [f32],
        base: Base<'_>,
        parallel: bool,
        finish: Option<Finish<'_>>,
    ) {
        let m = x.rows();
        assert_eq!(
            x.width,
            self.groups * GROUP,
            "rows quantized for another width"
        );
        assert_eq!(
            y.len(),
            m * self.outputs,
            "output rows do not match input rows"
        );
        if let Some(bias) = base.bias() {
            assert_eq!(bias.len(), self.outputs, "the bias is not `outputs` long");
        }
        let panels = self.outputs.div_ceil(NR);
        let threads = crate::threads::sharing(parallel);
        #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
        if self.micro == Int8Micro::Amx {
            return self.product_amx(x, y, base, threads, finish);
        }
        let y_addr = y.as_mut_ptr() as usize;
        // SAFETY (every call below): items cover disjoint (rows × panels) rectangles of `y`;
        // sizes were checked above.
        let item = |rows: Range<usize>, panels: Range<usize>| unsafe {
            self.block(x, rows, panels, y_addr as *mut f32, base, finish)
        };
        if threads == 1 || m * self.outputs * self.inputs < MIN_PARALLEL_WORK {
            item(0..m, 0..panels);
            return;
        }
        use rayon::prelude::*;
        if m >= 4 * MR * threads {
            let size = m.div_ceil(4 * threads).div_ceil(MR) * MR;
            (0..m.div_ceil(size))
                .into_par_iter()
                .for_each(|b| item(b * size..((b + 1) * size).min(m), 0..panels));
        } else {
            let groups = (4 * threads).min(panels);
            let size = panels.div_ceil(groups).div_ceil(PANELS) * PANELS;
            (0..panels.div_ceil(size))
                .into_par_iter()
                .for_each(|g| item(0..m, g * size..((g + 1) * size).min(panels)));
        }
    }

    /// The outputs of `panels` for `rows`, tile by tile, [`MC`] rows at a time, each block of
    /// rows finished while it is in L2.
    ///
    /// # Safety
    /// `y` holds `x.rows()` rows of `self.outputs`; no other thread writes this rectangle; a
    /// bias is `outputs` long.
    unsafe fn block(
        &self,
        x: &Int8Rows,
        rows: Range<usize>,
        panels: Range<usize>,
        y: *mut f32,
        base: Base<'_>,
        finish: Option<Finish<'_>>,
    ) {
        let panel_bytes = self.groups * NR * GROUP;
        let load = base.reads_output();
        for start in rows.clone().step_by(MC) {
            let block = start..(start + MC).min(rows.end);
            for r in block.clone().step_by(MR) {
                let tile_rows = (block.end - r).min(MR);
                for p in panels.clone().step_by(PANELS) {
                    let first = p * NR;
                    let cols = (panels.end.min(p + PANELS) * NR).min(self.outputs) - first;
                    let tile = Tile {
                        rows: tile_rows,
                        a: x.data.as_ptr().add(r * x.width),
                        lda: x.width,
                        a_scale: x.scale.as_ptr().add(r),
                        b: self.weight.as_ptr().add(p * panel_bytes),
                        panel_stride: panel_bytes,
                        groups: self.groups,
                        w_scale: self.scale.as_ptr().add(first),
                        shift: self.shift.as_ptr().add(first),
                        c: y.add(r * self.outputs + first),
                        ldc: self.outputs,
                        cols,
                        bias: base
                            .bias()
                            .map_or(std::ptr::null(), |b| b[first..].as_ptr()),
                        load,
                    };
                    match self.micro {
                        #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
                        Int8Micro::Vnni | Int8Micro::Amx => vnni::tile(&tile),
                        #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
                        Int8Micro::Avx2 => avx2::tile(&tile),
                        _ => portable::tile(&tile),
                    }
                }
            }
            if let Some(finish) = finish {
                let cols = panels.start * NR..(panels.end * NR).min(self.outputs);
                finish_rows(finish, y, self.outputs, block, cols);
            }
        }
    }
}

/// One tile's operands: up to [`MR`] rows × up to [`PANELS`] × [`NR`] outputs.
struct Tile {
    rows: usize,
    /// Quantized rows, `lda` bytes apart.
    a: *const u8,
    lda: usize,
    /// The rows' scales.
    a_scale: *const f32,
    /// The tile's first panel; the next ones `panel_stride` bytes apart.
    b: *const i8,
    panel_stride: usize,
    /// Groups of four inputs.
    groups: usize,
    /// The tile's first output's scale and shift (padded to whole panels).
    w_scale: *const f32,
    shift: *const i32,
    /// The tile's first output of its first row; rows `ldc` floats apart.
    c: *mut f32,
    ldc: usize,
    /// Outputs to write (at most `PANELS × NR`).
    cols: usize,
    /// The bias of the tile's first output, or null: added to what the sums are added to.
    bias: *const f32,
    /// Whether the sums are added to the output's values (else to the bias or zero alone).
    load: bool,
}

impl Tile {
    /// What output `j` of row `r` of the tile starts from: its value when `load`, plus its
    /// bias; in that order, as if the bias had been added to the output first.
    ///
    /// # Safety
    /// `r` and `j` are inside the tile.
    #[inline(always)]
    unsafe fn base(&self, r: usize, j: usize) -> f32 {
        let value = if self.load {
            *self.c.add(r * self.ldc + j)
        } else {
            0.0
        };
        if self.bias.is_null() {
            value
        } else {
            value + *self.bias.add(j)
        }
    }
}

/// Rows AMX reads at once: quantized rows are stored in whole blocks of them.
const BLOCK_ROWS: usize = 32;

/// Bytes of a quantized row of `inputs` for `micro`: whole groups, whole 64-byte tile rows on
/// AMX (the padding is the zero point, against zero weights).
fn width(inputs: usize, micro: Int8Micro) -> usize {
    let unit = if micro == Int8Micro::Amx { 64 } else { GROUP };
    inputs.div_ceil(unit) * unit
}

/// A row's scale and its inverse for its largest magnitude `max` (an all-zero row: scale 1).
#[inline]
fn scales(max: f32) -> (f32, f32) {
    if max > 0.0 && max.is_finite() {
        (max / 127.0, 127.0 / max)
    } else {
        (1.0, 0.0)
    }
}

/// Quantizes `row` into `out` (as long), returns its scale. Both paths round to nearest, ties
/// to even, and give the same bytes for finite inputs.
fn quantize_row(micro: Int8Micro, row: &[f32], out: &mut [u8]) -> f32 {
    match micro {
        #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
        // SAFETY: a VNNI- or AMX-packed layer exists only where the CPU has AVX-512
        // (`pack_for`).
        Int8Micro::Vnni | Int8Micro::Amx => unsafe { vnni::quantize_row(row, out) },
        #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
        // SAFETY: an AVX2-packed layer exists only where the CPU has AVX2 (`pack_for`).
        Int8Micro::Avx2 => unsafe { avx2::quantize_row(row, out) },
        _ => portable::quantize_row(row, out),
    }
}

/// An output plus one integer sum: what both micro-kernels compute, in this order.
#[inline(always)]
fn accumulate(sum: i32, shift: i32, a_scale: f32, w_scale: f32, y: f32) -> f32 {
    ((sum - shift) as f32).mul_add(w_scale * a_scale, y)
}

#[cfg(test)]
mod tests;
