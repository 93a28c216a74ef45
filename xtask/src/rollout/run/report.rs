//! The run report (`report.md` and `report.json`, and `report.html`: see `rollout::html`): per stage the configured and observed traffic
//! share, requests, failures, latency, gate verdicts and approvals, and for a rollback the time
//! from fault to detection and to 100% on stable.

use std::{fmt::Write as _, path::Path};

use super::state::{RunState, RunStatus};
use crate::rollout::plan::Plan;

fn ms(d: Option<std::time::Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1}", d.as_secs_f64() * 1000.0))
}

/// Canary share of the requests the traffic generator saw answered, in percent.
pub fn observed_share(canary: u64, stable: u64) -> Option<f64> {
    let total = canary + stable;
    (total > 0).then(|| 100.0 * canary as f64 / total as f64)
}

/// Writes `report.md` and `report.json` into `dir`.
pub fn write(dir: &Path, plan: &Plan, state: &RunState) -> anyhow::Result<()> {
    std::fs::write(
        dir.join("report.json"),
        serde_json::to_string_pretty(state)? + "\n",
    )?;
    let mut md = String::new();
    writeln!(
        md,
        "# Rollout report: `{}` on target `{}`\n",
        state.plan, state.target
    )?;
    let status = match &state.status {
        RunStatus::Completed => "completed".to_string(),
        RunStatus::Running => "running".to_string(),
        RunStatus::Paused { reason } => format!("paused: {reason}"),
        RunStatus::RolledBack { reason } => format!("rolled back: {reason}"),
    };
    writeln!(
        md,
        "Status: **{status}**. Time scale {}. Canary weight now {}%.\n",
        state.time_scale, state.weight
    )?;
    writeln!(md, "| stage | configured weight | observed canary share | requests | failed | retried | P50 ms | P95 ms | P99 ms | approval | seconds |")?;
    writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|")?;
    for stage in plan.stages() {
        let Some(record) = state.stages.get(&stage.id) else {
            writeln!(
                md,
                "| {} | {}% | - | - | - | - | - | - | - | - | not run |",
                stage.id,
                stage.exit_weight.percent()
            )?;
            continue;
        };
        let t = &record.traffic;
        let split = record.after_shift.as_ref().unwrap_or(t);
        let share =
            observed_share(split.canary, split.stable).map_or("-".into(), |s| format!("{s:.1}%"));
        let approval = state.approvals.get(&stage.id).map_or_else(
            || {
                if stage.environment.is_some() {
                    "missing".into()
                } else {
                    "not needed".into()
                }
            },
            |a| format!("{} ({})", a.actor, a.via),
        );
        writeln!(
            md,
            "| {} | {}% | {share} | {} | {} | {} | {} | {} | {} | {approval} | {:.1} |",
            stage.id,
            stage.exit_weight.percent(),
            t.sent,
            t.failed,
            t.retried,
            ms(t.p50),
            ms(t.p95),
            ms(t.p99),
            record.seconds
        )?;
    }
    writeln!(md, "\n## Gates\n")?;
    writeln!(
        md,
        "| stage | step | gate | verdict | detail |\n|---|---|---|---|---|"
    )?;
    for (id, record) in &state.stages {
        for g in &record.gates {
            writeln!(
                md,
                "| {id} | {} | {} | {} | {} |",
                g.step,
                g.kind,
                g.verdict,
                g.detail.replace('|', "/")
            )?;
        }
    }
    super::compare::write_table(&mut md, state)?;
    if let Some(r) = &state.rollback {
        writeln!(md, "\n## Rollback\n")?;
        writeln!(md, "- stage: {}\n- reason: {}", r.stage, r.reason)?;
        if let Some(d) = r.detection_seconds {
            writeln!(md, "- fault to detection: {d:.1} s")?;
        }
        writeln!(md, "- fault to 100% on stable: {:.1} s", r.recovery_seconds)?;
        writeln!(md, "- failed requests in the stage: {}", r.failed_requests)?;
    }
    std::fs::write(dir.join("report.md"), md)?;
    // The charts are worth less than a run that stops its target: a timeline that cannot be
    // drawn is said, not raised.
    if let Err(error) = crate::rollout::html::write_run(dir, plan, state) {
        eprintln!("rollout: report.html not written: {error:#}");
    }
    Ok(())
}
