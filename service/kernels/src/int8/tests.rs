//! The int8 products against plain f32 ones, AMX and VNNI against portable bit for bit, serial
//! against split across the pool, and the quantization of rows on both paths.

use super::*;
use crate::threads;

use crate::test_values as values;

/// `x·Wᵀ + b` in f64, rounded once.
fn plain(x: &[f32], w: &[f32], b: &[f32], k: usize) -> Vec<f32> {
    x.chunks_exact(k)
        .flat_map(|row| {
            w.chunks_exact(k).zip(b).map(move |(col, bias)| {
                (row.iter()
                    .zip(col)
                    .map(|(a, w)| f64::from(a * w))
                    .sum::<f64>()
                    + f64::from(*bias)) as f32
            })
        })
        .collect()
}

const SHAPES: [(usize, usize, usize); 8] = [
    (1, 4, 1),
    (1, 7, 16),
    (5, 12, 17),
    (6, 384, 64),
    (7, 33, 65),
    (13, 384, 130),
    (40, 64, 200),
    (3, 1536, 384),
];

fn run(micro: Int8Micro, m: usize, k: usize, n: usize, parallel: bool) -> Vec<f32> {
    let (x, w, b) = (values(m * k, 1), values(n * k, 2), values(n, 3));
    let packed = Int8Panels::pack_for(&w, k, n, micro);
    // The product is added to what `y` holds: here, the bias.
    let mut y: Vec<f32> = b.iter().copied().cycle().take(m * n).collect();
    let mut rows = Int8Rows::default();
    threads::run(parallel, || packed.forward(&x, &mut y, &mut rows, parallel));
    y
}

/// AMX in blocks of 32 rows (a half block for the last 16 or fewer), split across the pool by
/// rows or by outputs: the portable kernel's bits at the shapes a served pass has.
#[test]
fn amx_gives_the_portable_bits_split_across_the_pool() {
    if !Int8Micro::Amx.available() {
        println!("skipped: this CPU or OS does not run AMX-INT8");
        return;
    }
    for (m, k, n) in [
        (10, 384, 1152),
        (40, 384, 384),
        (70, 384, 1536),
        (300, 1536, 384),
    ] {
        let portable = run(Int8Micro::Portable, m, k, n, false);
        let amx = run(Int8Micro::Amx, m, k, n, true);
        let same = portable
            .iter()
            .zip(&amx)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "{m}×{k}×{n}: AMX in the pool differs from portable");
    }
}

#[test]
fn every_micro_kernel_gives_the_portable_ones_bits() {
    for micro in [Int8Micro::Amx, Int8Micro::Vnni, Int8Micro::Avx2] {
        if !micro.available() {
            println!(
                "skipped: this CPU cannot run the {} int8 kernel",
                micro.name()
            );
            continue;
        }
        for (m, k, n) in SHAPES {
            let portable = run(Int8Micro::Portable, m, k, n, false);
            let fast = run(micro, m, k, n, false);
            let same = portable
                .iter()
                .zip(&fast)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same,
                "{} {m}×{k}×{n}: {portable:?} against {fast:?}",
                micro.name()
            );
        }
    }
}

#[test]
fn split_across_the_pool_it_computes_the_same_bits() {
    for micro in Int8Micro::ALL.into_iter().filter(|m| m.available()) {
        for (m, k, n) in [(13, 384, 1536), (200, 384, 384), (2, 1536, 384)] {
            let serial = run(micro, m, k, n, false);
            let split = run(micro, m, k, n, true);
            assert!(
                serial
                    .iter()
                    .zip(&split)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{} {m}×{k}×{n}",
                micro.name()
            );
        }
    }
}

#[test]
fn values_that_quantize_exactly_give_the_exact_product() {
    // Every row of x and of W holds ±127 and integers: both scales are 1, nothing is rounded.
    let (m, k, n) = (7, 20, 33);
    let int = |i: usize, seed: usize| ((i * 7 + seed * 13) % 255) as f32 - 127.0;
    let mut x: Vec<f32> = (0..m * k).map(|i| int(i, 1)).collect();
    let mut w: Vec<f32> = (0..n * k).map(|i| int(i, 2)).collect();
    for row in x.chunks_exact_mut(k).chain(w.chunks_exact_mut(k)) {
        row[0] = 127.0;
    }
    let b: Vec<f32> = (0..n).map(|j| j as f32).collect();
    let expected = plain(&x, &w, &b, k);
    for micro in Int8Micro::ALL.into_iter().filter(|m| m.available()) {
        let packed = Int8Panels::pack_for(&w, k, n, micro);
        let mut y: Vec<f32> = b.iter().copied().cycle().take(m * n).collect();
        packed.forward(&x, &mut y, &mut Int8Rows::default(), false);
        assert_eq!(y, expected, "{}", micro.name());
    }
}

