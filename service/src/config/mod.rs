//! Service configuration: defaults, then a TOML file, then environment variables, then command
//! line flags — each later source overrides the earlier ones. The legacy v1.x keys and variables
//! keep their meaning (`[server] rest_port`, `AKIDB_REST_PORT`, ...).

use std::{net::IpAddr, path::PathBuf, time::Duration};

use figment::{
    providers::{Format, Serialized, Toml},
    Figment,
};
use serde::{Deserialize, Serialize};

use akidb_kernels::KernelRequest;

use crate::engine::{Implementation, Precision};

/// Everything the service reads at start-up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Models and the engine.
    pub embedding: EmbeddingSettings,
    /// Listening sockets and time limits.
    pub server: ServerSettings,
    /// Request limits and admission control.
    pub limits: Limits,
    /// API keys.
    pub auth: AuthSettings,
    /// Logs and traces.
    pub log: LogSettings,
}

/// `[embedding]`: which models are served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingSettings {
    /// Must be `candle`; the legacy `mlx` is refused with a message saying so.
    pub provider: String,
    /// Default model (short name or Hub id).
    pub model: String,
    /// Folder holding model folders.
    pub models_dir: PathBuf,
    /// Models to serve (names or Hub ids); empty serves every folder found.
    pub models: Vec<String>,
    /// Hub ids to load through the hf-hub cache, in addition to `models_dir`.
    pub hub_models: Vec<String>,
    /// Use only the local hf-hub cache for `hub_models`; also on when `HF_HUB_OFFLINE` is `1` or
    /// `true` (hf-hub's own convention).
    pub offline: bool,
    /// Inference threads (0: one per core).
    pub threads: usize,
    /// The BERT encoder asked for: `packed` (default; this project's kernels, on the CPU in
    /// f32, Candle's elsewhere) or `candle` (Candle's `BertModel`, for comparisons).
    pub encoder: Implementation,
    /// The dense layers' kernel on the CPU: `auto` (default: the fastest on this CPU), `gemm`,
    /// `panels`, `amx` (Intel AMX tiles, f32 split into bf16 halves), or a micro-kernel
    /// (`avx512`, `avx2`, `portable`); one this CPU cannot run is a warning, and the fastest it
    /// can run is used.
    #[serde(with = "kernel_name")]
    pub matmul: KernelRequest,
    /// Where models run: `cpu`, `cuda` or `cuda:N` (CUDA needs a `--features cuda` build).
    pub device: String,
    /// Precision of weights and activations: `f32` (default, the reference vectors'), or the
    /// opt-in `f16` / `bf16` (faster on GPUs; vectors drift, see docs/BENCHMARKS.md).
    pub precision: Precision,
}

/// `[server]`: sockets and time limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address both servers bind.
    pub host: IpAddr,
    /// REST port.
    pub rest_port: u16,
    /// gRPC port.
    pub grpc_port: u16,
    /// Longest time a request may take, queueing included, before it is answered 503.
    pub timeout_seconds: u64,
    /// After SIGTERM: longest time to finish accepted requests before exiting.
    pub shutdown_grace_seconds: u64,
    /// REST connections open at once; further connections get 503 and are closed.
    pub max_connections: usize,
    /// Longest time a REST client may take to send a request's headers (an idle keep-alive
    /// connection included) before the connection is closed.
    pub header_read_timeout_seconds: u64,
    /// Longest time a REST client may take to send a request's body before it is answered 408.
    pub body_read_timeout_seconds: u64,
    /// Threads that serve the connections (HTTP, gRPC, JSON, short texts' tokenization); 0:
    /// a quarter of the cores, at least one.
    pub io_threads: usize,
}

/// `[limits]`: what one request may ask for, and how much work may wait.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Texts per request (v1.x: 32; at least 32).
    pub max_texts_per_request: usize,
    /// Characters per text.
    pub max_chars_per_text: usize,
    /// Bytes per request body.
    pub max_body_bytes: usize,
    /// Texts waiting for inference, per model, before new requests get 429.
    pub queue_capacity: usize,
    /// Tokens per forward pass (padded ones where the encoder computes over padding); a pass
    /// starts without waiting once this many tokens are queued.
    pub max_batch_tokens: usize,
    /// How long the batcher waits for more requests to fill a batch, in microseconds.
    pub max_batch_wait_us: u64,
}

