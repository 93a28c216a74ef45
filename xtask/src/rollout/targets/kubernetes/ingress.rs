//! The canary split: the ingress-nginx canary annotations of the Candle Ingress, as
//! charts/akidb-candle renders them (and rollout/k8s/ingress-canary-*.yaml show). 100% keeps the
//! Ingress a canary at weight 100, so that a rollback is one more weight change.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{GetParams, Patch, PatchParams};
use serde_json::json;

use super::{
    api::{objects, Cluster},
    error::TargetError,
};

/// Marks an Ingress as ingress-nginx's canary for its host and path.
pub const CANARY: &str = "nginx.ingress.kubernetes.io/canary";
/// The canary's share of requests, in percent.
pub const CANARY_WEIGHT: &str = "nginx.ingress.kubernetes.io/canary-weight";
/// The header whose `always`/`never` overrides the weight.
pub const CANARY_BY_HEADER: &str = "nginx.ingress.kubernetes.io/canary-by-header";
/// Attempts of an update that loses optimistic-concurrency races.
pub const MAX_ATTEMPTS: u32 = 5;

/// The canary's weight as its annotations say, or `None` when it is not a canary.
pub fn canary_weight(ingress: &Ingress) -> Option<u8> {
    let annotations = ingress.metadata.annotations.as_ref()?;
    if annotations.get(CANARY).map(String::as_str) != Some("true") {
        return None;
    }
    Some(
        annotations
            .get(CANARY_WEIGHT)
            .and_then(|w| w.parse().ok())
            .unwrap_or(0),
    )
}

/// Reads the canary Ingress `name`; `None` in a dry run.
pub async fn read(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
) -> Result<Option<Ingress>, TargetError> {
    let what = format!("Ingress {name}");
    Ok(cluster
        .send(
            &what,
            namespace,
            objects::<Ingress>(namespace).get(name, &GetParams::default()),
        )
        .await?)
}

/// Sets the canary Ingress `name` to `percent`, returning the weight it had (`None` in a dry
/// run). The patch is a JSON merge patch carrying the `resourceVersion` it read: a concurrent
/// writer makes it fail with 409, and it is re-read and retried up to [`MAX_ATTEMPTS`] times.
pub async fn set_weight(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    percent: u8,
) -> Result<Option<u8>, TargetError> {
    let what = format!("Ingress {name}");
    for _ in 0..MAX_ATTEMPTS {
        let current = read(cluster, namespace, name).await?;
        let before = match &current {
            Some(ingress) => {
                Some(
                    canary_weight(ingress).ok_or_else(|| TargetError::NotCanary {
                        name: name.to_string(),
                    })?,
                )
            }
            None => None,
        };
        let mut metadata = json!({
            "annotations": {
                CANARY: "true",
                CANARY_WEIGHT: percent.to_string(),
            }
        });
        if let Some(version) = current.and_then(|i| i.metadata.resource_version) {
            metadata["resourceVersion"] = json!(version);
        }
        let patch = Patch::Merge(json!({ "metadata": metadata }));
        let request = objects::<Ingress>(namespace).patch(name, &PatchParams::default(), &patch);
        match cluster.send::<Ingress>(&what, namespace, request).await {
            Ok(_) => return Ok(before),
            Err(error) if error.is_conflict() => {
                println!("kubernetes: {what} changed under the update (409); re-reading it");
                continue;
            }
            Err(error) => return Err(error.into()),
        }
    }
    Err(TargetError::Conflicts {
        what,
        attempts: MAX_ATTEMPTS,
    })
}

/// Makes the canary Ingress `name` the primary one (drops the canary annotations, read at
/// `resource_version` when known): once the legacy Ingress is gone, ingress-nginx ignores a
/// canary that has no primary for its host and path.
pub async fn promote(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    resource_version: Option<String>,
) -> Result<(), TargetError> {
    let mut annotations = BTreeMap::new();
    for key in [CANARY, CANARY_WEIGHT, CANARY_BY_HEADER] {
        annotations.insert(key, serde_json::Value::Null);
    }
    let mut metadata = json!({ "annotations": annotations });
    if let Some(version) = resource_version {
        metadata["resourceVersion"] = json!(version);
    }
    let patch = Patch::Merge(json!({ "metadata": metadata }));
    cluster
        .send::<Ingress>(
            &format!("Ingress {name}"),
            namespace,
            objects::<Ingress>(namespace).patch(name, &PatchParams::default(), &patch),
        )
        .await?;
    Ok(())
}
