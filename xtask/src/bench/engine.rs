//! The in-process engine section: `akidb-embed bench-engine` and ONNX Runtime
//! (`xtask/python/ort_bench.py`) on the very same texts, alternating run by run (A B, B A, ...)
//! so that machine noise and drift fall on both alike.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context};
use serde::Deserialize;

use super::report::{median, EngineFigures, EngineRow, EngineSection};

/// A batch shape: texts per call and tokens per text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Texts per call.
    pub batch: usize,
    /// Tokens per text, special tokens included.
    pub tokens: usize,
}

/// The shapes of issue #7: one short query, a batch of short ones, a batch of long ones.
pub const SHAPES: [Shape; 3] = [
    Shape {
        batch: 1,
        tokens: 10,
    },
    Shape {
        batch: 32,
        tokens: 10,
    },
    Shape {
        batch: 32,
        tokens: 128,
    },
];

/// Where the engines and their inputs are.
pub struct EngineBench {
    /// The `akidb-embed` binary.
    pub binary: PathBuf,
    /// The Python interpreter with onnxruntime and tokenizers.
    pub python: PathBuf,
    /// `xtask/python/ort_bench.py`.
    pub script: PathBuf,
    /// Folder for the texts files.
    pub work_dir: PathBuf,
    /// Threads for both engines.
    pub threads: usize,
    /// Timed seconds per run.
    pub seconds: f64,
    /// Runs per engine and shape.
    pub repetitions: usize,
}

/// The JSON line both `bench-engine` and `ort_bench.py` print.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct EngineLine {
    /// `candle` or `onnxruntime`.
    pub engine: String,
    /// Texts per call.
    pub batch: usize,
    /// Mean tokens per text.
    pub mean_tokens: f64,
    /// Timed calls.
    pub iterations: usize,
    /// Texts per second.
    pub sentences_per_s: f64,
    /// Median ms per call.
    pub p50_ms: f64,
    /// 95th percentile ms per call.
    pub p95_ms: f64,
}

/// Which engine a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Candle,
    OnnxRuntime,
    /// Candle at `embedding.precision = "int8"`.
    CandleInt8,
    /// ONNX Runtime on its own int8 quantization of the export.
    OnnxRuntimeInt8,
}

/// The int8 export ONNX Runtime runs beside Candle's int8 (`cargo xtask models` makes it).
const ORT_INT8: &str = "onnx/model-int8.onnx";

impl EngineBench {
    /// Measures `model_dir` at every shape; with ONNX Runtime beside Candle when the folder has
    /// `onnx/model.onnx`.
    pub fn measure_model(
        &self,
        model_dir: &Path,
        shapes: &[Shape],
    ) -> anyhow::Result<Vec<EngineRow>> {
        let name = model_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let has_peer = model_dir.join("onnx").join("model.onnx").is_file();
        let int8_peer = model_dir.join(ORT_INT8);
        let has_int8_peer = int8_peer.is_file();
        let encoder = Encoder::read(model_dir);
        let mut rows = Vec::new();
        for &shape in shapes {
            let texts = self.work_dir.join(format!(
                "texts-{name}-{}x{}.json",
                shape.batch, shape.tokens
            ));
            let mut candle = Vec::new();
            let mut ort = Vec::new();
            let mut int8 = Vec::new();
            let mut ort_int8 = Vec::new();
            for repetition in 0..self.repetitions.max(1) {
                // The first Candle run writes the texts the others read, so it goes first.
                let mut order = [
                    Engine::Candle,
                    Engine::OnnxRuntime,
                    Engine::CandleInt8,
                    Engine::OnnxRuntimeInt8,
                ];
                if repetition % 2 == 1 {
                    order.reverse();
                }
                for engine in order {
                    match engine {
                        Engine::Candle => {
                            candle.push(self.run_candle(model_dir, shape, &texts, "f32")?)
                        }
                        Engine::CandleInt8 => {
                            int8.push(self.run_candle(model_dir, shape, &texts, "int8")?)
                        }
                        Engine::OnnxRuntime if has_peer => {
                            ort.push(self.run_ort(model_dir, &texts, None)?)
                        }
                        Engine::OnnxRuntimeInt8 if has_int8_peer => {
                            ort_int8.push(self.run_ort(model_dir, &texts, Some(&int8_peer))?)
                        }
                        Engine::OnnxRuntime | Engine::OnnxRuntimeInt8 => {}
                    }
                }
            }
            let mut row = with_int8(row(&name, shape, &candle, &ort)?, &int8, &ort_int8);
            row.gflop_per_text = encoder.map(|e| e.gflop(row.candle.mean_tokens));
            let rate = |f: Option<&EngineFigures>| {
                f.map_or("-".to_string(), |f| format!("{:.1}/s", f.sentences_per_s))
            };
            println!(
                "bench: engine {name} {}×{}: candle {:.1}/s, onnxruntime {}, candle int8 {}, \
                 onnxruntime int8 {}",
                shape.batch,
                shape.tokens,
                row.candle.sentences_per_s,
                rate(row.ort.as_ref()),
                rate(row.int8.as_ref()),
                rate(row.ort_int8.as_ref()),
            );
            rows.push(row);
        }
        Ok(rows)
    }