/// `[auth]`: optional Bearer API keys on the embedding routes.
#[derive(Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Accepted keys; empty disables authentication.
    pub api_keys: Vec<String>,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys never reach logs, not even through Debug.
        f.debug_struct("AuthSettings")
            .field(
                "api_keys",
                &format_args!("[{} redacted]", self.api_keys.len()),
            )
            .finish()
    }
}

/// `[log]`: logs and traces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a tracing filter.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
    /// OTLP/gRPC endpoint for traces (e.g. `http://otel-collector:4317`); empty disables tracing export.
    pub otlp_endpoint: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for EmbeddingSettings {
    fn default() -> Self {
        Self {
            provider: "candle".into(),
            model: "all-MiniLM-L6-v2".into(),
            models_dir: PathBuf::from("./models"),
            models: Vec::new(),
            hub_models: Vec::new(),
            offline: false,
            threads: 0,
            encoder: Implementation::Packed,
            matmul: KernelRequest::Auto,
            device: "cpu".into(),
            precision: Precision::F32,
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: IpAddr::from([0, 0, 0, 0]),
            rest_port: 8080,
            grpc_port: 9090,
            timeout_seconds: 30,
            shutdown_grace_seconds: 25,
            max_connections: 1024,
            header_read_timeout_seconds: 10,
            body_read_timeout_seconds: 30,
            io_threads: 0,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_texts_per_request: 256,
            max_chars_per_text: 100_000,
            max_body_bytes: 8 * 1024 * 1024,
            queue_capacity: 4096,
            max_batch_tokens: 4_096,
            max_batch_wait_us: 500,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
            otlp_endpoint: String::new(),
        }
    }
}

/// Configuration that cannot start the service; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value has the wrong type or a key is unknown (figment names key and source).
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A value is well-typed but not acceptable.
    #[error("invalid configuration: {key}: {reason}")]
    Rejected {
        /// The key, as written in the TOML file.
        key: &'static str,
        /// What is wrong and what to set instead.
        reason: String,
    },
}

/// Environment variables and the keys they set. The legacy names come first.
pub const ENV_KEYS: &[(&str, &str)] = &[
    ("AKIDB_HOST", "server.host"),
    ("AKIDB_REST_PORT", "server.rest_port"),
    ("AKIDB_GRPC_PORT", "server.grpc_port"),
    ("AKIDB_TIMEOUT_SECONDS", "server.timeout_seconds"),
    (
        "AKIDB_SHUTDOWN_GRACE_SECONDS",
        "server.shutdown_grace_seconds",
    ),
    ("AKIDB_MAX_CONNECTIONS", "server.max_connections"),
    (
        "AKIDB_HEADER_READ_TIMEOUT_SECONDS",
        "server.header_read_timeout_seconds",
    ),
    (
        "AKIDB_BODY_READ_TIMEOUT_SECONDS",
        "server.body_read_timeout_seconds",
    ),
    ("AKIDB_IO_THREADS", "server.io_threads"),
    ("AKIDB_LOG_LEVEL", "log.level"),
    ("AKIDB_LOG_FORMAT", "log.format"),
    ("AKIDB_OTLP_ENDPOINT", "log.otlp_endpoint"),
    ("AKIDB_EMBEDDING_PROVIDER", "embedding.provider"),
    ("AKIDB_EMBEDDING_MODEL", "embedding.model"),
    ("AKIDB_MODELS_DIR", "embedding.models_dir"),
    ("AKIDB_MODELS", "embedding.models"),
    ("AKIDB_HUB_MODELS", "embedding.hub_models"),
    ("AKIDB_OFFLINE", "embedding.offline"),
    ("AKIDB_THREADS", "embedding.threads"),
    ("AKIDB_ENCODER", "embedding.encoder"),
    ("AKIDB_MATMUL", "embedding.matmul"),
    ("AKIDB_DEVICE", "embedding.device"),
    ("AKIDB_PRECISION", "embedding.precision"),
    (
        "AKIDB_MAX_TEXTS_PER_REQUEST",
        "limits.max_texts_per_request",
    ),
    ("AKIDB_MAX_CHARS_PER_TEXT", "limits.max_chars_per_text"),
    ("AKIDB_MAX_BODY_BYTES", "limits.max_body_bytes"),
    ("AKIDB_QUEUE_CAPACITY", "limits.queue_capacity"),
    ("AKIDB_MAX_BATCH_TOKENS", "limits.max_batch_tokens"),
    ("AKIDB_MAX_BATCH_WAIT_US", "limits.max_batch_wait_us"),
    ("AKIDB_API_KEYS", "auth.api_keys"),
];

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: &[&str] = &["embedding.models", "embedding.hub_models", "auth.api_keys"];

