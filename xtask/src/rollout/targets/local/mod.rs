//! The `local` target: the whole rollout on one machine, with real components on 127.0.0.1.
//!
//! - stable side: the legacy stand-in (`tests/legacy_standin/server.py`, ONNX Runtime);
//! - canary side: the Candle service (`akidb-embed serve`);
//! - the split: nginx with ingress-nginx's canary semantics (weight, `X-Canary` header);
//! - measurements: Prometheus scraping both services every second;
//! - traffic: an open-loop load generator in this process, through nginx.
//!
//! Every process is a child that `stop` (or drop) ends; their files and logs are under the work
//! folder. There is one instance per side, so `scale` can only stop or restart a side.
//! Each action prints one `local: ...` line.
//!
//! The processes themselves are the project's local stack (`crate::stack`); this module is the
//! rollout's view of it: a [`Target`].

#[cfg(test)]
mod tests;

use std::{
    fs,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context};

use super::{Measurement, Outcome, ParityReport, Side, Target, TrafficStats};
use crate::{
    rollout::{judge::SideSample, parity, plan::step::ParityReference},
    stack::{
        candle::{CandleCommand, CandleService},
        legacy::{LegacyCommand, LegacyStandin},
        nginx::{Nginx, Split},
        programs::Tools,
        prometheus::{self, Prometheus},
        supervisor::Ledger,
        traffic::{self, LoadGenerator},
    },
};

use crate::project::{CANARY_DEPLOYMENT, LEGACY_DEPLOYMENT};

/// Where the local target finds what it runs, and where it writes.
#[derive(Clone, Debug)]
pub struct LocalOptions {
    /// The workspace root (relative paths below are resolved against it).
    pub workspace: PathBuf,
    /// Configuration, data and logs of the processes (e.g. `target/rollout/local`).
    pub work_dir: PathBuf,
    /// The `akidb-embed` binary (default `target/debug/akidb-embed`).
    pub service_binary: PathBuf,
    /// The Python interpreter for the legacy stand-in (default `.venv/bin/python`).
    pub python: PathBuf,
    /// The folder of model folders (default `models`).
    pub models_dir: PathBuf,
    /// The plan's name for the legacy deployment (default `akidb-mlx`).
    pub legacy_deployment: String,
    /// The plan's name for the Candle deployment (default `akidb-candle`).
    pub canary_deployment: String,
    /// How long Prometheus keeps data (default one day; a run sizes it from its plan with
    /// [`prometheus::retention`]).
    pub prometheus_retention: Duration,
}

impl LocalOptions {
    /// The defaults for the workspace at `workspace`, writing under `work_dir`.
    pub fn for_workspace(workspace: &Path, work_dir: &Path) -> Self {
        Self {
            workspace: workspace.to_path_buf(),
            work_dir: work_dir.to_path_buf(),
            service_binary: workspace.join("target/debug/akidb-embed"),
            python: workspace.join(".venv/bin/python"),
            models_dir: workspace.join("models"),
            legacy_deployment: LEGACY_DEPLOYMENT.to_string(),
            canary_deployment: CANARY_DEPLOYMENT.to_string(),
            prometheus_retention: prometheus::MIN_RETENTION,
        }
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        self.workspace.join(path)
    }

    fn legacy_command(&self) -> LegacyCommand {
        LegacyCommand {
            python: self.resolve(&self.python),
            script: self.resolve(Path::new("tests/legacy_standin/server.py")),
            model_dir: self.resolve(&self.models_dir).join(traffic::MODEL),
        }
    }

    fn candle_command(&self) -> CandleCommand {
        CandleCommand {
            binary: self.resolve(&self.service_binary),
            models_dir: self.resolve(&self.models_dir),
        }
    }

    fn log(&self, name: &str) -> PathBuf {
        self.work_dir.join("logs").join(name)
    }
}

/// The rollout on this machine (see the module documentation).
pub struct LocalTarget {
    options: LocalOptions,
    ledger: Ledger,
    /// The canary's share, kept across restarts of nginx.
    weight: u8,
    /// Where the canary upstream points once a fault is injected (a closed port).
    fault: Option<SocketAddr>,
    running: Option<Running>,
    traffic: Option<LoadGenerator>,
}

