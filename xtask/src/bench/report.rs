//! The JSON a bench run writes (`target/bench/bench.json`), and the tables it prints.
//!
//! Every figure of one run sits beside its same-run peer (ONNX Runtime for the engine, the
//! legacy stand-in for HTTP): on a noisy, shared machine their ratio moves far less than either
//! absolute figure, which is why `--compare` gates on ratios.

use serde::{Deserialize, Serialize};

use super::threads::CpuByRole;

/// Version of the JSON layout; `--compare` refuses other versions.
pub const SCHEMA: u32 = 1;

/// One run of `cargo xtask bench`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BenchReport {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The commit measured (`git rev-parse HEAD`), when known.
    pub commit: Option<String>,
    /// Seconds since the Unix epoch when the run started.
    pub started_unix: u64,
    /// Which service binary ran: `release` or `dev`.
    pub profile: String,
    /// Whether this was a `--quick` smoke (its figures are not comparable to a full run's).
    pub quick: bool,
    /// Threads each engine and server was given.
    pub threads: usize,
    /// Where it ran.
    pub machine: Machine,
    /// In-process engine figures, Candle beside ONNX Runtime.
    pub engine: Option<EngineSection>,
    /// Open-loop HTTP figures, akidb-embed beside the legacy stand-in, one section per model
    /// (reports from before the second model hold one section, read as a list of one).
    #[serde(default, deserialize_with = "one_or_many")]
    pub http: Vec<HttpSection>,
    /// Time from spawn to ready.
    pub cold_start: Option<ColdStartSection>,
    /// One request at a time, with and without the batch window.
    #[serde(default)]
    pub lone: Option<LoneSection>,
    /// What the serving path delivers of its own engine, per model measured by both `engine`
    /// and `http` (older reports: one, read as a list of one).
    #[serde(default, deserialize_with = "one_or_many")]
    pub serving: Vec<ServingRatio>,
}

/// A list written as a list, or (reports from before it became one) as one value or `null`.
fn one_or_many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        Many(Vec<T>),
        One(T),
    }
    Ok(match Option::<OneOrMany<T>>::deserialize(deserializer)? {
        None => Vec::new(),
        Some(OneOrMany::One(one)) => vec![one],
        Some(OneOrMany::Many(many)) => many,
    })
}

/// The machine a run measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Machine {
    /// CPU model name (`/proc/cpuinfo`).
    pub cpu: String,
    /// Logical CPUs.
    pub cores: usize,
    /// SIMD extensions that matter to the kernels (avx2, fma, avx512f, ...), as the CPU reports.
    pub simd: Vec<String>,
    /// The kernels the engine runs on it (`akidb_kernels::choice`): dense layers' kernel and
    /// micro-kernel, element-wise instruction set. Empty in reports from before it was recorded.
    #[serde(default)]
    pub kernels: String,
    /// One core's measured f32 multiply-add peak (`akidb_kernels::peak`); none in reports from
    /// before it was recorded, or on CPUs without FMA.
    #[serde(default)]
    pub fma_peak: Option<FmaPeak>,
}

/// A core's f32 multiply-add peak.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FmaPeak {
    /// The vectors measured: `avx512` or `avx2`.
    pub isa: String,
    /// GFLOP/s of one core (a multiply-add counts two).
    pub gflops_per_core: f64,
}

/// The in-process engine section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EngineSection {
    /// Timed seconds per engine, shape and repetition.
    pub seconds: f64,
    /// Repetitions per shape (engines alternate within each).
    pub repetitions: usize,
    /// One row per model and shape.
    pub rows: Vec<EngineRow>,
}

/// One model and batch shape.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EngineRow {
    /// Model folder name.
    pub model: String,
    /// Texts per call.
    pub batch: usize,
    /// Target tokens per text.
    pub tokens: usize,
    /// Candle (akidb-embed).
    pub candle: EngineFigures,
    /// ONNX Runtime on the same texts, where the model has an ONNX export.
    pub ort: Option<EngineFigures>,
    /// Candle's sentences/s over ONNX Runtime's (above 1: Candle is faster).
    pub ratio: Option<f64>,
    /// Candle at `embedding.precision = "int8"` on the same texts.
    #[serde(default)]
    pub int8: Option<EngineFigures>,
    /// Its sentences/s over Candle's f32 ones.
    #[serde(default)]
    pub int8_over_f32: Option<f64>,
    /// ONNX Runtime on its own int8 quantization of the export (`onnx/model-int8.onnx`).
    #[serde(default)]
    pub ort_int8: Option<EngineFigures>,
    /// Candle int8's sentences/s over ONNX Runtime int8's.
    #[serde(default)]
    pub int8_over_ort_int8: Option<f64>,
    /// Floating-point operations a text costs at the mean length measured (dense layers and
    /// attention, from the model's `config.json`), in billions; none where unknown.
    #[serde(default)]
    pub gflop_per_text: Option<f64>,
}

