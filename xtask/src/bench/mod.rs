//! `cargo xtask bench`: the benchmark pull requests run. Three sections, each beside a peer
//! measured in the same run on the same machine:
//! - `engine`: Candle in process against ONNX Runtime (PyPI) on the same texts and threads;
//! - `http`: `akidb-embed serve` against the legacy stand-in under open-loop constant-rate
//!   loads (oha), and the highest rate each holds at P95 < 35 ms, held against the engine's own
//!   batch-32 throughput (`serving / engine`);
//! - `lone`: one request at a time, akidb-embed with and without its batch window beside the
//!   stand-in;
//! - `cold`: spawn to ready.
//!
//! It prints Markdown tables, writes JSON (`target/bench/bench.json`), and with `--compare`
//! gates on regressions (see [`compare`]).

mod cold_start;
pub mod compare;
mod engine;
pub(crate) mod http;
mod lone;
mod machine;
pub(crate) mod oha;
pub mod report;
pub(crate) mod servers;
pub mod threads;

use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context};
use clap::ValueEnum;
use xshell::{cmd, Shell};

use self::{
    engine::{EngineBench, SHAPES},
    http::{HttpPlan, SearchPlan},
    lone::LonePlan,
    report::{BenchReport, SCHEMA},
    servers::ServerSetup,
};
use crate::{project, python, stack::supervisor::Ledger};

/// The model both engines and both servers run (the legacy stand-in serves its ONNX file).
const PEER_MODEL: &str = "paraphrase-MiniLM-L3-v2";
/// The default model; its engine peer runs the ONNX export `cargo xtask models` makes from the
/// same weights.
const DEFAULT_MODEL: &str = "all-MiniLM-L6-v2";
/// The latency target of the highest-rate search (the rollout plan's SLO).
const P95_LIMIT_MS: f64 = 35.0;

/// Which `akidb-embed` binary to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Profile {
    /// `cargo build --release -p akidb-embed` (what ships).
    Release,
    /// The debug build `cargo xtask ci` makes (for the smoke; not for figures).
    Dev,
}

/// A section of the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Section {
    /// In-process engines.
    Engine,
    /// Open-loop HTTP loads.
    Http,
    /// One request at a time.
    Lone,
    /// Cold start.
    Cold,
}

/// Flags of `cargo xtask bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// A few-second smoke: short runs, low rates, no search (figures are not comparable).
    #[arg(long)]
    quick: bool,
    /// Which service binary to measure.
    #[arg(long, value_enum, default_value_t = Profile::Release)]
    profile: Profile,
    /// Where to write the JSON.
    #[arg(long, default_value = "target/bench/bench.json")]
    out: PathBuf,
    /// Only these sections (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Section>,
    /// An earlier run's JSON: print both and fail on a regression.
    #[arg(long)]
    compare: Option<PathBuf>,
    /// Allowed drop of a gated same-run ratio, percent.
    #[arg(long, default_value_t = 15.0)]
    threshold: f64,
    /// Threads for every engine and server (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Use the binary as it is, without building it.
    #[arg(long, hide = true)]
    no_build: bool,
    /// Read the JSON back and fail unless the figures are sane (the CI smoke).
    #[arg(long, hide = true)]
    check_sane: bool,
}

impl BenchArgs {
    /// The smoke `cargo xtask ci` runs: quick, on the dev binary it has built, writing `out`.
    pub fn smoke(out: PathBuf) -> Self {
        Self {
            quick: true,
            profile: Profile::Dev,
            out,
            only: Vec::new(),
            compare: None,
            threshold: 15.0,
            threads: None,
            no_build: true,
            check_sane: true,
        }
    }

    fn wants(&self, section: Section) -> bool {
        self.only.is_empty() || self.only.contains(&section)
    }
}