/// The Euclidean norms of `y − expected` and of `expected`.
fn error_and_norm(y: &[f32], expected: &[f32]) -> (f64, f64) {
    let error = y
        .iter()
        .zip(expected)
        .map(|(a, e)| f64::from(a - e).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm = expected
        .iter()
        .map(|e| f64::from(*e).powi(2))
        .sum::<f64>()
        .sqrt();
    (error, norm)
}

#[test]
fn the_product_is_within_the_quantization_error_of_f32() {
    for (m, k, n) in SHAPES {
        let (x, w, b) = (values(m * k, 1), values(n * k, 2), values(n, 3));
        let expected = plain(&x, &w, &b, k);
        let y = run(Int8Micro::best(), m, k, n, false);
        let (error, norm) = error_and_norm(&y, &expected);
        // Two roundings of at most half a step (1/254 of the largest value) per product.
        assert!(
            error <= 0.02 * norm.max(1.0),
            "{m}×{k}×{n}: {error} against {norm}"
        );
    }
}

#[test]
fn zero_rows_and_zero_weights_add_nothing() {
    let (m, k, n) = (3, 8, 20);
    let mut w = values(n * k, 2);
    w[..k].fill(0.0);
    let b = values(n, 3);
    let start: Vec<f32> = b.iter().copied().cycle().take(m * n).collect();
    let packed = Int8Panels::pack(&w, k, n);
    let mut y = start.clone();
    packed.forward(&vec![0f32; m * k], &mut y, &mut Int8Rows::default(), false);
    assert_eq!(y, start);
    packed.forward(&values(m * k, 1), &mut y, &mut Int8Rows::default(), false);
    assert!(
        y.chunks_exact(n).all(|row| row[0] == b[0]),
        "a zero weight row adds nothing"
    );
    assert_ne!(y, start);
}

#[test]
#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
fn every_quantization_gives_the_portable_bytes() {
    type Quantize = unsafe fn(&[f32], &mut [u8]) -> f32;
    let mut ran = 0;
    for (micro, quantize) in [
        (Int8Micro::Vnni, vnni::quantize_row as Quantize),
        (Int8Micro::Avx2, avx2::quantize_row as Quantize),
    ] {
        if !micro.available() {
            println!("skipped {}: this CPU cannot run it", micro.name());
            continue;
        }
        ran += 1;
        // Lengths around a vector's 8 and 16 lanes and the AVX2 step of 32; values on and
        // between the rounding steps, ties too; the largest value anywhere in the row.
        for n in [1, 7, 8, 15, 16, 17, 31, 32, 33, 63, 65, 384, 1536] {
            for peak in [0, n / 2, n - 1] {
                let mut row = values(n, 5 + n);
                let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
                row[peak] = -1.5 * max;
                row[0] = 2.5 / 127.0 * 1.5 * max;
                let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
                let sa = portable::quantize_row(&row, &mut a);
                // SAFETY: the CPU runs `micro`, and so its quantization.
                let sb = unsafe { quantize(&row, &mut b) };
                let what = format!("{}, {n} values, largest at {peak}", micro.name());
                assert_eq!((sa.to_bits(), &a), (sb.to_bits(), &b), "{what}");
            }
        }
        let (mut a, mut b) = (vec![7u8; 40], vec![7u8; 40]);
        assert_eq!(portable::quantize_row(&[0.0; 40], &mut a), 1.0);
        // SAFETY: as above.
        assert_eq!(unsafe { quantize(&[0.0; 40], &mut b) }, 1.0);
        assert_eq!((a.clone(), b), (vec![ZERO; 40], vec![ZERO; 40]));
    }
    if ran == 0 {
        println!("skipped: this CPU has neither AVX-512 VNNI nor AVX2");
    }
}

/// Relative error of `y` against `expected`.
fn relative_error(y: &[f32], expected: &[f32]) -> f64 {
    let (error, norm) = error_and_norm(y, expected);
    error / norm
}

#[test]
fn smoothing_an_outlying_input_channel_shrinks_the_error_and_keeps_the_product() {
    let (m, k, n) = (12, 384, 96);
    // Rows like a LayerNorm's output in BERT: one channel 60 times larger than the rest.
    let mut x = values(m * k, 1);
    for row in x.chunks_exact_mut(k) {
        row[17] *= 60.0;
    }
    let (w, b) = (values(n * k, 2), vec![0f32; n]);
    let expected = plain(&x, &w, &b, k);
    let mut input_max = vec![0f32; k];
    for row in x.chunks_exact(k) {
        for (m, v) in input_max.iter_mut().zip(row) {
            *m = m.max(v.abs());
        }
    }
    let micro = Int8Micro::best();
    let product = |packed: &Int8Panels| {
        let mut y = vec![0f32; m * n];
        packed.forward(&x, &mut y, &mut Int8Rows::default(), false);
        y
    };
    let plain_error = relative_error(&product(&Int8Panels::pack_for(&w, k, n, micro)), &expected);
    let smoothed = Int8Panels::pack_smoothed(&w, k, n, &input_max, 0.5, micro);
    let smoothed_error = relative_error(&product(&smoothed), &expected);
    assert!(
        smoothed_error < plain_error / 3.0,
        "smoothed {smoothed_error} against {plain_error}"
    );
    assert!(smoothed_error < 0.02, "{smoothed_error}");
    // Unpacked, the weight is the original one within its rounding (the migration undone).
    let unpacked = smoothed.unpack();
    let worst = unpacked
        .iter()
        .zip(&w)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 0.05, "{worst}");
    // Every micro-kernel gives the same bits smoothed too.
    let reference = product(&Int8Panels::pack_smoothed(
        &w,
        k,
        n,
        &input_max,
        0.5,
        Int8Micro::Portable,
    ));
    for micro in Int8Micro::ALL.into_iter().filter(|m| m.available()) {
        let packed = Int8Panels::pack_smoothed(&w, k, n, &input_max, 0.5, micro);
        assert_eq!(product(&packed), reference, "{}", micro.name());
    }
}

