//! An open-loop, constant-rate load generator: request *n* is due at `start + n / rate` whether
//! or not earlier ones were answered, and its latency counts from when it was due, so a slow
//! service shows as slow instead of quietly lowering the rate (no coordinated omission).
//!
//! Each answer is counted for the side nginx routed it to (`X-Served-By`), whatever its
//! status: the shares show the split, `failed` shows the errors (a transport error, a timeout
//! or a 5xx).
//!
//! It runs on its own thread with its own tokio runtime, so the target's blocking calls never
//! delay the timetable. At most [`MAX_IN_FLIGHT`] requests wait at once: a request due while
//! that many are outstanding is counted as sent and failed, so a dead backend costs no memory.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, AtomicU32, Ordering},
        Arc, Mutex,
    },
    thread,
    time::Duration,
};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{header, Method, Request};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use tokio::{
    sync::{Notify, Semaphore},
    time::Instant,
};

use super::nginx::SERVED_BY;
use crate::rollout::{
    judge::{Latencies, SideSample},
    targets::TrafficStats,
};

/// Requests outstanding at once, at most.
pub const MAX_IN_FLIGHT: usize = 512;
/// A request unanswered after this long has failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `stop` waits for outstanding requests so that their outcome is counted.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The model both sides serve (the legacy stand-in serves only this one).
pub const MODEL: &str = "paraphrase-MiniLM-L3-v2";

/// Short sentences the requests vary over, as production queries would.
const SUBJECTS: &[&str] = &[
    "The service",
    "A vector database",
    "The canary",
    "Our customer",
    "The embedding model",
    "A small team",
    "The nightly job",
    "This query",
];
const PREDICATES: &[&str] = &[
    "returns results quickly",
    "stores embeddings for search",
    "answers questions about billing",
    "finds similar documents",
    "runs on a single machine",
    "handles peak traffic well",
    "was deployed on Tuesday",
];

/// The text of request `n`.
fn sentence(n: u64) -> String {
    let subject = SUBJECTS[(n % SUBJECTS.len() as u64) as usize];
    let predicate = PREDICATES[((n / SUBJECTS.len() as u64) % PREDICATES.len() as u64) as usize];
    format!("{subject} {predicate} (request {n}).")
}

/// The JSON body of request `n`.
fn body(n: u64) -> Bytes {
    let body = serde_json::json!({ "texts": [sentence(n)], "model": MODEL });
    Bytes::from(body.to_string())
}

/// A running load generator.
pub struct LoadGenerator {
    shared: Arc<Shared>,
    thread: Option<thread::JoinHandle<()>>,
}

struct Shared {
    rate: AtomicU32,
    /// Whether requests carry `X-Canary: always` (every one to the canary, whatever the split).
    pinned: AtomicBool,
    stopping: AtomicBool,
    wake: Notify,
    window: Mutex<Window>,
    recent: Mutex<Recent>,
}

/// Seconds of per-side outcomes kept for [`LoadGenerator::recent`].
const RECENT_SECONDS: usize = 64;

/// How long each answer's latency is kept for [`LoadGenerator::side_sample`].
const ANSWERS_KEPT: Duration = Duration::from_secs(900);
/// The most answers kept (15 minutes at 500 req/s).
const MAX_ANSWERS: usize = 450_000;

/// One answer of a side, for the canary judge's raw samples.
struct Answered {
    at: Duration,
    canary: bool,
    failed: bool,
    latency: Duration,
}

/// Answers per side and second over the last [`RECENT_SECONDS`]: what the front door served,
/// including failures that never reached a service (a crashed canary answers nothing itself);
/// and each answer's latency over the last [`ANSWERS_KEPT`].
struct Recent {
    origin: Instant,
    /// (second since origin, canary, canary failed, stable, stable failed)
    slots: Vec<(u64, u64, u64, u64, u64)>,
    answers: VecDeque<Answered>,
}

