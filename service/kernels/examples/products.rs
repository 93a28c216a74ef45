//! Matrix-product throughput on the shapes of a MiniLM layer: the `gemm` crate (repacking the
//! weight each call) against the weight packed once into panels, on each micro-kernel this CPU
//! runs, and the int8 product (inputs quantized per call, included in its time). Prints GFLOP/s
//! (for int8: multiply-adds × 2 per second, the same count).
//!
//! `cargo run --release -p akidb-kernels --example products` (`BUDGET_MS`: time per figure;
//! `COPIES`: cycle through that many different weights of each shape, as a model's layers do,
//! so that they stop fitting in cache; `MICROS`: the micro-kernels to run, comma-separated,
//! default every one this CPU runs but the portable one where another runs; `INT8`: the int8
//! micro-kernel, `avx512-vnni`, `avx2` or `portable`, default the fastest this CPU runs;
//! `ROWS`: the row counts, comma-separated, default 10, 320 and 4,096).
//! Where the CPU and OS run AMX, the AMX product (f32 split into bf16 halves, three tile
//! products) too, beside the first panels' figure. First it prints the core's f32 multiply-add
//! peak (independent `vfmadd` chains, no memory), the ceiling of every f32 figure below.

use std::time::{Duration, Instant};

use akidb_kernels::{
    amx::{self, AmxPanels},
    int8::{Int8Micro, Int8Panels, Int8Rows},
    panel::{Base, Micro, Panels},
    threads,
};

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (((i + seed) * 2_654_435_761) % 1000) as f32 / 500.0 - 1.0)
        .collect()
}

/// Best GFLOP/s over runs of `f` for about `budget` (the best run is the one the machine's
/// neighbours disturbed least).
fn rate(flops: f64, budget: Duration, mut f: impl FnMut()) -> f64 {
    f();
    let (start, mut best) = (Instant::now(), f64::MAX);
    while start.elapsed() < budget {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    flops / best / 1e9
}

fn gemm(x: &[f32], w: &[f32], y: &mut [f32], m: usize, k: usize, n: usize, threads: usize) {
    let par = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: m×k, n×k and m×n row-major buffers, `y` distinct.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            y.as_mut_ptr(),
            1,
            n as isize,
            true,
            x.as_ptr(),
            1,
            k as isize,
            w.as_ptr(),
            k as isize,
            1,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}

fn main() {
    let budget = Duration::from_millis(
        std::env::var("BUDGET_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1500),
    );
    let copies: usize = std::env::var("COPIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(1);
    let micros: Vec<Micro> = match std::env::var("MICROS") {
        Ok(names) => names
            .split(',')
            .map(|n| Micro::from_name(n.trim()).unwrap_or_else(|| panic!("no micro-kernel {n}")))
            .filter(|m| m.available())
            .collect(),
        Err(_) => Micro::ALL
            .into_iter()
            .filter(|m| m.available() && (*m != Micro::Portable || Micro::best() == *m))
            .collect(),
    };
    let pool = threads::count();
    if let Some(peak) = akidb_kernels::peak::f32_multiply_add(budget) {
        println!(
            "f32 multiply-add peak ({}), one core: {:.1} GFLOP/s",
            peak.isa, peak.gflops
        );
    }
    println!("weights per shape: {copies}");
    println!("pool threads: {pool}");
    let names: Vec<&str> = micros.iter().map(|m| m.name()).collect();
    print!("| m | k | n | threads | gemm GFLOP/s |");
    for name in &names {
        print!(" panels/{name} GFLOP/s | / gemm |");
    }
    let int8 = std::env::var("INT8")
        .ok()
        .map(|name| {
            Int8Micro::ALL
                .into_iter()
                .find(|m| m.name() == name && m.available())
                .unwrap_or_else(|| panic!("no int8 micro-kernel {name} on this CPU"))
        })
        .unwrap_or_else(Int8Micro::best);
    print!(
        " int8/{} | / panels/{} |",
        int8.name(),
        names.first().copied().unwrap_or("-")
    );
    let with_amx = amx::available();
    if with_amx {
        print!(
            " amx GFLOP/s | / panels/{} |",
            names.first().copied().unwrap_or("-")
        );
    }
    println!();
    println!(
        "|---|---|---|---|---|{}---|---|{}",
        "---|---|".repeat(names.len()),
        if with_amx { "---|---|" } else { "" }
    );
    let row_counts: Vec<usize> = std::env::var("ROWS").map_or(vec![10, 320, 4096], |r| {
        r.split(',')
            .map(|m| m.trim().parse().expect("ROWS: row counts, comma-separated"))
            .collect()
    });
    for m in row_counts {
        for (k, n) in [(384, 1152), (384, 384), (384, 1536), (1536, 384)] {
            let x = values(m * k, 1);
            let weights: Vec<Vec<f32>> = (0..copies).map(|c| values(n * k, 2 + c)).collect();
            let packed: Vec<Vec<Panels>> = micros
                .iter()
                .map(|&micro| {
                    weights
                        .iter()
                        .map(|w| Panels::pack_for(w, k, n, micro))
                        .collect()
                })
                .collect();
            let quantized: Vec<Int8Panels> = weights
                .iter()
                .map(|w| Int8Panels::pack_for(w, k, n, int8))
                .collect();
            let split: Vec<AmxPanels> = if with_amx {
                weights.iter().map(|w| AmxPanels::pack(w, k, n)).collect()
            } else {
                Vec::new()
            };
            let mut rows = Int8Rows::default();
            let mut y = vec![0f32; m * n];
            let flops = 2.0 * (m * n * k) as f64;
            for t in [1, pool] {
                let parallel = t > 1;
                let mut i = 0;
                let g = threads::run(parallel, || {
                    rate(flops, budget, || {
                        i += 1;
                        gemm(&x, &weights[i % copies], &mut y, m, k, n, t)
                    })
                });
                print!("| {m} | {k} | {n} | {t} | {g:.1} |");
                let mut first = None;
                for panels in &packed {
                    let p = threads::run(parallel, || {
                        rate(flops, budget, || {
                            i += 1;
                            panels[i % copies].accumulate(&x, &mut y, parallel)
                        })
                    });
                    first.get_or_insert(p);
                    print!(" {p:.1} | {:.2}× |", p / g);
                }
                let q = threads::run(parallel, || {
                    rate(flops, budget, || {
                        i += 1;
                        quantized[i % copies].forward(&x, &mut y, &mut rows, parallel)
                    })
                });
                print!(
                    " {q:.1} | {} |",
                    first.map_or("-".into(), |p| format!("{:.2}×", q / p))
                );
                if with_amx {
                    let a = threads::run(parallel, || {
                        rate(flops, budget, || {
                            i += 1;
                            split[i % copies].product(&x, &mut y, Base::Output, parallel, None)
                        })
                    });
                    print!(
                        " {a:.1} | {} |",
                        first.map_or("-".into(), |p| format!("{:.2}×", a / p))
                    );
                }
                println!();
                if pool == 1 {
                    break;
                }
            }
        }
    }
}
