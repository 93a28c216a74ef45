//! The Kubernetes API, or its dry-run recorder: every call goes through [`Cluster::send`] as a
//! request built by kube's request builder, so a dry run prints exactly what a real run sends.

use std::sync::{Arc, Mutex};

use kube::core::request::Request;
use serde::de::DeserializeOwned;

/// A failed API call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The object does not exist (404).
    #[error("{what} not found in namespace `{namespace}` ({method} {path})")]
    NotFound {
        /// Kind and name, e.g. `Deployment akidb-mlx`.
        what: String,
        /// The namespace asked.
        namespace: String,
        /// The request's method.
        method: String,
        /// The request's path.
        path: String,
    },
    /// The object changed since it was read (409 on a stale `resourceVersion`).
    #[error("{what} changed while it was being updated (409 Conflict): {message}")]
    Conflict {
        /// Kind and name.
        what: String,
        /// The server's message.
        message: String,
    },
    /// Any other answer of the API server.
    #[error("{method} {path} failed ({code} {reason}): {message}")]
    Status {
        /// The request's method.
        method: String,
        /// The request's path.
        path: String,
        /// The HTTP code.
        code: u16,
        /// The machine-readable reason.
        reason: String,
        /// The server's message.
        message: String,
    },
    /// The API server could not be reached, or answered something that is not the object.
    #[error("{method} {path}: {source}")]
    Client {
        /// The request's method.
        method: String,
        /// The request's path.
        path: String,
        /// What kube reported.
        #[source]
        source: kube::Error,
    },
    /// A request could not be built (a bad name or parameter).
    #[error("building the request for {what}: {source}")]
    Request {
        /// Kind and name.
        what: String,
        /// What kube reported.
        #[source]
        source: kube::core::request::Error,
    },
}

impl ApiError {
    /// Whether the call lost an optimistic-concurrency race and may be retried on a fresh read.
    pub fn is_conflict(&self) -> bool {
        matches!(self, ApiError::Conflict { .. })
    }
}

/// One API call, as a dry run prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedCall {
    /// `GET`, `PATCH`, `DELETE`.
    pub method: String,
    /// Path and query, e.g. `/apis/apps/v1/namespaces/production/deployments/akidb-mlx/scale`.
    pub path: String,
    /// The `Content-Type` of a request with a body.
    pub content_type: Option<String>,
    /// The body, when there is one.
    pub body: Option<String>,
}

impl std::fmt::Display for RecordedCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)?;
        if let Some(content_type) = &self.content_type {
            write!(f, " ({content_type})")?;
        }
        if let Some(body) = &self.body {
            write!(f, " {body}")?;
        }
        Ok(())
    }
}

/// The calls a dry run would have made, in order (shared with whoever prints or checks them).
#[derive(Clone, Debug, Default)]
pub struct Recorder {
    calls: Arc<Mutex<Vec<RecordedCall>>>,
}

impl Recorder {
    /// Every call recorded so far.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn record(&self, call: RecordedCall) {
        println!("kubernetes (dry run): {call}");
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call);
        }
    }
}

/// Where calls go.
#[derive(Clone)]
pub enum Cluster {
    /// A live API server.
    Live(kube::Client),
    /// Nowhere: each call is printed and recorded.
    DryRun(Recorder),
}

impl Cluster {
    /// Sends `request` (built for `what`, e.g. `Ingress akidb-candle-canary`): the decoded
    /// answer, or `None` in a dry run, which records the call instead.
    pub async fn send<T: DeserializeOwned>(
        &self,
        what: &str,
        namespace: &str,
        request: Result<http::Request<Vec<u8>>, kube::core::request::Error>,
    ) -> Result<Option<T>, ApiError> {
        let request = request.map_err(|source| ApiError::Request {
            what: what.to_string(),
            source,
        })?;
        let method = request.method().to_string();
        let path = request
            .uri()
            .path_and_query()
            .map_or_else(|| request.uri().to_string(), ToString::to_string);
        match self {
            Cluster::DryRun(recorder) => {
                let body = request.body();
                recorder.record(RecordedCall {
                    method,
                    // kube's builder leaves `?` (and `?&`) where no parameter follows.
                    path: path.trim_end_matches('?').replacen("?&", "?", 1),
                    content_type: request
                        .headers()
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string),
                    body: (!body.is_empty()).then(|| String::from_utf8_lossy(body).into_owned()),
                });
                Ok(None)
            }
            Cluster::Live(client) => match client.request::<T>(request).await {
                Ok(answer) => Ok(Some(answer)),
                Err(kube::Error::Api(status)) => Err(match status.code {
                    404 => ApiError::NotFound {
                        what: what.to_string(),
                        namespace: namespace.to_string(),
                        method,
                        path,
                    },
                    409 => ApiError::Conflict {
                        what: what.to_string(),
                        message: status.message.clone(),
                    },
                    code => ApiError::Status {
                        method,
                        path,
                        code,
                        reason: status.reason.clone(),
                        message: status.message.clone(),
                    },
                }),
                Err(source) => Err(ApiError::Client {
                    method,
                    path,
                    source,
                }),
            },
        }
    }

    /// Whether calls are only recorded.
    pub fn is_dry_run(&self) -> bool {
        matches!(self, Cluster::DryRun(_))
    }
}

/// The request builder for objects of kind `K` in `namespace`.
pub fn objects<K>(namespace: &str) -> Request
where
    K: kube::Resource<DynamicType = ()>,
{
    Request::new(K::url_path(&(), Some(namespace)))
}
