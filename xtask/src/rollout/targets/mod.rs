//! Targets: how the runner touches the world. The runner decides *when* (gates, approvals,
//! rollback); a target knows *how* on one kind of system: `local` (nginx, Prometheus and the two
//! services on this machine) or `kubernetes`.

pub mod histogram;
pub mod kubernetes;
pub mod local;

use std::{path::Path, time::Duration};

use crate::rollout::{judge::SideSample, plan::step::ParityReference};

/// Which side of the split a measurement covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The new Candle service.
    Canary,
    /// The legacy service.
    Stable,
}

/// What a target measured over a window (server side, from its metrics system).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Measurement {
    /// Requests answered in the window.
    pub requests: u64,
    /// Requests answered with a 5xx in the window.
    pub errors: u64,
    /// Latency percentiles, when there was traffic.
    pub p50: Option<Duration>,
    /// 95th percentile.
    pub p95: Option<Duration>,
    /// 99th percentile.
    pub p99: Option<Duration>,
    /// Largest resident memory of any instance at the end of the window.
    pub memory_bytes: Option<u64>,
    /// The latency histogram of the window, when the metrics system reports buckets: gates
    /// judge a percentile by the bounds of its bucket, not by an interpolated estimate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<histogram::LatencyHistogram>,
}

/// What the traffic generator saw (client side) since it started or was last reset.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrafficStats {
    /// Requests sent.
    pub sent: u64,
    /// Requests that failed (transport error or 5xx).
    pub failed: u64,
    /// Requests resent once after their keep-alive connection closed under them.
    #[serde(default)]
    pub retried: u64,
    /// Requests answered by the canary.
    pub canary: u64,
    /// Requests answered by the stable side.
    pub stable: u64,
    /// Client-side latency percentiles of successful requests.
    pub p50: Option<Duration>,
    /// 95th percentile.
    pub p95: Option<Duration>,
    /// 99th percentile.
    pub p99: Option<Duration>,
}

/// The result of a parity check.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ParityReport {
    /// Texts compared.
    pub texts: usize,
    /// Lowest cosine over the texts.
    pub min_cosine: f64,
    /// Texts whose token counts differ.
    pub token_mismatches: usize,
}

/// The outcome of an action that a target may not support.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done, with what was done.
    Done(String),
    /// Not applicable on this target, with why.
    Skipped(String),
}

/// A system the rollout acts on.
pub trait Target {
    /// Short name (`local`, `kubernetes`).
    fn name(&self) -> &'static str;
    /// Brings up what the target needs; safe to call again on resume.
    fn start(&mut self) -> anyhow::Result<()>;
    /// Sends `percent` of traffic to the canary (0 = all stable), without dropping requests.
    fn set_canary_weight(&mut self, percent: u8) -> anyhow::Result<()>;
    /// Starts (or retargets) constant-rate background traffic through the front door.
    fn start_traffic(&mut self, rate: u32) -> anyhow::Result<()>;
    /// Starts a load test of `rate` req/s lasting `duration` (wall clock); by default the
    /// background traffic of [`start_traffic`](Self::start_traffic).
    fn start_load(&mut self, rate: u32, duration: Duration) -> anyhow::Result<()> {
        let _ = duration;
        self.start_traffic(rate)
    }
    /// Ends the load test [`start_load`](Self::start_load) began, once its duration is over:
    /// what the target saw of it, if it has more to say than the gate's measurements.
    fn finish_load(&mut self) -> anyhow::Result<Option<String>> {
        Ok(None)
    }
    /// Sends the background traffic to the canary whatever the weight (`pinned`), as clients
    /// sending ingress-nginx's `X-Canary: always` do, or back to the split. `Skipped` where
    /// the target cannot (its load test then measures the side the split serves).
    fn pin_traffic_to_canary(&mut self, pinned: bool) -> anyhow::Result<Outcome> {
        let _ = pinned;
        Ok(Outcome::Skipped(format!(
            "the {} target cannot pin its load to the canary",
            self.name()
        )))
    }
    /// Client-side traffic counters since the last call (then resets them).
    fn take_traffic(&mut self) -> anyhow::Result<TrafficStats>;
    /// What the front door answered for one side over the trailing `window`: (answered,
    /// failed). Failures that never reach a service (a crashed canary) only show here.
    fn front_door(&self, side: Side, window: Duration) -> anyhow::Result<(u64, u64)>;
    /// Server-side measurement of one side over the trailing `window`.
    fn measure(&self, side: Side, window: Duration) -> anyhow::Result<Measurement>;
    /// What the canary-vs-baseline judge needs of one side over the trailing `window`: its
    /// latencies (raw, or the histogram's bucket counts) with requests and errors. Targets that
    /// cannot give them say so, and a comparing gate is then inconclusive.
    fn side_sample(&self, side: Side, window: Duration) -> anyhow::Result<SideSample> {
        let _ = (side, window);
        anyhow::bail!(
            "the {} target cannot give per-side latency samples for a comparison",
            self.name()
        )
    }
    /// Embeds the texts of `corpus` with the canary and with `against`; compares them.
    fn parity(&self, corpus: &Path, against: ParityReference) -> anyhow::Result<ParityReport>;
    /// Sets a deployment's replicas.
    fn scale(&mut self, deployment: &str, replicas: u32) -> anyhow::Result<Outcome>;
    /// Retires the legacy service after `grace`.
    fn teardown_legacy(&mut self, deployment: &str, grace: Duration) -> anyhow::Result<Outcome>;
    /// Makes the canary fail (for `--inject-fault`): every canary request errors from now on.
    fn inject_fault(&mut self) -> anyhow::Result<()>;
    /// Stops everything the target started.
    fn stop(&mut self) -> anyhow::Result<()>;
}