    /// The section for these rows.
    pub fn section(&self, rows: Vec<EngineRow>) -> EngineSection {
        EngineSection {
            seconds: self.seconds,
            repetitions: self.repetitions.max(1),
            rows,
        }
    }

    fn run_candle(
        &self,
        model_dir: &Path,
        shape: Shape,
        texts: &Path,
        precision: &str,
    ) -> anyhow::Result<EngineLine> {
        let mut command = Command::new(&self.binary);
        command
            .arg("bench-engine")
            .arg("--model")
            .arg(model_dir)
            .args(["--batch", &shape.batch.to_string()])
            .args(["--tokens", &shape.tokens.to_string()])
            .args(["--seconds", &self.seconds.to_string()])
            .args(["--precision", precision])
            .arg("--texts-out")
            .arg(texts)
            // The service's thread knob (`embedding.threads`).
            .env("AKIDB_THREADS", self.threads.to_string());
        run_line(command, "akidb-embed bench-engine")
    }

    fn run_ort(
        &self,
        model_dir: &Path,
        texts: &Path,
        onnx: Option<&Path>,
    ) -> anyhow::Result<EngineLine> {
        let mut command = Command::new(&self.python);
        command
            .arg(&self.script)
            .arg("--model-dir")
            .arg(model_dir)
            .arg("--texts")
            .arg(texts)
            .args(["--seconds", &self.seconds.to_string()])
            .args(["--threads", &self.threads.to_string()]);
        if let Some(onnx) = onnx {
            command.arg("--onnx").arg(onnx);
        }
        run_line(command, "ort_bench.py")
    }
}

