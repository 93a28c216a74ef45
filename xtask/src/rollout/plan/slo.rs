//! The service level objectives, written once in the plan's `slos:` block and used by every gate
//! (`load_test`, `soak`, `slo_check`) unless the gate overrides a threshold.

use std::fmt;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use super::units::Percent;

/// Thresholds as written: in `slos:` (the plan's defaults) or in a gate's `thresholds:`
/// (overrides); any of them may be left out.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdSpec {
    /// Errors must stay below this share of requests.
    #[serde(default)]
    pub error_rate: Option<Percent>,
    /// Median latency must stay below this.
    #[serde(default, with = "humantime_serde")]
    pub p50: Option<Duration>,
    /// 95th percentile latency must stay below this.
    #[serde(default, with = "humantime_serde")]
    pub p95: Option<Duration>,
    /// 99th percentile latency must stay below this.
    #[serde(default, with = "humantime_serde")]
    pub p99: Option<Duration>,
    /// Each pod's memory must stay below this.
    #[serde(default)]
    pub memory_per_pod: Option<ByteSize>,
}

impl ThresholdSpec {
    /// Completes a gate's overrides with the plan's defaults, or names the required thresholds
    /// that neither sets.
    pub fn resolve(&self, defaults: &ThresholdSpec) -> Result<SloThresholds, Vec<SloMetric>> {
        let error_rate = self.error_rate.or(defaults.error_rate);
        let p50 = self.p50.or(defaults.p50);
        let p95 = self.p95.or(defaults.p95);
        let p99 = self.p99.or(defaults.p99);
        match (error_rate, p50, p95, p99) {
            (Some(error_rate), Some(p50), Some(p95), Some(p99)) => Ok(SloThresholds {
                error_rate,
                p50,
                p95,
                p99,
                memory_per_pod: self.memory_per_pod.or(defaults.memory_per_pod),
            }),
            _ => Err([
                (error_rate.is_none(), SloMetric::ErrorRate),
                (p50.is_none(), SloMetric::P50),
                (p95.is_none(), SloMetric::P95),
                (p99.is_none(), SloMetric::P99),
            ]
            .into_iter()
            .filter_map(|(missing, metric)| missing.then_some(metric))
            .collect()),
        }
    }
}

/// The thresholds a gate checks, complete: every observation must stay below each of them.
#[derive(Clone, Debug, PartialEq)]
pub struct SloThresholds {
    /// Errors must stay below this share of requests.
    pub error_rate: Percent,
    /// Median latency must stay below this.
    pub p50: Duration,
    /// 95th percentile latency must stay below this.
    pub p95: Duration,
    /// 99th percentile latency must stay below this.
    pub p99: Duration,
    /// Each pod's memory must stay below this; unchecked when the plan sets none.
    pub memory_per_pod: Option<ByteSize>,
}

impl fmt::Display for SloThresholds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "error rate < {}, P50 < {}, P95 < {}, P99 < {}",
            self.error_rate,
            humantime::format_duration(self.p50),
            humantime::format_duration(self.p95),
            humantime::format_duration(self.p99),
        )?;
        if let Some(memory) = self.memory_per_pod {
            write!(f, ", memory < {memory} per pod")?;
        }
        Ok(())
    }
}

/// A threshold every gate needs, named as the plan writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SloMetric {
    /// `error_rate`
    ErrorRate,
    /// `p50`
    P50,
    /// `p95`
    P95,
    /// `p99`
    P99,
}

impl fmt::Display for SloMetric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SloMetric::ErrorRate => "error_rate",
            SloMetric::P50 => "p50",
            SloMetric::P95 => "p95",
            SloMetric::P99 => "p99",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> ThresholdSpec {
        serde_yaml_ng::from_str(yaml).expect("valid thresholds")
    }

    #[test]
    fn a_gate_inherits_the_plan_defaults_and_may_override_them() {
        let defaults =
            spec("{error_rate: 0.1%, p50: 20ms, p95: 35ms, p99: 50ms, memory_per_pod: 4GiB}");
        let resolved = spec("{p95: 30ms}").resolve(&defaults).expect("complete");
        assert_eq!(resolved.p95, Duration::from_millis(30));
        assert_eq!(resolved.p99, Duration::from_millis(50));
        assert_eq!(resolved.memory_per_pod, Some(ByteSize::gib(4)));
    }

    #[test]
    fn names_every_threshold_neither_sets() {
        let missing = spec("{p50: 20ms}")
            .resolve(&spec("{error_rate: 0.1%}"))
            .expect_err("incomplete");
        assert_eq!(missing, vec![SloMetric::P95, SloMetric::P99]);
    }
}
