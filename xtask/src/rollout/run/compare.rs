//! A gate's comparison of the canary with the baseline: both sides sampled over the same
//! window, judged by `rollout::judge`, recorded for the report, and combined with the gate's
//! absolute verdict (the worse of the two decides).

use super::*;
use crate::rollout::{
    judge::{self, Call, Judgement},
    plan::compare::Compare,
};

/// One comparison, as the report shows it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ComparisonRecord {
    /// Index of the gate's step in its stage.
    pub step: usize,
    /// `slo_check` or `load_test`.
    pub kind: String,
    /// `pass`, `fail` or `inconclusive`.
    pub verdict: String,
    /// Why.
    pub reason: String,
    /// Each statistic, its value and threshold, and what it says.
    pub rows: Vec<judge::Row>,
}

impl Runner<'_> {
    /// The canary's and the baseline's samples over the trailing `window`.
    fn both_sides(
        &mut self,
        window: Duration,
    ) -> anyhow::Result<(judge::SideSample, judge::SideSample)> {
        let canary = self.act("sampling the canary for the comparison", |t| {
            t.side_sample(Side::Canary, window)
        })?;
        let baseline = self.act("sampling the baseline for the comparison", |t| {
            t.side_sample(Side::Stable, window)
        })?;
        Ok((canary, baseline))
    }

    /// `verdict` with the comparison `compare` asks for over `window` folded in; `verdict`
    /// unchanged when the gate compares nothing.
    pub(super) fn compared(
        &mut self,
        stage: &str,
        step: (usize, &str),
        compare: Option<&Compare>,
        window: Duration,
        verdict: Verdict,
        state: &mut RunState,
    ) -> Verdict {
        let Some(compare) = compare else {
            return verdict;
        };
        let judgement = if state.weight == 0 || state.weight == 100 {
            Judgement {
                verdict: Call::Inconclusive,
                reason: format!(
                    "at weight {}% one side takes no traffic: there is nothing to compare",
                    state.weight
                ),
                samples: (0, 0),
                rows: Vec::new(),
            }
        } else {
            // As the gate's own sample: a window short of samples widens back to the last
            // weight shift (the same split).
            let since_shift = self.at_current_split(Duration::MAX);
            let mut sides = self.both_sides(window);
            if let Ok((canary, baseline)) = &sides {
                let short = canary.latencies.len().min(baseline.latencies.len());
                if short < compare.min_samples && window < since_shift {
                    sides = self.both_sides(since_shift);
                }
            }
            match sides {
                Ok((canary, baseline)) => judge::judge(&canary, &baseline, compare),
                Err(error) => Judgement {
                    verdict: Call::Inconclusive,
                    reason: format!("the samples could not be read ({error:#})"),
                    samples: (0, 0),
                    rows: Vec::new(),
                },
            }
        };
        state.stage(stage).comparisons.push(ComparisonRecord {
            step: step.0,
            kind: step.1.to_string(),
            verdict: judgement.verdict.label().to_string(),
            reason: judgement.reason.clone(),
            rows: judgement.rows.clone(),
        });
        let detail = format!("{}; {}", verdict.detail(), judgement.summary());
        match (&verdict, judgement.verdict) {
            (Verdict::Fail(_), _) | (_, Call::Fail) => Verdict::Fail(detail),
            (Verdict::Inconclusive(_), _) | (_, Call::Inconclusive) => {
                Verdict::Inconclusive(detail)
            }
            (Verdict::Pass(_), Call::Pass) => Verdict::Pass(detail),
        }
    }
}

/// The report's table of comparisons, beside the gates' (nothing when no gate compared).
pub fn write_table(md: &mut String, state: &RunState) -> std::fmt::Result {
    use std::fmt::Write as _;
    if state.stages.values().all(|r| r.comparisons.is_empty()) {
        return Ok(());
    }
    writeln!(md, "\n## Canary vs baseline\n")?;
    writeln!(
        md,
        "| stage | step | gate | statistic | canary vs baseline | threshold | call |\n|---|---|---|---|---|---|---|"
    )?;
    for (id, record) in &state.stages {
        for c in &record.comparisons {
            if c.rows.is_empty() {
                writeln!(
                    md,
                    "| {id} | {} | {} | - | {} | - | {} |",
                    c.step,
                    c.kind,
                    c.reason.replace('|', "/"),
                    c.verdict
                )?;
            }
            for r in &c.rows {
                writeln!(
                    md,
                    "| {id} | {} | {} | {} | {} | {} | {} |",
                    c.step,
                    c.kind,
                    r.statistic,
                    r.value.replace('|', "/"),
                    r.threshold,
                    r.call
                )?;
            }
            writeln!(
                md,
                "| {id} | {} | {} | **verdict** | {} | | **{}** |",
                c.step,
                c.kind,
                c.reason.replace('|', "/"),
                c.verdict
            )?;
        }
    }
    Ok(())
}