/// Runs the bench; returns the report it wrote.
pub fn run(sh: &Shell, args: &BenchArgs) -> anyhow::Result<BenchReport> {
    let root = project::root();
    let work = root.join("target/bench/work");
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    // The models it serves, laid out and verified as `cargo xtask models` does when missing.
    crate::models::fetch_missing(sh)?;
    let models_dir = crate::models::models_dir();
    let binary = service_binary(sh, args.profile, args.no_build)?;
    let python = python::ensure(sh)?;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
    let ledger = Ledger::new(work.join("children"));
    let leftovers = ledger.reap()?;
    if leftovers > 0 {
        println!("bench: ended {leftovers} servers an earlier run left behind");
    }
    let setup = ServerSetup {
        binary: binary.clone(),
        python: python.clone(),
        standin: root.join("tests/legacy_standin/server.py"),
        models_dir: models_dir.clone(),
        threads,
        log_dir: work.join("logs"),
        ledger,
    };

    let mut report = BenchReport {
        schema: SCHEMA,
        commit: commit(sh),
        started_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        profile: match args.profile {
            Profile::Release => "release",
            Profile::Dev => "dev",
        }
        .to_string(),
        quick: args.quick,
        threads,
        machine: machine::describe(),
        engine: None,
        http: Vec::new(),
        cold_start: None,
        lone: None,
        serving: Vec::new(),
    };

    if args.wants(Section::Engine) {
        let bench = EngineBench {
            binary: binary.clone(),
            python: python.clone(),
            script: root.join("xtask/python/ort_bench.py"),
            work_dir: work.clone(),
            threads,
            seconds: if args.quick { 0.5 } else { 3.0 },
            repetitions: if args.quick { 1 } else { 3 },
        };
        let mut rows = bench.measure_model(&models_dir.join(PEER_MODEL), &SHAPES)?;
        let default_model = models_dir.join(DEFAULT_MODEL);
        if !args.quick && default_model.is_dir() {
            rows.extend(bench.measure_model(&default_model, &SHAPES)?);
        }
        report.engine = Some(bench.section(rows));
    }
    if args.wants(Section::Http) {
        let oha = oha::Oha::ensure(sh)?;
        // The quick smoke serves the peer model only; a full run both, as the engine section.
        let models: Vec<&str> = if args.quick || !models_dir.join(DEFAULT_MODEL).is_dir() {
            vec![PEER_MODEL]
        } else {
            vec![PEER_MODEL, DEFAULT_MODEL]
        };
        for model in models {
            let plan = if args.quick {
                HttpPlan {
                    model: model.into(),
                    rates: vec![50],
                    mixed_rate: 20,
                    seconds: 2.0,
                    legacy: true,
                    search: None,
                }
            } else {
                // all-MiniLM-L6-v2 has twice the layers: its loads are half the peer's (at 200
                // req/s its mixed load's long texts alone would take three quarters of the
                // engine on two cores).
                let scale = if model == PEER_MODEL { 1 } else { 2 };
                HttpPlan {
                    model: model.into(),
                    rates: [200, 500, 1000].map(|rate| rate / scale).to_vec(),
                    mixed_rate: 200 / scale,
                    seconds: 10.0,
                    legacy: true,
                    search: Some(SearchPlan {
                        start: 200,
                        p95_limit_ms: P95_LIMIT_MS,
                        step_seconds: 5.0,
                        budget: Duration::from_secs(90),
                    }),
                }
            };
            report.http.push(http::measure(&setup, &oha, &work, &plan)?);
        }
        report.serving = report.serving_ratios();
    }
    if args.wants(Section::Lone) {
        let oha = oha::Oha::ensure(sh)?;
        let plan = LonePlan {
            model: PEER_MODEL.into(),
            requests: if args.quick { 20 } else { 500 },
            // Off, and the default (`limits.max_batch_wait_us`).
            windows_us: vec![0, 500],
            legacy: true,
        };
        report.lone = Some(lone::measure(&setup, &oha, &work, &plan)?);
    }
    if args.wants(Section::Cold) {
        let runs = if args.quick { 1 } else { 5 };
        report.cold_start = Some(cold_start::measure(&setup, runs, Some(PEER_MODEL))?);
    }

    let out = root.join(&args.out);
    if let Some(dir) = out.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(&out, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", out.display()))?;
    println!("\n{}", report.tables());
    println!("bench: wrote {}", out.display());
    if args.check_sane {
        check_smoke(&read_report(&out)?)?;
        println!("bench: the figures are sane");
    }

    if let Some(previous) = &args.compare {
        let previous = read_report(&root.join(previous))?;
        let comparison = compare::compare(&previous, &report, args.threshold);
        println!("{}", comparison.table());
        let regressions = comparison.regressions();
        if !regressions.is_empty() {
            bail!("bench regressed:\n  {}", regressions.join("\n  "));
        }
    }
    Ok(report)
}

/// The smoke `cargo xtask ci` runs: a quick bench on the dev binary already built, its JSON
/// written and read back, and [`check_smoke`] on it.
pub fn smoke(sh: &Shell) -> anyhow::Result<()> {
    run(sh, &BenchArgs::smoke("target/bench/smoke.json".into())).map(drop)
}

/// Reads a report written by [`run`].
pub fn read_report(path: &Path) -> anyhow::Result<BenchReport> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let report: BenchReport =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    if report.schema != SCHEMA {
        bail!(
            "{} has schema {}, this bench writes {SCHEMA}",
            path.display(),
            report.schema
        );
    }
    Ok(report)
}