/// One engine's figures for a shape: medians over the repetitions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EngineFigures {
    /// Texts embedded per second.
    pub sentences_per_s: f64,
    /// Median time of one call, ms.
    pub p50_ms: f64,
    /// 95th percentile time of one call, ms.
    pub p95_ms: f64,
    /// Mean tokens per text the engine saw (special tokens included).
    pub mean_tokens: f64,
    /// Timed calls, all repetitions together.
    pub iterations: usize,
    /// Sentences/s of each repetition, to show the spread.
    pub runs: Vec<f64>,
}

/// The HTTP section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HttpSection {
    /// The model both servers served.
    pub model: String,
    /// Seconds per load.
    pub seconds: f64,
    /// Resident memory of each server once ready, before any load, MB.
    pub idle_rss_mb: Peers<f64>,
    /// One row per load.
    pub loads: Vec<LoadRow>,
    /// The step search for the highest rate held, when it ran.
    pub max_rate: Option<MaxRate>,
    /// Tokens per short text as akidb-embed counted them (special tokens included), checked
    /// equal to the engine shape's before any load; absent from reports before it was.
    #[serde(default)]
    pub short_text_tokens: Option<f64>,
}

/// A value for akidb-embed and for the legacy stand-in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Peers<T> {
    /// akidb-embed.
    pub candle: T,
    /// The legacy stand-in, when it ran.
    pub legacy: Option<T>,
}

/// One constant-rate load against both servers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoadRow {
    /// `short@200`, `mixed@200`, ...
    pub name: String,
    /// Requests per second asked for.
    pub rate: u32,
    /// Share of requests carrying a ~128-token text instead of a short one.
    pub long_share: f64,
    /// What each server did.
    pub figures: Peers<LoadFigures>,
}

/// What one server did under one load.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct LoadFigures {
    /// Successful requests per second.
    pub achieved_rps: f64,
    /// Latency from each request's due time (coordinated-omission corrected), ms.
    pub p50_ms: f64,
    /// As `p50_ms`.
    pub p95_ms: f64,
    /// As `p50_ms`.
    pub p99_ms: f64,
    /// Requests answered.
    pub requests: u64,
    /// Requests that failed: not 2xx, or no answer.
    pub errors: u64,
    /// Peak resident memory of the server during the load (VmHWM), MB.
    pub peak_rss_mb: Option<f64>,
    /// CPU time (user + system) the server spent per request answered, ms: with the rate, where
    /// the cores went. Two threads fully busy for a second at 1,000 req/s read 2.0.
    #[serde(default)]
    pub server_cpu_ms: Option<f64>,
    /// As `server_cpu_ms`, for the load generator, which shares the machine's cores.
    #[serde(default)]
    pub client_cpu_ms: Option<f64>,
    /// `server_cpu_ms` by what the server's threads do (akidb-embed's; read from each thread).
    #[serde(default)]
    pub server_cpu_by_role: Option<CpuByRole>,
}

/// The step search for the highest rate each server holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MaxRate {
    /// A rate is held when P95 stays under this, with no errors and ≥ 95% of it achieved.
    pub p95_limit_ms: f64,
    /// akidb-embed's highest rate held (req/s), when any was.
    pub candle: Option<u32>,
    /// The legacy stand-in's, when any was.
    pub legacy: Option<u32>,
    /// akidb-embed's highest over the legacy stand-in's: the "× faster than legacy" figure.
    pub faster_than_legacy: Option<f64>,
    /// Every step tried, in order.
    pub steps: Vec<SearchStep>,
}