impl Recent {
    fn record(&mut self, canary: bool, failed: bool, latency: Duration) {
        let at = self.origin.elapsed();
        while self
            .answers
            .front()
            .is_some_and(|a| at.saturating_sub(a.at) > ANSWERS_KEPT)
            || self.answers.len() >= MAX_ANSWERS
        {
            self.answers.pop_front();
        }
        self.answers.push_back(Answered {
            at,
            canary,
            failed,
            latency,
        });
        let second = at.as_secs();
        let slot = &mut self.slots[second as usize % RECENT_SECONDS];
        if slot.0 != second {
            // A slot of an older second (or never used) starts over.
            *slot = (second, 0, 0, 0, 0);
        }
        match (canary, failed) {
            (true, f) => {
                slot.1 += 1;
                slot.2 += u64::from(f);
            }
            (false, f) => {
                slot.3 += 1;
                slot.4 += u64::from(f);
            }
        }
    }

    /// One side's answers over the trailing `window`: every successful answer's latency, with
    /// the answers and the failures among them.
    fn side_sample(&self, canary: bool, window: Duration) -> SideSample {
        let since = self.origin.elapsed().saturating_sub(window);
        let mut sample = SideSample {
            latencies: Latencies::Raw(Vec::new()),
            requests: 0,
            errors: 0,
        };
        let Latencies::Raw(latencies) = &mut sample.latencies else {
            unreachable!("built raw above")
        };
        for a in self
            .answers
            .iter()
            .filter(|a| a.canary == canary && a.at >= since)
        {
            if a.failed {
                sample.errors += 1;
            } else {
                latencies.push(a.latency.as_secs_f64() * 1000.0);
            }
        }
        sample.requests = latencies.len() as u64 + sample.errors;
        sample
    }

    /// (answered, failed) for one side over the last `seconds` whole seconds.
    fn sum(&self, canary: bool, seconds: u64) -> (u64, u64) {
        let now = self.origin.elapsed().as_secs();
        let first = now.saturating_sub(seconds);
        self.slots
            .iter()
            .filter(|s| s.0 != u64::MAX && s.0 >= first && s.0 <= now)
            .fold((0, 0), |(n, f), s| {
                if canary {
                    (n + s.1, f + s.2)
                } else {
                    (n + s.3, f + s.4)
                }
            })
    }
}

/// What happened since the last `take`.
#[derive(Default)]
struct Window {
    sent: u64,
    failed: u64,
    retried: u64,
    canary: u64,
    stable: u64,
    latency: LatencyHistogram,
}

