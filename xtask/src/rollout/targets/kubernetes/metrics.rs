//! Measurements from the cluster's Prometheus: the services' own series with the PromQL the
//! local target uses (only the job names differ), and ingress-nginx's view of the front door.

use std::time::Duration;

use crate::{
    rollout::{
        judge::SideSample,
        targets::{Measurement, Side},
    },
    stack::prometheus::{window_secs, MeasurementQueries, PrometheusApi},
};

/// The cluster's Prometheus and the job names of both sides.
pub struct ClusterMetrics {
    api: PrometheusApi,
    canary_job: String,
    stable_job: String,
    /// The namespace and Service behind the canary Ingress, as ingress-nginx labels requests.
    namespace: String,
    canary_service: String,
}

impl ClusterMetrics {
    /// Queries Prometheus at `url`.
    pub fn new(
        url: &str,
        canary_job: &str,
        stable_job: &str,
        namespace: &str,
        canary_service: &str,
    ) -> Self {
        Self {
            api: PrometheusApi::at_url(url),
            canary_job: canary_job.to_string(),
            stable_job: stable_job.to_string(),
            namespace: namespace.to_string(),
            canary_service: canary_service.to_string(),
        }
    }

    /// Where Prometheus is.
    pub fn url(&self) -> &str {
        self.api.url()
    }

    /// Server-side measurement of `side` over the trailing `window`.
    pub fn measure(&self, side: Side, window: Duration) -> anyhow::Result<Measurement> {
        self.api
            .measure_with(&queries(side, &self.canary_job, &self.stable_job, window))
    }

    /// The judge's sample of `side` over the trailing `window` (the histogram's buckets).
    pub fn side_sample(&self, side: Side, window: Duration) -> anyhow::Result<SideSample> {
        self.api.side_sample_at(
            &queries(side, &self.canary_job, &self.stable_job, window),
            None,
        )
    }

    /// `(answered, failed)` requests ingress-nginx sent to the canary's Service over `window`
    /// (its 502/503/504 for a canary with no ready pod count here, not in the canary's series).
    pub fn front_door(&self, window: Duration) -> anyhow::Result<(u64, u64)> {
        let [answered, failed] = front_door_queries(&self.namespace, &self.canary_service, window);
        let answered_series = self.api.query(&answered)?;
        anyhow::ensure!(
            !answered_series.is_empty(),
            "Prometheus has no ingress-nginx series for Service {} (is the controller scraped?)",
            self.canary_service
        );
        let value = |samples: Vec<crate::stack::prometheus::SeriesValue>| {
            samples
                .first()
                .map(|s| s.value)
                .filter(|v| v.is_finite())
                .map_or(0, |v| v.max(0.0).round() as u64)
        };
        Ok((value(answered_series), value(self.api.query(&failed)?)))
    }
}

/// The queries of one side: the canary's job carries Candle's memory gauge.
pub fn queries(
    side: Side,
    canary_job: &str,
    stable_job: &str,
    window: Duration,
) -> MeasurementQueries {
    match side {
        Side::Canary => MeasurementQueries::for_job(canary_job, true, window),
        Side::Stable => MeasurementQueries::for_job(stable_job, false, window),
    }
}

/// ingress-nginx's request counter for the canary's Service `service` in `namespace`: all
/// answers, and the 5xx among them. While the Ingress is a canary, ingress-nginx labels a request
/// it routed there with the primary's `service` and the canary upstream
/// (`NAMESPACE-SERVICE-PORT`) in `canary`; once it is the primary, with its own `service`.
pub fn front_door_queries(namespace: &str, service: &str, window: Duration) -> [String; 2] {
    let secs = window_secs(window);
    let series = |extra: &str| {
        format!(
            r#"sum(increase(nginx_ingress_controller_requests{{canary=~"{namespace}-{service}-.+"{extra}}}[{secs}s]) or increase(nginx_ingress_controller_requests{{service="{service}",canary!~".+"{extra}}}[{secs}s]))"#
        )
    };
    [series(""), series(r#",status=~"5..""#)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_side_is_measured_by_its_job_with_the_local_targets_promql() {
        let canary = queries(
            Side::Canary,
            "akidb-candle",
            "akidb-mlx",
            Duration::from_secs(300),
        );
        assert_eq!(
            canary.requests,
            r#"sum(increase(candle_requests_total{job="akidb-candle",route="/api/v1/embed"}[300s]))"#
        );
        assert!(canary.memory.is_some());
        let stable = queries(
            Side::Stable,
            "akidb-candle",
            "akidb-mlx",
            Duration::from_secs(1),
        );
        assert!(
            stable.errors.contains(r#"job="akidb-mlx""#),
            "{}",
            stable.errors
        );
        assert!(
            stable.errors.ends_with(r#"status=~"5.."}[2s]))"#),
            "{}",
            stable.errors
        );
        assert_eq!(stable.memory, None);
    }

    #[test]
    fn the_front_door_counts_the_canary_services_requests_and_its_5xx() {
        let [all, failed] =
            front_door_queries("production", "akidb-candle", Duration::from_secs(60));
        assert_eq!(
            all,
            r#"sum(increase(nginx_ingress_controller_requests{canary=~"production-akidb-candle-.+"}[60s]) or increase(nginx_ingress_controller_requests{service="akidb-candle",canary!~".+"}[60s]))"#
        );
        assert_eq!(failed.matches(r#"status=~"5..""#).count(), 2, "{failed}");
    }
}
