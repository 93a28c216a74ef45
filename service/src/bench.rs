//! In-process engine benchmark behind `akidb-embed bench-engine`: embeds one fixed batch over and
//! over through the library's public [`EmbeddingModel`] API and reports throughput and per-call
//! latency. `cargo xtask bench` runs it beside ONNX Runtime on the same texts; not a load test
//! (see `cargo xtask bench --only http`). Part of the binary, not of the library.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde::Serialize;

use akidb_embed::engine::{error::Result, EmbedOptions, EmbeddingModel};

/// Words that are each one token of the uncased BERT vocabulary, so a text grows by one token
/// per word and reaches a target length exactly.
const WORDS: &[&str] = &[
    "the",
    "service",
    "returns",
    "similar",
    "documents",
    "for",
    "every",
    "query",
    "and",
    "stores",
    "vectors",
    "in",
    "a",
    "small",
    "database",
    "on",
    "one",
    "machine",
    "with",
    "two",
    "cores",
    "while",
    "traffic",
    "grows",
    "each",
    "week",
];

/// `count` texts that each tokenize to `tokens` tokens (special tokens included), or to the
/// model's `max_seq_length` when that is smaller. The texts differ from one another.
pub fn texts_of_length(model: &EmbeddingModel, count: usize, tokens: usize) -> Result<Vec<String>> {
    let target = tokens.clamp(3, model.info().max_seq_length.max(3));
    let tokenizer = model.tokenizer();
    (0..count)
        .map(|i| {
            let mut text = String::new();
            let mut word = i;
            loop {
                let counted = tokenizer.count_tokens(&text)?;
                if counted >= target {
                    return Ok(text);
                }
                // Grow by what is missing at once, then check again: words are one token each,
                // so this lands on the target in one or two rounds.
                for _ in 0..target - counted {
                    if !text.is_empty() {
                        text.push(' ');
                    }
                    text.push_str(WORDS[word % WORDS.len()]);
                    word += 7;
                }
            }
        })
        .collect()
}

/// What one benchmark run measured; the JSON line `akidb-embed bench-engine` prints.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EngineRun {
    /// Always `candle`, to tell this line from the ONNX Runtime peer's.
    pub engine: &'static str,
    /// The model's short name.
    pub model: String,
    /// Texts per call.
    pub batch: usize,
    /// Mean tokens per text, special tokens included.
    pub mean_tokens: f64,
    /// Timed calls.
    pub iterations: usize,
    /// Wall time of the timed calls, in seconds.
    pub seconds: f64,
    /// Texts embedded per second.
    pub sentences_per_s: f64,
    /// Median time of one call, in milliseconds.
    pub p50_ms: f64,
    /// 95th percentile time of one call, in milliseconds.
    pub p95_ms: f64,
    /// Threads the engine was given (0: the library's default).
    pub threads: usize,
    /// Where the model ran (`cpu`, `cuda:0`).
    pub device: String,
    /// Weights' and activations' precision (`f32`, `f16`, `bf16`, `int8`).
    pub precision: String,
    /// Share of one core, in percent, a contender thread kept busy meanwhile (0: none).
    pub contend_percent: f64,
}

/// How long and how often to measure.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Untimed calls first (page faults, lazy initialisation, thread start-up).
    pub warmup_calls: usize,
    /// Keep calling at least this long.
    pub duration: Duration,
    /// And at least this many times.
    pub min_iterations: usize,
}

/// Length of a contender's bursts: about what a server's runtime spends on a few requests, or a
/// load generator on a few sends.
const BURST: Duration = Duration::from_micros(500);

