//! Replicas: the scale subresource of a Deployment, the wait for its pods to be ready, and
//! what the HorizontalPodAutoscaler (which owns the count once it acts) says about it.

use std::time::{Duration, Instant};

use k8s_openapi::api::{
    apps::v1::Deployment, autoscaling::v1::Scale, autoscaling::v2::HorizontalPodAutoscaler,
};
use kube::api::{GetParams, ListParams, Patch, PatchParams};
use serde_json::json;

use super::{
    api::{objects, Cluster},
    error::TargetError,
};

/// Sets `name`'s replicas through its scale subresource (a JSON merge patch).
pub async fn set_replicas(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    replicas: u32,
) -> Result<(), TargetError> {
    let patch = Patch::Merge(json!({ "spec": { "replicas": replicas } }));
    cluster
        .send::<Scale>(
            &format!("Deployment {name}"),
            namespace,
            objects::<Deployment>(namespace).patch_subresource(
                "scale",
                name,
                &PatchParams::default(),
                &patch,
            ),
        )
        .await?;
    Ok(())
}

/// Reads the Deployment `name`; `None` in a dry run.
pub async fn read(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
) -> Result<Option<Deployment>, TargetError> {
    Ok(cluster
        .send(
            &format!("Deployment {name}"),
            namespace,
            objects::<Deployment>(namespace).get(name, &GetParams::default()),
        )
        .await?)
}

/// `(ready, wanted)` replicas once the controller has seen the latest spec, else `None`.
fn readiness(deployment: &Deployment) -> Option<(i32, i32)> {
    let wanted = deployment.spec.as_ref()?.replicas.unwrap_or(1);
    let status = deployment.status.as_ref();
    let observed = status.and_then(|s| s.observed_generation).unwrap_or(0);
    if observed < deployment.metadata.generation.unwrap_or(0) {
        return None;
    }
    Some((status.and_then(|s| s.ready_replicas).unwrap_or(0), wanted))
}

/// Waits until every replica of `name` is ready (`readyReplicas == spec.replicas`, as the
/// controller observed the latest spec), polling every `poll`, for at most `timeout`.
/// Returns the ready count.
pub async fn await_ready(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    timeout: Duration,
    poll: Duration,
) -> Result<i32, TargetError> {
    let started = Instant::now();
    loop {
        let Some(deployment) = read(cluster, namespace, name).await? else {
            return Ok(0);
        };
        let state = readiness(&deployment);
        if let Some((ready, wanted)) = state {
            if ready == wanted {
                return Ok(ready);
            }
        }
        if started.elapsed() >= timeout {
            let (ready, replicas) = state.unwrap_or((0, -1));
            return Err(TargetError::NotReady {
                name: name.to_string(),
                ready,
                replicas,
                waited: started.elapsed(),
            });
        }
        tokio::time::sleep(poll).await;
    }
}

/// What the HorizontalPodAutoscaler of Deployment `name` (if any) says, in one line; a dry
/// run records the list call and says nothing.
pub async fn hpa_summary(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
    replicas: u32,
) -> Result<Option<String>, TargetError> {
    let Some(list) = cluster
        .send::<kube::core::ObjectList<HorizontalPodAutoscaler>>(
            "HorizontalPodAutoscalers",
            namespace,
            objects::<HorizontalPodAutoscaler>(namespace).list(&ListParams::default()),
        )
        .await?
    else {
        return Ok(None);
    };
    let Some(hpa) = list.items.iter().find(|hpa| {
        hpa.spec.as_ref().is_some_and(|spec| {
            spec.scale_target_ref.kind == "Deployment" && spec.scale_target_ref.name == name
        })
    }) else {
        return Ok(Some("no HorizontalPodAutoscaler targets it".to_string()));
    };
    let hpa_name = hpa.metadata.name.clone().unwrap_or_default();
    let (min, max) = hpa
        .spec
        .as_ref()
        .map_or((1, 0), |s| (s.min_replicas.unwrap_or(1), s.max_replicas));
    let status = hpa.status.as_ref();
    let current = status.and_then(|s| s.current_replicas).unwrap_or(0);
    let desired = status.map_or(0, |s| s.desired_replicas);
    let mut line =
        format!("HPA {hpa_name}: min {min}, max {max}, current {current}, desired {desired}");
    let asked = i32::try_from(replicas).unwrap_or(i32::MAX);
    if asked < min || asked > max {
        line.push_str(&format!(
            "; {replicas} is outside [{min}, {max}], so the HPA will move it back"
        ));
    }
    Ok(Some(line))
}
