//! The Candle service (`akidb-embed serve`), the canary side of the split.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::Context;

use super::supervisor::{Ledger, Supervised, STOP_GRACE};

/// How long the service gets to load and warm up its models.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// How to start the service.
#[derive(Clone, Debug)]
pub struct CandleCommand {
    /// The `akidb-embed` binary.
    pub binary: PathBuf,
    /// The folder of model folders it serves.
    pub models_dir: PathBuf,
}

/// A running Candle service.
pub struct CandleService {
    rest: SocketAddr,
    grpc: SocketAddr,
    process: Supervised,
}

impl CandleService {
    /// Starts the service on `rest` and `grpc` ports (0: free ones) and waits until it is
    /// ready (every model loaded and warmed up).
    pub fn start(
        command: &CandleCommand,
        (rest, grpc): (u16, u16),
        log: &Path,
        ledger: &Ledger,
    ) -> anyhow::Result<Self> {
        if !command.binary.exists() {
            anyhow::bail!(
                "{} is missing: build it with `cargo build -p akidb-embed`",
                command.binary.display()
            );
        }
        if !command.models_dir.is_dir() {
            anyhow::bail!(
                "{} is missing: run `cargo xtask models`",
                command.models_dir.display()
            );
        }
        let mut serve = Command::new(&command.binary);
        serve
            .arg("serve")
            .args(["--host", "127.0.0.1"])
            .args(["--rest-port", &rest.to_string()])
            .args(["--grpc-port", &grpc.to_string()])
            .arg("--models-dir")
            .arg(&command.models_dir)
            .args(["--log-format", "text"])
            .env("NO_COLOR", "1");
        let mut process = Supervised::spawn("akidb-embed", serve, log, ledger)?;
        let (rest, grpc) = process.wait_for_log(READY_TIMEOUT, listening_addresses)?;
        process
            .wait_for_http_ok(&format!("http://{rest}/health/ready"), READY_TIMEOUT)
            .context("waiting for akidb-embed to load its models")?;
        Ok(Self {
            rest,
            grpc,
            process,
        })
    }

    /// The REST address.
    pub fn rest(&self) -> SocketAddr {
        self.rest
    }

    /// The gRPC address.
    pub fn grpc(&self) -> SocketAddr {
        self.grpc
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Stops it (SIGTERM: it drains accepted requests, then exits).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.process.terminate(STOP_GRACE)
    }
}

/// The REST and gRPC addresses of the service's `listening` log line
/// (`... listening version=... rest=127.0.0.1:P grpc=127.0.0.1:Q ...`).
fn listening_addresses(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    if !line.contains("listening") {
        return None;
    }
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(name))
            .and_then(|value| value.trim_matches('"').parse::<SocketAddr>().ok())
    };
    Some((field("rest=")?, field("grpc=")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_ports_from_the_listening_line() {
        let line = r#"2026-11-28T00:38:56.503806Z  INFO listening version="2.0.0 (c152ae0ecbe4)" rest=127.0.0.1:42735 grpc=127.0.0.1:34215 auth=false"#;
        assert_eq!(
            listening_addresses(line),
            Some((
                "127.0.0.1:42735".parse().expect("address"),
                "127.0.0.1:34215".parse().expect("address")
            ))
        );
        assert_eq!(listening_addresses("INFO ready"), None);
    }
}