#[test]
fn a_channel_never_seen_or_a_zero_column_is_left_as_it_is() {
    let (k, n) = (8, 16);
    let mut w = values(n * k, 2);
    for row in w.chunks_exact_mut(k) {
        row[3] = 0.0;
    }
    let mut input_max = vec![1f32; k];
    input_max[5] = 0.0;
    let packed = Int8Panels::pack_smoothed(&w, k, n, &input_max, 0.5, Int8Micro::Portable);
    let factor = packed.input_scale.clone().unwrap_or_default();
    assert_eq!(factor[3], 1.0);
    assert_eq!(factor[5], 1.0);
    assert!(factor.iter().all(|f| f.is_finite() && *f > 0.0));
}

#[test]
fn a_bias_and_a_finishing_step_give_the_bits_of_separate_passes() {
    // A bias written first and the product added, then the activation over the whole output
    // (what the layers did before): the same bits on every base, micro-kernel and split, with
    // blocks of rows over one `MC` and panels left over.
    let (m, k, n) = (MC + 13, 128, 200);
    let (x, w, b, start) = (
        values(m * k, 1),
        values(n * k, 2),
        values(n, 3),
        values(m * n, 4),
    );
    let square: Finish<'_> = &|p| p.iter_mut().for_each(|v| *v *= *v);
    for micro in Int8Micro::ALL.into_iter().filter(|m| m.available()) {
        let packed = Int8Panels::pack_for(&w, k, n, micro);
        for base in [Base::Output, Base::Bias(&b), Base::OutputAndBias(&b)] {
            let mut want = if base.reads_output() {
                start.clone()
            } else {
                vec![0.0; m * n]
            };
            if let Some(bias) = base.bias() {
                for row in want.chunks_exact_mut(n) {
                    row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
                }
            }
            packed.forward(&x, &mut want, &mut Int8Rows::default(), false);
            want.iter_mut().for_each(|v| *v *= *v);
            for parallel in [false, true] {
                // An output that is overwritten starts as NaN: reading it would show.
                let mut y = if base.reads_output() {
                    start.clone()
                } else {
                    vec![f32::NAN; m * n]
                };
                threads::run(parallel, || {
                    packed.product(
                        &x,
                        &mut y,
                        base,
                        &mut Int8Rows::default(),
                        parallel,
                        Some(square),
                    )
                });
                assert_eq!(y, want, "{micro:?} {base:?} parallel={parallel}");
            }
        }
    }
}
