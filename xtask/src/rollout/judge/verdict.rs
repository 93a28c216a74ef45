//! The verdict of one comparison: each statistic beside its threshold, and the worst of them.

use std::fmt;

use super::{
    errors::rate_ratio_test,
    quantile::{bracketing_ranks, quantile_ratio},
    rank::mann_whitney,
    sample::{shared_classes, SideSample},
    JudgeError,
};
use crate::rollout::plan::compare::Compare;

/// What one statistic, or the whole comparison, says.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Call {
    /// Within the threshold, with the confidence asked for.
    Pass,
    /// The data cannot tell.
    Inconclusive,
    /// Beyond the threshold, with the confidence asked for.
    Fail,
}

impl Call {
    /// `pass`, `fail` or `inconclusive`.
    pub fn label(self) -> &'static str {
        match self {
            Call::Pass => "pass",
            Call::Fail => "fail",
            Call::Inconclusive => "inconclusive",
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// One statistic beside its threshold.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Row {
    /// What was computed, e.g. `P95 ratio`.
    pub statistic: String,
    /// Its value, with its interval or p-value.
    pub value: String,
    /// What it is held to (`-` when only reported).
    pub threshold: String,
    /// What it says.
    pub call: Call,
}

/// The outcome of a comparison.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Judgement {
    /// The worst call of any row, or inconclusive when the samples cannot be judged.
    pub verdict: Call,
    /// Why, in one line.
    pub reason: String,
    /// Latencies on each side: (canary, baseline).
    pub samples: (u64, u64),
    /// Every statistic.
    pub rows: Vec<Row>,
}

impl Judgement {
    fn inconclusive(reason: String, samples: (u64, u64)) -> Self {
        Self {
            verdict: Call::Inconclusive,
            reason,
            samples,
            rows: Vec::new(),
        }
    }

    /// One line for a gate's detail: the verdict's reason and every row.
    pub fn summary(&self) -> String {
        let rows: Vec<String> = self
            .rows
            .iter()
            .map(|r| format!("{} {} ({} {})", r.statistic, r.value, r.call, r.threshold))
            .collect();
        if rows.is_empty() {
            format!("vs baseline: {}", self.reason)
        } else {
            format!("vs baseline: {}; {}", self.reason, rows.join("; "))
        }
    }
}

impl fmt::Display for Judgement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "samples: canary {}, baseline {}",
            self.samples.0, self.samples.1
        )?;
        if !self.rows.is_empty() {
            writeln!(
                f,
                "{:<22} {:<44} {:<18} call",
                "statistic", "value", "threshold"
            )?;
            for r in &self.rows {
                writeln!(
                    f,
                    "{:<22} {:<44} {:<18} {}",
                    r.statistic, r.value, r.threshold, r.call
                )?;
            }
        }
        writeln!(f, "reason: {}", self.reason)?;
        write!(f, "verdict: {}", self.verdict)
    }
}

fn check(side: &str, s: &SideSample) -> Result<(), String> {
    s.latencies.check().map_err(|e| format!("{side}: {e}"))?;
    if s.errors > s.requests {
        return Err(format!(
            "{side}: {}",
            JudgeError::ErrorsExceedRequests {
                errors: s.errors,
                requests: s.requests
            }
        ));
    }
    Ok(())
}

fn ratio(x: f64) -> String {
    if x.is_infinite() {
        "inf".into()
    } else {
        format!("{x:.3}")
    }
}

/// The fewest observations whose `q` quantile has an upper bound at `confidence`.
fn needed_for_upper_bound(q: f64, confidence: f64) -> u64 {
    let tail = (1.0 - confidence) / 2.0;
    (tail.ln() / q.ln()).ceil() as u64
}

