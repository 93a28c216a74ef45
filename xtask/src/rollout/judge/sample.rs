//! One side's sample: its latencies (raw, or a Prometheus histogram's bucket counts) with its
//! request and error counts, and the ordered tie classes the rank test and the order statistics
//! work on.

use serde::Deserialize;

use super::JudgeError;

/// Latencies in milliseconds, as the source gave them.
#[derive(Clone, Debug, PartialEq)]
pub enum Latencies {
    /// Every request's latency (a load generator, a sample file).
    Raw(Vec<f64>),
    /// A cumulative-free histogram: how many requests fell in each bucket.
    Histogram(Histogram),
}

/// Bucket counts of a latency histogram, as Prometheus exports it (`le` bounds).
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    /// Each bucket's upper bound in milliseconds, ascending; the last may be infinite (`+Inf`).
    /// A bucket's lower bound is the previous bound (zero for the first).
    pub bounds: Vec<f64>,
    /// Requests in each bucket (not cumulative).
    pub counts: Vec<u64>,
}

impl Histogram {
    /// From Prometheus's cumulative `le` series: `(upper bound in ms, requests at or below it)`,
    /// in any order. Counts from `increase()` are extrapolated floats: they are rounded, and a
    /// cumulative count that falls (a counter reset inside the window) is clamped.
    pub fn from_cumulative(mut series: Vec<(f64, f64)>) -> Result<Self, JudgeError> {
        if series.iter().any(|(le, c)| le.is_nan() || !c.is_finite()) {
            return Err(JudgeError::NonFinite("histogram bucket"));
        }
        series.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut bounds = Vec::with_capacity(series.len());
        let mut counts = Vec::with_capacity(series.len());
        let mut below = 0u64;
        for (le, cumulative) in series {
            let cumulative = (cumulative.max(0.0).round() as u64).max(below);
            bounds.push(le);
            counts.push(cumulative - below);
            below = cumulative;
        }
        Ok(Self { bounds, counts })
    }

    fn lower(&self, index: usize) -> f64 {
        if index == 0 {
            0.0
        } else {
            self.bounds[index - 1]
        }
    }
}

/// One side of a comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct SideSample {
    /// Latencies of the answered requests.
    pub latencies: Latencies,
    /// Requests in the window.
    pub requests: u64,
    /// Requests that failed.
    pub errors: u64,
}

/// The sample file of `cargo xtask rollout judge`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleFile {
    /// Latencies in milliseconds.
    pub latency_ms: Vec<f64>,
    /// Requests in the window.
    pub requests: u64,
    /// Requests that failed.
    pub errors: u64,
}

impl From<SampleFile> for SideSample {
    fn from(file: SampleFile) -> Self {
        Self {
            latencies: Latencies::Raw(file.latency_ms),
            requests: file.requests,
            errors: file.errors,
        }
    }
}

/// A run of equal values (raw) or one bucket (histogram): `count` observations in `[lo, hi]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Class {
    /// Smallest value the class may hold.
    pub lo: f64,
    /// Largest value the class may hold.
    pub hi: f64,
    /// Observations in it.
    pub count: u64,
}

impl Latencies {
    /// Observations.
    pub fn len(&self) -> u64 {
        match self {
            Latencies::Raw(values) => values.len() as u64,
            Latencies::Histogram(h) => h.counts.iter().sum(),
        }
    }

