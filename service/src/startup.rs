//! Start-up: the configured models loaded, one batch queue started per model, and each model
//! warmed up by one inference. Readiness turns true (and gRPC health `SERVING`) only after every
//! warm-up passed; a failure is recorded for `/health` and readiness reports `failed`.

use std::{path::Path, sync::Arc};

use tonic_health::server::HealthReporter;
use tracing::{error, info, warn};

use crate::{
    config::Settings,
    engine::{self, hub, EmbeddingModel, LoadOptions, ModelRegistry},
    grpc::{proto::embedding_service_server::EmbeddingServiceServer, EmbeddingGrpc},
    infer::{EmbedCall, Infer, ServedModels},
};

/// Loads the configured models. Folders that fail are logged and skipped; failing to serve the
/// default model is an error (readiness stays false, the reason is reported by `/health`).
fn load_models(settings: &Settings) -> Result<ModelRegistry, String> {
    let embedding = &settings.embedding;
    let only = (!embedding.models.is_empty()).then_some(embedding.models.as_slice());
    let dir = &embedding.models_dir;
    let device = engine::device::open(&embedding.device).map_err(|e| e.to_string())?;
    let options = LoadOptions {
        precision: embedding.precision,
        encoder: embedding.encoder,
    };
    let (mut registry, failures) = if Path::new(dir).is_dir() {
        ModelRegistry::load_dir(dir, only, &device, options).map_err(|e| e.to_string())?
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
        let loaded = hub::layout(id, embedding.offline)
            .and_then(|layout| EmbeddingModel::load_with(layout, &device, options));
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

/// Loads and warms up the configured models into `infer`, then marks it ready and the gRPC
/// service `SERVING` on `health`. A failure is recorded in `infer` instead.
pub async fn start(infer: Arc<Infer>, settings: Settings, health: HealthReporter) {
    let loaded = tokio::task::spawn_blocking(move || {
        let result = load_models(&settings);
        // The weights files and the transient copies of every tensor are free now, in this
        // thread's heap: hand them back rather than after the allocator's delay.
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
        let seconds = model.load_duration().as_secs_f64();
        infer
            .metrics
            .model_load
            .with_label_values(&[&info.name])
            .set(seconds);
        info!(model = %info.name, dimension = info.dimension, seconds, "model loaded");
    }
    let names: Vec<String> = registry
        .models()
        .iter()
        .map(|m| m.info().name.clone())
        .collect();
    infer.set_served(ServedModels::start(
        registry,
        &settings.limits,
        Arc::clone(&infer.metrics),
    ));
    #[cfg(test)]
    hold::wait().await;
    for name in names {
        let warm = EmbedCall {
            texts: vec!["warm-up".to_string()],
            model: Some(name.clone()),
            pooling: None,
            normalize: None,
            arrived: std::time::Instant::now(),
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
}

/// Test builds only: holds the warm-up (models loaded, queues running) until the test lets it
/// go, so that the window before readiness can be observed.
#[cfg(test)]
mod hold {
    use std::sync::Mutex;

    use tokio::sync::oneshot;

    static HOLD: Mutex<Option<oneshot::Receiver<()>>> = Mutex::new(None);

    /// Holds the next start-up's warm-up until the returned sender is used or dropped.
    pub fn set() -> oneshot::Sender<()> {
        let (release, held) = oneshot::channel();
        *HOLD.lock().unwrap() = Some(held);
        release
    }

    pub(super) async fn wait() {
        let held = HOLD.lock().unwrap().take();
        if let Some(held) = held {
            let _ = held.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use axum::{body::Body, http::Request, Router};
    use tonic_health::pb::{
        health_check_response::ServingStatus, health_server::Health, HealthCheckRequest,
    };
    use tower::ServiceExt;

    use super::*;
    use crate::{
        api::{self, ApiKeys, AppState},
        grpc::SERVICE_NAME,
        metrics::Metrics,
    };

    const MODEL: &str = "paraphrase-MiniLM-L3-v2";

    async fn get(app: &Router, path: &str) -> (u16, serde_json::Value) {
        let request = Request::builder().uri(path).body(Body::empty()).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    async fn grpc_health(health: &HealthReporter) -> ServingStatus {
        let service = tonic_health::server::HealthService::from_health_reporter(health.clone());
        let request = tonic::Request::new(HealthCheckRequest {
            service: SERVICE_NAME.to_string(),
        });
        let reply = service.check(request).await.unwrap().into_inner();
        ServingStatus::try_from(reply.status).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readiness_is_503_until_the_warm_up_passed_and_200_after() {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models");
        assert!(
            models.join(MODEL).join("model.safetensors").is_file(),
            "{} is missing: run `cargo xtask models` first",
            models.display()
        );
        let mut settings = Settings::default();
        settings.embedding.models_dir = models;
        settings.embedding.model = MODEL.to_string();
        settings.embedding.models = vec![MODEL.to_string()];
        let metrics = Arc::new(Metrics::new("0.0.0", "test"));
        let infer = Arc::new(Infer::new(
            settings.limits.clone(),
            settings.timeout(),
            metrics,
        ));
        let app = api::router(AppState {
            infer: Arc::clone(&infer),
            keys: Arc::new(ApiKeys::new(&[])),
            body_timeout: Duration::from_secs(5),
        });
        let (health, _) = tonic_health::server::health_reporter();
        health
            .set_not_serving::<EmbeddingServiceServer<EmbeddingGrpc>>()
            .await;

        let release = hold::set();
        let started = tokio::spawn(start(Arc::clone(&infer), settings, health.clone()));
        // Loading takes what it takes; the warm-up is held until this test lets it go.
        let deadline = Instant::now() + Duration::from_secs(120);
        while infer.served().is_none() {
            assert!(infer.failure().is_none(), "{:?}", infer.failure());
            assert!(Instant::now() < deadline, "the model did not load");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // Loaded, queues running, not warmed up: every readiness answer says not ready.
        let (status, body) = get(&app, "/health/ready").await;
        assert_eq!((status, body["status"].as_str()), (503, Some("loading")));
        assert!(
            body["message"].as_str().unwrap().contains("warming up"),
            "{body}"
        );
        let (status, body) = get(&app, "/ready").await;
        assert_eq!((status, body["status"].as_str()), (503, Some("not_ready")));
        assert_eq!(grpc_health(&health).await, ServingStatus::NotServing);

        release.send(()).unwrap();
        started.await.unwrap();

        let (status, body) = get(&app, "/health/ready").await;
        assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
        assert_eq!(body["models"], serde_json::json!([MODEL]));
        let (status, body) = get(&app, "/ready").await;
        assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
        assert_eq!(grpc_health(&health).await, ServingStatus::Serving);
        // The warm-up itself went through the model's queue: one pass, one input.
        let batches = infer.metrics.batch_size.with_label_values(&[MODEL]);
        assert_eq!(batches.get_sample_count(), 1);
    }
}
