//! Go/no-go: a measurement judged against SLO thresholds. When the measurement cannot decide
//! (too little traffic, no latency data, a percentile whose histogram bucket straddles the
//! threshold), the verdict is inconclusive and nothing promotes.

use std::time::Duration;

use crate::rollout::{
    plan::slo::SloThresholds,
    targets::{
        histogram::{Against, QuantileBounds},
        Measurement,
    },
};

/// The outcome of a gate.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Every threshold held.
    Pass(String),
    /// At least one threshold was breached.
    Fail(String),
    /// Not enough data to decide.
    Inconclusive(String),
}

impl Verdict {
    /// `pass`, `fail` or `inconclusive`.
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Pass(_) => "pass",
            Verdict::Fail(_) => "fail",
            Verdict::Inconclusive(_) => "inconclusive",
        }
    }

    /// What was measured and why.
    pub fn detail(&self) -> &str {
        match self {
            Verdict::Pass(d) | Verdict::Fail(d) | Verdict::Inconclusive(d) => d,
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

/// Where the `q` quantile of `m` lies: the bounds of its histogram bucket when the measurement
/// has buckets, else exactly the reported estimate; `None` without latency data.
pub fn quantile_bounds(
    m: &Measurement,
    q: f64,
    estimate: Option<Duration>,
) -> Option<QuantileBounds> {
    m.latency
        .as_ref()
        .and_then(|h| h.quantile_bounds(q))
        .or_else(|| estimate.map(QuantileBounds::exact))
}

/// `(35.0ms, 50.0ms]`, or `> 100.0ms` for the unbounded bucket.
fn bucket(b: &QuantileBounds) -> String {
    match b.upper {
        Some(upper) => format!("({}, {}]", ms(b.lower), ms(upper)),
        None => format!("> {}", ms(b.lower)),
    }
}

/// The fewest requests a `quantile` (0.95 for P95) is judged on: `1 / (1 - quantile)`, the
/// sample in which one request in the tail is expected (P50: 2, P95: 20, P99: 100). Below it,
/// the estimate is the slowest request or two, and one slow request is no breach of a P99.
pub fn percentile_floor(quantile: f64) -> u64 {
    (1.0 / (1.0 - quantile)).round() as u64
}

/// Whether `errors` of `requests` reach the error-rate limit (`limit_percent`, e.g. 0.1 for
/// 0.1%). No requests is no breach.
pub fn error_rate_breached(requests: u64, errors: u64, limit_percent: f64) -> bool {
    requests > 0 && 100.0 * errors as f64 / requests as f64 >= limit_percent
}

/// The requests a gate waits for before it judges: its own minimum, and enough for every
/// percentile it checks.
pub fn sample_needed(min_requests: u64) -> u64 {
    min_requests.max(percentile_floor(0.99))
}

/// Judges `m` against `t`, requiring at least `min_requests` in the window. The error rate is
/// judged on any sample; a percentile only on [`percentile_floor`] requests, and a gate with a
/// percentile it could not judge is inconclusive, unless something else already failed it.
pub fn judge(m: &Measurement, t: &SloThresholds, min_requests: u64) -> Verdict {
    if m.requests < min_requests.max(1) {
        return Verdict::Inconclusive(format!(
            "only {} requests in the window; at least {} are needed to decide",
            m.requests,
            min_requests.max(1)
        ));
    }
    let (Some(p50), Some(p95), Some(p99)) = (m.p50, m.p95, m.p99) else {
        return Verdict::Inconclusive("no latency data in the window".into());
    };
    let mut unjudged = Vec::new();
    let rate = 100.0 * m.errors as f64 / m.requests as f64;
    let summary = format!(
        "{} requests, error rate {rate:.3}%, P50 {}, P95 {}, P99 {}",
        m.requests,
        ms(p50),
        ms(p95),
        ms(p99)
    );
    let mut breaches = Vec::new();
    let mut imprecise = Vec::new();
    if error_rate_breached(m.requests, m.errors, t.error_rate.value()) {
        breaches.push(format!("error rate {rate:.3}% >= {}", t.error_rate));
    }
    for (name, quantile, got, limit) in [
        ("P50", 0.50, p50, t.p50),
        ("P95", 0.95, p95, t.p95),
        ("P99", 0.99, p99, t.p99),
    ] {
        let floor = percentile_floor(quantile);
        if m.requests < floor {
            unjudged.push(format!("{name} needs {floor}"));
            continue;
        }
        let bounds = quantile_bounds(m, quantile, Some(got)).unwrap_or(QuantileBounds::exact(got));
        let exact = bounds.upper == Some(bounds.lower);
        match bounds.against(limit) {
            Against::Within => {}
            Against::Above if exact => {
                breaches.push(format!("{name} {} >= {}", ms(got), ms(limit)));
            }
            Against::Above => breaches.push(format!(
                "{name} in {} (its histogram bucket), above {}",
                bucket(&bounds),
                ms(limit)
            )),
            Against::Straddles => imprecise.push(format!(
                "{name} in {} (its histogram bucket), which straddles {}",
                bucket(&bounds),
                ms(limit)
            )),
        }
    }
    if let (Some(limit), Some(bytes)) = (t.memory_per_pod, m.memory_bytes) {
        if bytes >= limit.as_u64() {
            breaches.push(format!("memory {bytes} B >= {limit}"));
        }
    }
    if !breaches.is_empty() {
        Verdict::Fail(format!("{summary}: {}", breaches.join("; ")))
    } else if !imprecise.is_empty() {
        Verdict::Inconclusive(format!(
            "{summary}: the histogram cannot tell {}",
            imprecise.join("; ")
        ))
    } else if !unjudged.is_empty() {
        Verdict::Inconclusive(format!(
            "{summary}: too few requests to judge a percentile ({})",
            unjudged.join(", ")
        ))
    } else {
        Verdict::Pass(summary)
    }
}

/// The verdict when the measurement itself failed (the metrics system is unreachable, or
/// rejected the query): inconclusive, never a pass, whatever the thresholds.
pub fn unmeasurable(error: &anyhow::Error) -> Verdict {
    Verdict::Inconclusive(format!(
        "the metrics could not be read ({error:#}); a gate never passes without them"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        rollout::targets::{histogram::LatencyHistogram, Side},
        stack::prometheus::PrometheusApi,
    };

    fn slos() -> SloThresholds {
        SloThresholds {
            error_rate: "0.1%".parse().unwrap(),
            p50: Duration::from_millis(20),
            p95: Duration::from_millis(35),
            p99: Duration::from_millis(50),
            memory_per_pod: Some(bytesize::ByteSize::gib(4)),
        }
    }

    fn measured(requests: u64, errors: u64, p95_ms: u64) -> Measurement {
        Measurement {
            requests,
            errors,
            p50: Some(Duration::from_millis(5)),
            p95: Some(Duration::from_millis(p95_ms)),
            p99: Some(Duration::from_millis(p95_ms + 5)),
            memory_bytes: Some(200 << 20),
            latency: None,
        }
    }

    /// `requests` requests spread over the buckets `(le ms, cumulative share)`.
    fn bucketed(requests: u64, buckets: &[(f64, f64)]) -> Measurement {
        let mut pairs: Vec<(String, f64)> = buckets
            .iter()
            .map(|(le, share)| (format!("{}", le / 1000.0), share * requests as f64))
            .collect();
        pairs.push(("+Inf".into(), requests as f64));
        let mut m = measured(requests, 0, 20);
        // histogram_quantile's estimates: the upper bound of the bucket, as in the failed drill.
        m.p99 = Some(Duration::from_millis(50));
        m.latency = Some(LatencyHistogram::from_le(&pairs).unwrap());
        m
    }

    #[test]
    fn a_p99_in_the_bucket_ending_at_the_threshold_passes() {
        // The drill's failure: 100 requests, the 99th in (35, 50] ms, estimated at 50.0 ms.
        let m = bucketed(100, &[(20.0, 0.9), (35.0, 0.98), (50.0, 1.0)]);
        let v = judge(&m, &slos(), 1);
        assert_eq!(v.label(), "pass", "{}", v.detail());
    }

    #[test]
    fn a_bucket_above_the_threshold_fails_and_one_straddling_it_is_inconclusive() {
        // The 99th request in (50, 75] ms: above a 50 ms P99 whatever its exact latency.
        let m = bucketed(
            100,
            &[(20.0, 0.9), (35.0, 0.98), (50.0, 0.985), (75.0, 1.0)],
        );
        let v = judge(&m, &slos(), 1);
        assert_eq!(v.label(), "fail", "{}", v.detail());
        assert!(
            v.detail().contains("P99 in (50.0ms, 75.0ms]"),
            "{}",
            v.detail()
        );
        // A threshold inside a bucket: (35, 50] against 45 ms cannot be told.
        let mut t = slos();
        t.p99 = Duration::from_millis(45);
        let v = judge(
            &bucketed(100, &[(20.0, 0.9), (35.0, 0.98), (50.0, 1.0)]),
            &t,
            1,
        );
        assert_eq!(v.label(), "inconclusive", "{}", v.detail());
        assert!(v.detail().contains("straddles 45.0ms"), "{}", v.detail());
        // The unbounded last bucket breaches any threshold at or below its lower bound.
        let v = judge(
            &bucketed(100, &[(20.0, 0.9), (35.0, 0.98), (10_000.0, 0.98)]),
            &slos(),
            1,
        );
        assert_eq!(v.label(), "fail", "{}", v.detail());
    }

    #[test]
    fn passes_within_every_threshold() {
        assert_eq!(
            judge(&measured(10_000, 5, 20), &slos(), 100).label(),
            "pass"
        );
    }

    #[test]
    fn fails_on_error_rate_and_latency_naming_both() {
        let v = judge(&measured(1000, 10, 40), &slos(), 100);
        assert_eq!(v.label(), "fail");
        assert!(
            v.detail().contains("error rate") && v.detail().contains("P95"),
            "{}",
            v.detail()
        );
    }

    #[test]
    fn too_little_traffic_is_inconclusive_not_a_pass() {
        assert_eq!(
            judge(&measured(3, 0, 10), &slos(), 100).label(),
            "inconclusive"
        );
        assert_eq!(
            judge(&Measurement::default(), &slos(), 0).label(),
            "inconclusive"
        );
    }

    #[test]
    fn a_percentile_is_judged_only_on_a_sample_with_a_tail() {
        // 13 requests: a P95 of 44 ms is the slowest one, not 5% of them.
        let v = judge(&measured(13, 0, 44), &slos(), 1);
        assert_eq!(v.label(), "inconclusive", "{}", v.detail());
        assert!(v.detail().contains("P95 needs 20"), "{}", v.detail());
        assert!(v.detail().contains("P99 needs 100"), "{}", v.detail());
        // Errors are judged on any sample: one failed request of 13 fails the gate.
        assert_eq!(judge(&measured(13, 1, 10), &slos(), 1).label(), "fail");
        // From 100 requests on, every percentile is judged.
        assert_eq!(judge(&measured(100, 0, 44), &slos(), 1).label(), "fail");
        assert_eq!(judge(&measured(100, 0, 20), &slos(), 1).label(), "pass");
        assert_eq!(
            [0.5, 0.95, 0.99].map(percentile_floor),
            [2, 20, 100],
            "the floors"
        );
        assert_eq!(sample_needed(10), 100);
        assert_eq!(sample_needed(100_000), 100_000);
    }

    #[test]
    fn missing_latency_is_inconclusive() {
        let mut m = measured(1000, 0, 10);
        m.p95 = None;
        assert_eq!(judge(&m, &slos(), 1).label(), "inconclusive");
    }

    #[test]
    fn an_unreachable_prometheus_is_inconclusive_and_says_why() {
        // A port that was free a moment ago: nothing answers there.
        let port = crate::project::free_port().expect("free port");
        let api = PrometheusApi::new(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        let verdict = match api.measure(Side::Canary, Duration::from_secs(10)) {
            Ok(m) => panic!("nothing listens on {port}, yet it measured {m:?}"),
            Err(error) => unmeasurable(&error),
        };
        assert_eq!(verdict.label(), "inconclusive");
        assert!(
            verdict.detail().contains("cannot be reached")
                && verdict.detail().contains(&port.to_string()),
            "{}",
            verdict.detail()
        );
    }
}
