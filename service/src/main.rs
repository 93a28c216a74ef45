//! `akidb-embed`: the command line of AkiDB's Candle embedding service.

mod bench;

use std::{path::PathBuf, process::ExitCode};

use akidb_embed::{
    api::{LegacyEmbedResponse, LegacyUsage},
    config::{LogFormat, Settings},
    engine::{self, EmbedOptions, EmbeddingModel, LoadOptions, ModelLayout, Pooling},
    server::{self, VERSION},
    telemetry,
};
use clap::{Parser, Subcommand};
use figment::value::Value;

// mimalloc keeps freed pages for reuse: with the system allocator every large buffer of a
// forward pass came back as fresh, zero-filled pages (page faults were ~7% of a single-request
// profile). Built with `no_thp` (service/Cargo.toml): no transparent huge pages, so RSS follows
// what is in use instead of rounding it up to 2 MB pages.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "akidb-embed", version = VERSION, about = "AkiDB's Candle embedding service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the REST, OpenAI-compatible and gRPC APIs.
    Serve(ServeArgs),
    /// Embed texts with one model and print the result as JSON.
    Embed(EmbedArgs),
    /// Time one batch size in process and print one JSON line (used by `cargo xtask bench`).
    #[command(hide = true)]
    BenchEngine(BenchEngineArgs),
}

/// Flags of `serve`. Precedence: flags > environment (AKIDB_*) > config file > defaults.
#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration file (the v1.x `config.toml` keys, plus v2's).
    #[arg(long, env = "AKIDB_CONFIG")]
    config: Option<PathBuf>,
    /// Address to bind (server.host).
    #[arg(long)]
    host: Option<String>,
    /// REST port (server.rest_port; 0 picks a free one).
    #[arg(long)]
    rest_port: Option<u16>,
    /// gRPC port (server.grpc_port; 0 picks a free one).
    #[arg(long)]
    grpc_port: Option<u16>,
    /// Folder of model folders (embedding.models_dir).
    #[arg(long)]
    models_dir: Option<PathBuf>,
    /// Default model (embedding.model).
    #[arg(long)]
    model: Option<String>,
    /// Models to serve, comma-separated (embedding.models; default: every folder found).
    #[arg(long, value_delimiter = ',')]
    models: Option<Vec<String>>,
    /// Texts per request (limits.max_texts_per_request, at least 32).
    #[arg(long)]
    max_texts_per_request: Option<u64>,
    /// Texts that may wait per model before 429 (limits.queue_capacity).
    #[arg(long)]
    queue_capacity: Option<u64>,
    /// Seconds to finish accepted requests after SIGTERM (server.shutdown_grace_seconds).
    #[arg(long)]
    shutdown_grace_seconds: Option<u64>,
    /// Log format: text or json (log.format).
    #[arg(long)]
    log_format: Option<String>,
    /// Log level or tracing filter (log.level).
    #[arg(long)]
    log_level: Option<String>,
}

impl ServeArgs {
    fn overrides(&self) -> Vec<(&'static str, Value)> {
        let mut out: Vec<(&'static str, Value)> = Vec::new();
        let mut put = |key, value: Option<Value>| {
            if let Some(v) = value {
                out.push((key, v));
            }
        };
        put("server.host", self.host.clone().map(Value::from));
        put("server.rest_port", self.rest_port.map(Value::from));
        put("server.grpc_port", self.grpc_port.map(Value::from));
        put(
            "embedding.models_dir",
            self.models_dir
                .as_ref()
                .map(|p| Value::from(p.display().to_string())),
        );
        put("embedding.model", self.model.clone().map(Value::from));
        put("embedding.models", self.models.clone().map(Value::from));
        put(
            "limits.max_texts_per_request",
            self.max_texts_per_request.map(Value::from),
        );
        put(
            "limits.queue_capacity",
            self.queue_capacity.map(Value::from),
        );
        put(
            "server.shutdown_grace_seconds",
            self.shutdown_grace_seconds.map(Value::from),
        );
        put("log.format", self.log_format.clone().map(Value::from));
        put("log.level", self.log_level.clone().map(Value::from));
        out
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let overrides = args.overrides();
    let settings = Settings::load(args.config.as_deref(), std::env::vars(), &overrides)?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.io_threads(cores))
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let _telemetry = telemetry::init(&settings.log)?;
        if settings.log.format == LogFormat::Text {
            tracing::debug!(?settings, "configuration");
        }
        // After the logs start, so that the choice and any warning are logged.
        engine::init_compute(settings.embedding.threads, settings.embedding.matmul);
        server::run(settings).await
    })
}

