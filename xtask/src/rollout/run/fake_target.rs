//! A fake target for the runner's fail-safe tests: a deterministic in-memory system with no
//! processes, whose actions can be made to fail a number of times, whose metrics can be made
//! unreachable or sparse, and which can stop the run dead at its n-th call, as a killed process
//! stops (a panic unwinds out of the runner without any of its own cleanup code running).

use std::{
    cell::{Cell, RefCell},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::bail;

use crate::rollout::{
    judge::SideSample,
    plan::step::ParityReference,
    targets::{Measurement, Outcome, ParityReport, Side, Target, TrafficStats},
};

/// How the canary degrades once its fault begins.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// This percentage of its requests fail.
    ErrorRate(f64),
    /// Its P95 latency is this.
    P95(Duration),
    /// Its resident memory grows by this percentage (of the healthy size) per second.
    MemoryGrowth(f64),
}

/// What the fake system looks like, and how it misbehaves.
#[derive(Debug, Default)]
pub struct FakeTarget {
    /// The canary weight in effect.
    pub weight: u8,
    /// Whether `start` ran (and `stop` did not since).
    pub started: bool,
    /// Replicas per deployment, once scaled.
    pub replicas: Vec<(String, u32)>,
    /// Whether the legacy service was retired.
    pub retired: bool,
    /// Requests the metrics report per window.
    pub requests: u64,
    /// When set, the metrics report this many requests per second of the window instead.
    pub rate: Option<f64>,
    /// When set, what the front door reports (answered, failed) instead of `requests`, 0.
    pub door: Option<(u64, u64)>,
    /// What `side_sample` gives for (canary, stable); unsupported when `None`.
    pub samples: Option<(SideSample, SideSample)>,
    /// A degradation of the canary that begins when the weight is set to `.0`.
    pub fault: Option<(u8, Fault)>,
    /// Whether the target cannot pin its load to the canary (as the kubernetes target).
    pub cannot_pin: bool,
    /// The fault begins when a deployment is scaled to 0 instead (the teardown's grace period).
    pub fault_at_teardown: bool,
    /// When the fault began.
    pub fault_since: Option<Instant>,
    /// When the weight went back to 0 after the fault began.
    pub rolled_back_at: Option<Instant>,
    /// The run stops dead at the first call after this instant.
    pub crash_after: Cell<Option<Instant>>,
    /// Effects applied, in order (`set_canary_weight 10`, `scale akidb-candle 2`, ...).
    pub journal: RefCell<Vec<String>>,
    /// Calls so far (every method but `name`).
    calls: Cell<usize>,
    /// Stop dead at this call.
    crash_at: Cell<Option<usize>>,
    /// Failures left for calls whose label starts with the key.
    failures: RefCell<Vec<(String, usize)>>,
}

impl FakeTarget {
    /// A healthy system with plenty of traffic.
    pub fn new() -> Self {
        Self {
            requests: 10_000,
            ..Self::default()
        }
    }

    /// Calls whose label starts with `prefix` (`scale`, `measure canary`, `start`) fail the
    /// next `times` times.
    pub fn fail(&self, prefix: &str, times: usize) {
        self.failures.borrow_mut().push((prefix.to_string(), times));
    }

    /// Clears every pending failure (the outage is over).
    pub fn recover(&self) {
        self.failures.borrow_mut().clear();
    }

    /// The run stops dead at call `n` (1-based), once.
    pub fn crash_at(&self, n: usize) {
        self.crash_at.set(Some(n));
    }

    /// Calls made so far.
    pub fn calls(&self) -> usize {
        self.calls.get()
    }

    /// How many effects in the journal start with `prefix`.
    pub fn applied(&self, prefix: &str) -> usize {
        self.journal
            .borrow()
            .iter()
            .filter(|e| e.starts_with(prefix))
            .count()
    }

    fn enter(&self, label: &str) -> anyhow::Result<()> {
        let n = self.calls.get() + 1;
        self.calls.set(n);
        if self
            .crash_after
            .get()
            .is_some_and(|at| Instant::now() >= at)
        {
            self.crash_after.set(None);
            panic!("fake target: the run is killed at call {n} ({label})");
        }
        if self.crash_at.get() == Some(n) {
            self.crash_at.set(None);
            panic!("fake target: the run is killed at call {n} ({label})");
        }
        let mut failures = self.failures.borrow_mut();
        if let Some((_, left)) = failures
            .iter_mut()
            .find(|(prefix, left)| *left > 0 && label.starts_with(prefix.as_str()))
        {
            *left -= 1;
            bail!("fake target: {label}: service unavailable (503)");
        }
        Ok(())
    }

    fn record(&self, effect: String) {
        self.journal.borrow_mut().push(effect);
    }
}

impl Target for FakeTarget {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn start(&mut self) -> anyhow::Result<()> {
        self.enter("start")?;
        self.started = true;
        Ok(())
    }