    /// Whether there is no observation.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks that every value is a finite, non-negative latency and the bounds ascend.
    pub fn check(&self) -> Result<(), JudgeError> {
        match self {
            Latencies::Raw(values) => {
                if values.iter().any(|v| !v.is_finite()) {
                    return Err(JudgeError::NonFinite("latency"));
                }
                if values.iter().any(|v| *v < 0.0) {
                    return Err(JudgeError::Negative);
                }
            }
            Latencies::Histogram(h) => {
                if h.bounds.len() != h.counts.len() {
                    return Err(JudgeError::Buckets("bounds and counts differ in length"));
                }
                if h.bounds.iter().any(|b| b.is_nan() || *b < 0.0) {
                    return Err(JudgeError::NonFinite("histogram bound"));
                }
                if h.bounds.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(JudgeError::Buckets("bounds do not ascend"));
                }
            }
        }
        Ok(())
    }

    /// Whether every observation is zero (a baseline that measured nothing real).
    pub fn all_zero(&self) -> bool {
        match self {
            Latencies::Raw(values) => values.iter().all(|v| *v == 0.0),
            // Only a bucket whose upper bound is zero holds nothing but zeros.
            Latencies::Histogram(h) => h
                .bounds
                .iter()
                .zip(&h.counts)
                .all(|(b, c)| *c == 0 || *b <= 0.0),
        }
    }

    /// The ordered classes: one per distinct value, or one per bucket.
    pub fn classes(&self) -> Vec<Class> {
        match self {
            Latencies::Raw(values) => {
                let mut sorted = values.clone();
                sorted.sort_by(f64::total_cmp);
                let mut classes: Vec<Class> = Vec::new();
                for v in sorted {
                    match classes.last_mut() {
                        Some(last) if last.lo == v => last.count += 1,
                        _ => classes.push(Class {
                            lo: v,
                            hi: v,
                            count: 1,
                        }),
                    }
                }
                classes
            }
            Latencies::Histogram(h) => (0..h.bounds.len())
                .map(|i| Class {
                    lo: h.lower(i),
                    hi: h.bounds[i],
                    count: h.counts[i],
                })
                .collect(),
        }
    }

    /// The `q` quantile's point estimate: linear interpolation between order statistics
    /// (numpy's default) for raw values; Prometheus's `histogram_quantile` for buckets (linear
    /// within the bucket, the highest finite bound when it falls in `+Inf`). `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        match self {
            Latencies::Raw(values) if !values.is_empty() => {
                let mut sorted = values.clone();
                sorted.sort_by(f64::total_cmp);
                let position = q * (sorted.len() - 1) as f64;
                let below = position.floor() as usize;
                let above = position.ceil() as usize;
                let fraction = position - below as f64;
                Some(sorted[below] + (sorted[above] - sorted[below]) * fraction)
            }
            Latencies::Histogram(h) => {
                let n: u64 = h.counts.iter().sum();
                if n == 0 {
                    return None;
                }
                let rank = q * n as f64;
                let mut below = 0u64;
                for (i, &count) in h.counts.iter().enumerate() {
                    if count > 0 && (below + count) as f64 >= rank {
                        let (lo, hi) = (h.lower(i), h.bounds[i]);
                        if hi.is_infinite() {
                            return Some(lo);
                        }
                        return Some(lo + (hi - lo) * (rank - below as f64) / count as f64);
                    }
                    below += count;
                }
                h.bounds.iter().rev().find(|b| b.is_finite()).copied()
            }
            Latencies::Raw(_) => None,
        }
    }

    /// The range `[lo, hi]` the `k`-th smallest observation (1-based) lies in: the value itself
    /// for raw data, its bucket's bounds for a histogram.
    pub fn order_statistic(&self, k: u64) -> Option<(f64, f64)> {
        let mut seen = 0u64;
        for class in self.classes() {
            seen += class.count;
            if seen >= k && k >= 1 {
                return Some((class.lo, class.hi));
            }
        }
        None
    }
}

/// Both sides' counts over shared ordered classes, for the rank test: distinct values for two
/// raw samples, buckets for two histograms with the same bounds (a raw sample compared with a
/// histogram is binned into its buckets).
pub fn shared_classes(a: &Latencies, b: &Latencies) -> Result<Vec<(u64, u64)>, JudgeError> {
    match (a, b) {
        (Latencies::Raw(_), Latencies::Raw(_)) => {
            let (ca, cb) = (a.classes(), b.classes());
            let (mut i, mut j) = (0, 0);
            let mut shared = Vec::with_capacity(ca.len() + cb.len());
            while i < ca.len() || j < cb.len() {
                let next = match (ca.get(i), cb.get(j)) {
                    (Some(x), Some(y)) if x.lo == y.lo => {
                        i += 1;
                        j += 1;
                        (x.count, y.count)
                    }
                    (Some(x), Some(y)) if x.lo < y.lo => {
                        i += 1;
                        (x.count, 0)
                    }
                    (Some(x), None) => {
                        i += 1;
                        (x.count, 0)
                    }
                    (_, Some(y)) => {
                        j += 1;
                        (0, y.count)
                    }
                    (None, None) => unreachable!("the loop ends when both are done"),
                };
                shared.push(next);
            }
            Ok(shared)
        }
        (Latencies::Histogram(x), Latencies::Histogram(y)) => {
            if x.bounds != y.bounds {
                return Err(JudgeError::Buckets(
                    "the two sides' histograms have different bucket bounds",
                ));
            }
            Ok(x.counts
                .iter()
                .copied()
                .zip(y.counts.iter().copied())
                .collect())
        }
        (Latencies::Raw(values), Latencies::Histogram(h)) => Ok(bin(values, h)
            .into_iter()
            .zip(h.counts.iter().copied())
            .collect()),
        (Latencies::Histogram(h), Latencies::Raw(values)) => {
            Ok(h.counts.iter().copied().zip(bin(values, h)).collect())
        }
    }
}

