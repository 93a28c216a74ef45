//! `akidb-embed serve`: binds REST and gRPC first (so probes answer while models load), loads
//! and warms up the models, and shuts down gracefully on SIGTERM/SIGINT.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::{net::TcpListener, sync::watch};
use tracing::{info, warn};

use crate::{
    api::{self, ApiKeys, AppState},
    config::Settings,
    grpc::{self, proto::embedding_service_server::EmbeddingServiceServer, EmbeddingGrpc},
    infer::Infer,
    metrics::Metrics,
    startup,
};

/// Version string of this build: `2.0.0 (revision)`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("AKIDB_REVISION"), ")");

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

    let loader = tokio::spawn(startup::start(
        Arc::clone(&infer),
        settings.clone(),
        health.clone(),
    ));

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
