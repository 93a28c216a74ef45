//! The lone-request section: one request at a time through an idle server (a sequential
//! client), akidb-embed with each batch window asked for and the legacy stand-in beside it.
//! It is what a user with light traffic sees, and it shows what the batch window costs a
//! request that has nobody to wait for.

use std::{fs, path::Path};

use anyhow::Context;

use super::{
    http,
    oha::Oha,
    report::{LoadFigures, LoneRow, LoneSection},
    servers::{BenchServer, ServerKind, ServerSetup},
};

/// Requests sent and not counted before each measurement: connection set-up, first-touch pages.
const WARM_UP: u64 = 20;

/// What to measure.
#[derive(Debug, Clone)]
pub struct LonePlan {
    /// The model served.
    pub model: String,
    /// Requests per server, after the warm-up.
    pub requests: u64,
    /// The batch windows akidb-embed runs with (`limits.max_batch_wait_us`), one server each.
    pub windows_us: Vec<u64>,
    /// Whether to measure the legacy stand-in too.
    pub legacy: bool,
}

/// Runs `plan`, one freshly started server at a time.
pub fn measure(
    setup: &ServerSetup,
    oha: &Oha,
    work_dir: &Path,
    plan: &LonePlan,
) -> anyhow::Result<LoneSection> {
    let bodies = work_dir.join("bodies-lone.jsonl");
    fs::write(&bodies, http::bodies(&plan.model, 0.0))
        .with_context(|| format!("writing {}", bodies.display()))?;
    let mut rows = Vec::new();
    for &wait in &plan.windows_us {
        let env = [("AKIDB_MAX_BATCH_WAIT_US", wait.to_string())];
        let (server, _) =
            BenchServer::start_with(setup, ServerKind::Candle, Some(&plan.model), &env)?;
        let label = format!("candle, window {wait} µs");
        let figures = one_at_a_time(oha, server, &label, plan.requests, &bodies)?;
        rows.push(LoneRow {
            server: ServerKind::Candle.name().into(),
            batch_wait_us: Some(wait),
            figures,
        });
    }
    if plan.legacy {
        let (server, _) = BenchServer::start(setup, ServerKind::Legacy, Some(&plan.model))?;
        rows.push(LoneRow {
            server: ServerKind::Legacy.name().into(),
            batch_wait_us: None,
            figures: one_at_a_time(oha, server, "legacy", plan.requests, &bodies)?,
        });
    }
    Ok(LoneSection {
        model: plan.model.clone(),
        requests: plan.requests,
        rows,
    })
}

/// Warms `server` up, measures `requests` sent one at a time, and stops it.
fn one_at_a_time(
    oha: &Oha,
    mut server: BenchServer,
    label: &str,
    requests: u64,
    bodies: &Path,
) -> anyhow::Result<LoadFigures> {
    let url = server.embed_url();
    oha.sequential(&url, WARM_UP, bodies)?;
    let figures = oha.sequential(&url, requests, bodies)?;
    server
        .ensure_running()
        .with_context(|| format!("{} died under lone requests", server.kind().name()))?;
    println!(
        "bench: lone {label}: P50 {:.2} ms, P99 {:.2} ms, {} errors",
        figures.p50_ms, figures.p99_ms, figures.errors
    );
    server.stop()?;
    Ok(figures)
}
