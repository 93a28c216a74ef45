//! The Mann-Whitney U test for a shift of the canary's latencies above the baseline's, with
//! ties (mid-ranks and the tie-corrected variance), the normal approximation with a continuity
//! correction, and its effect size.

use statrs::distribution::{ContinuousCDF, Normal};

/// What the rank test found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RankTest {
    /// U of the canary: pairs (canary, baseline) in which the canary is slower, ties counting
    /// one half.
    pub u: f64,
    /// One-sided p-value of "the canary is stochastically slower".
    pub p_value: f64,
    /// The common-language effect size (Vargha-Delaney A): the chance that a canary request is
    /// slower than a baseline request, ties counting one half; 0.5 is no shift.
    pub effect: f64,
}

impl RankTest {
    /// The rank-biserial correlation, `2A - 1`: from -1 (canary always faster) to 1.
    pub fn rank_biserial(&self) -> f64 {
        2.0 * self.effect - 1.0
    }
}

/// The test on counts over shared ordered classes: `(canary, baseline)` per class, a class
/// being a run of equal values or one histogram bucket (its members are ties). `None` when a
/// side is empty.
pub fn mann_whitney(classes: &[(u64, u64)]) -> Option<RankTest> {
    let n_canary: u64 = classes.iter().map(|c| c.0).sum();
    let n_baseline: u64 = classes.iter().map(|c| c.1).sum();
    if n_canary == 0 || n_baseline == 0 {
        return None;
    }
    let (n1, n2) = (n_canary as f64, n_baseline as f64);
    let n = n1 + n2;
    let mut rank_sum = 0.0;
    let mut below = 0.0;
    let mut ties = 0.0;
    for &(canary, baseline) in classes {
        let t = (canary + baseline) as f64;
        if t == 0.0 {
            continue;
        }
        let mid_rank = below + (t + 1.0) / 2.0;
        rank_sum += canary as f64 * mid_rank;
        ties += t * t * t - t;
        below += t;
    }
    let u = rank_sum - n1 * (n1 + 1.0) / 2.0;
    let mean = n1 * n2 / 2.0;
    let variance = n1 * n2 / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    let p_value = if variance > 0.0 {
        let z = (u - mean - 0.5) / variance.sqrt();
        Normal::standard().sf(z)
    } else {
        // Every value tied: no evidence of any shift.
        1.0
    };
    Some(RankTest {
        u,
        p_value,
        effect: u / (n1 * n2),
    })
}
