//! Job results out of act's JSON log (`act --json`): one object a line, the last of each job
//! carrying `jobResult`.

use indexmap::IndexMap;
use serde::Deserialize;

/// How a job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobResult {
    /// Every step passed.
    Succeeded,
    /// A step failed (for a matrix job: any of its runs).
    Failed,
    /// Its `if:` was false, or a job it needs did not succeed: act never started it.
    Skipped,
}

impl JobResult {
    /// The word printed for it.
    pub fn label(self) -> &'static str {
        match self {
            JobResult::Succeeded => "succeeded",
            JobResult::Failed => "failed",
            JobResult::Skipped => "skipped",
        }
    }
}

/// One line of act's JSON log, the fields used here.
#[derive(Debug, Deserialize)]
pub struct LogLine {
    /// The job's id in the file.
    #[serde(default, rename = "jobID")]
    pub job_id: Option<String>,
    /// The message.
    #[serde(default)]
    pub msg: String,
    /// `success` or `failure`, on a job's last line.
    #[serde(default, rename = "jobResult")]
    pub job_result: Option<String>,
}

impl LogLine {
    /// The line, or `None` when it is not act's JSON (a tool printing on its own).
    pub fn parse(line: &str) -> Option<LogLine> {
        serde_json::from_str(line).ok()
    }
}

/// The results gathered so far, by job id.
#[derive(Debug, Default)]
pub struct Results {
    ended: IndexMap<String, JobResult>,
}

impl Results {
    /// Takes note of `line` if it ends a job.
    pub fn observe(&mut self, line: &LogLine) {
        let (Some(id), Some(result)) = (&line.job_id, &line.job_result) else {
            return;
        };
        let result = if result == "success" {
            JobResult::Succeeded
        } else {
            JobResult::Failed
        };
        let entry = self.ended.entry(id.clone()).or_insert(result);
        if result == JobResult::Failed {
            *entry = JobResult::Failed;
        }
    }

    /// Every job of `jobs`, in that order, with its result (never started: skipped).
    pub fn of(&self, jobs: &[String]) -> Vec<(String, JobResult)> {
        jobs.iter()
            .map(|id| {
                let result = self.ended.get(id).copied().unwrap_or(JobResult::Skipped);
                (id.clone(), result)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_from_job_result_lines_and_unstarted_jobs_are_skipped() {
        let log = [
            r#"{"job":"t/a","jobID":"a","level":"info","msg":"⭐ Run Set up job"}"#,
            r#"{"job":"t/a","jobID":"a","jobResult":"success","level":"info","msg":"🏁  Job succeeded"}"#,
            r#"{"job":"t/c","jobID":"c","jobResult":"success","level":"info","msg":"🏁  Job succeeded"}"#,
            r#"{"job":"t/c-2","jobID":"c","jobResult":"failure","level":"info","msg":"🏁  Job failed"}"#,
            "a tool printing on its own",
        ];
        let mut results = Results::default();
        for line in log {
            if let Some(parsed) = LogLine::parse(line) {
                results.observe(&parsed);
            }
        }
        let jobs: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let got: Vec<(String, &str)> = results
            .of(&jobs)
            .into_iter()
            .map(|(id, r)| (id, r.label()))
            .collect();
        assert_eq!(
            got,
            [
                ("a".to_owned(), "succeeded"),
                ("b".to_owned(), "skipped"),
                ("c".to_owned(), "failed")
            ]
        );
    }
}
