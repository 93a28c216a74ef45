//! The append-only audit log (`audit.jsonl`): one JSON object per action or approval, with
//! time, stage, step, actor and result. Lines are only ever appended.

use std::{io::Write, path::PathBuf};

use serde::{Deserialize, Serialize};

/// One line of the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// RFC 3339 time.
    pub time: String,
    /// Stage id (empty for run-level entries).
    pub stage: String,
    /// Step kind and index (`canary#1`), or the run-level action (`run`, `approve`, ...).
    pub step: String,
    /// Who: the operator, the CI actor, or `runner`.
    pub actor: String,
    /// `started`, `ok`, `failed`, `skipped`, `approved`, `rolled_back`, `paused`, ...
    pub result: String,
    /// What happened.
    pub detail: String,
}

/// The log file.
pub struct AuditLog {
    path: PathBuf,
    actor: String,
}

/// Now, as RFC 3339 UTC.
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

impl AuditLog {
    /// A log at `path`, written as `actor`.
    pub fn new(path: PathBuf, actor: String) -> Self {
        Self { path, actor }
    }

    /// Who this run acts as.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// Appends one entry (and echoes it on stdout).
    pub fn record(
        &self,
        stage: &str,
        step: &str,
        result: &str,
        detail: &str,
    ) -> anyhow::Result<()> {
        let entry = AuditEntry {
            time: now(),
            stage: stage.to_string(),
            step: step.to_string(),
            actor: self.actor.clone(),
            result: result.to_string(),
            detail: detail.to_string(),
        };
        println!(
            "rollout: [{stage}] {step}: {result}{}{detail}",
            if detail.is_empty() { "" } else { ": " }
        );
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        writeln!(file, "{}", serde_json::to_string(&entry)?)?;
        Ok(())
    }

    /// Every entry; a line that does not parse is an error naming the line.
    pub fn read(&self) -> anyhow::Result<Vec<AuditEntry>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| {
                    anyhow::anyhow!(
                        "{}:{}: corrupt audit entry: {e}",
                        self.path.display(),
                        i + 1
                    )
                })
            })
            .collect()
    }
}

/// The last run-level entry when it says a run is unfinished (started, resumed or paused and
/// never completed nor rolled back); `None` when no run is open.
pub fn unfinished_run(entries: &[AuditEntry]) -> Option<&AuditEntry> {
    entries
        .iter()
        .rev()
        .find(|e| e.stage.is_empty() && matches!(e.step.as_str(), "run" | "resume" | "rollback"))
        .filter(|e| !matches!(e.result.as_str(), "completed" | "rolled_back"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_reads_back_and_names_a_corrupt_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("audit.jsonl"), "ops".into());
        log.record("week-1", "canary#1", "ok", "weight 1%").unwrap();
        log.record("week-2", "approve", "approved", "").unwrap();
        let entries = log.read().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].actor, "ops");
        assert_eq!(entries[1].stage, "week-2");
        std::fs::write(dir.path().join("audit.jsonl"), "{}\nnot json\n").unwrap();
        let err = log.read().unwrap_err().to_string();
        assert!(err.contains("audit.jsonl:1"), "{err}");
    }

    #[test]
    fn a_started_or_paused_run_is_unfinished_until_it_completes_or_rolls_back() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(dir.path().join("audit.jsonl"), "ops".into());
        assert!(unfinished_run(&log.read().unwrap()).is_none());
        log.record("", "run", "started", "plan p").unwrap();
        log.record("week-1", "load_test#0", "ok", "").unwrap();
        let entries = log.read().unwrap();
        let open = unfinished_run(&entries).expect("a started run is open");
        assert_eq!(
            (open.step.as_str(), open.result.as_str()),
            ("run", "started")
        );
        log.record("", "run", "paused", "approval").unwrap();
        assert!(unfinished_run(&log.read().unwrap()).is_some());
        log.record("", "rollback", "rolled_back", "manual").unwrap();
        assert!(unfinished_run(&log.read().unwrap()).is_none());
    }
}
