//! `akidb-embed serve`: binds REST and gRPC first (so probes answer while models load), loads
//! and warms up the models, and shuts down gracefully on SIGTERM/SIGINT.

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::{net::TcpListener, sync::watch};
use tracing::{error, info, warn};

use crate::{
    api::{self, ApiKeys, AppState},
    config::Settings,
    engine::{self, hub, EmbeddingModel, ModelRegistry},
    grpc::{self, proto::embedding_service_server::EmbeddingServiceServer, EmbeddingGrpc},
    infer::{EmbedCall, Infer, Served},
    metrics::Metrics,
};

/// Version string of this build: `2.0.0 (revision)`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("AKIDB_REVISION"), ")");

/// Loads the configured models. Folders that fail are logged and skipped; failing to serve the
/// default model is an error (readiness stays false, the reason is reported by `/health`).
fn load_models(settings: &Settings) -> Result<ModelRegistry, String> {
    let embedding = &settings.embedding;
    let only = (!embedding.models.is_empty()).then_some(embedding.models.as_slice());
    let dir = &embedding.models_dir;
    let device = engine::device::open(&embedding.device).map_err(|e| e.to_string())?;
    let precision = embedding.precision;
    let (mut registry, failures) = if Path::new(dir).is_dir() {
        ModelRegistry::load_dir(dir, only, &device, precision).map_err(|e| e.to_string())?
    } else if embedding.hub_models.is_empty() {
        return Err(format!(
            "models directory {} does not exist (embedding.models_dir / AKIDB_MODELS_DIR)",
            dir.display()
        ));
    } else {
        (ModelRegistry::new(), Vec::new())
    };
    let mut reasons = Vec::new();
    for failure in failures {
        warn!(folder = %failure.dir.display(), error = %failure.error, "model not loaded");
        reasons.push(failure.error.to_string());
    }
    for id in &embedding.hub_models {
        let loaded = hub::layout(id, embedding.offline || hub::offline_from_env())
            .and_then(|layout| EmbeddingModel::load_with(layout, &device, precision));
        match loaded {
            Ok(model) => registry.insert(model),
            Err(e) => {
                warn!(model = %id, error = %e, "hub model not loaded");
                reasons.push(e.to_string());
            }
        }
    }
    // A configured model whose folder is gone is named, not silently left out.
    for name in &embedding.models {
        if registry.get(Some(name)).is_err() {
            let reason = format!(
                "configured model {name:?} was not found in {} (embedding.models)",
                dir.display()
            );
            warn!(model = %name, "{reason}");
            reasons.push(reason);
        }
    }
    if let Err(e) = registry.set_default(&embedding.model) {
        let mut message = format!("default model {:?} is not available: {e}", embedding.model);
        if !reasons.is_empty() {
            message.push_str(&format!(" (load errors: {})", reasons.join("; ")));
        }
        return Err(message);
    }
    Ok(registry)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// Runs the service until a shutdown signal, then drains.
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new(
        env!("CARGO_PKG_VERSION"),
        env!("AKIDB_REVISION"),
    ));
    let infer = Arc::new(Infer::new(
        settings.limits.clone(),
        settings.timeout(),
        Arc::clone(&metrics),
    ));
    let keys = Arc::new(ApiKeys::new(&settings.auth.api_keys));
    let state = AppState {
        infer: Arc::clone(&infer),
        keys: Arc::clone(&keys),
        body_timeout: settings.body_read_timeout(),
    };
    let host = settings.server.host;
    let rest = TcpListener::bind(SocketAddr::new(host, settings.server.rest_port))
        .await
        .with_context(|| {
            format!(
                "binding REST {host}:{} (server.rest_port)",
                settings.server.rest_port
            )
        })?;
    let grpc_listener = TcpListener::bind(SocketAddr::new(host, settings.server.grpc_port))
        .await
        .with_context(|| {
            format!(
                "binding gRPC {host}:{} (server.grpc_port)",
                settings.server.grpc_port
            )
        })?;
    info!(
        version = VERSION,
        rest = %rest.local_addr()?,
        grpc = %grpc_listener.local_addr()?,
        auth = state.keys.enabled(),
        "listening"
    );

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_not_serving::<EmbeddingServiceServer<EmbeddingGrpc>>()
        .await;
    let (stop_tx, stop_rx) = watch::channel(false);

    let loader = {
        let infer = Arc::clone(&infer);
        let health = health.clone();
        let settings = settings.clone();
        tokio::spawn(async move {
            let loaded = tokio::task::spawn_blocking(move || {
                let result = load_models(&settings);
                // The weights files and the transient copies of every tensor are free now, in
                // this thread's heap: hand them back rather than after the allocator's delay.
                crate::memory::release_free_pages();
                (result, settings)
            })
            .await;
            let (result, settings) = match loaded {
                Ok(pair) => pair,
                Err(e) => {
                    infer.set_failure(format!("model loading panicked: {e}"));
                    return;
                }
            };
            let registry = match result {
                Ok(registry) => registry,
                Err(message) => {
                    error!(%message, "start-up failed");
                    infer.set_failure(message);
                    return;
                }
            };
            for model in registry.models() {
                let info = model.info();
                infer
                    .metrics
                    .model_load
                    .with_label_values(&[&info.name])
                    .set(model.load_duration().as_secs_f64());
                info!(model = %info.name, dimension = info.dimension, seconds = model.load_duration().as_secs_f64(), "model loaded");
            }
            let names: Vec<String> = registry
                .models()
                .iter()
                .map(|m| m.info().name.clone())
                .collect();
            infer.set_served(Served::start(
                registry,
                &settings.limits,
                Arc::clone(&infer.metrics),
            ));
            for name in names {
                let warm = EmbedCall {
                    texts: vec!["warm-up".to_string()],
                    model: Some(name.clone()),
                    pooling: None,
                    normalize: None,
                };
                if let Err(e) = infer.embed(warm, None).await {
                    let message = format!("warm-up of {name} failed: {e}");
                    error!(%message);
                    infer.set_failure(message);
                    return;
                }
            }
            infer.set_warmed();
            health
                .set_serving::<EmbeddingServiceServer<EmbeddingGrpc>>()
                .await;
            info!("ready");
        })
    };

    let app = api::router(state);
    let limits = api::serve::ConnectionLimits {
        max_connections: settings.server.max_connections,
        header_read_timeout: settings.header_read_timeout(),
    };
    let rest_task = tokio::spawn(api::serve::serve(rest, app, limits, stop_rx.clone()));
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(grpc::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let mut grpc_stop = stop_rx.clone();
    let grpc_service = tonic::service::interceptor::InterceptedService::new(
        EmbeddingServiceServer::new(EmbeddingGrpc::new(Arc::clone(&infer)))
            .max_decoding_message_size(settings.limits.max_body_bytes),
        grpc::require_key(Arc::clone(&keys)),
    );
    let grpc_task = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(grpc_service)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(grpc_listener),
                async move {
                    let _ = grpc_stop.wait_for(|stop| *stop).await;
                },
            ),
    );

    shutdown_signal().await;
    let grace = Duration::from_secs(settings.server.shutdown_grace_seconds);
    info!(
        grace_seconds = grace.as_secs(),
        "shutdown requested: draining"
    );
    infer.start_draining();
    health
        .set_not_serving::<EmbeddingServiceServer<EmbeddingGrpc>>()
        .await;
    loader.abort();
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(grace, async {
        let rest = rest_task.await;
        let grpc = grpc_task.await;
        (rest, grpc)
    })
    .await;
    match drained {
        Ok((rest, grpc)) => {
            if let Err(e) = rest {
                warn!(error = %e, "REST server ended with an error");
            }
            if let Ok(Err(e)) = grpc {
                warn!(error = %e, "gRPC server ended with an error");
            }
            info!("drained: every accepted request was answered");
        }
        Err(_) => warn!(
            in_flight = metrics.in_flight.get(),
            "grace period over before every request was answered"
        ),
    }
    Ok(())
}