/// Runs `command` and reads the JSON line it prints last.
fn run_line(mut command: Command, what: &str) -> anyhow::Result<EngineLine> {
    let output = command
        .output()
        .with_context(|| format!("starting {what}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_line(&stdout).with_context(|| format!("reading the output of {what}"))
}

/// The last non-empty line of `stdout`, as an [`EngineLine`].
pub fn parse_line(stdout: &str) -> anyhow::Result<EngineLine> {
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .context("no output")?;
    serde_json::from_str(line).with_context(|| format!("not a result line: {line}"))
}

/// Medians over the repetitions of each engine, and their ratio.
fn row(
    model: &str,
    shape: Shape,
    candle: &[EngineLine],
    ort: &[EngineLine],
) -> anyhow::Result<EngineRow> {
    let candle_figures = figures(candle).context("no Candle run")?;
    let ort_figures = figures(ort);
    if let Some(peer) = &ort_figures {
        // Both must have embedded the same inputs, or the ratio means nothing.
        if (peer.mean_tokens - candle_figures.mean_tokens).abs() > 0.01 {
            bail!(
                "{model} {}×{}: Candle saw {:.2} tokens per text, ONNX Runtime {:.2}: the \
                 tokenizers disagree",
                shape.batch,
                shape.tokens,
                candle_figures.mean_tokens,
                peer.mean_tokens
            );
        }
    }
    let ratio = ort_figures
        .as_ref()
        .filter(|o| o.sentences_per_s > 0.0)
        .map(|o| candle_figures.sentences_per_s / o.sentences_per_s);
    Ok(EngineRow {
        model: model.to_string(),
        batch: shape.batch,
        tokens: shape.tokens,
        candle: candle_figures,
        ort: ort_figures,
        ratio,
        int8: None,
        int8_over_f32: None,
        ort_int8: None,
        int8_over_ort_int8: None,
        gflop_per_text: None,
    })
}

/// `row` with Candle's int8 figures (medians of `int8`), their ratio to its f32 ones, and
/// ONNX Runtime's int8 ones (medians of `ort_int8`) with Candle int8's ratio to them.
fn with_int8(mut row: EngineRow, int8: &[EngineLine], ort_int8: &[EngineLine]) -> EngineRow {
    let over = |a: Option<&EngineFigures>, b: Option<&EngineFigures>| {
        let (a, b) = (a?, b?);
        (b.sentences_per_s > 0.0).then(|| a.sentences_per_s / b.sentences_per_s)
    };
    row.int8 = figures(int8);
    row.ort_int8 = figures(ort_int8);
    row.int8_over_f32 = over(row.int8.as_ref(), Some(&row.candle));
    row.int8_over_ort_int8 = over(row.int8.as_ref(), row.ort_int8.as_ref());
    row
}

fn figures(runs: &[EngineLine]) -> Option<EngineFigures> {
    let first = runs.first()?;
    let pick = |f: fn(&EngineLine) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    Some(EngineFigures {
        sentences_per_s: pick(|r| r.sentences_per_s),
        p50_ms: pick(|r| r.p50_ms),
        p95_ms: pick(|r| r.p95_ms),
        mean_tokens: first.mean_tokens,
        iterations: runs.iter().map(|r| r.iterations).sum(),
        runs: runs.iter().map(|r| r.sentences_per_s).collect(),
    })
}

/// The shape of a BERT encoder, as its `config.json` gives it: what a text's compute costs.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
pub struct Encoder {
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
}

impl Encoder {
    /// The encoder of the model in `model_dir`; `None` without a readable `config.json`.
    pub fn read(model_dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(model_dir.join("config.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Billions of floating-point operations (a multiply-add counts two) one text of `tokens`
    /// tokens costs: per layer, the query/key/value, output and two feed-forward products
    /// (`2·t·(4h² + 2h·i)`) and attention's scores and weighted sum (`4·t²·h`). Embeddings,
    /// norms, activations and pooling are left out (a few per cent).
    pub fn gflop(&self, tokens: f64) -> f64 {
        let (h, i) = (self.hidden_size as f64, self.intermediate_size as f64);
        let per_layer = 2.0 * tokens * (4.0 * h * h + 2.0 * h * i) + 4.0 * tokens * tokens * h;
        self.num_hidden_layers as f64 * per_layer / 1e9
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(engine: &str, sps: f64, tokens: f64) -> EngineLine {
        EngineLine {
            engine: engine.into(),
            batch: 32,
            mean_tokens: tokens,
            iterations: 10,
            sentences_per_s: sps,
            p50_ms: 1000.0 * 32.0 / sps,
            p95_ms: 1100.0 * 32.0 / sps,
        }
    }

    #[test]
    fn a_text_costs_its_layers_products_and_attention() {
        let dir = tempfile::tempdir().unwrap();
        // all-MiniLM-L6-v2's shape, among the other fields a config carries.
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 6,
                "num_attention_heads": 12, "vocab_size": 30522}"#,
        )
        .unwrap();
        let encoder = Encoder::read(dir.path()).expect("config read");
        // Per layer at 128 tokens: 2·128·(4·384² + 2·384·1536) + 4·128²·384 = 478,150,656.
        let cost = encoder.gflop(128.0);
        assert!((cost - 6.0 * 478_150_656.0 / 1e9).abs() < 1e-9, "{cost}");
        // Ten tokens: 6 · (2·10·1,769,472 + 4·100·384); attention is under 1% of it.
        assert!((encoder.gflop(10.0) - 0.213_258_24).abs() < 1e-9);
        assert_eq!(Encoder::read(&dir.path().join("absent")), None);
    }

    #[test]
    fn reads_the_last_line_of_either_engine() {
        let out = "loading\n{\"engine\":\"onnxruntime\",\"model\":\"m\",\"batch\":32,\"mean_tokens\":10.0,\
                   \"iterations\":5,\"seconds\":1.0,\"sentences_per_s\":160.0,\"p50_ms\":200.0,\
                   \"p95_ms\":210.0,\"threads\":2}\n\n";
        let parsed = parse_line(out).expect("parsed");
        assert_eq!(parsed.engine, "onnxruntime");
        assert_eq!(parsed.sentences_per_s, 160.0);
        assert!(parse_line("").is_err());
        assert!(parse_line("error: boom").is_err());
    }

    #[test]
    fn ratio_is_candle_over_ort_of_the_medians() {
        let shape = SHAPES[1];
        let candle = [
            line("candle", 100.0, 10.0),
            line("candle", 300.0, 10.0),
            line("candle", 200.0, 10.0),
        ];
        let ort = [
            line("onnxruntime", 400.0, 10.0),
            line("onnxruntime", 400.0, 10.0),
        ];
        let row = row("m", shape, &candle, &ort).expect("row");
        assert_eq!(row.candle.sentences_per_s, 200.0);
        assert_eq!(row.candle.iterations, 30);
        assert_eq!(row.ratio, Some(0.5));
        let alone = super::row("m", shape, &candle, &[]).expect("row");
        assert_eq!(alone.ratio, None);
    }

    #[test]
    fn int8_is_set_beside_f32_as_a_ratio_of_medians() {
        let candle = [line("candle", 200.0, 10.0)];
        let plain = row("m", SHAPES[1], &candle, &[]).expect("row");
        let int8 = [
            line("candle", 500.0, 10.0),
            line("candle", 300.0, 10.0),
            line("candle", 400.0, 10.0),
        ];
        let ort_int8 = [line("onnxruntime", 250.0, 10.0)];
        let with = with_int8(plain.clone(), &int8, &ort_int8);
        assert_eq!(with.int8.as_ref().map(|f| f.sentences_per_s), Some(400.0));
        assert_eq!(with.int8_over_f32, Some(2.0));
        assert_eq!(with.int8_over_ort_int8, Some(1.6));
        let without = with_int8(plain, &[], &[]);
        assert_eq!((without.int8, without.int8_over_f32), (None, None));
        assert_eq!((without.ort_int8, without.int8_over_ort_int8), (None, None));
    }

    #[test]
    fn refuses_a_ratio_over_different_inputs() {
        let error = row(
            "m",
            SHAPES[2],
            &[line("candle", 1.0, 128.0)],
            &[line("onnxruntime", 1.0, 126.0)],
        )
        .expect_err("different token counts");
        assert!(format!("{error:#}").contains("tokenizers disagree"));
    }
}
