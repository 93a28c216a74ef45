//! Prometheus scraping both services every second (job `stable`: the legacy stand-in, job
//! `canary`: Candle), and the PromQL that turns its series into a [`Measurement`].
//!
//! Both services export the same metric names (the stand-in copies Candle's), so one query
//! shape serves both sides; only memory differs, which the stand-in does not export.

use std::{
    fs,
    net::SocketAddr,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use serde::Deserialize;

use super::supervisor::{Ledger, Supervised, STOP_GRACE};
use crate::rollout::judge::{Histogram, Latencies, SideSample};
use crate::rollout::targets::histogram::LatencyHistogram;
use crate::{
    project::free_port,
    rollout::targets::{Measurement, Side},
};

/// The route every gate measures: the legacy API, which both sides serve.
pub const EMBED_ROUTE: &str = "/api/v1/embed";
/// How often Prometheus scrapes; windows shorter than two scrapes measure nothing.
const SCRAPE_INTERVAL: &str = "1s";
/// The shortest window a measurement covers, in seconds.
const MIN_WINDOW_SECS: u64 = 2;
/// How long Prometheus gets to start and scrape both targets once.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Prometheus's job name for a side.
pub fn job(side: Side) -> &'static str {
    match side {
        Side::Canary => "canary",
        Side::Stable => "stable",
    }
}

/// A running Prometheus server.
pub struct Prometheus {
    api: PrometheusApi,
    process: Supervised,
}

impl Prometheus {
    /// Starts Prometheus on a free port with its data under `dir`, scraping `stable` and
    /// `canary`, and waits until both are up.
    /// Data is kept for `retention` (see [`retention`]).
    pub fn start(
        binary: &Path,
        dir: &Path,
        stable: SocketAddr,
        canary: SocketAddr,
        retention: Duration,
        ledger: &Ledger,
    ) -> anyhow::Result<Self> {
        // Series of an earlier run would count in the first windows (instant queries look
        // back five minutes): start empty.
        let data = dir.join("data");
        if data.exists() {
            fs::remove_dir_all(&data).with_context(|| format!("removing {}", data.display()))?;
        }
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let config = dir.join("prometheus.yml");
        fs::write(&config, render(stable, canary))
            .with_context(|| format!("writing {}", config.display()))?;
        let listen = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .arg(format!(
                "--storage.tsdb.retention.time={}",
                retention_flag(retention)
            ))
            .arg("--log.level=warn");
        let process =
            Supervised::spawn("prometheus", command, &dir.join("prometheus.log"), ledger)?;
        let mut prometheus = Self {
            api: PrometheusApi::new(listen),
            process,
        };
        prometheus.await_targets_up()?;
        Ok(prometheus)
    }

    /// The query API.
    pub fn api(&self) -> &PrometheusApi {
        &self.api
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Stops the server.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.process.terminate(STOP_GRACE)
    }

    fn await_targets_up(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            self.process.ensure_running()?;
            if let Ok(up) = self.api.query("up") {
                let is_up = |side| {
                    up.iter()
                        .any(|s| s.job.as_deref() == Some(job(side)) && s.value >= 1.0)
                };
                if is_up(Side::Stable) && is_up(Side::Canary) {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "Prometheus at {} did not see both targets up within {READY_TIMEOUT:?}; see {}",
                    self.api.url,
                    self.process.log().display()
                );
            }
            thread::sleep(Duration::from_millis(250));
        }
    }
}

/// The shortest retention, whatever the plan: what this server kept before it was sized by
/// the plan, and Prometheus's own block size makes shorter pointless.
pub const MIN_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// How long Prometheus must keep data for a plan whose longest judged window is `longest` (at
/// the run's time scale): that window plus a quarter of it (at least an hour) for the scrapes
/// and queries at its edges, and never under [`MIN_RETENTION`].
pub fn retention(longest: Duration) -> Duration {
    let margin = (longest / 4).max(Duration::from_secs(3600));
    (longest + margin).max(MIN_RETENTION)
}

/// A retention as Prometheus's flag takes it, in whole minutes rounded up (`12600m`).
pub fn retention_flag(retention: Duration) -> String {
    format!("{}m", retention.as_secs().div_ceil(60).max(1))
}

