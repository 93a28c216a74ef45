//! The two servers the HTTP and cold-start sections measure, started the same way: akidb-embed
//! (`serve`) and the legacy stand-in (`tests/legacy_standin/server.py`), each on a free port of
//! 127.0.0.1, with the same thread count, stopped when dropped (the rollout's supervisor).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use super::threads::ThreadTimes;
use crate::{
    project::free_port,
    stack::supervisor::{Ledger, Supervised},
};

/// How long a server gets to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How often readiness is polled: fine enough for a cold start measured in milliseconds.
const READY_POLL: Duration = Duration::from_millis(5);

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// `akidb-embed serve`.
    Candle,
    /// The legacy stand-in (Python, ONNX Runtime).
    Legacy,
}

impl ServerKind {
    /// The name in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Candle => "candle",
            ServerKind::Legacy => "legacy",
        }
    }

    /// The route that answers 200 once the server can embed.
    fn ready_route(self) -> &'static str {
        match self {
            ServerKind::Candle => "/health/ready",
            ServerKind::Legacy => "/ready",
        }
    }
}

/// How to start either server.
#[derive(Debug, Clone)]
pub struct ServerSetup {
    /// The `akidb-embed` binary.
    pub binary: PathBuf,
    /// The Python interpreter with the stand-in's requirements.
    pub python: PathBuf,
    /// `tests/legacy_standin/server.py`.
    pub standin: PathBuf,
    /// The folder of model folders.
    pub models_dir: PathBuf,
    /// Threads each server's engine gets.
    pub threads: usize,
    /// Where logs go.
    pub log_dir: PathBuf,
    /// The children ledger.
    pub ledger: Ledger,
}

/// A running server.
pub struct BenchServer {
    kind: ServerKind,
    address: SocketAddr,
    process: Supervised,
}

impl BenchServer {
    /// Starts `kind` serving `model` (for akidb-embed, `None` serves every model folder) and
    /// waits until it is ready; returns it and the time from spawn to ready.
    pub fn start(
        setup: &ServerSetup,
        kind: ServerKind,
        model: Option<&str>,
    ) -> anyhow::Result<(Self, Duration)> {
        Self::start_with(setup, kind, model, &[])
    }

    /// As [`Self::start`], with `env` added to the server's environment (akidb-embed reads its
    /// settings from `AKIDB_*` variables).
    pub fn start_with(
        setup: &ServerSetup,
        kind: ServerKind,
        model: Option<&str>,
        env: &[(&str, String)],
    ) -> anyhow::Result<(Self, Duration)> {
        let port = free_port()?;
        let mut command = match kind {
            ServerKind::Candle => {
                let mut serve = Command::new(&setup.binary);
                serve
                    .arg("serve")
                    .args(["--host", "127.0.0.1", "--rest-port", &port.to_string()])
                    .args(["--grpc-port", &free_port()?.to_string()])
                    .arg("--models-dir")
                    .arg(&setup.models_dir)
                    .args(["--log-format", "text", "--log-level", "warn"])
                    .env("AKIDB_THREADS", setup.threads.to_string())
                    .env("NO_COLOR", "1");
                if let Some(model) = model {
                    serve.args(["--models", model, "--model", model]);
                }
                serve
            }
            ServerKind::Legacy => {
                let model = model.context("the legacy stand-in serves one named model")?;
                let mut python = Command::new(&setup.python);
                python
                    .arg(&setup.standin)
                    .arg("--model-dir")
                    .arg(setup.models_dir.join(model))
                    .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                    .args(["--name", model, "--threads", &setup.threads.to_string()])
                    .env("PYTHONUNBUFFERED", "1");
                python
            }
        };
        command.envs(env.iter().map(|(key, value)| (key, value)));
        let program = Path::new(command.get_program());
        if !program.exists() {
            bail!("{} is missing", program.display());
        }
        let log = setup.log_dir.join(format!("{}.log", kind.name()));
        let started = Instant::now();
        let mut process = Supervised::spawn(kind.name(), command, &log, &setup.ledger)?;
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        process
            .poll_http_ok(
                &format!("http://{address}{}", kind.ready_route()),
                READY_TIMEOUT,
                READY_POLL,
            )
            .with_context(|| format!("waiting for {} (log: {})", kind.name(), log.display()))?;
        let took = started.elapsed();
        Ok((
            Self {
                kind,
                address,
                process,
            },
            took,
        ))
    }

