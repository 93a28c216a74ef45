//! The three dashboards of the plan: rollout progress (canary against stable), service
//! performance (the Candle service from inside) and user impact (what clients see through the
//! ingress). Each panel judged by an SLO draws the SLO's recorded series beside it.

pub mod model;

use model::{query, Dashboard, DashboardBuilder, PanelKind};

use super::promql::{
    both_backends, candle_pods, recorded, EMBED_ROUTES, ERRORS_TOTAL, LEGACY, RATE_WINDOW,
    REQUESTS_TOTAL, REQUEST_DURATION_BUCKET, SERVICE,
};

/// The dashboards, each with its file name.
pub fn dashboards() -> Vec<(&'static str, Dashboard)> {
    vec![
        ("rollout-progress.json", rollout_progress()),
        ("service-performance.json", service_performance()),
        ("user-impact.json", user_impact()),
    ]
}

/// `sum by (by) (rate(metric{selector}[5m]))`.
fn rate_by(by: &str, metric: &str, selector: &str) -> String {
    format!("sum by ({by}) (rate({metric}{{{selector}}}[{RATE_WINDOW}]))")
}

/// Quantile `q` of an ingress-nginx latency histogram, by backend.
fn ingress_latency(q: f64, by: &str) -> String {
    format!(
        "histogram_quantile({q}, sum by ({by}) (rate(nginx_ingress_controller_request_duration_seconds_bucket{{{}}}[{RATE_WINDOW}])))",
        both_backends()
    )
}