/// One step of the search.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SearchStep {
    /// `candle` or `legacy`.
    pub server: String,
    /// Rate tried.
    pub rate: u32,
    /// What happened.
    pub figures: LoadFigures,
    /// Whether the rate was held.
    pub held: bool,
}

/// Lone requests: a sequential client (one connection, the next request sent when the last
/// answer is in), so each latency is one request's whole trip through an idle server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoneSection {
    /// The model served.
    pub model: String,
    /// Requests sent to each server.
    pub requests: u64,
    /// One row per server and batch window.
    pub rows: Vec<LoneRow>,
}

/// One server's lone-request figures.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoneRow {
    /// `candle` (akidb-embed) or `legacy`.
    pub server: String,
    /// The batch window akidb-embed ran with (`limits.max_batch_wait_us`); none for the stand-in.
    pub batch_wait_us: Option<u64>,
    /// What it did; `achieved_rps` is the sequential client's rate.
    pub figures: LoadFigures,
}

/// The serving path beside its own engine, in the same run: the highest rate of single short
/// texts held at the latency target over the engine's batch-of-32 throughput on short texts.
/// 1.0 would mean HTTP, tokenization, queueing and batching cost nothing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServingRatio {
    /// The model both figures are of.
    pub model: String,
    /// Highest rate held (req/s, one text each).
    pub highest_rate: u32,
    /// The engine's sentences/s at batch 32 × 10 tokens.
    pub engine_sentences_per_s: f64,
    /// `highest_rate / engine_sentences_per_s`.
    pub ratio: f64,
}

/// Batch size and tokens of the engine shape the serving path is held against.
pub const SERVING_SHAPE: (usize, usize) = (32, 10);

impl BenchReport {
    /// [`ServingRatio`] of every model this run's engine and HTTP sections both measured.
    pub fn serving_ratios(&self) -> Vec<ServingRatio> {
        self.http
            .iter()
            .filter_map(|http| self.serving_ratio(http))
            .collect()
    }

    /// [`ServingRatio`] of `http`'s model, when the engine section measured it and a rate was
    /// held.
    pub fn serving_ratio(&self, http: &HttpSection) -> Option<ServingRatio> {
        let highest_rate = http.max_rate.as_ref()?.candle?;
        let engine = self
            .engine
            .as_ref()?
            .rows
            .iter()
            .find(|row| row.model == http.model && (row.batch, row.tokens) == SERVING_SHAPE)?;
        let engine_sentences_per_s = engine.candle.sentences_per_s;
        (engine_sentences_per_s > 0.0).then(|| ServingRatio {
            model: http.model.clone(),
            highest_rate,
            engine_sentences_per_s,
            ratio: f64::from(highest_rate) / engine_sentences_per_s,
        })
    }
}

/// Cold start: spawn to `/health/ready` (akidb-embed) or `/ready` (the stand-in).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ColdStartSection {
    /// Median milliseconds over the runs.
    pub median_ms: Peers<f64>,
    /// Each run, ms.
    pub runs_ms: Peers<Vec<f64>>,
    /// What akidb-embed served in these runs.
    pub models: Vec<String>,
}

/// The median of `values` (the mean of the middle two for an even count); 0 when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn or_dash<T>(value: Option<T>, show: impl Fn(T) -> String) -> String {
    value.map_or_else(|| "-".to_string(), show)
}

impl BenchReport {
    /// The tables for a terminal (Markdown, so they paste into docs and pull requests).
    pub fn tables(&self) -> String {
        let mut out = format!(
            "machine: {} ({} cores; {}), {} threads, {} binary{}\n",
            self.machine.cpu,
            self.machine.cores,
            self.machine.simd.join(" "),
            self.threads,
            self.profile,
            if self.quick { ", quick smoke" } else { "" }
        );
        if !self.machine.kernels.is_empty() {
            out.push_str(&format!("kernels: {}\n", self.machine.kernels));
        }
        if let Some(peak) = &self.machine.fma_peak {
            out.push_str(&format!(
                "f32 multiply-add peak: {:.1} GFLOP/s a core ({})\n",
                peak.gflops_per_core, peak.isa
            ));
        }
        if let Some(engine) = &self.engine {
            out.push_str(&engine.table());
            if let Some(peak) = &self.machine.fma_peak {
                out.push_str(&engine.compute_table(peak, self.threads));
            }
        }
        for http in &self.http {
            out.push_str(&http.table());
        }
        for serving in &self.serving {
            out.push_str(&format!(
                "serving / engine ({}): {} req/s held over {:.0} sentences/s at batch {} × {} \
                 in process = {:.2}×\n",
                serving.model,
                serving.highest_rate,
                serving.engine_sentences_per_s,
                SERVING_SHAPE.0,
                SERVING_SHAPE.1,
                serving.ratio
            ));
        }
        if let Some(lone) = &self.lone {
            out.push_str(&lone.table());
        }
        if let Some(cold) = &self.cold_start {
            out.push_str(&cold.table());
        }
        out
    }
}

