//! The AMX instructions: the tile configuration, and a 32 × 32 block of outputs over the whole
//! depth in four accumulator tiles (`tmm0`–`tmm3`), two activation tiles (`tmm4`, `tmm5`) and
//! two weight tiles (`tmm6`, `tmm7`), three bf16 products per step.
//!
//! Written as `asm!`: Rust's AMX intrinsics are not stable. The assembler takes the mnemonics
//! whatever the target features; [`super::available`] is what makes running them safe.

use std::arch::asm;

use super::Block;

/// Bytes in one row of a tile, and rows in a tile: every tile here is the largest, 16 × 64.
const ROW_BYTES: u16 = 64;
const ROWS: u8 = 16;

/// The tile configuration (palette 1, eight tiles of 16 rows × 64 bytes), as `ldtilecfg`
/// reads it: 64 bytes, aligned.
#[repr(C, align(64))]
struct Config([u8; 64]);

static CONFIG: Config = {
    let mut bytes = [0u8; 64];
    bytes[0] = 1;
    let mut tile = 0;
    while tile < 8 {
        let width = ROW_BYTES.to_le_bytes();
        bytes[16 + 2 * tile] = width[0];
        bytes[17 + 2 * tile] = width[1];
        bytes[48 + tile] = ROWS;
        tile += 1;
    }
    Config(bytes)
};

/// Loads the tile configuration on this thread.
///
/// # Safety
/// AMX is available to this process ([`super::available`]).
#[inline]
pub(crate) unsafe fn configure() {
    asm!("ldtilecfg [{}]", in(reg) CONFIG.0.as_ptr(), options(nostack, readonly));
}

/// Returns the tiles to their initial state, so that a context switch does not save them.
///
/// # Safety
/// As [`configure`].
#[inline]
pub(crate) unsafe fn release() {
    asm!("tilerelease", options(nostack, nomem));
}

