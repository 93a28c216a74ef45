//! One push to one registry: an oci-client [`Client`] with the credentials and retry policy,
//! whose calls fail with [`OciError`]s that name the registry.

use std::time::Duration;

use bytes::Bytes;
use hyper::header::HeaderValue;
use oci_client::{client::ClientConfig, secrets::RegistryAuth, Client, Reference};
use sha2::{Digest as _, Sha256};

use super::{
    error::OciError,
    reference,
    retry::{retry, GaveUp},
    PushOptions,
};

/// A client for pushing to the registry of one reference.
pub struct Session {
    client: Client,
    auth: RegistryAuth,
    options: PushOptions,
    registry: String,
}

impl Session {
    /// A client for `reference`'s registry: HTTPS, or plain HTTP on loopback or when asked.
    pub fn new(target: &Reference, options: &PushOptions) -> Result<Self, OciError> {
        // TLS goes through rustls with ring; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let registry = target.resolve_registry().to_string();
        let config = ClientConfig {
            protocol: reference::protocol(&registry, options.plain_http),
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(Duration::from_secs(120)),
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).map_err(|e| OciError::Rejected {
            registry: registry.clone(),
            action: "setting up the HTTP client".into(),
            detail: e.to_string(),
        })?;
        Ok(Self {
            client,
            auth: options.auth.registry_auth(),
            options: options.clone(),
            registry,
        })
    }

    fn give_up(&self, action: &str, gave_up: GaveUp) -> OciError {
        match gave_up {
            GaveUp::Auth(detail) => OciError::Auth {
                registry: self.registry.clone(),
                auth: self.options.auth.describe(),
                detail,
            },
            GaveUp::Exhausted {
                attempts,
                elapsed,
                last,
            } => OciError::Unavailable {
                registry: self.registry.clone(),
                attempts,
                elapsed,
                last: format!("{action}: {last}"),
            },
            GaveUp::Fatal(detail) => OciError::Rejected {
                registry: self.registry.clone(),
                action: action.to_string(),
                detail,
            },
        }
    }

    /// Uploads `data` as blob `digest` unless the repository has it already. Returns whether
    /// it was uploaded.
    pub async fn push_blob(
        &self,
        target: &Reference,
        data: Bytes,
        digest: &str,
    ) -> Result<bool, OciError> {
        let policy = &self.options.retry;
        // Storing the credentials first makes oci-client send them on this very call.
        self.client
            .store_auth_if_needed(target.resolve_registry(), &self.auth)
            .await;
        let present = retry(policy, || self.client.blob_exists(target, digest))
            .await
            .map_err(|e| self.give_up(&format!("checking blob {digest}"), e))?;
        if present {
            return Ok(false);
        }
        retry(policy, || {
            self.client.push_blob(target, data.clone(), digest)
        })
        .await
        .map_err(|e| self.give_up(&format!("pushing blob {digest}"), e))?;
        Ok(true)
    }

    /// Puts `body` as the manifest of `target` (a tag or digest) and checks that the registry
    /// reports the same digest. Returns that digest.
    pub async fn push_manifest(
        &self,
        target: &Reference,
        body: Bytes,
        media_type: &str,
    ) -> Result<String, OciError> {
        let pushed = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
        let content_type = HeaderValue::from_str(media_type).map_err(|_| OciError::Rejected {
            registry: self.registry.clone(),
            action: format!("pushing manifest {target}"),
            detail: format!("media type `{media_type}` is not a valid header"),
        })?;
        let policy = &self.options.retry;
        retry(policy, || {
            self.client
                .push_manifest_raw(target, body.clone(), content_type.clone())
        })
        .await
        .map_err(|e| self.give_up(&format!("pushing manifest {target}"), e))?;
        let reported = retry(policy, || {
            self.client.fetch_manifest_digest(target, &self.auth)
        })
        .await
        .map_err(|e| self.give_up(&format!("reading back manifest {target}"), e))?;
        if reported != pushed {
            return Err(OciError::DigestMismatch {
                registry: self.registry.clone(),
                reference: target.to_string(),
                pushed,
                reported,
            });
        }
        Ok(pushed)
    }
}

/// A current-thread runtime for the synchronous entry points.
pub fn runtime() -> Result<tokio::runtime::Runtime, OciError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| OciError::Io {
            what: "starting the async runtime".into(),
            source,
        })
}