/// Judges `canary` against `baseline` under `compare`.
pub fn judge(canary: &SideSample, baseline: &SideSample, compare: &Compare) -> Judgement {
    let samples = (canary.latencies.len(), baseline.latencies.len());
    if let Err(reason) = check("canary", canary).and_then(|()| check("baseline", baseline)) {
        return Judgement::inconclusive(reason, samples);
    }
    if baseline.requests == 0 || baseline.latencies.is_empty() {
        return Judgement::inconclusive(
            "the baseline is empty: nothing to compare the canary with".into(),
            samples,
        );
    }
    if baseline.latencies.all_zero() {
        return Judgement::inconclusive(
            "every baseline latency is zero: the baseline measured nothing real".into(),
            samples,
        );
    }
    if canary.latencies.is_empty() {
        return Judgement::inconclusive("the canary has no latencies".into(), samples);
    }
    if samples.0 < compare.min_samples || samples.1 < compare.min_samples {
        return Judgement::inconclusive(
            format!(
                "{} canary and {} baseline latencies; at least {} on each side are needed",
                samples.0, samples.1, compare.min_samples
            ),
            samples,
        );
    }
    let alpha = 1.0 - compare.confidence;
    let mut rows = Vec::new();

    match shared_classes(&canary.latencies, &baseline.latencies)
        .map(|classes| mann_whitney(&classes))
    {
        Ok(Some(test)) => {
            let shifted = test.p_value < alpha;
            let (threshold, call) = match compare.max_shift_effect {
                Some(limit) => (
                    format!("A <= {limit} or p >= {alpha:.3}"),
                    if shifted && test.effect > limit {
                        Call::Fail
                    } else {
                        Call::Pass
                    },
                ),
                None => ("- (reported)".into(), Call::Pass),
            };
            rows.push(Row {
                statistic: "rank shift (M-W U)".into(),
                value: format!(
                    "U {:.1}, p {:.4}, A {:.3}, r {:+.3}",
                    test.u,
                    test.p_value,
                    test.effect,
                    test.rank_biserial()
                ),
                threshold,
                call,
            });
        }
        Ok(None) => {}
        Err(error) => rows.push(Row {
            statistic: "rank shift (M-W U)".into(),
            value: error.to_string(),
            threshold: "-".into(),
            call: Call::Inconclusive,
        }),
    }

    for (name, q, limit) in [
        ("P95", 0.95, compare.p95_ratio),
        ("P99", 0.99, compare.p99_ratio),
    ] {
        let Some(limit) = limit else { continue };
        let Some(r) = quantile_ratio(
            &canary.latencies,
            &baseline.latencies,
            q,
            compare.confidence,
        ) else {
            continue;
        };
        let call = if r.interval.low > limit {
            Call::Fail
        } else if r.interval.high <= limit {
            Call::Pass
        } else {
            Call::Inconclusive
        };
        let mut value = format!(
            "{} ({:.1}/{:.1} ms), {:.0}% CI [{}, {}]",
            ratio(r.ratio),
            r.canary,
            r.baseline,
            compare.confidence * 100.0,
            ratio(r.interval.low),
            ratio(r.interval.high)
        );
        let each = compare.confidence.sqrt();
        if r.interval.high.is_infinite() {
            let (_, u) = bracketing_ranks(samples.0.min(samples.1), q, each);
            if u > samples.0.min(samples.1) {
                value.push_str(&format!(
                    "; bounded from {} samples a side",
                    needed_for_upper_bound(q, each)
                ));
            }
        }
        rows.push(Row {
            statistic: format!("{name} ratio"),
            value,
            threshold: format!("<= {limit}"),
            call,
        });
    }

    let allowed = compare.error_rate_ratio;
    if let Some((allowed, test)) = allowed.and_then(|allowed| {
        rate_ratio_test(
            canary.errors,
            canary.requests,
            baseline.errors,
            baseline.requests,
            allowed,
        )
        .map(|test| (allowed, test))
    }) {
        rows.push(Row {
            statistic: "error rate ratio".into(),
            value: format!(
                "{} ({}/{} vs {}/{}), p {:.4}",
                ratio(test.ratio),
                canary.errors,
                canary.requests,
                baseline.errors,
                baseline.requests,
                test.p_value
            ),
            threshold: format!("<= {allowed} (p >= {alpha:.3})"),
            call: if test.p_value < alpha {
                Call::Fail
            } else {
                Call::Pass
            },
        });
    } else if let Some(allowed) = allowed {
        rows.push(Row {
            statistic: "error rate ratio".into(),
            value: "the canary answered no requests".into(),
            threshold: format!("<= {allowed}"),
            call: Call::Inconclusive,
        });
    }

    let verdict = rows
        .iter()
        .map(|r| r.call)
        .max()
        .unwrap_or(Call::Inconclusive);
    let named = |call: Call| -> Vec<&str> {
        rows.iter()
            .filter(|r| r.call == call)
            .map(|r| r.statistic.as_str())
            .collect()
    };
    let reason = match verdict {
        Call::Pass => format!(
            "every statistic within its threshold at {:.0}% confidence",
            compare.confidence * 100.0
        ),
        Call::Fail => format!(
            "the canary is worse than the baseline allows: {}",
            named(Call::Fail).join(", ")
        ),
        Call::Inconclusive => format!(
            "the samples cannot tell whether the canary is within its thresholds: {}",
            named(Call::Inconclusive).join(", ")
        ),
    };
    Judgement {
        verdict,
        reason,
        samples,
        rows,
    }
}