fn bin(values: &[f64], h: &Histogram) -> Vec<u64> {
    let mut counts = vec![0u64; h.bounds.len()];
    for v in values {
        // `le`: a value equal to a bound belongs to that bucket; past the last, to the last.
        let i = h
            .bounds
            .partition_point(|b| b < v)
            .min(counts.len().saturating_sub(1));
        if let Some(c) = counts.get_mut(i) {
            *c += 1;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_buckets_become_counts_rounded_and_clamped() {
        let h = Histogram::from_cumulative(vec![
            (f64::INFINITY, 10.2),
            (5.0, 3.9),
            (10.0, 3.0), // fell: a reset; clamped to the bucket below
        ])
        .expect("finite");
        assert_eq!(h.bounds, vec![5.0, 10.0, f64::INFINITY]);
        assert_eq!(h.counts, vec![4, 0, 6]);
    }

    #[test]
    fn quantiles_interpolate_like_numpy_and_prometheus() {
        let raw = Latencies::Raw(vec![4.0, 1.0, 3.0, 2.0]);
        // numpy.quantile([1, 2, 3, 4], 0.95) = 3.85
        assert!((raw.quantile(0.95).expect("some") - 3.85).abs() < 1e-12);
        let h = Latencies::Histogram(Histogram {
            bounds: vec![10.0, 20.0, f64::INFINITY],
            counts: vec![50, 50, 0],
        });
        // Rank 95 of 100 lies 45 into the second bucket's 50: 10 + 10 * 45 / 50.
        assert!((h.quantile(0.95).expect("some") - 19.0).abs() < 1e-12);
        let tail = Latencies::Histogram(Histogram {
            bounds: vec![10.0, f64::INFINITY],
            counts: vec![1, 9],
        });
        assert_eq!(
            tail.quantile(0.5),
            Some(10.0),
            "+Inf gives the last finite bound"
        );
        assert_eq!(Latencies::Raw(vec![]).quantile(0.5), None);
    }

    #[test]
    fn order_statistics_of_a_histogram_are_bucket_ranges() {
        let h = Latencies::Histogram(Histogram {
            bounds: vec![1.0, 2.5, 5.0],
            counts: vec![2, 0, 3],
        });
        assert_eq!(h.order_statistic(2), Some((0.0, 1.0)));
        assert_eq!(h.order_statistic(3), Some((2.5, 5.0)));
        assert_eq!(h.order_statistic(6), None);
    }

    #[test]
    fn shared_classes_merge_values_and_bin_raw_into_buckets() {
        let a = Latencies::Raw(vec![1.0, 2.0, 2.0]);
        let b = Latencies::Raw(vec![2.0, 3.0]);
        assert_eq!(
            shared_classes(&a, &b).expect("raw"),
            vec![(1, 0), (2, 1), (0, 1)]
        );
        let h = Latencies::Histogram(Histogram {
            bounds: vec![1.0, 2.0, f64::INFINITY],
            counts: vec![0, 4, 1],
        });
        assert_eq!(
            shared_classes(&a, &h).expect("binned"),
            vec![(1, 0), (2, 4), (0, 1)]
        );
        let other = Latencies::Histogram(Histogram {
            bounds: vec![1.0, 3.0, f64::INFINITY],
            counts: vec![0, 4, 1],
        });
        assert!(shared_classes(&h, &other).is_err());
    }

    #[test]
    fn bad_values_are_named() {
        assert!(Latencies::Raw(vec![1.0, f64::NAN]).check().is_err());
        assert!(Latencies::Raw(vec![1.0, f64::INFINITY]).check().is_err());
        assert!(Latencies::Raw(vec![-1.0]).check().is_err());
        assert!(Latencies::Raw(vec![0.0, 0.0]).all_zero());
        assert!(!Latencies::Raw(vec![0.0, 0.1]).all_zero());
    }
}