fn rollout_progress() -> Dashboard {
    let backends = both_backends();
    let ingress_errors = format!(
        "{} / {}",
        rate_by(
            "service",
            "nginx_ingress_controller_requests",
            &format!(r#"{backends},status=~"5..""#)
        ),
        rate_by("service", "nginx_ingress_controller_requests", &backends)
    );
    DashboardBuilder::new(
        "akidb-rollout-progress",
        "AkiDB Candle: rollout progress",
        "The canary (akidb-candle) against the stable side (akidb-mlx) through the ingress.",
    )
    .panel(
        PanelKind::Timeseries,
        12,
        (
            "Traffic split",
            "Each backend's share of the requests through the ingress; the canary's follows the plan's weights.",
        ),
        "percentunit",
        vec![query(recorded::TRAFFIC_SHARE, "{{service}}")],
    )
    .panel(
        PanelKind::Timeseries,
        12,
        (
            "Ready replicas",
            "Available pods of each deployment (kube-state-metrics).",
        ),
        "short",
        vec![query(
            format!(
                r#"sum by (deployment) (kube_deployment_status_replicas_available{{deployment=~"{SERVICE}|{LEGACY}"}})"#
            ),
            "{{deployment}}",
        )],
    )
    .panel(
        PanelKind::Timeseries,
        12,
        (
            "Error rate: canary vs stable",
            "5xx answers per request through the ingress, by backend, against the plan's SLO.",
        ),
        "percentunit",
        vec![
            query(ingress_errors, "{{service}}"),
            query(recorded::SLO_ERROR_RATIO, "SLO"),
        ],
    )
    .panel(
        PanelKind::Timeseries,
        12,
        (
            "P95 latency: canary vs stable",
            "P95 of the request time at the ingress, by backend, against the plan's SLO.",
        ),
        "s",
        vec![
            query(ingress_latency(0.95, "service, le"), "{{service}}"),
            query(recorded::slo_latency(95), "SLO"),
        ],
    )
    .panel(
        PanelKind::Timeseries,
        12,
        (
            "Candle error rate and latency (service side)",
            "The recorded series the alerts and rollback triggers read.",
        ),
        "short",
        vec![
            query(recorded::ERROR_RATIO, "error ratio {{job}}"),
            query(recorded::latency(95), "P95 seconds {{job}}"),
        ],
    )
    .panel(
        PanelKind::Timeseries,
        12,
        (
            "Firing alerts",
            "Alerts of the service now firing, rollback triggers included.",
        ),
        "short",
        vec![query(
            format!(r#"sum by (alertname) (ALERTS{{alertstate="firing",service="{SERVICE}"}})"#),
            "{{alertname}}",
        )],
    )
    .build()
}

fn service_performance() -> Dashboard {
    let pods = candle_pods();
    let mut builder = DashboardBuilder::new(
        "akidb-service-performance",
        "AkiDB Candle: service performance",
        "The Candle service from its own metrics: throughput, latency, errors, batching, queue and resources.",
    )
    .panel(
        PanelKind::Timeseries,
        12,
        ("Request rate", "Embedding requests per second, by route."),
        "reqps",
        vec![query(
            rate_by("route", REQUESTS_TOTAL, EMBED_ROUTES),
            "{{route}}",
        )],
    )
    .panel(
        PanelKind::Heatmap,
        12,
        (
            "Latency distribution",
            "Embedding request latency histogram.",
        ),
        "s",
        vec![query(
            rate_by("le", REQUEST_DURATION_BUCKET, EMBED_ROUTES),
            "{{le}}",
        )],
    );
    let quantiles = super::promql::QUANTILES;
    let mut percentiles: Vec<_> = quantiles
        .iter()
        .map(|q| query(recorded::latency(*q), format!("P{q}")))
        .collect();
    percentiles.extend(
        quantiles
            .iter()
            .map(|q| query(recorded::slo_latency(*q), format!("P{q} SLO"))),
    );
    builder = builder
        .panel(
            PanelKind::Timeseries,
            12,
            (
                "Latency percentiles",
                "P50, P95 and P99 of embedding requests, each against its SLO.",
            ),
            "s",
            percentiles,
        )
        .panel(
            PanelKind::Timeseries,
            12,
            ("Errors by kind", "Failed requests per second, by kind."),
            "reqps",
            vec![query(format!("sum by (kind) (rate({ERRORS_TOTAL}[{RATE_WINDOW}]))"), "{{kind}}")],
        )
        .panel(
            PanelKind::Timeseries,
            12,
            (
                "Batch size",
                "Inputs per forward pass: the mean and P95, by model.",
            ),
            "short",
            vec![
                query(
                    format!(
                        "sum by (model) (rate(candle_batch_size_sum[{RATE_WINDOW}])) / sum by (model) (rate(candle_batch_size_count[{RATE_WINDOW}]))"
                    ),
                    "mean {{model}}",
                ),
                query(
                    format!(
                        "histogram_quantile(0.95, sum by (model, le) (rate(candle_batch_size_bucket[{RATE_WINDOW}])))"
                    ),
                    "P95 {{model}}",
                ),
            ],
        )
        .panel(
            PanelKind::Timeseries,
            12,
            (
                "Queue and in flight",
                "Texts waiting for inference by model, and requests being served.",
            ),
            "short",
            vec![
                query("sum by (model) (candle_queue_depth)", "queued {{model}}"),
                query("sum(candle_requests_in_flight)", "in flight"),
            ],
        )
        .panel(
            PanelKind::Timeseries,
            12,
            (
                "Inference time",
                "P95 of one forward pass, by model.",
            ),
            "s",
            vec![query(
                format!(
                    "histogram_quantile(0.95, sum by (model, le) (rate(candle_model_inference_duration_seconds_bucket[{RATE_WINDOW}])))"
                ),
                "P95 {{model}}",
            )],
        )
        .panel(
            PanelKind::Timeseries,
            12,
            (
                "Tokens",
                "Tokens embedded per second, by model.",
            ),
            "short",
            vec![query(
                format!("sum by (model) (rate(candle_tokens_total[{RATE_WINDOW}]))"),
                "{{model}}",
            )],
        )
        .panel(
            PanelKind::Timeseries,
            12,
            (
                "CPU",
                "Cores used by each pod (cAdvisor), and use per request across the deployment (what the HPA scales on).",
            ),
            "short",
            vec![
                query(
                    format!(
                        r#"sum by (pod) (rate(container_cpu_usage_seconds_total{{{pods},container!="",container!="POD"}}[{RATE_WINDOW}]))"#
                    ),
                    "{{pod}}",
                ),
                query(recorded::CPU_REQUEST_RATIO, "of requests {{namespace}}"),
            ],
        )
        .panel(
            PanelKind::Timeseries,
            12,
            (
                "Memory",
                "Resident memory of each process, its container's working set, and the plan's per-pod SLO.",
            ),
            "bytes",
            vec![
                query("max by (instance) (candle_memory_usage_bytes)", "RSS {{instance}}"),
                query(
                    format!(
                        r#"max by (pod) (container_memory_working_set_bytes{{{pods},container!="",container!="POD"}})"#
                    ),
                    "working set {{pod}}",
                ),
                query(recorded::SLO_MEMORY, "SLO"),
            ],
        );
    builder.build()
}

fn user_impact() -> Dashboard {
    let backends = both_backends();
    let all = rate_by("", "nginx_ingress_controller_requests", &backends);
    let all = all.replace("sum by () ", "sum ");
    let ok = rate_by(
        "",
        "nginx_ingress_controller_requests",
        &format!(r#"{backends},status!~"5..""#),
    )
    .replace("sum by () ", "sum ");
    DashboardBuilder::new(
        "akidb-user-impact",
        "AkiDB Candle: user impact",
        "What clients see through the ingress, whichever backend served them.",
    )
    .panel(
        PanelKind::Stat,
        8,
        (
            "Success rate",
            "Requests answered without a server error, over the last 5 minutes.",
        ),
        "percentunit",
        vec![query(format!("{ok} / {all}"), "success")],
    )
    .panel(
        PanelKind::Stat,
        8,
        ("Request rate", "Requests per second through the ingress."),
        "reqps",
        vec![query(all.clone(), "requests")],
    )
    .panel(
        PanelKind::Stat,
        8,
        ("P95 request duration", "As clients see it, all backends."),
        "s",
        vec![query(ingress_latency(0.95, "le"), "P95")],
    )
    .panel(
        PanelKind::Timeseries,
        12,
        (
            "Request duration",
            "P50, P95 and P99 at the ingress, all backends, against the P95 SLO.",
        ),
        "s",
        vec![
            query(ingress_latency(0.5, "le"), "P50"),
            query(ingress_latency(0.95, "le"), "P95"),
            query(ingress_latency(0.99, "le"), "P99"),
            query(recorded::slo_latency(95), "P95 SLO"),
        ],
    )
    .panel(
        PanelKind::Timeseries,
        12,
        (
            "Error types",
            "Client and server errors at the ingress by status, and the service's failures by kind.",
        ),
        "reqps",
        vec![
            query(
                rate_by(
                    "status",
                    "nginx_ingress_controller_requests",
                    &format!(r#"{backends},status=~"[45]..""#),
                ),
                "HTTP {{status}}",
            ),
            query(
                format!(r#"sum by (kind) (rate({ERRORS_TOTAL}{{kind!=""}}[{RATE_WINDOW}]))"#),
                "{{kind}}",
            ),
        ],
    )
    .build()
}
