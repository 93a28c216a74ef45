//! Why an action of the kubernetes target failed.

use std::time::Duration;

use super::api::ApiError;

/// A failed action of the kubernetes target.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// An API call failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The Ingress named as the canary is not an ingress-nginx canary.
    #[error(
        "Ingress {name} is not an ingress-nginx canary (annotation \
         nginx.ingress.kubernetes.io/canary is not \"true\"); the rollout only moves a canary's weight"
    )]
    NotCanary {
        /// The Ingress.
        name: String,
    },
    /// Every retry of an update lost the race with another writer.
    #[error("{what}: still conflicting after {attempts} attempts; someone else keeps changing it")]
    Conflicts {
        /// Kind and name.
        what: String,
        /// Attempts made.
        attempts: u32,
    },
    /// A Deployment did not become ready in time.
    #[error(
        "Deployment {name}: {ready} of {replicas} replicas ready after {waited:?} \
         (--rollout-timeout); see `kubectl describe deployment {name}`"
    )]
    NotReady {
        /// The Deployment.
        name: String,
        /// Ready replicas when the wait ended.
        ready: i32,
        /// Replicas asked for.
        replicas: i32,
        /// How long it waited.
        waited: Duration,
    },
    /// The teardown found something it must not delete; nothing was deleted.
    #[error("refusing the legacy teardown, nothing was deleted: {0}")]
    TeardownRefused(String),
    /// The load generator's Job failed or outran its deadline.
    #[error("load test Job {name}: {reason}; see `kubectl logs job/{name}`")]
    LoadTest {
        /// The Job.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// The target's options are inconsistent.
    #[error("{0}")]
    Options(String),
}