    fn set_canary_weight(&mut self, percent: u8) -> anyhow::Result<()> {
        self.enter(&format!("set_canary_weight {percent}"))?;
        self.weight = percent;
        self.record(format!("set_canary_weight {percent}"));
        match self.fault {
            Some((at, _))
                if at == percent && self.fault_since.is_none() && !self.fault_at_teardown =>
            {
                self.fault_since = Some(Instant::now());
            }
            _ if percent == 0 && self.fault_since.is_some() => {
                self.rolled_back_at.get_or_insert_with(Instant::now);
            }
            _ => {}
        }
        Ok(())
    }

    fn start_traffic(&mut self, rate: u32) -> anyhow::Result<()> {
        self.enter(&format!("start_traffic {rate}"))?;
        self.record(format!("start_traffic {rate}"));
        Ok(())
    }

    fn pin_traffic_to_canary(&mut self, pinned: bool) -> anyhow::Result<Outcome> {
        self.enter(&format!("pin_traffic_to_canary {pinned}"))?;
        if self.cannot_pin {
            return Ok(Outcome::Skipped("the fake target cannot pin".into()));
        }
        self.record(format!("pin_traffic_to_canary {pinned}"));
        Ok(Outcome::Done(format!("pinned {pinned}")))
    }

    fn take_traffic(&mut self) -> anyhow::Result<TrafficStats> {
        self.enter("take_traffic")?;
        Ok(TrafficStats::default())
    }

    fn front_door(&self, side: Side, _window: Duration) -> anyhow::Result<(u64, u64)> {
        self.enter(&format!("front_door {side:?}").to_lowercase())?;
        Ok(self.door.unwrap_or((self.requests, 0)))
    }

    fn measure(&self, side: Side, window: Duration) -> anyhow::Result<Measurement> {
        self.enter(&format!("measure {side:?}").to_lowercase())?;
        let requests = match self.rate {
            Some(rate) => (rate * window.as_secs_f64()) as u64,
            None => self.requests,
        };
        let traffic = requests > 0;
        let ms = |v| traffic.then(|| Duration::from_millis(v));
        let mut m = Measurement {
            requests,
            errors: 0,
            p50: ms(5),
            p95: ms(9),
            p99: ms(12),
            memory_bytes: Some(300 << 20),
            latency: None,
        };
        if let (Some((_, fault)), Some(since)) = (self.fault, self.fault_since) {
            if side == Side::Canary && self.weight > 0 {
                match fault {
                    Fault::ErrorRate(percent) => {
                        m.errors = (requests as f64 * percent / 100.0).round() as u64;
                    }
                    Fault::P95(latency) => {
                        m.p95 = traffic.then_some(latency);
                        m.p99 = traffic.then_some(latency * 2);
                    }
                    Fault::MemoryGrowth(percent_per_second) => {
                        let grown =
                            1.0 + percent_per_second / 100.0 * since.elapsed().as_secs_f64();
                        m.memory_bytes = Some(((300u64 << 20) as f64 * grown) as u64);
                    }
                }
            }
        }
        Ok(m)
    }

    fn side_sample(&self, side: Side, _window: Duration) -> anyhow::Result<SideSample> {
        self.enter(&format!("side_sample {side:?}").to_lowercase())?;
        match (&self.samples, side) {
            (Some((canary, _)), Side::Canary) => Ok(canary.clone()),
            (Some((_, stable)), Side::Stable) => Ok(stable.clone()),
            (None, _) => bail!("fake target: no samples configured"),
        }
    }

    fn parity(&self, _corpus: &Path, _against: ParityReference) -> anyhow::Result<ParityReport> {
        self.enter("parity")?;
        self.record("parity".into());
        Ok(ParityReport {
            texts: 8,
            min_cosine: 0.999_999,
            token_mismatches: 0,
        })
    }

    fn scale(&mut self, deployment: &str, replicas: u32) -> anyhow::Result<Outcome> {
        self.enter(&format!("scale {deployment} {replicas}"))?;
        if replicas == 0 && self.fault_at_teardown && self.fault.is_some() {
            self.fault_since.get_or_insert_with(Instant::now);
        }
        self.replicas.retain(|(d, _)| d != deployment);
        self.replicas.push((deployment.to_string(), replicas));
        self.record(format!("scale {deployment} {replicas}"));
        Ok(Outcome::Done(format!("{deployment} at {replicas}")))
    }

    fn teardown_legacy(&mut self, deployment: &str, _grace: Duration) -> anyhow::Result<Outcome> {
        self.enter(&format!("teardown {deployment}"))?;
        if self.weight != 100 {
            bail!("fake target: teardown at weight {}%", self.weight);
        }
        self.retired = true;
        self.record(format!("teardown {deployment}"));
        Ok(Outcome::Done(format!("{deployment} retired")))
    }

    fn inject_fault(&mut self) -> anyhow::Result<()> {
        self.enter("inject_fault")?;
        bail!("the fake target injects no faults")
    }

    fn stop(&mut self) -> anyhow::Result<()> {
        self.enter("stop")?;
        self.started = false;
        Ok(())
    }
}