/// The service binary of `profile`, built first unless `no_build` (the soak uses it too).
pub(crate) fn service_binary(
    sh: &Shell,
    profile: Profile,
    no_build: bool,
) -> anyhow::Result<PathBuf> {
    let root = project::root();
    let binary = match profile {
        Profile::Release => root.join("target/release/akidb-embed"),
        Profile::Dev => root.join("target/debug/akidb-embed"),
    };
    if !no_build {
        match profile {
            Profile::Release => cmd!(sh, "cargo build --release -p akidb-embed").run()?,
            // As `cargo xtask ci` builds it, so that features unify the same way and nothing
            // is compiled twice.
            Profile::Dev => cmd!(sh, "cargo build --workspace --bins").run()?,
        }
    }
    if !binary.is_file() {
        bail!("{} is missing", binary.display());
    }
    Ok(binary)
}

/// The commit measured, when git knows it.
fn commit(sh: &Shell) -> Option<String> {
    cmd!(sh, "git rev-parse HEAD")
        .quiet()
        .ignore_stderr()
        .read()
        .ok()
        .filter(|c| !c.is_empty())
}

/// Checks that a smoke run measured something real: nonzero rates everywhere, the same inputs
/// for both engines, no errors at the smoke's low rates, a cold start. Not speed.
pub fn check_smoke(report: &BenchReport) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    match &report.engine {
        Some(engine) if !engine.rows.is_empty() => {
            for row in &engine.rows {
                let shape = format!("engine {} {}x{}", row.model, row.batch, row.tokens);
                if row.candle.sentences_per_s <= 0.0 || row.candle.p50_ms <= 0.0 {
                    problems.push(format!("{shape}: Candle measured nothing"));
                }
                if (row.candle.mean_tokens - row.tokens as f64).abs() > 1.0 {
                    problems.push(format!(
                        "{shape}: texts of {:.1} tokens instead of {}",
                        row.candle.mean_tokens, row.tokens
                    ));
                }
                if row.model == PEER_MODEL && !row.ratio.is_some_and(|r| r.is_finite() && r > 0.0) {
                    problems.push(format!("{shape}: no Candle/ONNX Runtime ratio"));
                }
                if !row.int8_over_f32.is_some_and(|r| r.is_finite() && r > 0.0) {
                    problems.push(format!("{shape}: no int8/f32 ratio"));
                }
            }
        }
        _ => problems.push("engine: no rows".into()),
    }
    if report.http.iter().all(|http| http.loads.is_empty()) {
        problems.push("http: no loads".into());
    }
    for http in &report.http {
        if http.short_text_tokens.is_none() {
            problems.push(format!("http {}: short texts not counted", http.model));
        }
        for load in &http.loads {
            let servers = [
                ("akidb-embed", Some(&load.figures.candle)),
                ("legacy", load.figures.legacy.as_ref()),
            ];
            for (server, figures) in servers {
                let Some(f) = figures else {
                    problems.push(format!("http {}: {server} not measured", load.name));
                    continue;
                };
                if f.achieved_rps <= 0.0 || f.p50_ms <= 0.0 {
                    problems.push(format!("http {} {server}: no answers", load.name));
                }
                if f.errors > 0 {
                    problems.push(format!("http {} {server}: {} errors", load.name, f.errors));
                }
                if !f.peak_rss_mb.is_some_and(|m| m > 0.0) {
                    problems.push(format!("http {} {server}: no peak RSS", load.name));
                }
            }
        }
    }
    match &report.lone {
        Some(lone) if !lone.rows.is_empty() => {
            for row in &lone.rows {
                let f = &row.figures;
                if f.p50_ms <= 0.0 || f.errors > 0 {
                    problems.push(format!(
                        "lone {}: P50 {:.2} ms, {} errors",
                        row.server, f.p50_ms, f.errors
                    ));
                }
            }
        }
        _ => problems.push("lone: not measured".into()),
    }
    match &report.cold_start {
        Some(cold) if cold.median_ms.candle > 0.0 => {}
        _ => problems.push("cold start: not measured".into()),
    }
    if !problems.is_empty() {
        bail!("the bench smoke is not sane:\n  {}", problems.join("\n  "));
    }
    Ok(())
}