    /// Which server this is.
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// `POST /api/v1/embed` on it.
    pub fn embed_url(&self) -> String {
        self.url("/api/v1/embed")
    }

    /// `path` on it.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    /// Resident memory now, MB.
    pub fn rss_mb(&self) -> Option<f64> {
        status_kib(self.process.pid(), "VmRSS:").map(kib_to_mb)
    }

    /// Peak resident memory since start or since [`Self::reset_peak`], MB.
    pub fn peak_rss_mb(&self) -> Option<f64> {
        status_kib(self.process.pid(), "VmHWM:").map(kib_to_mb)
    }

    /// Its CPU time (user + system) since it started, the whole process's and each thread's.
    pub fn thread_times(&self) -> Option<ThreadTimes> {
        ThreadTimes::read(self.process.pid())
    }

    /// Starts the peak over from the current resident memory (Linux `clear_refs` 5), so that
    /// each load gets its own peak; without it the peak is the process's whole life's.
    pub fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.process.pid()), "5");
    }

    /// Fails with the end of its log when the server has exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        self.process.ensure_running()
    }

    /// Stops it.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.process.terminate(Duration::from_secs(10))
    }
}

/// CPU time (user + system) of the children this process has waited for, seconds: the load
/// generator's, read before and after a run.
pub fn waited_children_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    stat_cpu_seconds(&stat, StatTimes::WaitedChildren)
}

/// Which times of /proc/PID/stat.
#[derive(Clone, Copy)]
pub(super) enum StatTimes {
    /// `utime` + `stime` (fields 14, 15).
    Own,
    /// `cutime` + `cstime` (fields 16, 17).
    WaitedChildren,
}

/// Reads CPU seconds from a /proc/PID/stat line. The name field may hold spaces and
/// parentheses, so fields are counted from after its last `)`; the kernel reports them in
/// USER_HZ ticks, 100 a second on every Linux ABI.
pub(super) fn stat_cpu_seconds(stat: &str, times: StatTimes) -> Option<f64> {
    const USER_HZ: f64 = 100.0;
    // After the name, the first field is the state (field 3).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let first = match times {
        StatTimes::Own => 14,
        StatTimes::WaitedChildren => 16,
    } - 3;
    let user: f64 = fields.get(first)?.parse().ok()?;
    let system: f64 = fields.get(first + 1)?.parse().ok()?;
    Some((user + system) / USER_HZ)
}

/// The name (`comm`) field of a /proc/PID/stat line: between the first `(` and the last `)`.
pub(super) fn stat_name(stat: &str) -> Option<&str> {
    let (_, rest) = stat.split_once('(')?;
    Some(rest.rsplit_once(')')?.0)
}

fn kib_to_mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

/// A `kB` field of /proc/PID/status.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kib(&text, field)
}

fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find_map(|line| line.strip_prefix(field))?;
    line.trim().strip_suffix("kB")?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_peak_and_current_resident_memory() {
        let status = "Name:\takidb-embed\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM:"), Some(204_800));
        assert_eq!(parse_status_kib(status, "VmRSS:"), Some(102_400));
        assert_eq!(parse_status_kib(status, "VmSwap:"), None);
        assert_eq!(kib_to_mb(1_000_000), 1024.0);
    }

    #[test]
    fn reads_cpu_times_after_a_name_with_spaces_and_parentheses() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        // utime stime cutime cstime ...
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 10 0 0 0 250 50 700 100 20 0 3";
        assert_eq!(stat_cpu_seconds(stat, StatTimes::Own), Some(3.0));
        assert_eq!(stat_cpu_seconds(stat, StatTimes::WaitedChildren), Some(8.0));
        assert_eq!(stat_cpu_seconds("42 (x) S 1", StatTimes::Own), None);
        assert_eq!(stat_name(stat), Some("a (b) c"));
        assert_eq!(stat_name("42 x S"), None);
    }

    #[test]
    fn own_process_reports_a_peak() {
        // Current first: other test threads may allocate between the two reads, and the peak
        // read afterwards covers whatever the current one saw.
        let now = status_kib(std::process::id(), "VmRSS:").expect("VmRSS");
        let peak = status_kib(std::process::id(), "VmHWM:").expect("VmHWM");
        assert!(peak >= now && now > 0);
    }
}
