//! What a soak's samples add up to: resident-memory growth after warm-up and the stability of
//! P95 latency from one interval to the next.

use anyhow::bail;
use serde::{Deserialize, Serialize};

/// One interval of load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the load started, at the end of the interval.
    pub at_s: f64,
    /// Resident memory (VmRSS) at the end of the interval, MB.
    pub rss_mb: f64,
    /// Requests answered in the interval.
    pub requests: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Successful requests per second.
    pub achieved_rps: f64,
    /// Latency percentiles of the interval, ms.
    pub p50_ms: f64,
    /// As `p50_ms`.
    pub p95_ms: f64,
    /// As `p50_ms`.
    pub p99_ms: f64,
}

/// The soak's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoakSummary {
    /// Samples after warm-up.
    pub measured_samples: usize,
    /// RSS at the end of warm-up (the first measured sample), MB.
    pub rss_start_mb: f64,
    /// RSS at the end, MB.
    pub rss_end_mb: f64,
    /// Highest RSS after warm-up, MB.
    pub rss_peak_mb: f64,
    /// Growth from the end of warm-up to the end, percent.
    pub rss_growth_pct: f64,
    /// Whether the growth is under the target.
    pub rss_within_target: bool,
    /// Median of the intervals' P95 after warm-up, ms.
    pub p95_median_ms: f64,
    /// Lowest and highest interval P95 after warm-up, ms.
    pub p95_min_ms: f64,
    /// As `p95_min_ms`.
    pub p95_max_ms: f64,
    /// P95 of the last quarter of the measured intervals over that of the first quarter: a
    /// drift shows as a ratio away from 1.
    pub p95_drift_ratio: f64,
    /// Failed requests over the whole soak, warm-up included.
    pub errors: u64,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Judges `samples`: those ending after `warmup_s` are measured (at least two are needed).
pub fn analyze(
    samples: &[Sample],
    warmup_s: f64,
    max_growth_pct: f64,
) -> anyhow::Result<SoakSummary> {
    let measured: Vec<&Sample> = samples.iter().filter(|s| s.at_s > warmup_s).collect();
    if measured.len() < 2 {
        bail!(
            "{} samples after the {warmup_s:.0}s warm-up; at least 2 are needed (a longer \
             --duration or a shorter --interval)",
            measured.len()
        );
    }
    if let Some(bad) = samples
        .iter()
        .find(|s| s.rss_mb.is_nan() || s.rss_mb <= 0.0 || !s.p95_ms.is_finite())
    {
        bail!(
            "a sample at {:.0}s has no memory or latency figure: {bad:?}",
            bad.at_s
        );
    }
    let start = measured[0].rss_mb;
    let end = measured[measured.len() - 1].rss_mb;
    let growth = 100.0 * (end - start) / start;
    let mut p95: Vec<f64> = measured.iter().map(|s| s.p95_ms).collect();
    let quarter = (measured.len() / 4).max(1);
    let mut first: Vec<f64> = p95[..quarter].to_vec();
    let mut last: Vec<f64> = p95[p95.len() - quarter..].to_vec();
    let drift = median(&mut last) / median(&mut first).max(f64::MIN_POSITIVE);
    Ok(SoakSummary {
        measured_samples: measured.len(),
        rss_start_mb: start,
        rss_end_mb: end,
        rss_peak_mb: measured.iter().map(|s| s.rss_mb).fold(f64::MIN, f64::max),
        rss_growth_pct: growth,
        rss_within_target: growth < max_growth_pct,
        p95_min_ms: p95.iter().copied().fold(f64::MAX, f64::min),
        p95_max_ms: p95.iter().copied().fold(f64::MIN, f64::max),
        p95_median_ms: median(&mut p95),
        p95_drift_ratio: drift,
        errors: samples.iter().map(|s| s.errors).sum(),
    })
}

