//! The PromQL the monitoring is made of: the metric names it reads, the recording rules it
//! records, and the expression of each alert signal. Dashboards and alerts read the recorded
//! series where one exists, so the two compute "error rate" and "P95" the same way.

use std::time::Duration;

use super::alerts::Signal;
use crate::project::{CANARY_DEPLOYMENT, LEGACY_DEPLOYMENT};

/// The Candle deployment (and its Service, HPA and pods' name prefix) in Kubernetes.
pub const SERVICE: &str = CANARY_DEPLOYMENT;
/// The legacy deployment, the stable side of the canary split.
pub const LEGACY: &str = LEGACY_DEPLOYMENT;

/// Requests by route, model and status (the service's `candle_requests_total`).
pub const REQUESTS_TOTAL: &str = "candle_requests_total";
/// The request latency histogram's buckets.
pub const REQUEST_DURATION_BUCKET: &str = "candle_request_duration_seconds_bucket";
/// Failures by kind.
pub const ERRORS_TOTAL: &str = "candle_errors_total";
/// Resident memory of each process.
pub const MEMORY_USAGE: &str = "candle_memory_usage_bytes";

/// The routes that embed: the legacy REST API, the OpenAI-compatible one and gRPC. Health
/// probes and scrapes are left out, or they would dilute the error rate.
pub const EMBED_ROUTES: &str = r#"route=~"/api/v1/embed|/v1/embeddings|grpc.Embed""#;
/// Server-side failures: HTTP 5xx (gRPC requests are counted under the HTTP status their
/// outcome maps to, so one pattern covers every route).
pub const SERVER_ERRORS: &str = r#"status=~"5..""#;

/// The window of every rate, as PromQL writes it.
pub const RATE_WINDOW: &str = "5m";
/// The same window as a duration: the range of a rollback trigger's condition, which the
/// runner evaluates over the same range.
pub const RATE_WINDOW_DURATION: Duration = crate::rollout::plan::rollback::CONDITION_RANGE;

/// Metrics the monitoring reads that the service does not export, by exporter. The ci check
/// accepts a metric name only if the service exports it or it is listed here.
pub const EXTERNAL_METRICS: &[(&str, &[&str])] = &[
    (
        "ingress-nginx",
        &[
            "nginx_ingress_controller_requests",
            "nginx_ingress_controller_request_duration_seconds_bucket",
        ],
    ),
    (
        "kube-state-metrics",
        &[
            "kube_deployment_status_replicas_available",
            "kube_horizontalpodautoscaler_status_current_replicas",
            "kube_horizontalpodautoscaler_spec_max_replicas",
            "kube_pod_container_resource_requests",
        ],
    ),
    (
        "cAdvisor",
        &[
            "container_cpu_usage_seconds_total",
            "container_memory_working_set_bytes",
        ],
    ),
    ("Prometheus", &["ALERTS"]),
];

/// Names of the recorded series.
pub mod recorded {
    /// Embedding requests per second, by job.
    pub const REQUESTS: &str = "akidb:requests:rate5m";
    /// Failed embedding requests per second, by job.
    pub const ERRORS: &str = "akidb:request_errors:rate5m";
    /// Failed per answered embedding request, by job.
    pub const ERROR_RATIO: &str = "akidb:request_error_ratio:rate5m";
    /// CPU used per CPU requested by the Candle pods, by namespace.
    pub const CPU_REQUEST_RATIO: &str = "akidb:cpu_request_ratio:rate5m";
    /// Each backend's share of the requests through the ingress, by service.
    pub const TRAFFIC_SHARE: &str = "akidb:ingress_traffic_share:rate5m";
    /// The plan's error rate SLO, as a fraction.
    pub const SLO_ERROR_RATIO: &str = "akidb:slo:error_ratio";
    /// The plan's memory per pod SLO, in bytes.
    pub const SLO_MEMORY: &str = "akidb:slo:memory_per_pod_bytes";

    /// Latency quantile `q` of embedding requests, by job (`akidb:request_duration_seconds:p95_rate5m`).
    pub fn latency(q: u8) -> String {
        format!("akidb:request_duration_seconds:p{q}_rate5m")
    }

    /// The plan's latency SLO at quantile `q`, in seconds.
    pub fn slo_latency(q: u8) -> String {
        format!("akidb:slo:latency_p{q}_seconds")
    }
}

/// The latency quantiles recorded (and bounded by the plan's SLOs).
pub const QUANTILES: [u8; 3] = [50, 95, 99];