/// Zeroes the accumulator tiles of a block: all four, or the first 16 rows' two when `half`.
///
/// # Safety
/// [`configure`] ran on this thread.
#[inline]
unsafe fn zero_accumulators(half: bool) {
    asm!("tilezero tmm0", "tilezero tmm1", options(nostack, nomem));
    if !half {
        asm!("tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
    }
}

/// Stores the accumulator tiles of a block into `out`, 32 rows of 32 four-byte sums (floats or
/// integers): all four, or the first 16 rows' two when `half` (rows 16 to 31 left as they were).
///
/// # Safety
/// As [`zero_accumulators`]; `out` holds 32 × 32 four-byte values.
#[inline]
unsafe fn store_accumulators(out: *mut u32, half: bool) {
    asm!(
        "tilestored [{c0} + {stride}*1], tmm0",
        "tilestored [{c1} + {stride}*1], tmm1",
        c0 = in(reg) out,
        c1 = in(reg) out.add(16),
        stride = in(reg) 32 * 4usize,
        options(nostack)
    );
    if !half {
        asm!(
            "tilestored [{c2} + {stride}*1], tmm2",
            "tilestored [{c3} + {stride}*1], tmm3",
            c2 = in(reg) out.add(16 * 32),
            c3 = in(reg) out.add(16 * 32 + 16),
            stride = in(reg) 32 * 4usize,
            options(nostack)
        );
    }
}

/// `out = Σ a·w` over the block's depth, each product as `hi·hi + lo·hi + hi·lo`; `out` is
/// 32 rows of 32 floats. When `half`, the first 16 rows only (the last block of rows, when it
/// holds no more): two accumulator tiles, half the tile products.
///
/// # Safety
/// [`configure`] ran on this thread; the block's pointers hold what [`Block`] says.
#[inline]
pub(super) unsafe fn block(b: &Block, half: bool, out: &mut [f32; 32 * 32]) {
    zero_accumulators(half);
    let (a_next_rows, step) = (16 * b.row_bytes, 64usize);
    for chunk in 0..b.chunks {
        let a_hi = (b.a_hi as *const u8).add(chunk * 64);
        let a_lo = (b.a_lo as *const u8).add(chunk * 64);
        let w_hi = (b.w_hi as *const u8).add(chunk * 1024);
        let w_lo = (b.w_lo as *const u8).add(chunk * 1024);
        if half {
            asm!(
                "tileloadd tmm4, [{a_hi} + {stride}*1]",
                "tileloadd tmm5, [{a_lo} + {stride}*1]",
                "tileloadd tmm6, [{w_hi} + {step}*1]",
                "tileloadd tmm7, [{w_hi2} + {step}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm0, tmm5, tmm6",
                "tdpbf16ps tmm1, tmm5, tmm7",
                "tileloadd tmm6, [{w_lo} + {step}*1]",
                "tileloadd tmm7, [{w_lo2} + {step}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                a_hi = in(reg) a_hi,
                a_lo = in(reg) a_lo,
                w_hi = in(reg) w_hi,
                w_hi2 = in(reg) w_hi.add(b.next_outputs),
                w_lo = in(reg) w_lo,
                w_lo2 = in(reg) w_lo.add(b.next_outputs),
                stride = in(reg) b.row_bytes,
                step = in(reg) step,
                options(nostack, readonly)
            );
        } else {
            asm!(
                "tileloadd tmm4, [{a_hi} + {stride}*1]",
                "tileloadd tmm5, [{a_hi2} + {stride}*1]",
                "tileloadd tmm6, [{w_hi} + {step}*1]",
                "tileloadd tmm7, [{w_hi2} + {step}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                "tileloadd tmm4, [{a_lo} + {stride}*1]",
                "tileloadd tmm5, [{a_lo2} + {stride}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                "tileloadd tmm4, [{a_hi} + {stride}*1]",
                "tileloadd tmm5, [{a_hi2} + {stride}*1]",
                "tileloadd tmm6, [{w_lo} + {step}*1]",
                "tileloadd tmm7, [{w_lo2} + {step}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a_hi = in(reg) a_hi,
                a_hi2 = in(reg) a_hi.add(a_next_rows),
                a_lo = in(reg) a_lo,
                a_lo2 = in(reg) a_lo.add(a_next_rows),
                w_hi = in(reg) w_hi,
                w_hi2 = in(reg) w_hi.add(b.next_outputs),
                w_lo = in(reg) w_lo,
                w_lo2 = in(reg) w_lo.add(b.next_outputs),
                stride = in(reg) b.row_bytes,
                step = in(reg) step,
                options(nostack, readonly)
            );
        }
    }
    store_accumulators(out.as_mut_ptr().cast(), half);
}

/// Where one 32 × 32 block of int8 sums reads from: unsigned input bytes times signed weight
/// bytes, four at a time (`tdpbusd`, the products `vpdpbusd` sums, summed the same way).
pub(crate) struct Int8Block {
    /// The block's first quantized row; 32 rows `row_bytes` apart, 64 bytes per chunk.
    pub a: *const u8,
    pub row_bytes: usize,
    /// The weight tiles of the block's first 16 outputs, chunk after chunk (1 KiB each: 16
    /// groups of four inputs × 16 outputs); the next 16 outputs' are `next_outputs` bytes
    /// further.
    pub w: *const i8,
    pub next_outputs: usize,
    /// Chunks of 64 inputs.
    pub chunks: usize,
}

/// `out = Σ a·w` in 32-bit integers over the block's depth, for its 32 rows, or its first 16
/// only when `half` (rows 16 to 31 of `out` left as they were).
///
/// # Safety
/// [`configure`] ran on this thread; the block's pointers hold what [`Int8Block`] says; the
/// CPU has AMX-INT8.
#[inline]
pub(crate) unsafe fn int8_block(b: &Int8Block, half: bool, out: &mut [i32; 32 * 32]) {
    zero_accumulators(half);
    let (next_rows, step) = (16 * b.row_bytes, 64usize);
    for chunk in 0..b.chunks {
        let a = b.a.add(chunk * 64);
        let w = (b.w as *const u8).add(chunk * 1024);
        if half {
            asm!(
                "tileloadd tmm4, [{a} + {stride}*1]",
                "tileloadd tmm6, [{w} + {step}*1]",
                "tileloadd tmm7, [{w2} + {step}*1]",
                "tdpbusd tmm0, tmm4, tmm6",
                "tdpbusd tmm1, tmm4, tmm7",
                a = in(reg) a,
                w = in(reg) w,
                w2 = in(reg) w.add(b.next_outputs),
                stride = in(reg) b.row_bytes,
                step = in(reg) step,
                options(nostack, readonly)
            );
        } else {
            asm!(
                "tileloadd tmm4, [{a} + {stride}*1]",
                "tileloadd tmm5, [{a2} + {stride}*1]",
                "tileloadd tmm6, [{w} + {step}*1]",
                "tileloadd tmm7, [{w2} + {step}*1]",
                "tdpbusd tmm0, tmm4, tmm6",
                "tdpbusd tmm1, tmm4, tmm7",
                "tdpbusd tmm2, tmm5, tmm6",
                "tdpbusd tmm3, tmm5, tmm7",
                a = in(reg) a,
                a2 = in(reg) a.add(next_rows),
                w = in(reg) w,
                w2 = in(reg) w.add(b.next_outputs),
                stride = in(reg) b.row_bytes,
                step = in(reg) step,
                options(nostack, readonly)
            );
        }
    }
    store_accumulators(out.as_mut_ptr().cast(), half);
}
