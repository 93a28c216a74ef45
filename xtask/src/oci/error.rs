//! What can go wrong pushing to an OCI registry, as one typed error.

use std::{path::PathBuf, time::Duration};

/// Why a chart or image push failed.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The registry or image reference does not parse.
    #[error("bad reference `{input}`: {reason}")]
    Reference {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The registry refused the credentials (HTTP 401 or 403); retrying cannot help.
    #[error(
        "authentication to registry {registry} failed ({auth}): {detail}; set \
         AKIDB_REGISTRY_USERNAME and AKIDB_REGISTRY_PASSWORD to an account that may push there"
    )]
    Auth {
        /// The registry host.
        registry: String,
        /// Which credentials were sent (never the secret): `anonymous` or `user NAME`.
        auth: String,
        /// What the registry answered.
        detail: String,
    },
    /// The registry stayed unreachable or kept failing through every attempt.
    #[error("registry {registry} unavailable after {attempts} attempts over {elapsed:?}: {last}")]
    Unavailable {
        /// The registry host.
        registry: String,
        /// How many times the request was made.
        attempts: u32,
        /// How long the attempts took, backoff included.
        elapsed: Duration,
        /// The last attempt's error.
        last: String,
    },
    /// The registry rejected the request in a way retrying cannot fix.
    #[error("registry {registry} rejected {action}: {detail}")]
    Rejected {
        /// The registry host.
        registry: String,
        /// What was being done, e.g. `pushing blob sha256:…`.
        action: String,
        /// The registry's answer.
        detail: String,
    },
    /// The registry stores a different manifest than the one pushed.
    #[error(
        "registry {registry} reports manifest {reported} for {reference}, but {pushed} was pushed"
    )]
    DigestMismatch {
        /// The registry host.
        registry: String,
        /// The tag pushed.
        reference: String,
        /// The digest of the bytes sent.
        pushed: String,
        /// The digest the registry answers with.
        reported: String,
    },
    /// The OCI image layout or archive is unreadable or inconsistent.
    #[error("image layout {path}: {reason}")]
    Layout {
        /// The layout folder or archive.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The chart cannot be read or packaged.
    #[error("chart {path}: {reason}")]
    Chart {
        /// The chart folder.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Credentials in the environment are incomplete.
    #[error("{0}")]
    Credentials(String),
    /// A local file or runtime could not be used.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
}