/// hf-hub's variable for offline mode: `1` or `true` turns `embedding.offline` on (it never
/// turns it off).
pub const HUB_OFFLINE_ENV: &str = "HF_HUB_OFFLINE";

/// The keys of the engine's run-time choices: what `embed` and `bench-engine` read from the
/// environment ([`Settings::load_engine`]).
const ENGINE_KEYS: &[&str] = &["embedding.threads", "embedding.encoder", "embedding.matmul"];

impl Settings {
    /// Loads defaults < `file` (if given) < `env` < `overrides` (command-line flags, as
    /// dotted keys), then checks the values.
    pub fn load(
        file: Option<&std::path::Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &[(&str, figment::value::Value)],
    ) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        let env: Vec<(String, String)> = env.into_iter().collect();
        let mut from_env = Vec::new();
        let defaults = figment::value::Value::serialize(Settings::default())
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        for (var, key) in ENV_KEYS {
            if let Some((_, value)) = env.iter().find(|(k, _)| k == var) {
                let value = if LIST_KEYS.contains(key) {
                    figment::value::Value::from(
                        value
                            .split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect::<Vec<_>>(),
                    )
                } else if matches!(
                    defaults.find_ref(key),
                    Some(figment::value::Value::String(..))
                ) {
                    figment::value::Value::from(value.clone())
                } else {
                    typed(value)
                };
                figment = figment.merge(Serialized::default(key, value));
                from_env.push((*key, *var));
            }
        }
        for (key, value) in overrides {
            figment = figment.merge(Serialized::default(key, value.clone()));
        }
        let mut settings: Settings = figment
            .extract()
            .map_err(|e| ConfigError::Invalid(describe(e, &from_env)))?;
        settings.embedding.offline |= hub_offline(&env);
        settings.check()?;
        Ok(settings)
    }

    /// The settings of the commands that run a model without serving it (`embed`,
    /// `bench-engine`): defaults, then the variables of the engine's choices in `env`
    /// (`AKIDB_THREADS`, `AKIDB_ENCODER`, `AKIDB_MATMUL`, `HF_HUB_OFFLINE`) and no others, so
    /// that a variable meant for `serve` (a port, API keys) cannot stop them.
    pub fn load_engine(
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let engine_var = |var: &str| {
            var == HUB_OFFLINE_ENV
                || ENV_KEYS
                    .iter()
                    .any(|(v, key)| *v == var && ENGINE_KEYS.contains(key))
        };
        let env = env.into_iter().filter(|(var, _)| engine_var(var));
        Self::load(None, env, &[])
    }

    /// Semantic checks: values that parse but cannot work.
    pub fn check(&self) -> Result<(), ConfigError> {
        let reject = |key, reason: String| Err(ConfigError::Rejected { key, reason });
        match self.embedding.provider.as_str() {
            "candle" => {}
            "mlx" => {
                return reject(
                    "embedding.provider",
                    "\"mlx\" is the v1.x provider and is not available in v2; set provider = \
                     \"candle\" (AKIDB_EMBEDDING_PROVIDER=candle)"
                        .into(),
                )
            }
            other => {
                return reject(
                    "embedding.provider",
                    format!("unknown provider {other:?}; the only provider is \"candle\""),
                )
            }
        }
        if self.limits.max_texts_per_request < 32 {
            return reject(
                "limits.max_texts_per_request",
                format!(
                    "{} is below the v1.x limit of 32 texts; clients rely on 32",
                    self.limits.max_texts_per_request
                ),
            );
        }
        for (key, value) in [
            ("limits.max_chars_per_text", self.limits.max_chars_per_text),
            ("limits.max_body_bytes", self.limits.max_body_bytes),
            ("limits.queue_capacity", self.limits.queue_capacity),
            ("limits.max_batch_tokens", self.limits.max_batch_tokens),
        ] {
            if value == 0 {
                return reject(key, "must be greater than 0".into());
            }
        }
        for (key, value) in [
            ("server.timeout_seconds", self.server.timeout_seconds),
            ("server.max_connections", self.server.max_connections as u64),
            (
                "server.header_read_timeout_seconds",
                self.server.header_read_timeout_seconds,
            ),
            (
                "server.body_read_timeout_seconds",
                self.server.body_read_timeout_seconds,
            ),
        ] {
            if value == 0 {
                return reject(key, "must be greater than 0".into());
            }
        }
        if self.server.max_connections > 1_000_000 {
            return reject(
                "server.max_connections",
                "must be at most 1000000 (each connection needs a file descriptor)".into(),
            );
        }
        if self.auth.api_keys.iter().any(|k| k.len() < 16) {
            return reject(
                "auth.api_keys",
                "every key must have at least 16 characters".into(),
            );
        }
        Ok(())
    }

    /// The request time limit.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.server.timeout_seconds)
    }

    /// How long a REST client may take to send a request's headers.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.server.header_read_timeout_seconds)
    }

    /// How long a REST client may take to send a request's body.
    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_secs(self.server.body_read_timeout_seconds)
    }

    /// Threads of the connections' runtime on a machine of `cores`: `server.io_threads`, or a
    /// quarter of the cores (at least one). The inference threads use every core; each I/O
    /// thread more takes turns with them and delays the pass it lands on, while one serves
    /// thousands of requests a second (docs/BENCHMARKS.md).
    pub fn io_threads(&self, cores: usize) -> usize {
        match self.server.io_threads {
            0 => (cores / 4).max(1),
            n => n,
        }
    }
}

