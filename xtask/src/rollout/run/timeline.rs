//! The run's timeline (`timeline.jsonl`, beside the state): what each side served over time
//! (traffic share, rate, errors, latency percentiles, memory), and the moments that matter to a
//! release engineer (stage boundaries, approvals, gate verdicts, rollbacks). One JSON object a
//! line, appended as the run goes; the HTML report draws its charts from it.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};

use crate::rollout::targets::Measurement;

/// One line of the timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Seconds since the Unix epoch.
    pub at: f64,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// What a timeline line records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A run (or a resumed run) began.
    Started {
        /// The plan's name.
        plan: String,
        /// The target's name.
        target: String,
        /// Plan time against wall-clock time.
        time_scale: f64,
        /// Whether this continues an earlier run.
        resumed: bool,
    },
    /// A stage began.
    Stage {
        /// Its id.
        stage: String,
        /// Its title.
        name: String,
        /// The canary weight it starts at.
        weight: u8,
    },
    /// A step began.
    Step {
        /// The stage.
        stage: String,
        /// Index of the step in its stage.
        index: usize,
        /// The step kind (`load_test`, `canary`, ...).
        kind: String,
        /// How many steps the stage has.
        of: usize,
    },
    /// A stage's environment was approved.
    Approval {
        /// The stage.
        stage: String,
        /// Who.
        actor: String,
        /// How (`drill`, `prompt`, `--approve`, ...).
        via: String,
    },
    /// A gate decided.
    Gate {
        /// The stage.
        stage: String,
        /// The gate kind.
        kind: String,
        /// `pass`, `fail` or `inconclusive`.
        verdict: String,
        /// The figures behind the verdict.
        detail: String,
    },
    /// All traffic went back to the stable side.
    Rollback {
        /// The stage.
        stage: String,
        /// Why (the trigger or the failed gate).
        reason: String,
    },
    /// Both sides measured.
    Sample {
        /// The configured canary weight.
        weight: u8,
        /// The Candle service.
        canary: Figures,
        /// The legacy service.
        stable: Figures,
    },
    /// The run ended (completed, paused or rolled back).
    Finished {
        /// `completed`, `paused`, `rolled_back`.
        status: String,
        /// Why, if not completed.
        detail: String,
    },
}

/// One side's figures over a short trailing window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Requests answered per second.
    pub rate: f64,
    /// Share of the answered requests that failed, in percent (none without traffic).
    pub error_rate: Option<f64>,
    /// Latency percentiles in milliseconds.
    pub p50_ms: Option<f64>,
    /// 95th percentile.
    pub p95_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// Resident memory in MiB.
    pub memory_mib: Option<f64>,
}

impl Figures {
    /// The figures of a measurement over `window`.
    pub fn of(m: &Measurement, window: Duration) -> Self {
        let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0);
        Self {
            rate: m.requests as f64 / window.as_secs_f64().max(f64::EPSILON),
            error_rate: (m.requests > 0).then(|| 100.0 * m.errors as f64 / m.requests as f64),
            p50_ms: ms(m.p50),
            p95_ms: ms(m.p95),
            p99_ms: ms(m.p99),
            memory_mib: m.memory_bytes.map(|b| b as f64 / (1024.0 * 1024.0)),
        }
    }
}

/// Seconds since the Unix epoch, now.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Why the timeline could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A line is not a timeline entry.
    #[error("{path}:{line}: not a timeline entry: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based.
        line: usize,
        /// What serde said.
        source: serde_json::Error,
    },
}

/// The timeline file of a run folder.
#[derive(Clone, Debug)]
pub struct Timeline {
    path: PathBuf,
}

impl Timeline {
    /// The timeline at `path` (created on the first record).
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// Appends `event`, stamped now.
    pub fn record(&self, event: Event) -> Result<(), TimelineError> {
        let io = |source| TimelineError::Io {
            path: self.path.clone(),
            source,
        };
        let entry = Entry { at: now(), event };
        let line = serde_json::to_string(&entry).expect("a timeline entry serializes");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        writeln!(file, "{line}").map_err(io)
    }

    /// Every entry; none when the file does not exist. A torn last line (a killed run) is
    /// skipped; any other line that does not parse is an error naming it.
    pub fn read(path: &Path) -> Result<Vec<Entry>, TimelineError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(TimelineError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let lines: Vec<&str> = text.lines().collect();
        let mut entries = Vec::with_capacity(lines.len());
        for (at, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str(line) {
                Ok(entry) => entries.push(entry),
                Err(_) if at + 1 == lines.len() && !text.ends_with('\n') => {}
                Err(source) => {
                    return Err(TimelineError::Parse {
                        path: path.to_path_buf(),
                        line: at + 1,
                        source,
                    })
                }
            }
        }
        Ok(entries)
    }
}

/// The entries of the latest run: from its last fresh start (resumes included) to the end.
pub fn latest_run(entries: &[Entry]) -> &[Entry] {
    let start = entries
        .iter()
        .rposition(|e| matches!(e.event, Event::Started { resumed: false, .. }))
        .unwrap_or(0);
    &entries[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_reads_back_every_kind_of_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timeline.jsonl");
        let timeline = Timeline::new(path.clone());
        let m = Measurement {
            requests: 200,
            errors: 1,
            p50: Some(Duration::from_millis(3)),
            p95: Some(Duration::from_millis(9)),
            p99: None,
            memory_bytes: Some(100 * 1024 * 1024),
            latency: None,
        };
        let sample = Event::Sample {
            weight: 10,
            canary: Figures::of(&m, Duration::from_secs(4)),
            stable: Figures::default(),
        };
        timeline.record(sample.clone()).unwrap();
        timeline
            .record(Event::Rollback {
                stage: "week-2".into(),
                reason: "rollback trigger error-rate-critical fired".into(),
            })
            .unwrap();
        let entries = Timeline::read(&path).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].event, sample);
        let Event::Sample { canary, .. } = &entries[0].event else {
            unreachable!()
        };
        assert_eq!(canary.rate, 50.0);
        assert_eq!(canary.error_rate, Some(0.5));
        assert_eq!(canary.memory_mib, Some(100.0));
        assert!(entries[1].at >= entries[0].at);
    }

    #[test]
    fn a_torn_last_line_is_skipped_but_a_broken_middle_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timeline.jsonl");
        let good = r#"{"at":1.0,"event":"finished","status":"completed","detail":""}"#;
        std::fs::write(&path, format!("{good}\n{{\"at\":2.0,\"ev")).unwrap();
        assert_eq!(Timeline::read(&path).unwrap().len(), 1);
        std::fs::write(&path, format!("garbage\n{good}\n")).unwrap();
        let error = Timeline::read(&path).unwrap_err().to_string();
        assert!(error.contains("timeline.jsonl:1"), "{error}");
        assert!(Timeline::read(&dir.path().join("none.jsonl"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn the_latest_run_starts_at_its_fresh_start_and_keeps_its_resumes() {
        let started = |resumed| Entry {
            at: 0.0,
            event: Event::Started {
                plan: "p".into(),
                target: "local".into(),
                time_scale: 1.0,
                resumed,
            },
        };
        let entries = [started(false), started(false), started(true)];
        assert_eq!(latest_run(&entries).len(), 2);
    }
}