impl LoadGenerator {
    /// Starts sending `rate` requests per second to `url` (a `POST /api/v1/embed` URL).
    pub fn start(url: String, rate: u32) -> anyhow::Result<Self> {
        let uri: hyper::Uri = url.parse().with_context(|| format!("bad URL {url}"))?;
        let shared = Arc::new(Shared {
            rate: AtomicU32::new(rate),
            pinned: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            wake: Notify::new(),
            window: Mutex::new(Window::default()),
            recent: Mutex::new(Recent {
                origin: Instant::now(),
                slots: vec![(u64::MAX, 0, 0, 0, 0); RECENT_SECONDS],
                answers: VecDeque::new(),
            }),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the load generator's runtime")?;
        let thread = thread::Builder::new()
            .name("load-generator".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || runtime.block_on(drive(shared, uri))
            })
            .context("starting the load generator's thread")?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Changes the rate from now on (0 pauses).
    pub fn set_rate(&self, rate: u32) {
        self.shared.rate.store(rate, Ordering::SeqCst);
        self.shared.wake.notify_one();
    }

    /// Sends every request to the canary with `X-Canary: always` (nginx's canary-by-header),
    /// or, unpinned, lets the split decide.
    pub fn pin_to_canary(&self, pinned: bool) {
        self.shared.pinned.store(pinned, Ordering::SeqCst);
    }

    /// (answered, failed) by one side over the last `seconds`, as the front door served them.
    pub fn recent(&self, canary: bool, seconds: u64) -> (u64, u64) {
        lock(&self.shared.recent).sum(canary, seconds)
    }

    /// One side's answers over the trailing `window` as the canary judge's raw sample
    /// (client-side latency from each request's due time; at most the last 15 minutes).
    pub fn side_sample(&self, canary: bool, window: Duration) -> SideSample {
        lock(&self.shared.recent).side_sample(canary, window)
    }

    /// The counters since the last call; resets them.
    pub fn take(&self) -> TrafficStats {
        let window = std::mem::take(&mut *lock(&self.shared.window));
        TrafficStats {
            sent: window.sent,
            failed: window.failed,
            retried: window.retried,
            canary: window.canary,
            stable: window.stable,
            p50: window.latency.quantile(0.50),
            p95: window.latency.quantile(0.95),
            p99: window.latency.quantile(0.99),
        }
    }

    /// Stops sending, waits briefly for outstanding answers, and ends the thread.
    pub fn stop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for LoadGenerator {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(counts: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while counting leaves counts that are still counts.
    counts
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The timetable: sends request after request at their due times until stopped.
async fn drive(shared: Arc<Shared>, uri: hyper::Uri) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        // Shorter than nginx's keepalive_timeout (75 s), so the client never reuses a
        // connection nginx is closing.
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(MAX_IN_FLIGHT)
        .build(connector.clone());
    // The retry's client keeps no idle connections: a retry must not land on another pooled
    // connection that the same reload is closing.
    let fresh: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector);
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut rate = 0;
    let mut origin = Instant::now();
    let mut due_count: u64 = 0;
    let mut n: u64 = 0;
    while !shared.stopping.load(Ordering::SeqCst) {
        let current = shared.rate.load(Ordering::SeqCst);
        if current != rate {
            // A new rate starts a new timetable from now.
            rate = current;
            origin = Instant::now();
            due_count = 0;
        }
        if rate == 0 {
            shared.wake.notified().await;
            continue;
        }
        let due = origin + Duration::from_secs_f64(due_count as f64 / f64::from(rate));
        tokio::select! {
            () = tokio::time::sleep_until(due) => {}
            () = shared.wake.notified() => continue,
        }
        due_count += 1;
        n += 1;
        lock(&shared.window).sent += 1;
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            lock(&shared.window).failed += 1;
            continue;
        };
        let client = client.clone();
        let fresh = fresh.clone();
        let shared = Arc::clone(&shared);
        let uri = uri.clone();
        let pinned = shared.pinned.load(Ordering::SeqCst);
        tokio::spawn(async move {
            let mut outcome =
                tokio::time::timeout(REQUEST_TIMEOUT, send(&client, uri.clone(), body(n), pinned))
                    .await;
            // A transport error here is a pooled keep-alive connection that nginx closed under
            // the request (a reload closes idle connections); HTTP clients resend an idempotent
            // request once on a fresh connection, and so does this one (through a client that
            // pools nothing), counting it.
            let retried = matches!(outcome, Ok(Err(_)));
            if retried {
                outcome =
                    tokio::time::timeout(REQUEST_TIMEOUT, send(&fresh, uri, body(n), pinned)).await;
            }
            let latency = due.elapsed();
            let mut window = lock(&shared.window);
            window.retried += u64::from(retried);
            match outcome {
                Ok(Ok(answer)) => {
                    match answer.served_by.as_deref() {
                        Some("canary") => window.canary += 1,
                        Some("stable") => window.stable += 1,
                        _ => {}
                    }
                    if let Some(side) = answer.served_by.as_deref() {
                        lock(&shared.recent).record(
                            side == "canary",
                            answer.status >= 500,
                            latency,
                        );
                    }
                    if answer.status >= 500 {
                        window.failed += 1;
                    } else {
                        window.latency.record(latency);
                    }
                }
                Ok(Err(_)) | Err(_) => window.failed += 1,
            }
            drop(slot);
        });
    }
    // Let outstanding requests finish so that they are counted.
    let _ = tokio::time::timeout(
        DRAIN_TIMEOUT,
        slots.acquire_many(u32::try_from(MAX_IN_FLIGHT).unwrap_or(u32::MAX)),
    )
    .await;
}

/// What one request got back.
struct Answer {
    status: u16,
    served_by: Option<String>,
}

async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    uri: hyper::Uri,
    body: Bytes,
    pinned: bool,
) -> anyhow::Result<Answer> {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json");
    if pinned {
        request = request.header("x-canary", "always");
    }
    let request = request.body(Full::new(body))?;
    let response = client.request(request).await?;
    let status = response.status().as_u16();
    let served_by = response
        .headers()
        .get(SERVED_BY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Read the whole body: the request is done only then, and the connection can be reused.
    response.into_body().collect().await?;
    Ok(Answer { status, served_by })
}

/// Latencies in buckets 2% wide (from 10 µs to over a minute), so a long window costs a fixed,
/// small amount of memory; a quantile is exact to within 2%.
#[derive(Clone, Debug)]
pub struct LatencyHistogram {
    counts: Vec<u64>,
    total: u64,
    max: Duration,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            counts: vec![0; Self::BUCKETS],
            total: 0,
            max: Duration::ZERO,
        }
    }
}

