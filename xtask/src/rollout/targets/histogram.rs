//! A latency histogram as a metrics system reports it (cumulative counts per bucket upper
//! bound), and what it can say about a quantile: not a number, but the bounds of the bucket
//! that holds it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Requests per latency bucket over a window: `(upper bound in seconds, requests at or below
/// it)`, ascending, finite bounds only; `total` counts every request (the `+Inf` bucket).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyHistogram {
    /// Cumulative counts by finite upper bound, ascending.
    pub buckets: Vec<(f64, f64)>,
    /// All requests, the slowest bucket's included.
    pub total: f64,
}

/// Where a quantile lies: above `lower`, at most `upper` (`None`: the unbounded last bucket).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantileBounds {
    /// The quantile is above this.
    pub lower: Duration,
    /// The quantile is at or below this; `None` when it lies in the `+Inf` bucket.
    pub upper: Option<Duration>,
}

impl LatencyHistogram {
    /// A histogram from `(le, cumulative count)` pairs in any order, `le` as Prometheus writes
    /// it (`0.05`, `+Inf`). Bounds that do not parse are an error naming them.
    pub fn from_le(pairs: &[(String, f64)]) -> Result<Self, String> {
        let mut buckets = Vec::new();
        let mut total = None;
        for (le, count) in pairs {
            if le.eq_ignore_ascii_case("+inf") {
                total = Some(*count);
            } else {
                let bound: f64 = le
                    .parse()
                    .map_err(|_| format!("bucket bound `le=\"{le}\"` is not a number"))?;
                buckets.push((bound, *count));
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = total.or_else(|| buckets.last().map(|b| b.1)).unwrap_or(0.0);
        Ok(Self { buckets, total })
    }

    /// The bounds of the bucket that holds the `q` quantile (the bucket in which the rank
    /// `q × total` falls, as `histogram_quantile` finds it); `None` when the histogram is empty.
    pub fn quantile_bounds(&self, q: f64) -> Option<QuantileBounds> {
        if self.total <= 0.0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * self.total;
        let mut lower = 0.0;
        for &(bound, count) in &self.buckets {
            if count >= rank && count > 0.0 {
                return Some(QuantileBounds {
                    lower: Duration::from_secs_f64(lower),
                    upper: Some(Duration::from_secs_f64(bound)),
                });
            }
            lower = bound;
        }
        Some(QuantileBounds {
            lower: Duration::from_secs_f64(lower),
            upper: None,
        })
    }
}

/// What bounds say about a quantile against a limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Against {
    /// At most the limit: the whole bucket is at or below it.
    Within,
    /// Above the limit: the whole bucket is above it.
    Above,
    /// The bucket straddles the limit: the histogram cannot tell.
    Straddles,
}

impl QuantileBounds {
    /// Exactly `value`, for a measurement that reports no buckets (a point estimate).
    pub fn exact(value: Duration) -> Self {
        Self {
            lower: value,
            upper: Some(value),
        }
    }

    /// The quantile against `limit`: above it only when the bucket's lower bound is at or
    /// above the limit (every latency in the bucket exceeds it; for a point estimate, at or
    /// above), within it only when the upper bound is at or below it.
    pub fn against(&self, limit: Duration) -> Against {
        if self.upper == Some(self.lower) {
            // A point estimate: the old rule, a value at the limit breaches it.
            return if self.lower >= limit {
                Against::Above
            } else {
                Against::Within
            };
        }
        if self.lower >= limit {
            Against::Above
        } else if self.upper.is_some_and(|upper| upper <= limit) {
            Against::Within
        } else {
            Against::Straddles
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// 100 requests: 90 at or below 20 ms, 8 in (20, 35], 1 in (35, 50], 1 slower than 100 ms.
    fn histogram() -> LatencyHistogram {
        let pairs: Vec<(String, f64)> = [
            ("0.01", 40.0),
            ("0.02", 90.0),
            ("0.035", 98.0),
            ("0.05", 99.0),
            ("0.1", 99.0),
            ("+Inf", 100.0),
        ]
        .iter()
        .map(|(le, n)| (le.to_string(), *n))
        .collect();
        LatencyHistogram::from_le(&pairs).unwrap()
    }

    #[test]
    fn a_quantile_is_the_bucket_its_rank_falls_in() {
        let h = histogram();
        assert_eq!(h.total, 100.0);
        let p50 = h.quantile_bounds(0.5).unwrap();
        assert_eq!((p50.lower, p50.upper), (ms(10), Some(ms(20))));
        let p95 = h.quantile_bounds(0.95).unwrap();
        assert_eq!((p95.lower, p95.upper), (ms(20), Some(ms(35))));
        let p99 = h.quantile_bounds(0.99).unwrap();
        assert_eq!((p99.lower, p99.upper), (ms(35), Some(ms(50))));
        let max = h.quantile_bounds(1.0).unwrap();
        assert_eq!((max.lower, max.upper), (ms(100), None));
        assert_eq!(LatencyHistogram::default().quantile_bounds(0.5), None);
    }

    #[test]
    fn only_a_lower_bound_at_or_above_the_limit_breaches_and_only_an_upper_bound_within_passes() {
        let p99 = histogram().quantile_bounds(0.99).unwrap();
        // In (35, 50]: within a 50 ms limit, though histogram_quantile would say 50.0 ms.
        assert_eq!(p99.against(ms(50)), Against::Within);
        // Above a 35 ms limit: every latency in the bucket exceeds it.
        assert_eq!(p99.against(ms(35)), Against::Above);
        // Against 40 ms the bucket cannot tell.
        assert_eq!(p99.against(ms(40)), Against::Straddles);
        // The unbounded bucket is never within a limit above its lower bound.
        let max = histogram().quantile_bounds(1.0).unwrap();
        assert_eq!(max.against(ms(200)), Against::Straddles);
        assert_eq!(max.against(ms(100)), Against::Above);
    }

    #[test]
    fn a_point_estimate_keeps_the_old_rule() {
        assert_eq!(
            QuantileBounds::exact(ms(50)).against(ms(50)),
            Against::Above
        );
        assert_eq!(
            QuantileBounds::exact(ms(49)).against(ms(50)),
            Against::Within
        );
    }

    #[test]
    fn a_bad_bound_is_an_error_naming_it() {
        let error = LatencyHistogram::from_le(&[("fast".into(), 1.0)]).unwrap_err();
        assert!(error.contains("fast"), "{error}");
    }
}