/// A selector of the Candle pods' containers (cAdvisor and kube-state-metrics label them by
/// pod; the pod-level cgroup has an empty `container`).
pub fn candle_pods() -> String {
    format!(r#"pod=~"{SERVICE}-.*""#)
}

/// A selector of both backends of the split in ingress-nginx's metrics.
pub fn both_backends() -> String {
    format!(r#"service=~"{SERVICE}|{LEGACY}""#)
}

/// The recording rules: what each recorded series is.
pub fn recording_rules() -> Vec<(String, String)> {
    let w = RATE_WINDOW;
    let mut rules = vec![
        (
            recorded::REQUESTS.to_string(),
            format!("sum by (job) (rate({REQUESTS_TOTAL}{{{EMBED_ROUTES}}}[{w}]))"),
        ),
        (
            recorded::ERRORS.to_string(),
            format!("sum by (job) (rate({REQUESTS_TOTAL}{{{EMBED_ROUTES},{SERVER_ERRORS}}}[{w}]))"),
        ),
        (
            recorded::ERROR_RATIO.to_string(),
            format!("{} / {}", recorded::ERRORS, recorded::REQUESTS),
        ),
    ];
    for q in QUANTILES {
        rules.push((
            recorded::latency(q),
            format!(
                "histogram_quantile({}, sum by (job, le) (rate({REQUEST_DURATION_BUCKET}{{{EMBED_ROUTES}}}[{w}])))",
                f64::from(q) / 100.0
            ),
        ));
    }
    let pods = candle_pods();
    rules.push((
        recorded::CPU_REQUEST_RATIO.to_string(),
        format!(
            r#"sum by (namespace) (rate(container_cpu_usage_seconds_total{{{pods},container!="",container!="POD"}}[{w}])) / sum by (namespace) (kube_pod_container_resource_requests{{{pods},resource="cpu"}})"#
        ),
    ));
    let backends = both_backends();
    rules.push((
        recorded::TRAFFIC_SHARE.to_string(),
        format!(
            "sum by (service) (rate(nginx_ingress_controller_requests{{{backends}}}[{w}])) / ignoring (service) group_left sum(rate(nginx_ingress_controller_requests{{{backends}}}[{w}]))"
        ),
    ));
    rules
}

/// The expression that is true (non-empty) while `signal` holds.
pub fn alert_expression(signal: &Signal) -> String {
    match signal {
        Signal::ErrorRatio(ratio) => format!("{} > {}", recorded::ERROR_RATIO, number(*ratio)),
        Signal::P95Latency(bound) => {
            format!("{} > {}", recorded::latency(95), seconds(*bound))
        }
        Signal::HealthyPodsBelow(count) => format!(
            r#"kube_deployment_status_replicas_available{{deployment="{SERVICE}"}} < {count}"#
        ),
        Signal::HpaNotScaling(cpu) => format!(
            r#"{} > {} and on (namespace) changes(kube_horizontalpodautoscaler_status_current_replicas{{horizontalpodautoscaler="{SERVICE}"}}[{RATE_WINDOW}]) == 0"#,
            recorded::CPU_REQUEST_RATIO,
            number(*cpu)
        ),
        Signal::MemoryAbove(bytes) => format!("{MEMORY_USAGE} > {bytes}"),
        // Against the same process `over` ago, not the window's minimum: a process still
        // loading its models would otherwise look like a leak.
        Signal::MemoryGrowth { above, over } => format!(
            "{MEMORY_USAGE} / {MEMORY_USAGE} offset {} > {}",
            duration(*over),
            number(1.0 + above)
        ),
    }
}

/// A number as PromQL reads it, without float noise (`0.005`, not `0.005000000000000001`).
pub fn number(value: f64) -> String {
    let rounded = (value * 1e12).round() / 1e12;
    format!("{rounded}")
}

/// A duration in seconds, as PromQL compares latencies.
pub fn seconds(value: Duration) -> String {
    number(value.as_secs_f64())
}

/// A duration as Prometheus writes it in ranges and `for:` (`5m`, `1h`, `90s`).
pub fn duration(value: Duration) -> String {
    let millis = value.as_millis();
    if millis == 0 {
        return "0s".to_string();
    }
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if millis.is_multiple_of(size) {
            return format!("{}{unit}", millis / size);
        }
    }
    format!("{millis}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_the_largest_whole_unit() {
        assert_eq!(duration(Duration::from_secs(300)), "5m");
        assert_eq!(duration(Duration::from_secs(6 * 3600)), "6h");
        assert_eq!(duration(Duration::from_secs(90)), "90s");
        assert_eq!(duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn the_rate_window_is_one_window() {
        assert_eq!(duration(RATE_WINDOW_DURATION), RATE_WINDOW);
    }

    #[test]
    fn thresholds_print_as_written() {
        assert_eq!(
            alert_expression(&Signal::ErrorRatio(0.005)),
            "akidb:request_error_ratio:rate5m > 0.005"
        );
        assert_eq!(
            alert_expression(&Signal::P95Latency(Duration::from_millis(100))),
            "akidb:request_duration_seconds:p95_rate5m > 0.1"
        );
        assert_eq!(number(1.0 + 0.2), "1.2");
    }
}
