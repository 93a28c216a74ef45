//! The transport-neutral entry to the engine: request validation, model choice, admission and
//! readiness. REST and gRPC both call [`Infer::embed`] and only translate its errors.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, OnceLock,
    },
    time::{Duration, Instant},
};

use crate::{
    config::Limits,
    engine::{
        batcher::{BatchConfig, BatchQueue, SubmitError},
        EmbedOptions, EngineError, ModelInfo, ModelRegistry, Pooling,
    },
    metrics::Metrics,
};

/// One embedding request, as every transport sees it.
#[derive(Debug, Clone)]
pub struct EmbedCall {
    /// The inputs.
    pub texts: Vec<String>,
    /// Model name or Hub id; `None` for the default.
    pub model: Option<String>,
    /// Pooling name (`mean`, `cls`); `None` for the model's own.
    pub pooling: Option<String>,
    /// L2-normalise; `None` for the caller's default.
    pub normalize: Option<bool>,
    /// When the transport accepted the request (REST: its headers were read). A request
    /// accepted before draining began is served in full, even if its body arrives after.
    pub arrived: Instant,
}

/// The answer to an [`EmbedCall`].
#[derive(Debug, Clone)]
pub struct EmbedReply {
    /// One vector per input, in input order.
    pub vectors: Vec<Vec<f32>>,
    /// The model that served the request.
    pub model: ModelInfo,
    /// Tokens of all inputs, special tokens included.
    pub total_tokens: usize,
    /// Server-side time of the request.
    pub duration: Duration,
}

/// Why a request was not served. Transports map each variant to their own status.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No texts.
    #[error("texts cannot be empty")]
    EmptyInput,
    /// More texts than the configured limit (the v1.x message).
    #[error("Maximum {0} texts per request")]
    TooManyTexts(usize),
    /// One text is longer than the character limit.
    #[error("text {index} has {chars} characters; the limit is {max}")]
    TextTooLong {
        /// Position of the text.
        index: usize,
        /// Its length in characters.
        chars: usize,
        /// The limit.
        max: usize,
    },
    /// A field has a value the service does not accept.
    #[error("{0}")]
    InvalidArgument(String),
    /// The model is not served.
    #[error("model {requested:?} is not served; served models: {}", served.join(", "))]
    UnknownModel {
        /// What was asked for.
        requested: String,
        /// What is served.
        served: Vec<String>,
    },
    /// Models are still loading, or the service is draining.
    #[error("{0}")]
    NotReady(&'static str),
    /// The queue is full.
    #[error("{0}")]
    Overloaded(String),
    /// The request waited longer than the configured timeout.
    #[error("{0}")]
    TimedOut(String),
    /// The engine failed.
    #[error("{0}")]
    Inference(String),
}

/// The loaded models and their queues.
pub struct ServedModels {
    registry: ModelRegistry,
    queues: BTreeMap<String, Arc<BatchQueue>>,
}

impl ServedModels {
    /// Starts one batch queue per model of `registry`.
    pub fn start(registry: ModelRegistry, limits: &Limits, metrics: Arc<Metrics>) -> Self {
        let config = BatchConfig {
            queue_capacity: limits.queue_capacity,
            max_batch_tokens: limits.max_batch_tokens,
            max_wait: Duration::from_micros(limits.max_batch_wait_us),
        };
        let queues = registry
            .models()
            .into_iter()
            .map(|model| {
                let metrics = Arc::clone(&metrics);
                let observer = Arc::new(
                    move |name: &str, stats: crate::engine::batcher::BatchStats| {
                        metrics
                            .batch_size
                            .with_label_values(&[name])
                            .observe(stats.size as f64);
                        metrics
                            .tokens
                            .with_label_values(&[name])
                            .inc_by(stats.tokens as u64);
                        metrics
                            .inference
                            .with_label_values(&[name])
                            .observe(stats.duration.as_secs_f64());
                    },
                );
                let name = model.info().name.clone();
                (name, Arc::new(BatchQueue::start(model, config, observer)))
            })
            .collect();
        Self { registry, queues }
    }

    /// The models, default first.
    pub fn infos(&self) -> Vec<ModelInfo> {
        self.registry
            .models()
            .iter()
            .map(|m| m.info().clone())
            .collect()
    }

    /// Info of the model a request names (`None`: the default), or why it is not served.
    pub fn info(&self, name: Option<&str>) -> Result<ModelInfo, ServiceError> {
        Ok(self.queue(name)?.model().info().clone())
    }

    /// Info of the default model.
    pub fn default_info(&self) -> Option<ModelInfo> {
        self.registry.default_model().map(|m| m.info().clone())
    }

    fn queue(&self, name: Option<&str>) -> Result<&Arc<BatchQueue>, ServiceError> {
        let model = self.registry.get(name).map_err(|e| match e {
            EngineError::UnknownModel { requested, served } => {
                ServiceError::UnknownModel { requested, served }
            }
            other => ServiceError::Inference(other.to_string()),
        })?;
        self.queues
            .get(&model.info().name)
            .ok_or_else(|| ServiceError::Inference("model has no queue".into()))
    }

    /// Queue depths by model.
    pub fn depths(&self) -> Vec<(String, usize)> {
        self.queues
            .iter()
            .map(|(n, q)| (n.clone(), q.depth()))
            .collect()
    }
}

/// The handle transports share.
pub struct Infer {
    served: OnceLock<ServedModels>,
    failure: OnceLock<String>,
    warmed: AtomicBool,
    /// When draining began.
    draining: OnceLock<Instant>,
    limits: Limits,
    timeout: Duration,
    /// Metrics of the service.
    pub metrics: Arc<Metrics>,
}