/// The configuration: two jobs, one target each, scraped every second.
pub fn render(stable: SocketAddr, canary: SocketAddr) -> String {
    format!(
        "# Written by `cargo xtask rollout` (local target).\n\
         global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  scrape_timeout: {SCRAPE_INTERVAL}\n  \
         evaluation_interval: {SCRAPE_INTERVAL}\n\
         scrape_configs:\n\
         \x20 - job_name: {stable_job}\n    static_configs:\n      - targets: ['{stable}']\n\
         \x20 - job_name: {canary_job}\n    static_configs:\n      - targets: ['{canary}']\n",
        stable_job = job(Side::Stable),
        canary_job = job(Side::Canary),
    )
}

/// The HTTP query API of a Prometheus server (local, or a cluster's for the kubernetes target).
#[derive(Clone, Debug)]
pub struct PrometheusApi {
    /// `http://host:port` (or with a path prefix), without a trailing slash.
    url: String,
    agent: ureq::Agent,
}

/// One series of an instant vector.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesValue {
    /// The series' `job` label, when it has one.
    pub job: Option<String>,
    /// The series' `le` label (a histogram bucket's upper bound), when it has one.
    pub le: Option<String>,
    /// The value (may be NaN).
    pub value: f64,
}

impl PrometheusApi {
    /// The API of the server at `address`.
    pub fn new(address: SocketAddr) -> Self {
        Self::at_url(&format!("http://{address}"))
    }

    /// The API of the server at `url` (`http://prometheus.monitoring:9090`, or with the path
    /// prefix a proxy serves it under).
    pub fn at_url(url: &str) -> Self {
        Self {
            url: url.trim_end_matches('/').to_string(),
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(10))
                .build(),
        }
    }

    /// Where the server listens.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs an instant query; fails when Prometheus cannot be reached or rejects the query.
    pub fn query(&self, promql: &str) -> anyhow::Result<Vec<SeriesValue>> {
        self.query_at(promql, None)
    }

    /// Runs an instant query evaluated at `time` (Unix seconds; now when `None`).
    pub fn query_at(&self, promql: &str, time: Option<f64>) -> anyhow::Result<Vec<SeriesValue>> {
        let url = format!("{}/api/v1/query", self.url);
        let mut request = self.agent.get(&url).query("query", promql);
        if let Some(time) = time {
            request = request.query("time", &format!("{time:.3}"));
        }
        let response = match request.call() {
            Ok(response) => response,
            Err(ureq::Error::Status(status, response)) => {
                let body = response.into_string().unwrap_or_default();
                bail!("Prometheus rejected `{promql}` ({status}): {body}");
            }
            Err(error) => {
                bail!("Prometheus at {} cannot be reached: {error}", self.url)
            }
        };
        let body: QueryResponse = response
            .into_json()
            .with_context(|| format!("reading Prometheus's answer to `{promql}`"))?;
        if body.status != "success" {
            bail!(
                "Prometheus failed `{promql}`: {}",
                body.error.unwrap_or_default()
            );
        }
        if body.data.result_type != "vector" {
            bail!(
                "`{promql}` gave a {}, not an instant vector",
                body.data.result_type
            );
        }
        body.data
            .result
            .into_iter()
            .map(|series| {
                let value = series.value.1.parse::<f64>().with_context(|| {
                    format!("Prometheus value `{}` is not a number", series.value.1)
                })?;
                Ok(SeriesValue {
                    job: series.metric.job,
                    le: series.metric.le,
                    value,
                })
            })
            .collect()
    }

    /// The single value of a query that aggregates to one series, or `None` when it is empty
    /// or NaN (no traffic in the window).
    fn scalar(&self, promql: &str, time: Option<f64>) -> anyhow::Result<Option<f64>> {
        let samples = self.query_at(promql, time)?;
        Ok(samples
            .first()
            .map(|sample| sample.value)
            .filter(|v| v.is_finite()))
    }

    /// Requests, errors, latency percentiles and memory of `side` over the trailing `window`.
    pub fn measure(&self, side: Side, window: Duration) -> anyhow::Result<Measurement> {
        self.measure_with(&MeasurementQueries::new(side, window))
    }

    /// Runs the queries of one measurement.
    pub fn measure_with(&self, queries: &MeasurementQueries) -> anyhow::Result<Measurement> {
        self.measure_at(queries, None)
    }

    /// Runs the queries of one measurement, evaluated at `time` (Unix seconds; now when `None`).
    pub fn measure_at(
        &self,
        queries: &MeasurementQueries,
        time: Option<f64>,
    ) -> anyhow::Result<Measurement> {
        let count = |promql: &str| -> anyhow::Result<u64> {
            Ok(self
                .scalar(promql, time)?
                .map_or(0, |v| v.max(0.0).round() as u64))
        };
        let latency = |promql: &str| -> anyhow::Result<Option<Duration>> {
            Ok(self
                .scalar(promql, time)?
                .filter(|v| *v >= 0.0)
                .map(Duration::from_secs_f64))
        };
        Ok(Measurement {
            requests: count(&queries.requests)?,
            errors: count(&queries.errors)?,
            p50: latency(&queries.quantile(0.50))?,
            p95: latency(&queries.quantile(0.95))?,
            p99: latency(&queries.quantile(0.99))?,
            memory_bytes: match &queries.memory {
                Some(promql) => self.scalar(promql, time)?.map(|v| v.max(0.0) as u64),
                None => None,
            },
            latency: self.histogram(&queries.histogram())?,
        })
    }

    /// The judge's sample of one side at `time` (now when `None`): the latency histogram's
    /// bucket counts over the window, with its requests and errors.
    pub fn side_sample_at(
        &self,
        queries: &MeasurementQueries,
        time: Option<f64>,
    ) -> anyhow::Result<SideSample> {
        let count = |promql: &str| -> anyhow::Result<u64> {
            Ok(self
                .scalar(promql, time)?
                .map_or(0, |v| v.max(0.0).round() as u64))
        };
        let mut cumulative = Vec::new();
        for series in self.query_at(&queries.bucket_counts, time)? {
            let le = series
                .le
                .as_deref()
                .context("a histogram bucket series without an `le` label")?;
            let bound: f64 = le
                .parse()
                .with_context(|| format!("bucket bound `le=\"{le}\"` is not a number"))?;
            // Seconds to milliseconds; NaN counts (no traffic) are none.
            let value = if series.value.is_finite() {
                series.value
            } else {
                0.0
            };
            cumulative.push((bound * 1000.0, value));
        }
        Ok(SideSample {
            latencies: Latencies::Histogram(Histogram::from_cumulative(cumulative)?),
            requests: count(&queries.requests)?,
            errors: count(&queries.errors)?,
        })
    }

    /// The latency histogram a `sum by (le)` query returns; `None` when it holds no requests.
    fn histogram(&self, promql: &str) -> anyhow::Result<Option<LatencyHistogram>> {
        let pairs: Vec<(String, f64)> = self
            .query(promql)?
            .into_iter()
            .filter_map(|s| Some((s.le?, s.value)))
            .filter(|(_, v)| v.is_finite())
            .collect();
        let histogram =
            LatencyHistogram::from_le(&pairs).map_err(|e| anyhow::anyhow!("`{promql}`: {e}"))?;
        Ok((histogram.total > 0.0).then_some(histogram))
    }
}

