//! Prometheus metrics. The names are part of the contract: the rollout's SLO gates, alerts,
//! dashboards and runbooks query them, so they are defined here once.

use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Requests by route, model and status code.
pub const REQUESTS_TOTAL: &str = "candle_requests_total";
/// Request latency by route.
pub const REQUEST_DURATION: &str = "candle_request_duration_seconds";
/// Failures by kind.
pub const ERRORS_TOTAL: &str = "candle_errors_total";
/// Requests being served now.
pub const REQUESTS_IN_FLIGHT: &str = "candle_requests_in_flight";
/// Texts waiting for inference, by model.
pub const QUEUE_DEPTH: &str = "candle_queue_depth";
/// Inputs per forward pass, by model.
pub const BATCH_SIZE: &str = "candle_batch_size";
/// Tokens embedded, by model.
pub const TOKENS_TOTAL: &str = "candle_tokens_total";
/// Time to load each model.
pub const MODEL_LOAD_DURATION: &str = "candle_model_load_duration_seconds";
/// Time of each forward pass, by model.
pub const INFERENCE_DURATION: &str = "candle_model_inference_duration_seconds";
/// Resident memory of the process.
pub const MEMORY_USAGE: &str = "candle_memory_usage_bytes";
/// Version and revision of the running build (always 1).
pub const BUILD_INFO: &str = "akidb_build_info";

/// Latency buckets (seconds): a bound at each SLO (20/35/50 ms) and at the rollback trigger
/// (100 ms), so that a percentile's bucket lies wholly on one side of each, and bounds every
/// 2.5 to 15 ms around them for the estimates.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.015, 0.0175, 0.02, 0.0225, 0.025, 0.03, 0.035, 0.04, 0.045, 0.05,
    0.06, 0.075, 0.09, 0.1, 0.125, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Every metric of the service, in one registry.
pub struct Metrics {
    registry: Registry,
    /// `candle_requests_total{route,model,status}`.
    pub requests: IntCounterVec,
    /// `candle_request_duration_seconds{route}`.
    pub request_duration: HistogramVec,
    /// `candle_errors_total{kind}`.
    pub errors: IntCounterVec,
    /// `candle_requests_in_flight`.
    pub in_flight: IntGauge,
    /// `candle_queue_depth{model}`.
    pub queue_depth: IntGaugeVec,
    /// `candle_batch_size{model}`.
    pub batch_size: HistogramVec,
    /// `candle_tokens_total{model}`.
    pub tokens: IntCounterVec,
    /// `candle_model_load_duration_seconds{model}`.
    pub model_load: GaugeVec,
    /// `candle_model_inference_duration_seconds{model}`.
    pub inference: HistogramVec,
    /// `candle_memory_usage_bytes`.
    pub memory: Gauge,
}

/// One request being served, as REST and gRPC both observe it: in flight from
/// [`Metrics::start_request`] until [`RequestObservation::finish`] or drop (a cancelled request
/// leaves `candle_requests_in_flight` but is not counted).
pub struct RequestObservation<'a> {
    metrics: &'a Metrics,
    route: &'a str,
    started: std::time::Instant,
}

impl RequestObservation<'_> {
    /// Counts the request in `candle_requests_total{route, model, status}` and times it.
    /// `status` is the HTTP status on every transport: gRPC reports the one its outcome maps to
    /// (200 for OK; `failure::Answer::status` for a failure), so one vocabulary serves the
    /// alerts and the rollout's gates.
    pub fn finish(self, model: &str, status: u16) {
        let status = status.to_string();
        self.metrics
            .requests
            .with_label_values(&[self.route, model, &status])
            .inc();
        self.metrics
            .request_duration
            .with_label_values(&[self.route])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for RequestObservation<'_> {
    fn drop(&mut self) {
        self.metrics.in_flight.dec();
    }
}

impl Metrics {
    /// A request on `route` starts: counted in flight until its observation ends.
    pub fn start_request<'a>(&'a self, route: &'a str) -> RequestObservation<'a> {
        self.in_flight.inc();
        RequestObservation {
            metrics: self,
            route,
            started: std::time::Instant::now(),
        }
    }

