//! The metric names a running Candle service exports: `akidb-embed serve` started on free
//! loopback ports with the project's models, scraped once it is ready, then stopped.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// How long the service gets to load and warm up its models.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A service process that is stopped when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM first, so it drains and exits cleanly; then make sure.
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `binary` serving `models_dir`, scrapes `/metrics` and returns every sample's name.
pub fn exported_names(
    binary: &Path,
    models_dir: &Path,
    log: &Path,
) -> anyhow::Result<BTreeSet<String>> {
    if !binary.exists() {
        bail!(
            "{} is missing: build it with `cargo build --workspace --bins`",
            binary.display()
        );
    }
    let rest = crate::project::free_port()?;
    let grpc = crate::project::free_port()?;
    let log_file =
        std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let child = Command::new(binary)
        .arg("serve")
        .args(["--host", "127.0.0.1"])
        .args(["--rest-port", &rest.to_string()])
        .args(["--grpc-port", &grpc.to_string()])
        .arg("--models-dir")
        .arg(models_dir)
        .args(["--log-format", "text"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let mut server = Server(child);
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = server.0.try_wait()? {
            bail!(
                "akidb-embed exited ({status}) before it was ready; see {}",
                log.display()
            );
        }
        if agent
            .get(&format!("http://127.0.0.1:{rest}/health/ready"))
            .call()
            .is_ok()
        {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "akidb-embed was not ready within {READY_TIMEOUT:?}; see {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = agent
        .get(&format!("http://127.0.0.1:{rest}/metrics"))
        .call()
        .context("scraping /metrics")?
        .into_string()?;
    drop(server);
    Ok(sample_names(&text))
}

/// The names of the samples in a text exposition (`name{labels} value`).
pub fn sample_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sample_names_not_comments() {
        let text = "# HELP a_total x\n# TYPE a_total counter\na_total{k=\"v\"} 1\nb 2\n";
        assert_eq!(
            sample_names(text).into_iter().collect::<Vec<_>>(),
            ["a_total", "b"]
        );
    }
}