/// Whether `env` turns hf-hub's offline mode on ([`HUB_OFFLINE_ENV`] is `1` or `true`).
fn hub_offline(env: &[(String, String)]) -> bool {
    env.iter()
        .any(|(k, v)| k == HUB_OFFLINE_ENV && (v == "1" || v.eq_ignore_ascii_case("true")))
}

/// `embedding.matmul` as its name ([`KernelRequest::NAMES`]).
mod kernel_name {
    use akidb_kernels::KernelRequest;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(request: &KernelRequest, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(request.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<KernelRequest, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// An environment value as the type it spells: bool, integer, float, else string (so that a
/// wrong value is reported against the key's expected type).
fn typed(value: &str) -> figment::value::Value {
    use figment::value::Value;
    if let Ok(b) = value.parse::<bool>() {
        Value::from(b)
    } else if let Ok(n) = value.parse::<u64>() {
        Value::from(n)
    } else if let Ok(n) = value.parse::<i64>() {
        Value::from(n)
    } else if let Ok(f) = value.parse::<f64>() {
        Value::from(f)
    } else {
        Value::from(value.to_string())
    }
}

/// figment's error with the key and where its value came from (file or variable).
fn describe(error: figment::Error, from_env: &[(&str, &str)]) -> String {
    error
        .into_iter()
        .map(|e| {
            let path = e.path.join(".");
            let key = if path.is_empty() {
                String::new()
            } else {
                format!("key `{path}`: ")
            };
            let source = match from_env.iter().rev().find(|(k, _)| *k == path) {
                Some((_, var)) => format!(" (set by {var})"),
                None => e
                    .metadata
                    .as_ref()
                    .and_then(|m| m.source.as_ref().map(|s| format!(" (from {s})")))
                    .unwrap_or_default(),
            };
            format!("{key}{}{source}", e.kind)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests;