    /// Registers every metric; error kinds and the build info are present from the start.
    pub fn new(version: &str, revision: &str) -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(REQUESTS_TOTAL, "Requests by route, model and status code."),
            &["route", "model", "status"],
        )
        .expect("valid metric");
        let request_duration = HistogramVec::new(
            HistogramOpts::new(REQUEST_DURATION, "Request latency in seconds, by route.")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )
        .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new(ERRORS_TOTAL, "Failed requests by kind."),
            &["kind"],
        )
        .expect("valid metric");
        let in_flight =
            IntGauge::new(REQUESTS_IN_FLIGHT, "Requests being served now.").expect("valid metric");
        let queue_depth = IntGaugeVec::new(
            Opts::new(QUEUE_DEPTH, "Texts waiting for inference, by model."),
            &["model"],
        )
        .expect("valid metric");
        let batch_size = HistogramVec::new(
            HistogramOpts::new(BATCH_SIZE, "Inputs per forward pass, by model.")
                .buckets(BATCH_BUCKETS.to_vec()),
            &["model"],
        )
        .expect("valid metric");
        let tokens = IntCounterVec::new(
            Opts::new(
                TOKENS_TOTAL,
                "Tokens embedded (special tokens included), by model.",
            ),
            &["model"],
        )
        .expect("valid metric");
        let model_load = GaugeVec::new(
            Opts::new(MODEL_LOAD_DURATION, "Seconds it took to load each model."),
            &["model"],
        )
        .expect("valid metric");
        let inference = HistogramVec::new(
            HistogramOpts::new(INFERENCE_DURATION, "Seconds per forward pass, by model.")
                .buckets(LATENCY_BUCKETS.to_vec()),
            &["model"],
        )
        .expect("valid metric");
        let memory = Gauge::new(MEMORY_USAGE, "Resident memory of the process in bytes.")
            .expect("valid metric");
        let build_info = IntGaugeVec::new(
            Opts::new(BUILD_INFO, "Version and revision of the running build."),
            &["version", "revision"],
        )
        .expect("valid metric");
        build_info.with_label_values(&[version, revision]).set(1);
        for kind in crate::failure::FailureKind::ALL {
            errors.with_label_values(&[kind.label()]).reset();
        }
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_duration.clone()),
            Box::new(errors.clone()),
            Box::new(in_flight.clone()),
            Box::new(queue_depth.clone()),
            Box::new(batch_size.clone()),
            Box::new(tokens.clone()),
            Box::new(model_load.clone()),
            Box::new(inference.clone()),
            Box::new(memory.clone()),
            Box::new(build_info),
        ] {
            registry
                .register(collector)
                .expect("metric names are unique");
        }
        let metrics = Self {
            registry,
            requests,
            request_duration,
            errors,
            in_flight,
            queue_depth,
            batch_size,
            tokens,
            model_load,
            inference,
            memory,
        };
        metrics.memory.set(resident_bytes() as f64);
        metrics
    }

    /// Creates the per-model series at zero, so dashboards see them before the first request.
    pub fn register_model(&self, model: &str, routes: &[&str]) {
        for route in routes {
            self.requests
                .with_label_values(&[route, model, "200"])
                .reset();
            let _ = self.request_duration.with_label_values(&[route]);
        }
        self.queue_depth.with_label_values(&[model]).set(0);
        let _ = self.batch_size.with_label_values(&[model]);
        self.tokens.with_label_values(&[model]).reset();
        let _ = self.inference.with_label_values(&[model]);
    }

    /// The Prometheus text exposition of every metric, with memory read now.
    pub fn render(&self) -> String {
        self.memory.set(resident_bytes() as f64);
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding of gathered metrics");
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Resident set size of this process, from `/proc/self/statm` (0 where that is unavailable).
pub fn resident_bytes() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .unwrap_or(0);
    pages * 4096
}