/// Readiness, with the reason when not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Models are loaded and warmed up.
    Ready,
    /// Still loading or warming up.
    Loading,
    /// Shutting down: no new work.
    Draining,
    /// Start-up failed: the default model could not be loaded.
    Failed,
}

impl Infer {
    /// A handle with no models yet (readiness false until [`Infer::set_served`]).
    pub fn new(limits: Limits, timeout: Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            served: OnceLock::new(),
            failure: OnceLock::new(),
            warmed: AtomicBool::new(false),
            draining: OnceLock::new(),
            limits,
            timeout,
            metrics,
        }
    }

    /// Installs the loaded models (once).
    pub fn set_served(&self, served: ServedModels) {
        for info in served.infos() {
            self.metrics.register_model(
                &info.name,
                &["/api/v1/embed", "/v1/embeddings", "grpc.Embed"],
            );
        }
        let _ = self.served.set(served);
    }

    /// The loaded models, if loading is done.
    pub fn served(&self) -> Option<&ServedModels> {
        self.served.get()
    }

    /// Marks the warm-up inference as passed.
    pub fn set_warmed(&self) {
        self.warmed.store(true, Ordering::Release);
    }

    /// Stops taking new work (readiness false): requests accepted from now on are refused;
    /// those accepted before are still served.
    pub fn start_draining(&self) {
        let _ = self.draining.set(Instant::now());
    }

    /// Whether the service is draining.
    pub fn is_draining(&self) -> bool {
        self.draining.get().is_some()
    }

    /// Whether a request accepted at `arrived` comes too late: after draining began.
    fn refuses(&self, arrived: Instant) -> bool {
        self.draining.get().is_some_and(|began| arrived >= *began)
    }

    /// Records why start-up could not serve the default model (the first reason wins).
    pub fn set_failure(&self, reason: String) {
        let _ = self.failure.set(reason);
    }

    /// Why start-up failed, if it did.
    pub fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    /// Current readiness.
    pub fn readiness(&self) -> Readiness {
        if self.is_draining() {
            Readiness::Draining
        } else if self.failure.get().is_some() {
            Readiness::Failed
        } else if self.served.get().is_some() && self.warmed.load(Ordering::Acquire) {
            Readiness::Ready
        } else {
            Readiness::Loading
        }
    }

    /// The request limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Validates and serves one request. `default_normalize` is the transport's default when
    /// the call leaves normalisation open (the v1 API: `true`).
    pub async fn embed(
        &self,
        call: EmbedCall,
        default_normalize: Option<bool>,
    ) -> Result<EmbedReply, ServiceError> {
        let started = Instant::now();
        if self.refuses(call.arrived) {
            return Err(ServiceError::NotReady("the service is shutting down"));
        }
        if self.failure.get().is_some() {
            return Err(ServiceError::NotReady(
                "start-up failed: the default model is not available (see /health)",
            ));
        }
        let served = self
            .served
            .get()
            .ok_or(ServiceError::NotReady("models are still loading"))?;
        if call.texts.is_empty() {
            return Err(ServiceError::EmptyInput);
        }
        if call.texts.len() > self.limits.max_texts_per_request {
            return Err(ServiceError::TooManyTexts(
                self.limits.max_texts_per_request,
            ));
        }
        let max = self.limits.max_chars_per_text;
        // Bytes bound characters from above, so only long texts are counted.
        for (index, text) in call.texts.iter().enumerate() {
            if text.len() > max {
                let chars = text.chars().count();
                if chars > max {
                    return Err(ServiceError::TextTooLong { index, chars, max });
                }
            }
        }
        let pooling = call
            .pooling
            .as_deref()
            .map(str::parse::<Pooling>)
            .transpose()
            .map_err(|e| ServiceError::InvalidArgument(e.to_string()))?;
        let queue = served.queue(call.model.as_deref())?;
        let options = EmbedOptions {
            pooling,
            normalize: call.normalize.or(default_normalize),
        };
        let out = queue
            .embed(call.texts, options, self.timeout)
            .await
            .map_err(|e| match e {
                SubmitError::Overloaded { .. } => ServiceError::Overloaded(e.to_string()),
                SubmitError::TimedOut(_) => ServiceError::TimedOut(e.to_string()),
                SubmitError::Closed => ServiceError::NotReady("the service is shutting down"),
                SubmitError::Engine(e) => ServiceError::Inference(e.to_string()),
            })?;
        Ok(EmbedReply {
            total_tokens: out.total_tokens(),
            vectors: out.vectors,
            model: queue.model().info().clone(),
            duration: started.elapsed(),
        })
    }

    /// Refreshes the queue-depth gauges (called at scrape time).
    pub fn observe_queues(&self) {
        if let Some(served) = self.served.get() {
            for (name, depth) in served.depths() {
                self.metrics
                    .queue_depth
                    .with_label_values(&[&name])
                    .set(depth as i64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draining_refuses_only_requests_that_arrive_after_it_began() {
        let infer = Infer::new(
            Limits::default(),
            Duration::from_secs(1),
            Arc::new(Metrics::new("test", "test")),
        );
        let before = Instant::now();
        assert!(!infer.refuses(before));
        infer.start_draining();
        assert!(infer.is_draining());
        assert!(!infer.refuses(before), "accepted before the drain: served");
        assert!(
            infer.refuses(Instant::now()),
            "arrived during the drain: refused"
        );
    }
}