impl LatencyHistogram {
    const GROWTH: f64 = 1.02;
    const SMALLEST_MICROS: f64 = 10.0;
    /// 10 µs × 1.02^800 ≈ 77 min.
    const BUCKETS: usize = 800;

    fn bucket(latency: Duration) -> usize {
        let micros = latency.as_secs_f64() * 1e6;
        if micros <= Self::SMALLEST_MICROS {
            return 0;
        }
        let index = ((micros / Self::SMALLEST_MICROS).ln() / Self::GROWTH.ln()).ceil();
        (index as usize).min(Self::BUCKETS - 1)
    }

    fn upper_bound(bucket: usize) -> Duration {
        let micros = Self::SMALLEST_MICROS * Self::GROWTH.powi(bucket as i32);
        Duration::from_secs_f64(micros / 1e6)
    }

    /// Counts one latency.
    pub fn record(&mut self, latency: Duration) {
        self.counts[Self::bucket(latency)] += 1;
        self.total += 1;
        self.max = self.max.max(latency);
    }

    /// The `q` quantile (0 to 1), or `None` when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(Self::upper_bound(bucket).min(self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_two_percent() {
        let mut histogram = LatencyHistogram::default();
        for ms in 1..=100 {
            histogram.record(Duration::from_millis(ms));
        }
        for (q, expected_ms) in [(0.5, 50.0), (0.95, 95.0), (0.99, 99.0)] {
            let got = histogram.quantile(q).expect("recorded").as_secs_f64() * 1e3;
            assert!(
                (got - expected_ms).abs() <= expected_ms * 0.02,
                "q{q}: {got} ms, expected {expected_ms} ms"
            );
        }
        assert_eq!(histogram.quantile(1.0), Some(Duration::from_millis(100)));
    }

    #[test]
    fn an_empty_window_has_no_quantiles() {
        assert_eq!(LatencyHistogram::default().quantile(0.5), None);
    }

    #[test]
    fn texts_vary_and_name_the_model_both_sides_serve() {
        assert_ne!(sentence(1), sentence(2));
        let body: serde_json::Value = serde_json::from_slice(&body(3)).expect("JSON");
        assert_eq!(body["model"], MODEL);
        assert_eq!(body["texts"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn a_dead_backend_counts_as_failures_not_as_waiting() {
        let port = crate::project::free_port().expect("free port");
        let mut generator =
            LoadGenerator::start(format!("http://127.0.0.1:{port}/api/v1/embed"), 100)
                .expect("start");
        thread::sleep(Duration::from_millis(500));
        generator.stop();
        let stats = generator.take();
        assert!(stats.sent >= 30, "{stats:?}");
        assert_eq!(stats.failed, stats.sent, "{stats:?}");
        assert_eq!(stats.p50, None);
    }
}