/// The processes of a started target.
struct Running {
    /// `None` once stopped (scale to 0, teardown).
    legacy: Option<LegacyStandin>,
    /// Where the legacy stand-in listens (or listened: a restart takes the same port).
    legacy_address: SocketAddr,
    /// `None` once scaled to 0.
    candle: Option<CandleService>,
    /// Candle's REST and gRPC ports (a restart takes the same ones).
    candle_ports: (u16, u16),
    candle_address: SocketAddr,
    nginx: Nginx,
    prometheus: Prometheus,
}

impl LocalTarget {
    /// A target with `options`; nothing starts before [`Target::start`].
    pub fn new(options: LocalOptions) -> Self {
        let ledger = Ledger::new(options.work_dir.join("children"));
        Self {
            options,
            ledger,
            weight: 0,
            fault: None,
            running: None,
            traffic: None,
        }
    }

    fn running(&self) -> anyhow::Result<&Running> {
        self.running
            .as_ref()
            .context("the local target is not started")
    }

    fn running_mut(&mut self) -> anyhow::Result<&mut Running> {
        self.running
            .as_mut()
            .context("the local target is not started")
    }

    /// The split for `weight` with the current backends (and fault).
    fn split(&self, running: &Running, weight: u8) -> Split {
        Split {
            canary_weight: weight,
            stable: running.legacy_address,
            canary: self.fault.unwrap_or(running.candle_address),
        }
    }

    fn start_legacy(&self, port: u16) -> anyhow::Result<LegacyStandin> {
        let legacy = LegacyStandin::start(
            &self.options.legacy_command(),
            port,
            &self.options.log("legacy-standin.log"),
            &self.ledger,
        )?;
        println!(
            "local: legacy stand-in listening on {} (pid {})",
            legacy.address(),
            legacy.pid()
        );
        Ok(legacy)
    }

    fn start_candle(&self, ports: (u16, u16)) -> anyhow::Result<CandleService> {
        let candle = CandleService::start(
            &self.options.candle_command(),
            ports,
            &self.options.log("akidb-embed.log"),
            &self.ledger,
        )?;
        println!(
            "local: akidb-embed ready on {} (gRPC {}, pid {})",
            candle.rest(),
            candle.grpc(),
            candle.pid()
        );
        Ok(candle)
    }
}

