//! `cargo xtask soak`: the release service under constant load for a long time (30 minutes by
//! default), sampling its resident memory (`VmRSS`) and latency every interval, to show that
//! memory does not grow and latency does not drift once warm. Not part of CI, except `--quick`
//! (a ~20 s smoke that checks the figures are sane, not that they are good).
//!
//! The load is the bench's: `oha` at a constant rate with latency correction, run back to back
//! one interval at a time so that each sample has its own percentiles; the server is the
//! bench's `akidb-embed serve`.

mod analysis;

use std::{
    fs,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use xshell::Shell;

pub use self::analysis::{analyze, Sample, SoakSummary};
use crate::{
    bench::{
        http::bodies,
        oha::{Load, Oha},
        servers::{BenchServer, ServerKind, ServerSetup},
        Profile,
    },
    project,
    stack::supervisor::Ledger,
};

/// The model served and embedded.
const MODEL: &str = "all-MiniLM-L6-v2";

/// Flags of `cargo xtask soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// How long the load runs (e.g. 30m, 5m).
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Time between samples.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    interval: Duration,
    /// Samples before this much time are warm-up: growth is measured from its end.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Requests per second.
    #[arg(long, default_value_t = 40)]
    rate: u32,
    /// Share of ~128-token texts in the load (the rest are ~10 tokens).
    #[arg(long, default_value_t = 0.1)]
    long_share: f64,
    /// Largest allowed RSS growth after warm-up, percent.
    #[arg(long, default_value_t = 5.0)]
    max_rss_growth: f64,
    /// A ~20 s smoke (5 s intervals, 5 s warm-up) that checks the figures are sane.
    #[arg(long)]
    quick: bool,
    /// Which service binary.
    #[arg(long, value_enum, default_value_t = Profile::Release)]
    profile: Profile,
    /// Use the binary as it is, without building it.
    #[arg(long)]
    no_build: bool,
    /// Soak this akidb-embed binary instead of the profile's (implies --no-build).
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// Where to write the JSON.
    #[arg(long, default_value = "target/soak/soak.json")]
    out: PathBuf,
}

impl SoakArgs {
    /// The smoke `cargo xtask ci` runs, on the dev binary it has built.
    pub fn smoke() -> Self {
        Self {
            duration: Duration::from_secs(20),
            interval: Duration::from_secs(5),
            warmup: Duration::from_secs(5),
            rate: 20,
            long_share: 0.1,
            max_rss_growth: 5.0,
            quick: true,
            profile: Profile::Dev,
            no_build: true,
            binary: None,
            out: PathBuf::from("target/soak/soak-smoke.json"),
        }
    }

    fn effective(mut self) -> Self {
        if self.quick {
            self.duration = self.duration.min(Duration::from_secs(20));
            self.interval = self.interval.min(Duration::from_secs(5));
            self.warmup = self.warmup.min(Duration::from_secs(5));
        }
        self
    }
}

/// The JSON `cargo xtask soak` writes.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct SoakReport {
    /// `release` or `dev`.
    pub profile: String,
    /// Requests per second sent.
    pub rate: u32,
    /// Seconds of load.
    pub duration_s: f64,
    /// Seconds between samples.
    pub interval_s: f64,
    /// Seconds of warm-up.
    pub warmup_s: f64,
    /// Engine threads.
    pub threads: usize,
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// What they add up to.
    pub summary: SoakSummary,
}

fn service_binary(sh: &Shell, args: &SoakArgs) -> anyhow::Result<PathBuf> {
    if let Some(binary) = &args.binary {
        if !binary.is_file() {
            bail!("{} is missing", binary.display());
        }
        return Ok(binary.clone());
    }
    crate::bench::service_binary(sh, args.profile, args.no_build)
}

/// Runs the soak; fails when the server dies, requests fail, or (not `--quick`) resident
/// memory grows more than `--max-rss-growth` after warm-up.
pub fn run(sh: &Shell, args: SoakArgs) -> anyhow::Result<SoakReport> {
    let args = args.effective();
    if args.interval.is_zero() || args.duration < args.interval {
        bail!("--duration must hold at least one --interval");
    }
    let root = project::root();
    let work = root.join("target/soak/work");
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    // The models it serves, laid out and verified as `cargo xtask models` does when missing.
    crate::models::fetch_missing(sh)?;
    let models_dir = crate::models::models_dir();
    let binary = service_binary(sh, &args)?;
    let oha = Oha::ensure(sh)?;
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let ledger = Ledger::new(work.join("children"));
    ledger.reap()?;
    let setup = ServerSetup {
        binary,
        python: root.join(".venv/bin/python"),
        standin: root.join("tests/legacy_standin/server.py"),
        models_dir,
        threads,
        log_dir: work.join("logs"),
        ledger,
    };
    let body_file = work.join("bodies.jsonl");
    fs::write(&body_file, bodies(MODEL, args.long_share))?;
    let (mut server, ready) = BenchServer::start(&setup, ServerKind::Candle, Some(MODEL))?;
    println!(
        "soak: akidb-embed ready in {:.1}s; {} req/s for {}, a sample every {}",
        ready.as_secs_f64(),
        args.rate,
        humantime::format_duration(args.duration),
        humantime::format_duration(args.interval)
    );
    let url = server.embed_url();
    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed() + args.interval / 2 < args.duration {
        let load = Load {
            url: &url,
            rate: args.rate,
            seconds: args.interval.as_secs_f64(),
            bodies: &body_file,
        };
        let figures = oha.run(&load)?;
        server.ensure_running()?;
        let sample = Sample {
            at_s: started.elapsed().as_secs_f64(),
            rss_mb: server.rss_mb().context("reading the server's VmRSS")?,
            requests: figures.requests,
            errors: figures.errors,
            achieved_rps: figures.achieved_rps,
            p50_ms: figures.p50_ms,
            p95_ms: figures.p95_ms,
            p99_ms: figures.p99_ms,
        };
        println!("{}", analysis::row(&sample));
        samples.push(sample);
    }
    server.stop()?;
    let summary = analyze(&samples, args.warmup.as_secs_f64(), args.max_rss_growth)?;
    let report = SoakReport {
        profile: match args.profile {
            Profile::Release => "release",
            Profile::Dev => "dev",
        }
        .into(),
        rate: args.rate,
        duration_s: args.duration.as_secs_f64(),
        interval_s: args.interval.as_secs_f64(),
        warmup_s: args.warmup.as_secs_f64(),
        threads,
        samples,
        summary,
    };
    let out = root.join(&args.out);
    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(&out, serde_json::to_string_pretty(&report)? + "\n")?;
    println!("\n{}", analysis::table(&report.samples, &report.summary));
    println!("soak: wrote {}", out.display());
    if report.summary.errors > 0 {
        bail!("{} requests failed during the soak", report.summary.errors);
    }
    if !args.quick && !report.summary.rss_within_target {
        bail!(
            "resident memory grew {:.1}% after warm-up (target < {}%)",
            report.summary.rss_growth_pct,
            args.max_rss_growth
        );
    }
    Ok(report)
}

/// The CI smoke: `--quick` on the dev binary already built.
pub fn smoke(sh: &Shell) -> anyhow::Result<()> {
    run(sh, SoakArgs::smoke()).map(drop)
}