impl LoneSection {
    fn table(&self) -> String {
        let mut out = format!(
            "\nLone requests, model {}: {} requests one at a time (sequential client), ms\n\n\
             | server | batch window µs | req/s | P50 | P95 | P99 | errors |\n\
             |---|---|---|---|---|---|---|\n",
            self.model, self.requests
        );
        for row in &self.rows {
            let f = &row.figures;
            out.push_str(&format!(
                "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {} |\n",
                row.server,
                or_dash(row.batch_wait_us, |w| w.to_string()),
                f.achieved_rps,
                f.p50_ms,
                f.p95_ms,
                f.p99_ms,
                f.errors
            ));
        }
        out
    }
}

impl EngineSection {
    /// The f32 rows' compute rate against `threads` cores' multiply-add peak; empty when no
    /// row knows its cost.
    fn compute_table(&self, peak: &FmaPeak, threads: usize) -> String {
        let ceiling = peak.gflops_per_core * threads.max(1) as f64;
        let rows: Vec<String> = self
            .rows
            .iter()
            .filter_map(|row| {
                let cost = row.gflop_per_text?;
                let cell = |f: &EngineFigures| {
                    let rate = f.sentences_per_s * cost;
                    format!("{rate:.1} ({:.0}%)", 100.0 * rate / ceiling)
                };
                Some(format!(
                    "| {} | {} × {} | {:.3} | {} | {} |\n",
                    row.model,
                    row.batch,
                    row.tokens,
                    cost,
                    cell(&row.candle),
                    or_dash(row.ort.as_ref(), cell)
                ))
            })
            .collect();
        if rows.is_empty() {
            return String::new();
        }
        format!(
            "\nf32 compute rate: GFLOP/s (share of {threads} cores' vector multiply-add peak, \
             {ceiling:.0} GFLOP/s; matrix units such as AMX can pass it)\n\n\
             | model | batch × tokens | GFLOP a text | Candle | ONNX Runtime |\n\
             |---|---|---|---|---|\n{}",
            rows.concat()
        )
    }

    fn table(&self) -> String {
        let mut out = format!(
            "\nEngine, in process: sentences/s (p50 ms per call), median of {} × {:.1} s\n\n\
             | model | batch × tokens (mean) | Candle | ONNX Runtime | Candle / ORT | Candle int8 \
             | int8 / f32 | ORT int8 | int8: Candle / ORT |\n\
             |---|---|---|---|---|---|---|---|---|\n",
            self.repetitions, self.seconds
        );
        let cell = |f: &EngineFigures| format!("{:.1} ({:.2})", f.sentences_per_s, f.p50_ms);
        for row in &self.rows {
            out.push_str(&format!(
                "| {} | {} × {} ({:.1}) | {} | {} | {} | {} | {} | {} | {} |\n",
                row.model,
                row.batch,
                row.tokens,
                row.candle.mean_tokens,
                cell(&row.candle),
                or_dash(row.ort.as_ref(), cell),
                or_dash(row.ratio, |r| format!("{r:.2}×")),
                or_dash(row.int8.as_ref(), cell),
                or_dash(row.int8_over_f32, |r| format!("{r:.2}×")),
                or_dash(row.ort_int8.as_ref(), cell),
                or_dash(row.int8_over_ort_int8, |r| format!("{r:.2}×")),
            ));
        }
        out
    }
}