#[derive(clap::Args)]
struct EmbedArgs {
    /// Model: a folder name under --models-dir, or a Hub id with --hub.
    #[arg(
        long,
        env = "AKIDB_EMBEDDING_MODEL",
        default_value = "all-MiniLM-L6-v2"
    )]
    model: String,
    /// Folder that holds model folders.
    #[arg(long, env = "AKIDB_MODELS_DIR", default_value = "./models")]
    models_dir: PathBuf,
    /// Load --model by HuggingFace Hub id (downloads into the hf-hub cache).
    #[arg(long)]
    hub: bool,
    /// With --hub, use only files already in the cache (also HF_HUB_OFFLINE=1).
    #[arg(long)]
    offline: bool,
    /// Pooling instead of the model's own: mean or cls.
    #[arg(long)]
    pooling: Option<Pooling>,
    /// L2-normalise (true/false) instead of the model's own setting.
    #[arg(long)]
    normalize: Option<bool>,
    /// Where to run: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Precision: f32 (default), f16, bf16 or int8.
    #[arg(long, default_value = "f32")]
    precision: engine::Precision,
    /// Texts to embed.
    #[arg(required = true)]
    texts: Vec<String>,
}

fn embed(args: EmbedArgs) -> anyhow::Result<()> {
    let settings = Settings::load_engine(std::env::vars())?.embedding;
    engine::init_compute(settings.threads, settings.matmul);
    let layout = if args.hub {
        engine::hub::layout(&args.model, args.offline || settings.offline)?
    } else {
        ModelLayout::read(args.models_dir.join(&args.model))?
    };
    let device = engine::device::open(&args.device)?;
    let options = LoadOptions {
        precision: args.precision,
        encoder: settings.encoder,
    };
    let model = EmbeddingModel::load_with(layout, &device, options)?;
    let texts: Vec<&str> = args.texts.iter().map(String::as_str).collect();
    let started = std::time::Instant::now();
    let out = model.embed(
        &texts,
        EmbedOptions {
            pooling: args.pooling,
            normalize: args.normalize,
        },
    )?;
    let info = model.info();
    // The v1 API's response body, as `POST /api/v1/embed` writes it.
    let body = LegacyEmbedResponse {
        model: info.name.clone(),
        dimension: info.dimension,
        usage: LegacyUsage {
            total_tokens: out.total_tokens(),
            duration_ms: started.elapsed().as_millis() as u64,
        },
        embeddings: out.vectors,
    };
    println!("{}", serde_json::to_string(&body)?);
    Ok(())
}

#[derive(clap::Args)]
struct BenchEngineArgs {
    /// The model folder.
    #[arg(long)]
    model: PathBuf,
    /// Texts per call.
    #[arg(long)]
    batch: usize,
    /// Tokens per text, special tokens included (capped at the model's max_seq_length).
    #[arg(long)]
    tokens: usize,
    /// Seconds to keep calling.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Untimed calls first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Inference threads, as `serve` takes them (0: one per core; default: embedding.threads,
    /// from AKIDB_THREADS).
    #[arg(long)]
    threads: Option<usize>,
    /// Also write the texts (a JSON array) here, so a peer engine can run the very same ones.
    #[arg(long)]
    texts_out: Option<PathBuf>,
    /// Also write the vectors of one call (a JSON array of arrays) here, to compare devices
    /// and precisions.
    #[arg(long)]
    vectors_out: Option<PathBuf>,
    /// Where to run: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Precision: f32 (default), f16, bf16 or int8.
    #[arg(long, default_value = "f32")]
    precision: engine::Precision,
    /// Keep one core busy this share of the time (percent, in 500 µs bursts) beside the engine:
    /// a served pass shares its cores with the server's I/O and the load generator.
    #[arg(long, default_value_t = 0.0)]
    contend: f64,
}

fn bench_engine(args: BenchEngineArgs) -> anyhow::Result<()> {
    // The same settings `serve` takes from the environment.
    let settings = Settings::load_engine(std::env::vars())?.embedding;
    let threads = args.threads.unwrap_or(settings.threads);
    engine::init_compute(threads, settings.matmul);
    let device = engine::device::open(&args.device)?;
    let options = LoadOptions {
        precision: args.precision,
        encoder: settings.encoder,
    };
    let model = EmbeddingModel::load_with(ModelLayout::read(&args.model)?, &device, options)?;
    let texts = bench::texts_of_length(&model, args.batch, args.tokens)?;
    if let Some(path) = &args.texts_out {
        std::fs::write(path, serde_json::to_string(&texts)?)?;
    }
    if let Some(path) = &args.vectors_out {
        let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
        let out = model.embed(&texts, EmbedOptions::default())?;
        std::fs::write(path, serde_json::to_string(&out.vectors)?)?;
    }
    let schedule = bench::Schedule {
        warmup_calls: args.warmup,
        duration: std::time::Duration::from_secs_f64(args.seconds.max(0.0)),
        min_iterations: 3,
    };
    let run = bench::measure(&model, &texts, schedule, threads, args.contend)?;
    println!("{}", serde_json::to_string(&run)?);
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Embed(args) => embed(args),
        Command::BenchEngine(args) => bench_engine(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