/// The PromQL of one measurement.
#[derive(Clone, Debug, PartialEq)]
pub struct MeasurementQueries {
    /// Requests answered in the window.
    pub requests: String,
    /// 5xx answers in the window.
    pub errors: String,
    /// The selector of the latency histogram's rate, for `quantile`.
    buckets: String,
    /// Requests per latency bucket (cumulative, by `le`) in the window, for the judge.
    pub bucket_counts: String,
    /// Largest resident memory, when the side exports it.
    pub memory: Option<String>,
}

impl MeasurementQueries {
    /// The queries for `side` over the trailing `window` (whole seconds, at least two).
    pub fn new(side: Side, window: Duration) -> Self {
        Self::for_job(job(side), side == Side::Canary, window)
    }

    /// The queries for the series of Prometheus job `job` (a cluster names its jobs after the
    /// scraped Services), with the memory query when the job exports Candle's memory gauge.
    pub fn for_job(job: &str, memory: bool, window: Duration) -> Self {
        let secs = window_secs(window);
        let selector = format!(r#"job="{job}",route="{EMBED_ROUTE}""#);
        Self {
            requests: format!("sum(increase(candle_requests_total{{{selector}}}[{secs}s]))"),
            errors: format!(
                r#"sum(increase(candle_requests_total{{{selector},status=~"5.."}}[{secs}s]))"#
            ),
            buckets: format!(
                "sum by (le) (rate(candle_request_duration_seconds_bucket{{{selector}}}[{secs}s]))"
            ),
            bucket_counts: format!(
                "sum by (le) (increase(candle_request_duration_seconds_bucket{{{selector}}}[{secs}s]))"
            ),
            memory: memory.then(|| format!(r#"max(candle_memory_usage_bytes{{job="{job}"}})"#)),
        }
    }

    /// The `q` quantile of latency.
    pub fn quantile(&self, q: f64) -> String {
        format!("histogram_quantile({q}, {})", self.buckets)
    }

    /// Requests per latency bucket in the window (what a gate judges a percentile's bounds on).
    pub fn histogram(&self) -> String {
        self.buckets.replacen("rate(", "increase(", 1)
    }
}

/// A window in whole seconds, at least two scrapes long (PromQL range selectors take seconds).
pub fn window_secs(window: Duration) -> u64 {
    window.as_secs_f64().ceil().max(MIN_WINDOW_SECS as f64) as u64
}

#[derive(Deserialize)]
struct QueryResponse {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: QueryData,
}

#[derive(Default, Deserialize)]
struct QueryData {
    #[serde(rename = "resultType", default)]
    result_type: String,
    #[serde(default)]
    result: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    metric: Labels,
    value: (f64, String),
}

#[derive(Deserialize)]
struct Labels {
    #[serde(default)]
    job: Option<String>,
    #[serde(default)]
    le: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_select_the_side_and_the_embed_route_over_whole_seconds() {
        let q = MeasurementQueries::new(Side::Canary, Duration::from_millis(4500));
        assert_eq!(
            q.requests,
            r#"sum(increase(candle_requests_total{job="canary",route="/api/v1/embed"}[5s]))"#
        );
        assert_eq!(
            q.errors,
            r#"sum(increase(candle_requests_total{job="canary",route="/api/v1/embed",status=~"5.."}[5s]))"#
        );
        assert_eq!(
            q.quantile(0.95),
            r#"histogram_quantile(0.95, sum by (le) (rate(candle_request_duration_seconds_bucket{job="canary",route="/api/v1/embed"}[5s])))"#
        );
        assert_eq!(
            q.memory.as_deref(),
            Some(r#"max(candle_memory_usage_bytes{job="canary"})"#)
        );
    }

    #[test]
    fn short_windows_cover_two_scrapes_and_stable_has_no_memory_series() {
        let q = MeasurementQueries::new(Side::Stable, Duration::from_millis(300));
        assert!(q.requests.contains(r#"job="stable""#));
        assert!(q.requests.ends_with("[2s]))"), "{}", q.requests);
        assert_eq!(q.memory, None);
    }

    #[test]
    fn an_unreachable_server_is_a_clear_error() {
        let port = free_port().expect("free port");
        let api = PrometheusApi::new(SocketAddr::from(([127, 0, 0, 1], port)));
        let error = api
            .measure(Side::Canary, Duration::from_secs(5))
            .expect_err("nothing listens");
        assert!(
            format!("{error:#}").contains("cannot be reached"),
            "{error:#}"
        );
    }

    #[test]
    fn bucket_counts_are_the_increase_of_each_bucket_in_the_window() {
        let q = MeasurementQueries::new(Side::Canary, Duration::from_secs(5));
        assert_eq!(
            q.histogram(),
            r#"sum by (le) (increase(candle_request_duration_seconds_bucket{job="canary",route="/api/v1/embed"}[5s]))"#
        );
    }

    #[test]
    fn retention_covers_the_longest_window_with_a_margin() {
        let day = Duration::from_secs(86_400);
        // The plan's 7-day window at full scale: 7 days and 42 hours.
        assert_eq!(retention(7 * day), 7 * day + 7 * day / 4);
        assert_eq!(retention_flag(retention(7 * day)), "12600m");
        // A window compressed to a minute keeps the floor.
        assert_eq!(retention(Duration::from_secs(60)), MIN_RETENTION);
        // Just over a day: the hour's margin counts.
        let longest = day + Duration::from_secs(60);
        assert!(retention(longest) >= longest + Duration::from_secs(3600));
    }

    #[test]
    fn config_scrapes_each_side_as_its_own_job_every_second() {
        let text = render(
            "127.0.0.1:1001".parse().expect("address"),
            "127.0.0.1:1002".parse().expect("address"),
        );
        let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("YAML");
        assert_eq!(config["global"]["scrape_interval"].as_str(), Some("1s"));
        let jobs = config["scrape_configs"].as_sequence().expect("jobs");
        assert_eq!(jobs[0]["job_name"].as_str(), Some("stable"));
        assert_eq!(
            jobs[0]["static_configs"][0]["targets"][0].as_str(),
            Some("127.0.0.1:1001")
        );
        assert_eq!(jobs[1]["job_name"].as_str(), Some("canary"));
    }
}