/// One line of the live output.
pub fn row(s: &Sample) -> String {
    format!(
        "| {:>7.0} | {:>8.1} | {:>8} | {:>6} | {:>7.1} | {:>7.1} | {:>7.1} | {:>7.1} |",
        s.at_s, s.rss_mb, s.requests, s.errors, s.achieved_rps, s.p50_ms, s.p95_ms, s.p99_ms
    )
}

/// The Markdown table of every sample and the summary under it.
pub fn table(samples: &[Sample], summary: &SoakSummary) -> String {
    let mut out = String::from(
        "|     t s |   RSS MB | requests | errors |   req/s | P50 ms | P95 ms | P99 ms |\n\
         |--------:|---------:|---------:|-------:|--------:|-------:|-------:|-------:|\n",
    );
    for s in samples {
        out.push_str(&row(s));
        out.push('\n');
    }
    out.push_str(&format!(
        "\nRSS after warm-up: {:.1} MB -> {:.1} MB ({:+.2}%, peak {:.1} MB): {}\n\
         P95 after warm-up: median {:.1} ms, range {:.1}-{:.1} ms, last/first quarter {:.2}\n\
         failed requests: {}\n",
        summary.rss_start_mb,
        summary.rss_end_mb,
        summary.rss_growth_pct,
        summary.rss_peak_mb,
        if summary.rss_within_target {
            "within target"
        } else {
            "OVER TARGET"
        },
        summary.p95_median_ms,
        summary.p95_min_ms,
        summary.p95_max_ms,
        summary.p95_drift_ratio,
        summary.errors
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_s: f64, rss_mb: f64, p95_ms: f64) -> Sample {
        Sample {
            at_s,
            rss_mb,
            requests: 400,
            errors: 0,
            achieved_rps: 40.0,
            p50_ms: p95_ms / 2.0,
            p95_ms,
            p99_ms: p95_ms * 1.5,
        }
    }

    #[test]
    fn growth_is_measured_from_the_end_of_warm_up() {
        // The warm-up's growth (100 -> 200 MB: caches filling) does not count.
        let samples = [
            sample(10.0, 100.0, 30.0),
            sample(20.0, 200.0, 12.0),
            sample(30.0, 202.0, 10.0),
            sample(40.0, 204.0, 11.0),
            sample(50.0, 206.0, 10.0),
        ];
        let s = analyze(&samples, 15.0, 5.0).unwrap();
        assert_eq!(s.measured_samples, 4);
        assert_eq!(
            (s.rss_start_mb, s.rss_end_mb, s.rss_peak_mb),
            (200.0, 206.0, 206.0)
        );
        assert!((s.rss_growth_pct - 3.0).abs() < 1e-9);
        assert!(s.rss_within_target);
        assert_eq!((s.p95_min_ms, s.p95_max_ms), (10.0, 12.0));
        assert_eq!(s.p95_median_ms, 10.5);
        assert!((s.p95_drift_ratio - 10.0 / 12.0).abs() < 1e-9);
    }

    #[test]
    fn a_leak_is_over_target_and_a_drift_shows_in_the_ratio() {
        let samples: Vec<_> = (1..=8)
            .map(|i| {
                sample(
                    f64::from(i) * 10.0,
                    100.0 + 2.0 * f64::from(i),
                    10.0 * f64::from(i),
                )
            })
            .collect();
        let s = analyze(&samples, 5.0, 5.0).unwrap();
        assert!(!s.rss_within_target && s.rss_growth_pct > 13.0, "{s:?}");
        assert!(s.p95_drift_ratio > 3.0, "{s:?}");
        assert!(table(&samples, &s).contains("OVER TARGET"));
    }

    #[test]
    fn too_few_samples_or_missing_figures_are_errors() {
        let err = analyze(&[sample(10.0, 100.0, 5.0)], 5.0, 5.0).unwrap_err();
        assert!(err.to_string().contains("at least 2"), "{err}");
        let err = analyze(
            &[sample(10.0, 100.0, 5.0), sample(20.0, 0.0, 5.0)],
            5.0,
            5.0,
        )
        .unwrap_err();
        assert!(err.to_string().contains("no memory or latency"), "{err}");
    }
}
