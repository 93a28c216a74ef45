//! The legacy service's stand-in (`tests/legacy_standin/server.py`): the v1 API on ONNX Runtime,
//! serving paraphrase-MiniLM-L3-v2 only, as the stable side of the split.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::Context;

use super::{
    supervisor::{resident_bytes, Ledger, Supervised, STOP_GRACE},
    traffic::MODEL,
};

/// How long the stand-in gets to load its model and listen.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// The line the stand-in prints once it listens.
const LISTENING: &str = "legacy-standin listening on http://";

/// How to start the stand-in.
#[derive(Clone, Debug)]
pub struct LegacyCommand {
    /// The Python interpreter with the stand-in's requirements.
    pub python: PathBuf,
    /// `tests/legacy_standin/server.py`.
    pub script: PathBuf,
    /// The model folder (with `tokenizer.json` and `onnx/model.onnx`).
    pub model_dir: PathBuf,
}

/// A running legacy stand-in.
pub struct LegacyStandin {
    address: SocketAddr,
    process: Supervised,
}

impl LegacyStandin {
    /// Starts the stand-in on `port` (0: a free one) and waits until it is ready.
    pub fn start(
        command: &LegacyCommand,
        port: u16,
        log: &Path,
        ledger: &Ledger,
    ) -> anyhow::Result<Self> {
        for (what, path) in [
            (
                "the Python environment (run `cargo xtask ci`, which creates .venv)",
                &command.python,
            ),
            ("the legacy stand-in", &command.script),
            (
                "the stand-in's model (run `cargo xtask models`)",
                &command.model_dir,
            ),
        ] {
            if !path.exists() {
                anyhow::bail!("{} is missing: {what}", path.display());
            }
        }
        let mut python = Command::new(&command.python);
        python
            .arg(&command.script)
            .arg("--model-dir")
            .arg(&command.model_dir)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--name", MODEL])
            .env("PYTHONUNBUFFERED", "1");
        let mut process = Supervised::spawn("legacy stand-in", python, log, ledger)?;
        let address = process.wait_for_log(READY_TIMEOUT, |line| {
            line.split_once(LISTENING)
                .and_then(|(_, address)| address.trim().parse::<SocketAddr>().ok())
        })?;
        process
            .wait_for_http_ok(&format!("http://{address}/ready"), READY_TIMEOUT)
            .context("waiting for the legacy stand-in")?;
        Ok(Self { address, process })
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Its resident memory now.
    pub fn resident_bytes(&self) -> Option<u64> {
        resident_bytes(self.pid())
    }

    /// Stops it (SIGTERM: it answers what it accepted, then exits).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.process.terminate(STOP_GRACE)
    }
}