/// A thread that keeps one core busy `percent` of the time in [`BURST`]s, sleeping between
/// them, until dropped: what a server's I/O threads, a load generator on the same cores or a
/// neighbour on the host do to the engine's threads.
pub struct Contender {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Contender {
    /// Starts the contender; `None` for 0% (a share above 100% counts as 100%).
    pub fn start(percent: f64) -> Option<Self> {
        if percent <= 0.0 {
            return None;
        }
        let share = (percent / 100.0).min(1.0);
        let rest = BURST.mul_f64(1.0 / share - 1.0);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("bench-contender".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    let burst = Instant::now();
                    while burst.elapsed() < BURST {
                        std::hint::spin_loop();
                    }
                    if !rest.is_zero() {
                        std::thread::sleep(rest);
                    }
                }
            })
            .ok()?;
        Some(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Contender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Embeds `texts` as one batch according to `schedule` and reports the timings; with
/// `contend_percent` above 0, a [`Contender`] runs during the timed calls.
pub fn measure(
    model: &EmbeddingModel,
    texts: &[String],
    schedule: Schedule,
    threads: usize,
    contend_percent: f64,
) -> Result<EngineRun> {
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    let options = EmbedOptions::default();
    let mut tokens = 0;
    for _ in 0..schedule.warmup_calls.max(1) {
        tokens = model.embed(&texts, options)?.total_tokens();
    }
    let mut calls = Vec::new();
    let contender = Contender::start(contend_percent);
    let started = Instant::now();
    while calls.len() < schedule.min_iterations.max(1) || started.elapsed() < schedule.duration {
        let call = Instant::now();
        let out = model.embed(&texts, options)?;
        calls.push(call.elapsed());
        std::hint::black_box(out);
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(contender);
    calls.sort_unstable();
    Ok(EngineRun {
        engine: "candle",
        model: model.info().name.clone(),
        batch: texts.len(),
        mean_tokens: tokens as f64 / texts.len().max(1) as f64,
        iterations: calls.len(),
        seconds,
        sentences_per_s: (texts.len() * calls.len()) as f64 / seconds,
        p50_ms: quantile_ms(&calls, 0.50),
        p95_ms: quantile_ms(&calls, 0.95),
        threads,
        device: akidb_embed::engine::device::describe(model.device()),
        precision: model.precision().to_string(),
        contend_percent: if contend_percent > 0.0 {
            contend_percent.min(100.0)
        } else {
            0.0
        },
    })
}

/// The `q` quantile of sorted durations (nearest rank), in milliseconds.
fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The contender thread's CPU time so far, or `None` once it is gone (Linux: its
    /// `/proc/self/task/*/stat`, in clock ticks of 10 ms); other tests' threads do not count.
    #[cfg(target_os = "linux")]
    fn contender_cpu() -> Option<Duration> {
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if comm.trim() != "bench-contender" {
                continue;
            }
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            // Fields after the name's closing parenthesis; utime and stime are the 12th and
            // 13th.
            let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
            let ticks: u64 = fields[11].parse::<u64>().ok()? + fields[12].parse::<u64>().ok()?;
            return Some(Duration::from_millis(ticks * 10));
        }
        None
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_contender_takes_about_its_share_of_a_core_and_stops_when_dropped() {
        assert!(Contender::start(0.0).is_none());
        assert!(contender_cpu().is_none());
        let wall = Instant::now();
        let contender = Contender::start(50.0).unwrap();
        std::thread::sleep(Duration::from_millis(400));
        let used = contender_cpu().expect("the contender runs");
        // Half of one core, give or take the scheduler and the clock ticks; far from none and
        // from all of it.
        let share = used.as_secs_f64() / wall.elapsed().as_secs_f64();
        assert!(share > 0.15 && share < 0.85, "{share}");
        drop(contender);
        assert!(contender_cpu().is_none(), "the thread is gone once dropped");
    }

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let calls: Vec<Duration> = (1..=20).map(Duration::from_millis).collect();
        assert_eq!(quantile_ms(&calls, 0.5), 10.0);
        assert_eq!(quantile_ms(&calls, 0.95), 19.0);
        assert_eq!(quantile_ms(&[], 0.5), 0.0);
    }

    #[test]
    fn texts_reach_the_target_length_or_the_model_limit() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models/paraphrase-MiniLM-L3-v2");
        let model = EmbeddingModel::from_dir(&dir).expect("run `cargo xtask models` first");
        let tokenizer = model.tokenizer();
        for (tokens, expected) in [(10, 10), (128, 128), (400, 128)] {
            let texts = texts_of_length(&model, 4, tokens).expect("texts");
            assert_eq!(texts.len(), 4);
            for text in &texts {
                assert_eq!(
                    tokenizer.count_tokens(text).expect("count"),
                    expected,
                    "{text}"
                );
            }
            assert_ne!(texts[0], texts[1]);
        }
    }
}
