//! The f32 multiply-add peak of one core: the ceiling every f32 product is read against
//! (`GFLOP/s` of a kernel over it), measured, not taken from a data sheet, since clocks and
//! the number of vector units differ between CPUs and between a VM's hosts.

use std::time::Duration;

/// One core's measured peak.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peak {
    /// The instruction set measured: `avx512` or `avx2` (with FMA).
    pub isa: &'static str,
    /// Billions of floating-point operations a second (a multiply-add counts two), the best
    /// of the runs that fit the budget.
    pub gflops: f64,
}

/// Twelve independent chains of vector multiply-adds (enough to keep two units busy through
/// their latency), on the widest vectors the CPU runs, on the calling thread for about
/// `budget`; `None` without FMA, in the `portable` build and off x86-64.
pub fn f32_multiply_add(budget: Duration) -> Option<Peak> {
    #[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
    {
        let (isa, lanes, run): (&'static str, usize, unsafe fn(usize) -> f32) =
            if is_x86_feature_detected!("avx512f") {
                ("avx512", 16, x86::avx512)
            } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                ("avx2", 8, x86::avx2)
            } else {
                return None;
            };
        let started = std::time::Instant::now();
        let mut best = 0f64;
        loop {
            let t = std::time::Instant::now();
            // SAFETY: the CPU runs the instructions of `run` (checked above).
            std::hint::black_box(unsafe { run(x86::STEPS) });
            let flops = (x86::STEPS * x86::CHAINS * lanes * 2) as f64;
            best = best.max(flops / t.elapsed().as_secs_f64() / 1e9);
            if started.elapsed() >= budget {
                break;
            }
        }
        Some(Peak { isa, gflops: best })
    }
    #[cfg(not(all(target_arch = "x86_64", not(feature = "portable"))))]
    {
        let _ = budget;
        None
    }
}

#[cfg(all(target_arch = "x86_64", not(feature = "portable")))]
mod x86 {
    use std::arch::x86_64::*;

    /// Independent accumulators.
    pub(super) const CHAINS: usize = 12;
    /// Steps of one timed run: ~1 ms on a core of ~200 GFLOP/s.
    pub(super) const STEPS: usize = 1 << 19;

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn avx512(steps: usize) -> f32 {
        let mut acc = [_mm512_set1_ps(1.0); CHAINS];
        let (a, b) = (_mm512_set1_ps(0.999_999), _mm512_set1_ps(1e-7));
        for _ in 0..steps {
            for x in acc.iter_mut() {
                *x = _mm512_fmadd_ps(*x, a, b);
            }
        }
        acc.iter().map(|&x| _mm512_reduce_add_ps(x)).sum()
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2(steps: usize) -> f32 {
        let mut acc = [_mm256_set1_ps(1.0); CHAINS];
        let (a, b) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
        for _ in 0..steps {
            for x in acc.iter_mut() {
                *x = _mm256_fmadd_ps(*x, a, b);
            }
        }
        let mut lanes = [0f32; 8];
        let mut sum = 0.0;
        for x in acc {
            _mm256_storeu_ps(lanes.as_mut_ptr(), x);
            sum += lanes.iter().sum::<f32>();
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_is_measured_where_the_cpu_has_fma() {
        match f32_multiply_add(Duration::from_millis(20)) {
            Some(peak) => {
                // Any FMA core of the last decade runs at least a few GFLOP/s, and none a
                // single core's tens of thousands.
                assert!(
                    peak.gflops > 1.0 && peak.gflops < 10_000.0,
                    "{peak:?} is not a core's f32 rate"
                );
                assert!(["avx512", "avx2"].contains(&peak.isa));
            }
            None => eprintln!("skipped: no FMA on this CPU or in this build"),
        }
    }
}
