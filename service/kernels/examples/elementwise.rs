//! Time of the work around the dense products, as this CPU runs it: GELU and softmax per
//! element, and attention over packed sequences per layer of all-MiniLM-L6-v2's shape (12
//! heads of 32), on one thread. Each figure is the best of many runs (the one the machine's
//! neighbours disturbed least).
//!
//! `cargo run --release -p akidb-kernels --example elementwise` (`RUNS`: runs per figure,
//! default 2000).

use std::{
    ops::Range,
    time::{Duration, Instant},
};

use akidb_kernels::{
    activation::Activation,
    attention::{attention, softmax_rows_scaled, Heads},
};

fn values(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919) % 2000) as f32 / 250.0 - 4.0)
        .collect()
}

/// The shortest of `runs` runs of `f`.
fn best(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    let runs = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(2000);
    println!("{}", akidb_kernels::choice::Choice::detect());

    // GELU over a 10-token pass's feed-forward rows; the copy that restores the input is
    // timed alone and taken off.
    let input = values(10 * 1536);
    let mut x = input.clone();
    let copy = best(runs, || {
        x.copy_from_slice(&input);
        std::hint::black_box(&mut x);
    });
    let gelu = best(runs, || {
        x.copy_from_slice(&input);
        Activation::Gelu.apply(&mut x);
    });
    let per = (gelu.saturating_sub(copy)).as_secs_f64() * 1e9 / input.len() as f64;
    println!("GELU: {per:.2} ns an element");

    // Softmax rows as attention makes them: as wide as a sequence is long.
    for width in [5, 10, 37, 128] {
        let mut x = values(12_000 / width * width);
        let time = best(runs, || softmax_rows_scaled(&mut x, width, 0.125));
        let per = time.as_secs_f64() * 1e9 / x.len() as f64;
        println!("softmax, rows of {width}: {per:.2} ns an element");
    }

    let heads = Heads { count: 12, dim: 32 };
    for (count, len) in [(32, 10), (32, 20), (8, 32)] {
        let tokens = count * len;
        let qkv: Vec<f32> = values(tokens * 3 * heads.hidden())
            .into_iter()
            .map(|v| v / 8.0)
            .collect();
        let mut context = vec![0f32; tokens * heads.hidden()];
        let sequences: Vec<Range<usize>> = (0..count).map(|s| s * len..(s + 1) * len).collect();
        let time = best(runs / 4, || {
            attention(&qkv, &sequences, heads, &mut context, false)
        });
        let flops = (count * heads.count * 2 * 2 * len * len * heads.dim) as f64;
        println!(
            "attention, {count} sequences of {len} tokens: {:.0} µs a layer ({:.1} GFLOP/s)",
            time.as_secs_f64() * 1e6,
            flops / time.as_secs_f64() / 1e9
        );
    }
}
