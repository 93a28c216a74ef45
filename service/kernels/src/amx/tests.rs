//! The AMX products against f64 ones at shapes with ragged edges, with every base and a
//! finishing step, serial and split across the pool; the split of a value into `hi + lo`.

use super::*;
use crate::threads;

use crate::test_values as values;

/// For each output, `x·Wᵀ` in f64 and the sum of the products' magnitudes.
fn plain(x: &[f32], w: &[f32], k: usize) -> Vec<(f64, f64)> {
    x.chunks_exact(k)
        .flat_map(|row| {
            w.chunks_exact(k).map(move |col| {
                row.iter().zip(col).fold((0.0, 0.0), |(s, a), (x, w)| {
                    let p = f64::from(*x) * f64::from(*w);
                    (s + p, a + p.abs())
                })
            })
        })
        .collect()
}

const SHAPES: [(usize, usize, usize); 9] = [
    (1, 4, 1),
    (1, 7, 16),
    (5, 12, 17),
    (6, 384, 64),
    (7, 33, 65),
    (33, 384, 130),
    (40, 64, 200),
    (3, 1536, 384),
    (200, 384, 1152),
];

fn skipped() -> bool {
    if available() {
        return false;
    }
    println!("skipped: this CPU or OS does not run AMX with bf16");
    true
}

#[test]
fn splits_keep_sixteen_bits_of_a_value() {
    for x in values(1000, 7)
        .into_iter()
        .chain([1e-20, 3.0e30, -7.5, 0.0])
    {
        let (hi, lo) = split(x);
        let back = from_bf16(hi) + from_bf16(lo);
        assert!(
            (back - x).abs() <= x.abs() * 2f32.powi(-16),
            "{x} came back as {back}"
        );
    }
}

#[test]
fn unpacking_gives_the_weight_back_within_the_split() {
    let (k, n) = (33, 17);
    let w = values(n * k, 2);
    let back = AmxPanels::pack(&w, k, n).unpack();
    for (a, b) in w.iter().zip(&back) {
        assert!((a - b).abs() <= a.abs() * 2f32.powi(-16), "{a} vs {b}");
    }
}

#[test]
fn products_match_f64_ones_with_every_base_serial_and_in_the_pool() {
    if skipped() {
        return;
    }
    for (m, k, n) in SHAPES {
        let (x, w, bias) = (values(m * k, 1), values(n * k, 2), values(n, 3));
        let start = values(m * n, 4);
        let packed = AmxPanels::pack(&w, k, n);
        let exact = plain(&x, &w, k);
        for parallel in [false, true] {
            for (name, base) in [
                ("output", Base::Output),
                ("bias", Base::Bias(&bias)),
                ("output and bias", Base::OutputAndBias(&bias)),
            ] {
                let mut y = start.clone();
                let twice = |piece: &mut [f32]| piece.iter_mut().for_each(|v| *v *= 2.0);
                threads::run(parallel, || {
                    packed.product(&x, &mut y, base, parallel, Some(&twice))
                });
                for (i, (got, (sum, magnitude))) in y.iter().zip(&exact).enumerate() {
                    let added = match base {
                        Base::Output => f64::from(start[i]),
                        Base::Bias(b) => f64::from(b[i % n]),
                        Base::OutputAndBias(b) => f64::from(start[i]) + f64::from(b[i % n]),
                    };
                    let want = 2.0 * (added + sum);
                    // Each product within 2⁻¹⁵ of its magnitude (the terms left out, the
                    // roundings of `lo`), and the f32 sums.
                    let bound = 2.0 * (2f64.powi(-15) * magnitude + 1e-6 * added.abs()) + 1e-30;
                    assert!(
                        (f64::from(*got) - want).abs() <= bound,
                        "{m}×{k}×{n} {name} parallel={parallel}: output {i} is {got}, want {want}"
                    );
                }
            }
        }
    }
}

#[test]
fn no_rows_is_no_work() {
    if skipped() {
        return;
    }
    let packed = AmxPanels::pack(&values(16 * 8, 1), 8, 16);
    let mut y: Vec<f32> = Vec::new();
    packed.product(&[], &mut y, Base::Output, false, None);
    assert!(y.is_empty());
}
