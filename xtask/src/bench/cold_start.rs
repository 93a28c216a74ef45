//! Cold start: from spawning a server to its first 200 on the readiness route (akidb-embed:
//! `/health/ready`, every model loaded and warmed up; the stand-in: `/ready`), a few times.

use super::{
    report::{median, ColdStartSection, Peers},
    servers::{BenchServer, ServerKind, ServerSetup},
};

/// Starts and stops each server `runs` times, alternating; akidb-embed as configured by
/// default (every model folder), the stand-in serving `legacy_model` when given.
pub fn measure(
    setup: &ServerSetup,
    runs: usize,
    legacy_model: Option<&str>,
) -> anyhow::Result<ColdStartSection> {
    let mut candle = Vec::new();
    let mut legacy = Vec::new();
    for _ in 0..runs.max(1) {
        let (server, took) = BenchServer::start(setup, ServerKind::Candle, None)?;
        server.stop()?;
        candle.push(took.as_secs_f64() * 1e3);
        if let Some(model) = legacy_model {
            let (server, took) = BenchServer::start(setup, ServerKind::Legacy, Some(model))?;
            server.stop()?;
            legacy.push(took.as_secs_f64() * 1e3);
        }
    }
    println!(
        "bench: cold start akidb-embed {:.0} ms (median of {})",
        median(&candle),
        candle.len()
    );
    Ok(ColdStartSection {
        median_ms: Peers {
            candle: median(&candle),
            legacy: (!legacy.is_empty()).then(|| median(&legacy)),
        },
        runs_ms: Peers {
            candle,
            legacy: (!legacy.is_empty()).then_some(legacy),
        },
        models: model_folders(&setup.models_dir),
    })
}

/// The model folders akidb-embed serves by default.
fn model_folders(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().join("config.json").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
