//! Distribution-free confidence intervals on a quantile (order statistics bracketing it with a
//! binomial probability), and on the ratio of the canary's quantile to the baseline's.

use statrs::distribution::{Binomial, DiscreteCDF};

use super::sample::Latencies;

/// An interval `[low, high]`; `high` is infinite when the sample is too small to bound it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    /// Lower bound.
    pub low: f64,
    /// Upper bound.
    pub high: f64,
}

/// The smallest `k` in `0..=n` with `P(Binomial(n, p) <= k) >= level`.
fn binomial_ppf(n: u64, p: f64, level: f64) -> u64 {
    let binomial = Binomial::new(p, n).expect("p is a quantile in (0, 1)");
    let (mut lo, mut hi) = (0u64, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if binomial.cdf(mid) >= level {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    lo
}

/// The 1-based ranks `(l, u)` of the order statistics that bracket the `q` quantile of `n`
/// observations with probability at least `confidence`, `(1 - confidence) / 2` on each side
/// (the same ranks as `scipy.stats.quantile_test(...).confidence_interval()`); `l == 0` or
/// `u > n` means that side is unbounded.
pub fn bracketing_ranks(n: u64, q: f64, confidence: f64) -> (u64, u64) {
    let tail = (1.0 - confidence) / 2.0;
    let low = binomial_ppf(n, q, tail);
    let high = binomial_ppf(n, q, 1.0 - tail) + 1;
    (low, high)
}

/// The `confidence` interval of the `q` quantile: order statistics for raw values, widened to
/// their buckets' bounds for a histogram. `None` when the sample is empty.
pub fn quantile_interval(sample: &Latencies, q: f64, confidence: f64) -> Option<Interval> {
    let n = sample.len();
    if n == 0 {
        return None;
    }
    let (l, u) = bracketing_ranks(n, q, confidence);
    let low = if l == 0 {
        0.0
    } else {
        sample.order_statistic(l)?.0
    };
    let high = if u > n {
        f64::INFINITY
    } else {
        sample.order_statistic(u)?.1
    };
    Some(Interval { low, high })
}

/// The ratio of the canary's `q` quantile to the baseline's, with an interval of at least
/// `confidence`: each side's quantile interval at `sqrt(confidence)` (the sides are
/// independent, so both hold together with probability `confidence`), divided crosswise.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantileRatio {
    /// Canary quantile over baseline quantile (point estimates).
    pub ratio: f64,
    /// The interval of the ratio.
    pub interval: Interval,
    /// The canary's point estimate, in ms.
    pub canary: f64,
    /// The baseline's point estimate, in ms.
    pub baseline: f64,
}

/// See [`QuantileRatio`]; `None` when either side is empty.
pub fn quantile_ratio(
    canary: &Latencies,
    baseline: &Latencies,
    q: f64,
    confidence: f64,
) -> Option<QuantileRatio> {
    let each = confidence.sqrt();
    let c = quantile_interval(canary, q, each)?;
    let b = quantile_interval(baseline, q, each)?;
    let (c_point, b_point) = (canary.quantile(q)?, baseline.quantile(q)?);
    let divide = |x: f64, y: f64| {
        if y > 0.0 {
            x / y
        } else if x > 0.0 {
            f64::INFINITY
        } else {
            // 0 / 0: both at zero, no change.
            1.0
        }
    };
    Some(QuantileRatio {
        ratio: divide(c_point, b_point),
        interval: Interval {
            low: if b.high.is_infinite() {
                0.0
            } else {
                divide(c.low, b.high)
            },
            high: if c.high.is_infinite() {
                f64::INFINITY
            } else {
                divide(c.high, b.low)
            },
        },
        canary: c_point,
        baseline: b_point,
    })
}