#[cfg(test)]
impl HttpSection {
    /// A section for model `m` with one `short@200` load, akidb-embed's figures `candle`.
    pub(crate) fn sample(candle: LoadFigures, max_rate: Option<MaxRate>) -> Self {
        HttpSection {
            model: "m".into(),
            seconds: 1.0,
            idle_rss_mb: Peers {
                candle: 100.0,
                legacy: None,
            },
            loads: vec![LoadRow {
                name: "short@200".into(),
                rate: 200,
                long_share: 0.0,
                figures: Peers {
                    candle,
                    legacy: None,
                },
            }],
            max_rate,
            short_text_tokens: Some(10.0),
        }
    }
}

impl HttpSection {
    /// akidb-embed's CPU per request by thread role, for each load and for the search's
    /// highest rate held and the step above it: where a served request's time goes.
    fn cpu_by_role(&self) -> String {
        let mut lines: Vec<String> = self
            .loads
            .iter()
            .filter_map(|load| {
                let split = load.figures.candle.server_cpu_by_role.as_ref()?;
                Some(format!("- {}: {}", load.name, split.describe()))
            })
            .collect();
        if let Some(max) = &self.max_rate {
            let candle: Vec<&SearchStep> =
                max.steps.iter().filter(|s| s.server == "candle").collect();
            let above = candle
                .iter()
                .filter(|s| !s.held && max.candle.is_some_and(|h| s.rate > h))
                .map(|s| s.rate)
                .min();
            for step in candle {
                let shown = Some(step.rate) == max.candle || Some(step.rate) == above;
                if let Some(split) = step.figures.server_cpu_by_role.as_ref().filter(|_| shown) {
                    lines.push(format!(
                        "- search {} req/s ({}): {}",
                        step.rate,
                        if step.held { "held" } else { "not held" },
                        split.describe()
                    ));
                }
            }
        }
        if lines.is_empty() {
            return String::new();
        }
        format!(
            "\nakidb-embed's CPU ms per request by thread role:\n{}\n",
            lines.join("\n")
        )
    }

    fn table(&self) -> String {
        let mb = |v: Option<f64>| or_dash(v, |v| format!("{v:.0}"));
        let mut out = format!(
            "\nHTTP, open loop, {} s per load, model {}: P50/P95/P99 ms from each request's due \
             time\nshort texts: {} tokens each; idle RSS MB: akidb-embed {:.0}, legacy {}\n\n\
             | load | server | achieved req/s | P50 | P95 | P99 | errors | peak RSS MB | CPU ms/req \
             server, oha |\n\
             |---|---|---|---|---|---|---|---|---|\n",
            self.seconds,
            self.model,
            or_dash(self.short_text_tokens, |t| format!("{t:.1}")),
            self.idle_rss_mb.candle,
            mb(self.idle_rss_mb.legacy)
        );
        for load in &self.loads {
            let servers = [
                ("akidb-embed", Some(&load.figures.candle)),
                ("legacy", load.figures.legacy.as_ref()),
            ];
            for (server, figures) in servers {
                if let Some(f) = figures {
                    let cpu = |v: Option<f64>| or_dash(v, |v| format!("{v:.2}"));
                    out.push_str(&format!(
                        "| {} | {server} | {:.0} | {:.1} | {:.1} | {:.1} | {} | {} | {}, {} |\n",
                        load.name,
                        f.achieved_rps,
                        f.p50_ms,
                        f.p95_ms,
                        f.p99_ms,
                        f.errors,
                        mb(f.peak_rss_mb),
                        cpu(f.server_cpu_ms),
                        cpu(f.client_cpu_ms),
                    ));
                }
            }
        }
        out.push_str(&self.cpu_by_role());
        if let Some(max) = &self.max_rate {
            let rate = |r: Option<u32>| or_dash(r, |r| format!("{r} req/s"));
            out.push_str(&format!(
                "\nhighest rate held at P95 < {} ms (0 errors): akidb-embed {}, legacy {}; \
                 × faster than legacy: {}\n",
                max.p95_limit_ms,
                rate(max.candle),
                rate(max.legacy),
                or_dash(max.faster_than_legacy, |r| format!("{r:.2}×")),
            ));
        }
        out
    }
}

