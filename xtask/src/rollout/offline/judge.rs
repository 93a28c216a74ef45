//! `cargo xtask rollout judge --baseline FILE --canary FILE`: two sample files judged with the
//! gates' own code. Exits 0 (pass), 1 (fail), 3 (inconclusive), 2 (unusable input).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use crate::rollout::{
    judge::{judge, Call, SampleFile, SideSample},
    plan::compare::{Compare, DEFAULT_MIN_SAMPLES},
};

/// Arguments of `cargo xtask rollout judge`.
#[derive(Args, Debug)]
pub struct JudgeArgs {
    /// The baseline's samples: JSON `{"latency_ms": [...], "requests": N, "errors": M}`
    #[arg(long, value_name = "FILE")]
    baseline: PathBuf,
    /// The canary's samples, in the same form
    #[arg(long, value_name = "FILE")]
    canary: PathBuf,
    /// The plan whose `compare:` thresholds apply [default: rollout/plan.yaml]
    #[arg(long, value_name = "PATH")]
    plan: Option<PathBuf>,
    /// Take the thresholds of this stage's first comparing gate (default: the plan's first)
    #[arg(long, value_name = "STAGE")]
    stage: Option<String>,
    /// Override the plan's P95 ratio
    #[arg(long, value_name = "RATIO")]
    p95_ratio: Option<f64>,
    /// Override the plan's P99 ratio
    #[arg(long, value_name = "RATIO")]
    p99_ratio: Option<f64>,
    /// Override the plan's error-rate ratio
    #[arg(long, value_name = "RATIO")]
    error_rate_ratio: Option<f64>,
    /// Override the plan's confidence
    #[arg(long, value_name = "LEVEL")]
    confidence: Option<f64>,
    /// Override the plan's minimum sample on each side
    #[arg(long, value_name = "N")]
    min_samples: Option<u64>,
    /// Print the judgement as JSON
    #[arg(long)]
    json: bool,
}

fn read(path: &Path) -> anyhow::Result<SideSample> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: SampleFile = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: not a sample file ({{\"latency_ms\": [...], \"requests\": N, \"errors\": M}})",
            path.display()
        )
    })?;
    Ok(file.into())
}

impl JudgeArgs {
    /// The thresholds: the plan's, with any flag overriding its value.
    fn compare(&self) -> anyhow::Result<Compare> {
        // Any ratio given on the command line makes a complete comparison without the plan.
        let flags_complete =
            self.p95_ratio.is_some() || self.p99_ratio.is_some() || self.error_rate_ratio.is_some();
        let from_plan = match super::load_plan(self.plan.as_deref()) {
            Ok(plan) => super::plan_compare(&plan, self.stage.as_deref())?,
            // Every ratio given: the plan is not needed, unless asked for.
            Err(_) if flags_complete && self.plan.is_none() && self.stage.is_none() => None,
            Err(error) => return Err(error),
        };
        let base = match from_plan {
            Some(compare) => compare,
            None if flags_complete => Compare {
                p95_ratio: None,
                p99_ratio: None,
                error_rate_ratio: None,
                confidence: 0.95,
                min_samples: DEFAULT_MIN_SAMPLES,
                max_shift_effect: None,
            },
            None => anyhow::bail!(
                "no gate of the plan{} has `compare:`; give --p95-ratio, --p99-ratio or \
                 --error-rate-ratio",
                self.stage
                    .as_ref()
                    .map(|s| format!("'s stage {s}"))
                    .unwrap_or_default()
            ),
        };
        // Through the plan's own checks, so a flag is held to the same rules as the YAML.
        let yaml = serde_json::json!({
            "p95_ratio": self.p95_ratio.or(base.p95_ratio),
            "p99_ratio": self.p99_ratio.or(base.p99_ratio),
            "error_rate_ratio": self.error_rate_ratio.or(base.error_rate_ratio),
            "confidence": self.confidence.unwrap_or(base.confidence),
            "min_samples": self.min_samples.unwrap_or(base.min_samples),
            "max_shift_effect": base.max_shift_effect,
        });
        serde_json::from_value(yaml).map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// Runs the command; never returns.
pub fn run(args: JudgeArgs) -> ! {
    let inputs = (|| -> anyhow::Result<_> {
        Ok((args.compare()?, read(&args.baseline)?, read(&args.canary)?))
    })();
    let (compare, baseline, canary) = match inputs {
        Ok(inputs) => inputs,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::exit(2);
        }
    };
    let judgement = judge(&canary, &baseline, &compare);
    if args.json {
        match serde_json::to_string_pretty(&judgement) {
            Ok(json) => println!("{json}"),
            Err(error) => {
                eprintln!("error: {error}");
                std::process::exit(2);
            }
        }
    } else {
        let limit = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("<= {r}"));
        println!(
            "thresholds: P95 ratio {}, P99 ratio {}, error rate ratio {}, confidence {}, at \
             least {} samples a side",
            limit(compare.p95_ratio),
            limit(compare.p99_ratio),
            limit(compare.error_rate_ratio),
            compare.confidence,
            compare.min_samples
        );
        println!("{judgement}");
    }
    std::process::exit(match judgement.verdict {
        Call::Pass => 0,
        Call::Fail => 1,
        Call::Inconclusive => 3,
    })
}
