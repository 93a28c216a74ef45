//! The HTTP load generator: `oha` (crates.io), open loop at a constant rate with latency
//! correction, so each latency counts from the request's due time and a stalled server cannot
//! hide its stall by slowing the sender (no coordinated omission).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context};
use serde::Deserialize;
use xshell::{cmd, Shell};

use super::report::LoadFigures;

/// Connections oha may hold open: enough that at the rates measured a slow server shows as
/// latency, not as requests never sent.
const CONNECTIONS: u32 = 256;

/// The `oha` binary.
pub struct Oha {
    binary: PathBuf,
}

/// One constant-rate load.
#[derive(Debug, Clone)]
pub struct Load<'a> {
    /// `POST` target.
    pub url: &'a str,
    /// Requests per second.
    pub rate: u32,
    /// How long to send.
    pub seconds: f64,
    /// JSON bodies, one per line; oha picks a line at random for each request.
    pub bodies: &'a Path,
}

impl Oha {
    /// Finds `oha` on PATH or in cargo's bin folder; installs it with `cargo install --locked
    /// oha` (about 6 minutes on 2 cores) when it is in neither.
    pub fn ensure(sh: &Shell) -> anyhow::Result<Self> {
        if let Some(binary) = find() {
            return Ok(Self { binary });
        }
        println!(
            "bench: installing the load generator (cargo install --locked oha, a few minutes)"
        );
        cmd!(sh, "cargo install --locked oha")
            .run()
            .context("cargo install --locked oha")?;
        find()
            .map(|binary| Self { binary })
            .context("oha is still not found after cargo install (is cargo's bin folder on PATH?)")
    }

    /// Sends `load` and reads oha's JSON summary.
    pub fn run(&self, load: &Load) -> anyhow::Result<LoadFigures> {
        let mut command = Command::new(&self.binary);
        command
            .args(["-z", &format!("{}ms", (load.seconds * 1e3).round() as u64)])
            .args(["-q", &load.rate.to_string(), "--latency-correction"])
            // Requests still out at the deadline are waited for, not counted as errors.
            .arg("-w")
            .args(["-c", &CONNECTIONS.to_string()]);
        self.summary(command, load.url, load.bodies)
    }

    /// Sends `requests` one after another on one connection (each sent when the last answer is
    /// in) and reads oha's JSON summary: the latency of a request through an idle server.
    pub fn sequential(
        &self,
        url: &str,
        requests: u64,
        bodies: &Path,
    ) -> anyhow::Result<LoadFigures> {
        let mut command = Command::new(&self.binary);
        command.args(["-n", &requests.to_string(), "-c", "1"]);
        self.summary(command, url, bodies)
    }

    fn summary(
        &self,
        mut command: Command,
        url: &str,
        bodies: &Path,
    ) -> anyhow::Result<LoadFigures> {
        let output = command
            .args(["--no-tui", "--output-format", "json"])
            .args(["-m", "POST", "-H", "content-type: application/json"])
            .arg("-Z")
            .arg(bodies)
            .arg(url)
            .output()
            .with_context(|| format!("running {}", self.binary.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "oha failed ({}): {}{}",
                output.status,
                stdout,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        parse(&stdout)
    }
}

fn find() -> Option<PathBuf> {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|home| home.join("bin"));
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(cargo_bin)
        .map(|dir| dir.join("oha"))
        .find(|candidate| candidate.is_file())
}

/// The parts of oha's `--output-format json` the bench reads. Times are in seconds.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    summary: Totals,
    latency_percentiles: Percentiles,
    #[serde(default)]
    status_code_distribution: BTreeMap<String, u64>,
    #[serde(default)]
    error_distribution: BTreeMap<String, u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Totals {
    /// Wall time of the run, seconds.
    total: f64,
}

#[derive(Debug, Deserialize)]
struct Percentiles {
    p50: Option<f64>,
    p95: Option<f64>,
    p99: Option<f64>,
}

/// [`LoadFigures`] from oha's JSON: successes are 2xx answers; errors are other answers and
/// requests that got none (connection errors, timeouts).
pub fn parse(json: &str) -> anyhow::Result<LoadFigures> {
    let summary: Summary = serde_json::from_str(json).context("reading oha's JSON output")?;
    let mut ok = 0;
    let mut failed = 0;
    for (status, count) in &summary.status_code_distribution {
        if status.starts_with('2') {
            ok += count;
        } else {
            failed += count;
        }
    }
    failed += summary.error_distribution.values().sum::<u64>();
    let ms = |v: Option<f64>| v.unwrap_or(0.0) * 1e3;
    let p = &summary.latency_percentiles;
    Ok(LoadFigures {
        achieved_rps: if summary.summary.total > 0.0 {
            ok as f64 / summary.summary.total
        } else {
            0.0
        },
        p50_ms: ms(p.p50),
        p95_ms: ms(p.p95),
        p99_ms: ms(p.p99),
        requests: ok + failed,
        errors: failed,
        peak_rss_mb: None,
        server_cpu_ms: None,
        client_cpu_ms: None,
        server_cpu_by_role: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rates_percentiles_and_errors() {
        let json = r#"{
            "summary": {"successRate": 0.99, "total": 2.0, "slowest": 0.2, "fastest": 0.001,
                        "average": 0.01, "requestsPerSec": 100.0},
            "latencyPercentiles": {"p10": 0.001, "p50": 0.004, "p95": 0.012, "p99": 0.030},
            "statusCodeDistribution": {"200": 198, "503": 1},
            "errorDistribution": {"connection closed": 1}
        }"#;
        let figures = parse(json).expect("parsed");
        assert_eq!(figures.achieved_rps, 99.0);
        assert_eq!(figures.requests, 200);
        assert_eq!(figures.errors, 2);
        assert!((figures.p95_ms - 12.0).abs() < 1e-9);
        assert!((figures.p99_ms - 30.0).abs() < 1e-9);
    }

    #[test]
    fn a_run_without_answers_has_no_rate() {
        let json = r#"{
            "summary": {"total": 1.0},
            "latencyPercentiles": {"p50": null, "p95": null, "p99": null},
            "statusCodeDistribution": {},
            "errorDistribution": {"connection refused": 50}
        }"#;
        let figures = parse(json).expect("parsed");
        assert_eq!(figures.achieved_rps, 0.0);
        assert_eq!(figures.errors, 50);
        assert_eq!(figures.p50_ms, 0.0);
    }

    #[test]
    fn rejects_what_is_not_oha_json() {
        assert!(parse("Summary:\n  Success rate: 100%").is_err());
    }
}
