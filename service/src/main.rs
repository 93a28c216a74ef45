//! `akidb-embed`: the command line of AkiDB's Candle embedding service.

use std::{path::PathBuf, process::ExitCode};

use akidb_embed::engine::{self, EmbedOptions, EmbeddingModel, ModelLayout, Pooling};
use clap::{Parser, Subcommand};
use serde_json::json;

const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("AKIDB_REVISION"), ")");

#[derive(Parser)]
#[command(name = "akidb-embed", version = VERSION, about = "AkiDB's Candle embedding service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Embed texts with one model and print the result as JSON.
    Embed(EmbedArgs),
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
    /// Texts to embed.
    #[arg(required = true)]
    texts: Vec<String>,
}

fn embed(args: EmbedArgs) -> anyhow::Result<()> {
    let layout = if args.hub {
        engine::hub::layout(&args.model, args.offline || engine::hub::offline_from_env())?
    } else {
        ModelLayout::read(args.models_dir.join(&args.model))?
    };
    let model = EmbeddingModel::load(layout, &candle_core::Device::Cpu)?;
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
    let body = json!({
        "model": info.name,
        "dimension": info.dimension,
        "embeddings": out.vectors,
        "usage": {
            "total_tokens": out.total_tokens(),
            "duration_ms": started.elapsed().as_millis() as u64,
        },
    });
    println!("{body}");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Embed(args) => embed(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
