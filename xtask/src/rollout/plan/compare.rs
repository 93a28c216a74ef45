//! A gate's comparison of the canary with the baseline over the same window (`compare:` on
//! `slo_check` and `load_test`), beside the absolute SLOs. The statistics are `rollout::judge`.

use std::fmt;

use serde::Deserialize;

/// How much worse than the baseline the canary may be, and how sure the judge must be. Each
/// ratio is optional (at least one is set); a P99 ratio needs about 440 latencies a side before
/// it can pass at 95% confidence, which a rehearsal compressed to minutes may not have.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, try_from = "CompareSpec")]
pub struct Compare {
    /// The canary's P95 may be at most this multiple of the baseline's.
    pub p95_ratio: Option<f64>,
    /// The canary's P99 may be at most this multiple of the baseline's.
    pub p99_ratio: Option<f64>,
    /// The canary's error rate may be at most this multiple of the baseline's.
    pub error_rate_ratio: Option<f64>,
    /// Confidence of every interval and test, e.g. 0.95.
    pub confidence: f64,
    /// Fewest latencies on each side the judge decides on.
    pub min_samples: u64,
    /// When set, a significant shift whose effect size (the chance that a canary request is
    /// slower than a baseline one) exceeds this fails the comparison; otherwise the rank test
    /// is reported only.
    pub max_shift_effect: Option<f64>,
}

impl fmt::Display for Compare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, ratio) in [
            ("P95", self.p95_ratio),
            ("P99", self.p99_ratio),
            ("error rate", self.error_rate_ratio),
        ] {
            if let Some(ratio) = ratio {
                write!(f, "{name} <= {ratio}x, ")?;
            }
        }
        if let Some(effect) = self.max_shift_effect {
            write!(f, "shift effect <= {effect}, ")?;
        }
        write!(
            f,
            "at {}% confidence on at least {} samples a side",
            self.confidence * 100.0,
            self.min_samples
        )
    }
}

/// The default of `min_samples`: enough for the rank test's normal approximation and a P95
/// interval bounded on both sides.
pub const DEFAULT_MIN_SAMPLES: u64 = 100;

/// `compare:` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompareSpec {
    #[serde(default)]
    p95_ratio: Option<f64>,
    #[serde(default)]
    p99_ratio: Option<f64>,
    #[serde(default)]
    error_rate_ratio: Option<f64>,
    #[serde(default = "default_confidence")]
    confidence: f64,
    #[serde(default)]
    min_samples: Option<u64>,
    #[serde(default)]
    max_shift_effect: Option<f64>,
}

fn default_confidence() -> f64 {
    0.95
}

impl TryFrom<CompareSpec> for Compare {
    type Error = String;

    fn try_from(spec: CompareSpec) -> Result<Self, String> {
        let ratios = [
            ("p95_ratio", spec.p95_ratio),
            ("p99_ratio", spec.p99_ratio),
            ("error_rate_ratio", spec.error_rate_ratio),
        ];
        if ratios.iter().all(|(_, r)| r.is_none()) {
            return Err(
                "compare needs at least one of p95_ratio, p99_ratio, error_rate_ratio".into(),
            );
        }
        for (name, ratio) in ratios {
            let Some(ratio) = ratio else { continue };
            if !ratio.is_finite() || ratio < 1.0 {
                return Err(format!(
                    "compare.{name} is {ratio}; it must be a finite ratio of at least 1 (below 1 \
                     a canary equal to the baseline would fail)"
                ));
            }
        }
        if !(spec.confidence > 0.5 && spec.confidence < 1.0) {
            return Err(format!(
                "compare.confidence is {}; it must lie strictly between 0.5 and 1",
                spec.confidence
            ));
        }
        if let Some(effect) = spec.max_shift_effect {
            if !(0.5..1.0).contains(&effect) {
                return Err(format!(
                    "compare.max_shift_effect is {effect}; it must lie in [0.5, 1) (0.5 is no \
                     shift)"
                ));
            }
        }
        let min_samples = spec.min_samples.unwrap_or(DEFAULT_MIN_SAMPLES);
        if min_samples < 2 {
            return Err("compare.min_samples must be at least 2".into());
        }
        Ok(Self {
            p95_ratio: spec.p95_ratio,
            p99_ratio: spec.p99_ratio,
            error_rate_ratio: spec.error_rate_ratio,
            confidence: spec.confidence,
            min_samples,
            max_shift_effect: spec.max_shift_effect,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Compare, String> {
        serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_overrides() {
        let c = parse("{p95_ratio: 1.2, p99_ratio: 1.3, error_rate_ratio: 2}").expect("valid");
        assert_eq!((c.confidence, c.min_samples), (0.95, DEFAULT_MIN_SAMPLES));
        let c = parse(
            "{p95_ratio: 1.2, p99_ratio: 1.3, error_rate_ratio: 2, confidence: 0.99, \
             min_samples: 500, max_shift_effect: 0.71}",
        )
        .expect("valid");
        assert_eq!(c.min_samples, 500);
        assert_eq!(c.max_shift_effect, Some(0.71));
        let c = parse("{p95_ratio: 1.5}").expect("one ratio is enough");
        assert_eq!((c.p99_ratio, c.error_rate_ratio), (None, None));
    }

    #[test]
    fn nonsense_is_refused_with_the_key() {
        for (yaml, key) in [
            (
                "{p95_ratio: 0.9, p99_ratio: 1.3, error_rate_ratio: 2}",
                "p95_ratio",
            ),
            (
                "{p95_ratio: 1.2, p99_ratio: .nan, error_rate_ratio: 2}",
                "p99_ratio",
            ),
            (
                "{p95_ratio: 1.2, p99_ratio: 1.3, error_rate_ratio: 2, confidence: 1}",
                "confidence",
            ),
            (
                "{p95_ratio: 1.2, p99_ratio: 1.3, error_rate_ratio: 2, min_samples: 1}",
                "min_samples",
            ),
            ("{confidence: 0.9}", "at least one of"),
            (
                "{p95_ratio: 1.2, p99_ratio: 1.3, error_rate_ratio: 2, p50_ratio: 1}",
                "p50_ratio",
            ),
        ] {
            let error = parse(yaml).expect_err(yaml);
            assert!(error.contains(key), "{yaml}: {error}");
        }
    }
}