impl Target for LocalTarget {
    fn name(&self) -> &'static str {
        "local"
    }

    fn start(&mut self) -> anyhow::Result<()> {
        if self.running.is_some() {
            println!("local: already running");
            return Ok(());
        }
        let work = &self.options.work_dir;
        fs::create_dir_all(work.join("logs"))
            .with_context(|| format!("creating {}", work.display()))?;
        let leftovers = self.ledger.reap()?;
        if leftovers > 0 {
            println!("local: ended {leftovers} processes an earlier run left behind");
        }
        let tools = Tools::ensure()?;
        // Anything started before a failure is stopped when it drops.
        let legacy = self.start_legacy(0)?;
        let candle = self.start_candle((0, 0))?;
        let split = Split {
            canary_weight: self.weight,
            stable: legacy.address(),
            canary: self.fault.unwrap_or(candle.rest()),
        };
        let nginx = Nginx::start(&tools.nginx, &work.join("nginx"), split, &self.ledger)?;
        println!(
            "local: nginx front door on {} (canary weight {}%, pid {})",
            nginx.front_door(),
            self.weight,
            nginx.pid()
        );
        let prometheus = Prometheus::start(
            &tools.prometheus,
            &work.join("prometheus"),
            legacy.address(),
            candle.rest(),
            self.options.prometheus_retention,
            &self.ledger,
        )?;
        println!(
            "local: prometheus on {} scraping stable and canary (pid {})",
            prometheus.api().url(),
            prometheus.pid()
        );
        self.running = Some(Running {
            legacy_address: legacy.address(),
            legacy: Some(legacy),
            candle_ports: (candle.rest().port(), candle.grpc().port()),
            candle_address: candle.rest(),
            candle: Some(candle),
            nginx,
            prometheus,
        });
        Ok(())
    }

    fn set_canary_weight(&mut self, percent: u8) -> anyhow::Result<()> {
        if percent > 100 {
            bail!("canary weight {percent}% is over 100%");
        }
        let running = self.running()?;
        let split = self.split(running, percent);
        let legacy_down = running.legacy.is_none();
        self.running_mut()?.nginx.apply(split)?;
        self.weight = percent;
        let note = if legacy_down && percent < 100 {
            "; the legacy stand-in is stopped, so the stable share fails"
        } else {
            ""
        };
        println!("local: nginx weight {percent}% (reload ok{note})");
        Ok(())
    }

    fn start_traffic(&mut self, rate: u32) -> anyhow::Result<()> {
        let front_door = self.running()?.nginx.front_door();
        match &self.traffic {
            Some(traffic) => traffic.set_rate(rate),
            None => {
                let url = format!("http://{front_door}{}", prometheus::EMBED_ROUTE);
                self.traffic = Some(LoadGenerator::start(url, rate)?);
            }
        }
        println!("local: traffic {rate} req/s through nginx ({front_door})");
        Ok(())
    }

    fn pin_traffic_to_canary(&mut self, pinned: bool) -> anyhow::Result<Outcome> {
        let traffic = self
            .traffic
            .as_ref()
            .context("no traffic is running through the front door")?;
        traffic.pin_to_canary(pinned);
        let what = if pinned {
            "every request to the canary (X-Canary: always)"
        } else {
            "requests follow the split"
        };
        println!("local: traffic: {what}");
        Ok(Outcome::Done(what.to_string()))
    }

    fn take_traffic(&mut self) -> anyhow::Result<TrafficStats> {
        Ok(self
            .traffic
            .as_ref()
            .map(LoadGenerator::take)
            .unwrap_or_default())
    }

    fn front_door(&self, side: Side, window: Duration) -> anyhow::Result<(u64, u64)> {
        let traffic = self
            .traffic
            .as_ref()
            .context("no traffic is running through the front door")?;
        Ok(traffic.recent(side == Side::Canary, window.as_secs().max(1)))
    }

    fn measure(&self, side: Side, window: Duration) -> anyhow::Result<Measurement> {
        let running = self.running()?;
        let mut measurement = running.prometheus.api().measure(side, window)?;
        if side == Side::Stable {
            // The stand-in exports no memory gauge: its resident memory comes from /proc.
            measurement.memory_bytes = running
                .legacy
                .as_ref()
                .and_then(LegacyStandin::resident_bytes);
        }
        Ok(measurement)
    }

    /// Raw latencies from the traffic generator while it runs (what it sent through the front
    /// door, so failures that never reached a service count); Prometheus's histogram buckets
    /// otherwise.
    fn side_sample(&self, side: Side, window: Duration) -> anyhow::Result<SideSample> {
        if let Some(traffic) = &self.traffic {
            return Ok(traffic.side_sample(side == Side::Canary, window));
        }
        let queries = prometheus::MeasurementQueries::new(side, window);
        self.running()?
            .prometheus
            .api()
            .side_sample_at(&queries, None)
    }

    fn parity(&self, corpus: &Path, against: ParityReference) -> anyhow::Result<ParityReport> {
        let running = self.running()?;
        let candle = running
            .candle
            .as_ref()
            .context("parity: akidb-embed is stopped (scaled to 0)")?;
        let services = parity::Services {
            candle: format!("http://{}", candle.rest()),
            legacy: running
                .legacy
                .as_ref()
                .map(|legacy| format!("http://{}", legacy.address())),
        };
        let run = parity::check(&services, corpus, against)?;
        let report = run.report;
        println!(
            "local: parity vs {} on {} ({}): {} texts, min cosine {:.8}, {} token mismatches",
            match against {
                ParityReference::Legacy => "legacy",
                ParityReference::Golden => "golden",
            },
            corpus.display(),
            run.model,
            report.texts,
            report.min_cosine,
            report.token_mismatches
        );
        Ok(report)
    }

    fn scale(&mut self, deployment: &str, replicas: u32) -> anyhow::Result<Outcome> {
        let side = if deployment == self.options.legacy_deployment {
            Side::Stable
        } else if deployment == self.options.canary_deployment {
            Side::Canary
        } else {
            bail!(
                "unknown deployment `{deployment}`: the local target runs `{}` (the legacy \
                 stand-in) and `{}` (akidb-embed)",
                self.options.legacy_deployment,
                self.options.canary_deployment
            );
        };
        let one_instance = "local target runs one instance per side";
        let outcome = match (side, replicas) {
            (Side::Stable, 0) => match self.running_mut()?.legacy.take() {
                Some(mut legacy) => {
                    let pid = legacy.pid();
                    legacy.stop()?;
                    Outcome::Done(format!("stopped legacy stand-in pid {pid} (0 replicas)"))
                }
                None => Outcome::Skipped("legacy stand-in already stopped".into()),
            },
            (Side::Canary, 0) => match self.running_mut()?.candle.take() {
                Some(mut candle) => {
                    let pid = candle.pid();
                    candle.stop()?;
                    Outcome::Done(format!("stopped akidb-embed pid {pid} (0 replicas)"))
                }
                None => Outcome::Skipped("akidb-embed already stopped".into()),
            },
            (Side::Stable, _) if self.running()?.legacy.is_none() => {
                let port = self.running()?.legacy_address.port();
                let legacy = self.start_legacy(port)?;
                let pid = legacy.pid();
                self.running_mut()?.legacy = Some(legacy);
                Outcome::Done(format!(
                    "restarted legacy stand-in (pid {pid}); {one_instance}"
                ))
            }
            (Side::Canary, _) if self.running()?.candle.is_none() => {
                let ports = self.running()?.candle_ports;
                let candle = self.start_candle(ports)?;
                let pid = candle.pid();
                self.running_mut()?.candle = Some(candle);
                Outcome::Done(format!("restarted akidb-embed (pid {pid}); {one_instance}"))
            }
            _ => Outcome::Skipped(one_instance.into()),
        };
        match &outcome {
            Outcome::Done(what) => println!("local: scale {deployment} to {replicas}: {what}"),
            Outcome::Skipped(why) => {
                println!("local: scale {deployment} to {replicas}: skipped ({why})")
            }
        }
        Ok(outcome)
    }

    fn teardown_legacy(&mut self, deployment: &str, grace: Duration) -> anyhow::Result<Outcome> {
        if deployment != self.options.legacy_deployment {
            bail!(
                "teardown of `{deployment}`: the local target's legacy deployment is `{}`",
                self.options.legacy_deployment
            );
        }
        if self.weight != 100 {
            bail!(
                "refusing to retire the legacy service while the canary weight is {}% (it must \
                 be 100%)",
                self.weight
            );
        }
        self.running()?;
        println!(
            "local: legacy teardown: waiting the grace period ({})",
            humantime::format_duration(grace)
        );
        std::thread::sleep(grace);
        let outcome = match self.running_mut()?.legacy.take() {
            Some(mut legacy) => {
                let pid = legacy.pid();
                legacy.stop()?;
                Outcome::Done(format!("stopped legacy stand-in pid {pid}"))
            }
            None => Outcome::Done("legacy stand-in was already stopped".into()),
        };
        if let Outcome::Done(what) = &outcome {
            println!("local: legacy teardown: {what}");
        }
        Ok(outcome)
    }

    fn inject_fault(&mut self) -> anyhow::Result<()> {
        // A port that was free a moment ago and that nothing listens on: every connection to
        // it is refused, so nginx answers 502 for each canary request.
        let closed = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .context("finding a closed port for the fault")?;
        let running = self.running()?;
        let mut split = self.split(running, self.weight);
        split.canary = closed;
        self.running_mut()?.nginx.apply(split)?;
        self.fault = Some(closed);
        println!(
            "local: fault injected: nginx sends canary traffic to {closed}, where nothing listens \
             (reload ok)"
        );
        Ok(())
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut traffic) = self.traffic.take() {
            traffic.stop();
            println!("local: traffic stopped");
        }
        let Some(mut running) = self.running.take() else {
            return Ok(());
        };
        // The front door first, so no request reaches a service that is going away.
        let mut errors = Vec::new();
        let mut stopped = Vec::new();
        let mut note = |what: &str, result: anyhow::Result<()>| match result {
            Ok(()) => stopped.push(what.to_string()),
            Err(error) => errors.push(format!("{what}: {error:#}")),
        };
        note("nginx", running.nginx.stop());
        note("prometheus", running.prometheus.stop());
        if let Some(mut candle) = running.candle.take() {
            note("akidb-embed", candle.stop());
        }
        if let Some(mut legacy) = running.legacy.take() {
            note("legacy stand-in", legacy.stop());
        }
        println!("local: stopped {}", stopped.join(", "));
        if !errors.is_empty() {
            bail!("stopping the local target: {}", errors.join("; "));
        }
        Ok(())
    }
}

impl Drop for LocalTarget {
    fn drop(&mut self) {
        if self.running.is_some() || self.traffic.is_some() {
            if let Err(error) = self.stop() {
                eprintln!("local: {error:#}");
            }
        }
    }
}