impl ColdStartSection {
    fn table(&self) -> String {
        format!(
            "\nCold start to ready (median of {}): akidb-embed {:.0} ms ({}), legacy {}\n",
            self.runs_ms.candle.len(),
            self.median_ms.candle,
            self.models.join(", "),
            or_dash(self.median_ms.legacy, |v| format!("{v:.0} ms")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine_row(candle: f64, ort: Option<f64>, gflop_per_text: Option<f64>) -> EngineRow {
        let figures = |sentences_per_s: f64| EngineFigures {
            sentences_per_s,
            p50_ms: 1.0,
            p95_ms: 1.0,
            mean_tokens: 10.0,
            iterations: 1,
            runs: vec![sentences_per_s],
        };
        EngineRow {
            model: "m".into(),
            batch: 32,
            tokens: 10,
            candle: figures(candle),
            ort: ort.map(figures),
            ratio: None,
            int8: None,
            int8_over_f32: None,
            ort_int8: None,
            int8_over_ort_int8: None,
            gflop_per_text,
        }
    }

    #[test]
    fn the_compute_rate_is_read_against_the_threads_peak() {
        let engine = EngineSection {
            seconds: 1.0,
            repetitions: 1,
            rows: vec![
                engine_row(1000.0, Some(800.0), Some(0.2)),
                engine_row(50.0, None, None),
            ],
        };
        let peak = FmaPeak {
            isa: "avx512".into(),
            gflops_per_core: 100.0,
        };
        let table = engine.compute_table(&peak, 2);
        assert!(table.contains("share of 2 cores' vector multiply-add peak, 200 GFLOP/s"));
        // 1,000 texts/s × 0.2 GFLOP = 200 GFLOP/s, all of it; ORT 160, 80%.
        assert!(table.contains("| m | 32 × 10 | 0.200 | 200.0 (100%) | 160.0 (80%) |"));
        assert_eq!(
            table.matches("| m |").count(),
            1,
            "the row without a cost is left out"
        );
        let unknown = EngineSection {
            rows: vec![engine_row(50.0, None, None)],
            ..engine
        };
        assert_eq!(unknown.compute_table(&peak, 2), "");
    }

    #[test]
    fn reports_from_before_the_peak_was_recorded_still_read() {
        let machine: Machine =
            serde_json::from_str(r#"{"cpu": "x", "cores": 2, "simd": ["avx2"]}"#).unwrap();
        assert_eq!(machine.fma_peak, None);
        let row: EngineRow = serde_json::from_value(serde_json::json!({
            "model": "m", "batch": 1, "tokens": 10, "ort": null, "ratio": null,
            "candle": {"sentences_per_s": 1.0, "p50_ms": 1.0, "p95_ms": 1.0,
                       "mean_tokens": 10.0, "iterations": 1, "runs": [1.0]}
        }))
        .unwrap();
        assert_eq!(row.gflop_per_text, None);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    fn split(kernels: f64) -> Option<CpuByRole> {
        Some(CpuByRole {
            kernels,
            runtime: 0.07,
            ..CpuByRole::default()
        })
    }

    fn step(rate: u32, held: bool, kernels: f64) -> SearchStep {
        SearchStep {
            server: "candle".into(),
            rate,
            held,
            figures: LoadFigures {
                server_cpu_by_role: split(kernels),
                ..LoadFigures::default()
            },
        }
    }

    #[test]
    fn the_cpu_by_role_shows_each_load_and_the_search_around_the_rate_held() {
        let http = HttpSection::sample(
            LoadFigures {
                server_cpu_by_role: split(1.5),
                ..LoadFigures::default()
            },
            Some(MaxRate {
                p95_limit_ms: 35.0,
                candle: Some(1700),
                legacy: None,
                faster_than_legacy: None,
                steps: vec![
                    step(800, true, 0.95),
                    step(3200, false, 0.8),
                    step(1700, true, 0.91),
                    step(1800, false, 0.9),
                ],
            }),
        );
        let table = http.table();
        let lines: Vec<&str> = table.lines().filter(|l| l.starts_with("- ")).collect();
        assert_eq!(
            lines,
            [
                "- short@200: kernels 1.50, runtime 0.07",
                "- search 1700 req/s (held): kernels 0.91, runtime 0.07",
                "- search 1800 req/s (not held): kernels 0.90, runtime 0.07",
            ]
        );
        // A report without the split (older JSON, the stand-in) prints no such section.
        let mut bare = http.clone();
        bare.loads[0].figures.candle.server_cpu_by_role = None;
        bare.max_rate = None;
        assert!(!bare.table().contains("by thread role"));
    }
}
