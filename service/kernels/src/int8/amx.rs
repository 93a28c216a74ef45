//! Int8 products on AMX tiles (`tdpbusd`): the integer sums of the VNNI micro-kernel, 32 rows ×
//! 32 outputs at a time, turned into floats by the same instructions in the same order, so the
//! outputs are the same bits. The weight panels are the VNNI ones: a panel's groups of four
//! inputs × 16 outputs, 64 bytes a group, are a weight tile's rows as they lie (the depth padded
//! to whole tiles of 16 groups, the panels to an even number); the input rows are padded to
//! whole 64-byte chunks and whole blocks of 32 rows.

use std::{arch::x86_64::*, ops::Range};

use super::{Int8Panels, Int8Rows, NR};
use crate::{
    amx::{
        tiles::{self, Int8Block},
        Work,
    },
    panel::{finish_rows, Base, Finish},
};

/// Groups of four inputs in one tile product (64 inputs).
pub(super) const CHUNK_GROUPS: usize = 16;
/// Rows and outputs of one block of sums.
pub(super) const BLOCK: usize = 32;
const _: () = assert!(BLOCK == super::BLOCK_ROWS && CHUNK_GROUPS * super::GROUP == 64);
/// Quantized rows of a group of row blocks kept in L2 while the weight streams past.
const GROUP_BYTES: usize = 512 * 1024;

/// Whether this CPU and OS run the kernel: AMX-INT8, and AVX-512 VNNI for the rows'
/// quantization and the sums' conversion.
pub(super) fn available() -> bool {
    crate::amx::available_int8() && super::vnni::available()
}

impl Int8Panels {
    /// [`Int8Panels::product`] on AMX, split across the pool's `threads` like the f32 AMX
    /// product: row groups when there are rows for two blocks a thread, else output blocks.
    pub(super) fn product_amx(
        &self,
        x: &Int8Rows,
        y: &mut [f32],
        base: Base<'_>,
        threads: usize,
        finish: Option<Finish<'_>>,
    ) {
        let m = x.rows();
        let (row_blocks, out_blocks) = (m.div_ceil(BLOCK), self.outputs.div_ceil(BLOCK));
        let group = (GROUP_BYTES / (x.width * BLOCK)).max(1);
        let work = Work {
            row_blocks,
            out_blocks,
            group,
        };
        let plan = work.plan(
            threads,
            m * self.outputs * self.inputs < super::MIN_PARALLEL_WORK,
        );
        let y_addr = y.as_mut_ptr() as usize;
        // SAFETY (every call below): items cover disjoint (rows × outputs) rectangles of `y`;
        // the product checked the sizes; the micro-kernel is available (`pack_for`).
        work.run(plan, |blocks, outs| unsafe {
            self.amx_item(x, blocks, outs, y_addr as *mut f32, base, finish)
        });
    }

    /// The outputs of blocks `outs` for the rows of blocks `blocks`, written into `y` on top of
    /// their base, then finished.
    ///
    /// # Safety
    /// [`available`]; `y` holds `x.rows()` rows of `self.outputs`; no other thread writes this
    /// rectangle; a bias is `outputs` long.
    unsafe fn amx_item(
        &self,
        x: &Int8Rows,
        blocks: Range<usize>,
        outs: Range<usize>,
        y: *mut f32,
        base: Base<'_>,
        finish: Option<Finish<'_>>,
    ) {
        if blocks.is_empty() || outs.is_empty() {
            return;
        }
        let (m, n) = (x.rows(), self.outputs);
        let panel_bytes = self.groups * NR * super::GROUP;
        let mut sums = [0i32; BLOCK * BLOCK];
        tiles::configure();
        for o in outs.clone() {
            for b in blocks.clone() {
                let r0 = b * BLOCK;
                let block = Int8Block {
                    a: x.data.as_ptr().add(r0 * x.width),
                    row_bytes: x.width,
                    w: self.weight.as_ptr().add(2 * o * panel_bytes),
                    next_outputs: panel_bytes,
                    chunks: self.groups / CHUNK_GROUPS,
                };
                tiles::int8_block(&block, m - r0 <= BLOCK / 2, &mut sums);
                for r in r0..(r0 + BLOCK).min(m) {
                    for q in 0..2 {
                        let first = (2 * o + q) * NR;
                        if first >= n {
                            break;
                        }
                        let row_sums = sums[(r - r0) * BLOCK + q * NR..].as_ptr();
                        self.write_sums(
                            row_sums,
                            *x.scale.get_unchecked(r),
                            first,
                            y.add(r * n + first),
                            base,
                        );
                    }
                }
            }
        }
        tiles::release();
        if let Some(finish) = finish {
            let rows = blocks.start * BLOCK..(blocks.end * BLOCK).min(m);
            finish_rows(
                finish,
                y,
                n,
                rows,
                outs.start * BLOCK..(outs.end * BLOCK).min(n),
            );
        }
    }

    /// One row's 16 sums of the panel starting at output `first` into `c`, written by the VNNI
    /// kernel's own [`super::vnni::write_sums`].
    ///
    /// # Safety
    /// AVX-512F; `sums` holds 16 values; `c` the row's outputs from `first`.
    #[target_feature(enable = "avx512f")]
    unsafe fn write_sums(
        &self,
        sums: *const i32,
        a_scale: f32,
        first: usize,
        c: *mut f32,
        base: Base<'_>,
    ) {
        let lanes = (self.outputs - first).min(NR);
        let mask = if lanes == NR {
            !0
        } else {
            ((1u32 << lanes) - 1) as __mmask16
        };
        let w_scale = _mm512_loadu_ps(self.scale.as_ptr().add(first));
        let shift = _mm512_loadu_si512(self.shift.as_ptr().add(first) as *const __m512i);
        let acc = _mm512_loadu_si512(sums as *const __m512i);
        let bias = base
            .bias()
            .map(|bias| _mm512_maskz_loadu_ps(mask, bias.as_ptr().add(first)));
        super::vnni::write_sums(
            acc,
            shift,
            w_scale,
            a_scale,
            bias,
            c,
            mask,
            base.reads_output(),
        );
    }
}
