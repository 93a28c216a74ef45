//! The persisted state of a run (`state.json`): what finished, what the split is, who approved
//! what. Written atomically after every step so that `resume` continues where a run stopped.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::rollout::targets::TrafficStats;

/// Version of the file format.
pub const FORMAT: u32 = 1;

/// Where a run stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RunStatus {
    /// Steps are executing (or the process running them was killed).
    Running,
    /// Stopped on purpose; `resume` continues once the reason is dealt with.
    Paused {
        /// Why (an approval is missing, a gate was inconclusive, ...).
        reason: String,
    },
    /// A gate failed or a trigger fired: all traffic went back to the stable side.
    RolledBack {
        /// Why.
        reason: String,
    },
    /// Every stage finished.
    Completed,
}

/// An approval of a stage's environment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// Who approved.
    pub actor: String,
    /// How (`--approve`, `approve` command, a GitHub review, prompt, drill).
    pub via: String,
    /// When (RFC 3339).
    pub time: String,
    /// What the approver said (`approve --comment`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Each review GitHub recorded, when the approval came from GitHub.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reviews: Vec<crate::github::approvals::Review>,
}

/// The verdict of one gate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GateRecord {
    /// Index of the step in its stage.
    pub step: usize,
    /// `load_test`, `slo_check`, `soak`, `parity`; or `notify`, a message's delivery.
    pub kind: String,
    /// `pass`, `fail` or `inconclusive`; for `notify`, `delivered`, `logged_only` or `failed`.
    pub verdict: String,
    /// What was measured and why the verdict.
    pub detail: String,
}

/// What happened in one stage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// Steps finished, by index.
    pub done: Vec<usize>,
    /// Whether every step finished.
    pub finished: bool,
    /// The canary weight the plan set by the end of the stage.
    pub weight: u8,
    /// Gate verdicts.
    pub gates: Vec<GateRecord>,
    /// Client-side traffic while the stage ran.
    pub traffic: TrafficStats,
    /// Client-side traffic after the stage's canary step set the weight (the observed split).
    #[serde(default)]
    pub after_shift: Option<TrafficStats>,
    /// Wall time the stage took, in seconds.
    pub seconds: f64,
    /// The gates' comparisons of the canary with the baseline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub comparisons: Vec<super::compare::ComparisonRecord>,
}

/// A rollback and its timing, for the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RollbackRecord {
    /// The stage it happened in.
    pub stage: String,
    /// What fired.
    pub reason: String,
    /// Seconds from the injected fault (if any) to detection.
    pub detection_seconds: Option<f64>,
    /// Seconds from the fault (or detection) to 100% on stable.
    pub recovery_seconds: f64,
    /// Requests that failed while the fault was live.
    pub failed_requests: u64,
}

/// The whole persisted state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    /// File format version.
    pub format: u32,
    /// Plan name.
    pub plan: String,
    /// SHA-256 of the plan file: a resumed run must execute the same plan.
    pub plan_sha256: String,
    /// Target name.
    pub target: String,
    /// Time scale of the run.
    pub time_scale: f64,
    /// Where the run stands.
    pub status: RunStatus,
    /// The canary weight now in effect.
    pub weight: u8,
    /// Constant-rate background traffic, once a load test started it.
    pub traffic_rate: Option<u32>,
    /// Per stage, by id.
    pub stages: BTreeMap<String, StageRecord>,
    /// Approvals by stage id.
    pub approvals: BTreeMap<String, Approval>,
    /// The stage whose canary is made to fail (`--inject-fault`).
    pub inject_fault: Option<String>,
    /// The rollback, if one happened.
    pub rollback: Option<RollbackRecord>,
    /// Wall seconds each hold has held so far, by `stage#step`: a resumed run holds only what
    /// is left.
    #[serde(default)]
    pub held: BTreeMap<String, f64>,
}

/// A state file that cannot be used; never silently replaced by a fresh run.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file could not be read.
    #[error("{path}: cannot read the rollout state: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a state this version understands.
    #[error(
        "{path}: the rollout state is corrupt ({reason}); refusing to start over: inspect it, \
         then move it away to begin a new run"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Adds `more` to `total` (latency: the later window's percentiles, when it has any).
pub fn merge(total: &mut TrafficStats, more: &TrafficStats) {
    total.sent += more.sent;
    total.failed += more.failed;
    total.retried += more.retried;
    total.canary += more.canary;
    total.stable += more.stable;
    total.p50 = more.p50.or(total.p50);
    total.p95 = more.p95.or(total.p95);
    total.p99 = more.p99.or(total.p99);
}

impl RunState {
    /// Reads `path`; `Ok(None)` when there is no state yet.
    pub fn load(path: &Path) -> Result<Option<RunState>, StateError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let state: RunState = serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        if state.format != FORMAT {
            return Err(StateError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("format {} (this version reads {FORMAT})", state.format),
            });
        }
        Ok(Some(state))
    }

    /// Writes the state atomically (a temporary file renamed over the old one).
    /// The new content is flushed to disk before the rename, so a crash leaves the old state or
    /// the new one, never a torn file.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        use std::io::Write;
        let tmp = path.with_extension("json.tmp");
        let mut file =
            std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
        file.write_all((serde_json::to_string_pretty(self)? + "\n").as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
        Ok(())
    }

    /// The record of stage `id`, created when missing.
    pub fn stage(&mut self, id: &str) -> &mut StageRecord {
        self.stages.entry(id.to_string()).or_default()
    }

    /// Whether step `index` of stage `id` finished.
    pub fn step_done(&self, id: &str, index: usize) -> bool {
        self.stages.get(id).is_some_and(|s| s.done.contains(&index))
    }

    /// Whether stage `id` finished.
    pub fn stage_done(&self, id: &str) -> bool {
        self.stages.get(id).is_some_and(|s| s.finished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> RunState {
        RunState {
            format: FORMAT,
            plan: "p".into(),
            plan_sha256: "x".into(),
            target: "local".into(),
            time_scale: 0.001,
            status: RunStatus::Running,
            weight: 10,
            traffic_rate: Some(20),
            stages: BTreeMap::new(),
            approvals: BTreeMap::new(),
            inject_fault: None,
            rollback: None,
            held: BTreeMap::new(),
        }
    }

    #[test]
    fn round_trips_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut s = state();
        s.stage("week-1").done.push(0);
        s.save(&path).unwrap();
        let back = RunState::load(&path).unwrap().unwrap();
        assert_eq!(back, s);
        assert!(back.step_done("week-1", 0) && !back.step_done("week-1", 1));
    }

    #[test]
    fn a_missing_file_is_no_state() {
        let dir = tempfile::tempdir().unwrap();
        assert!(RunState::load(&dir.path().join("state.json"))
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_a_fresh_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{\"format\": 1, \"plan\": ").unwrap();
        let err = RunState::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("corrupt") && err.contains("refusing to start over"),
            "{err}"
        );
    }
}
