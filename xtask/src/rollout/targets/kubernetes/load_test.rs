//! `load_test` on a cluster: a Job running a load generator (oha by default) against the
//! service at the stage's rate for the step's duration, created, watched and deleted through the
//! API, with the HorizontalPodAutoscaler's replica count read over the test.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, ListParams, PostParams, PropagationPolicy};
use serde_json::json;

use super::api::{objects, ApiError, Cluster};
use super::error::TargetError;
use crate::stack::traffic::MODEL;

/// The labels that mark a Job as the rollout's load generator (and nothing else's).
pub const OWNER_LABELS: [(&str, &str); 2] = [
    ("app.kubernetes.io/managed-by", "akidb-rollout"),
    ("app.kubernetes.io/component", "load-test"),
];

/// Concurrent connections of the generator: enough for the plan's rates at the SLO latencies.
const CONNECTIONS: u32 = 50;

/// What one load test sends, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadSpec {
    /// The Job's name.
    pub name: String,
    /// The load generator's image (oha's command line).
    pub image: String,
    /// The `POST /api/v1/embed` URL the requests go to.
    pub url: String,
    /// Requests per second, in all.
    pub rate: u32,
    /// How long it sends them.
    pub duration: Duration,
}

impl LoadSpec {
    /// The generator's command line: `rate` req/s for `duration`, POSTing an embedding request.
    pub fn args(&self) -> Vec<String> {
        let body = json!({ "texts": ["load test of the rollout"], "model": MODEL });
        [
            "--no-tui",
            "-z",
            &format!("{}s", self.duration.as_secs().max(1)),
            "-q",
            &self.rate.to_string(),
            "-c",
            &CONNECTIONS.to_string(),
            "-m",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            &body.to_string(),
            &self.url,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// The Job: one pod, never restarted (a failed generator is a failed test, not a retry),
    /// cut off a minute after its duration, collected by Kubernetes 10 minutes after it ends if
    /// the rollout could not delete it.
    pub fn job(&self) -> Job {
        let labels: BTreeMap<&str, &str> = OWNER_LABELS.into_iter().collect();
        let job = json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": { "name": self.name, "labels": labels },
            "spec": {
                "backoffLimit": 0,
                "activeDeadlineSeconds": self.duration.as_secs() + 60,
                "ttlSecondsAfterFinished": 600,
                "template": {
                    "metadata": { "labels": labels },
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [{
                            "name": "load",
                            "image": self.image,
                            "args": self.args(),
                        }],
                    },
                },
            },
        });
        serde_json::from_value(job).unwrap_or_default()
    }
}

/// Where a Job stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Not finished yet.
    Running,
    /// Its pod exited 0.
    Succeeded,
    /// It failed, with the reason Kubernetes gives.
    Failed(String),
}

/// Creates the Job; one already there under the same name (a retried call) counts as created.
pub async fn create(
    cluster: &Cluster,
    namespace: &str,
    spec: &LoadSpec,
) -> Result<(), TargetError> {
    let body = serde_json::to_vec(&spec.job()).unwrap_or_default();
    let what = format!("Job {}", spec.name);
    let request = objects::<Job>(namespace).create(&PostParams::default(), body);
    match cluster.send::<Job>(&what, namespace, request).await {
        Ok(_) | Err(ApiError::Conflict { .. }) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// The Job's state; a dry run says it succeeded.
pub async fn state(
    cluster: &Cluster,
    namespace: &str,
    name: &str,
) -> Result<JobState, TargetError> {
    let request = objects::<Job>(namespace).get(name, &Default::default());
    let Some(job) = cluster
        .send::<Job>(&format!("Job {name}"), namespace, request)
        .await?
    else {
        return Ok(JobState::Succeeded);
    };
    let Some(status) = job.status else {
        return Ok(JobState::Running);
    };
    let condition = |kind: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == kind && c.status == "True")
    };
    if let Some(failed) = condition("Failed") {
        let why = [failed.reason.as_deref(), failed.message.as_deref()];
        return Ok(JobState::Failed(
            why.into_iter().flatten().collect::<Vec<_>>().join(": "),
        ));
    }
    if condition("Complete").is_some() || status.succeeded.unwrap_or(0) > 0 {
        return Ok(JobState::Succeeded);
    }
    if status.failed.unwrap_or(0) > 0 {
        return Ok(JobState::Failed("its pod failed".into()));
    }
    Ok(JobState::Running)
}

/// Deletes the Job and its pod (background propagation); one already gone is fine.
pub async fn delete(cluster: &Cluster, namespace: &str, name: &str) -> Result<(), TargetError> {
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    let request = objects::<Job>(namespace).delete(name, &params);
    match cluster
        .send::<serde_json::Value>(&format!("Job {name}"), namespace, request)
        .await
    {
        Ok(_) | Err(ApiError::NotFound { .. }) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// The HPA that targets Deployment `deployment`: its name and current replica count (`None`
/// when none targets it, or in a dry run).
pub async fn hpa_replicas(
    cluster: &Cluster,
    namespace: &str,
    deployment: &str,
) -> Result<Option<(String, i32)>, TargetError> {
    let request = objects::<HorizontalPodAutoscaler>(namespace).list(&ListParams::default());
    let Some(list) = cluster
        .send::<kube::core::ObjectList<HorizontalPodAutoscaler>>(
            "HorizontalPodAutoscalers",
            namespace,
            request,
        )
        .await?
    else {
        return Ok(None);
    };
    Ok(list.items.into_iter().find_map(|hpa| {
        let spec = hpa.spec.as_ref()?;
        (spec.scale_target_ref.kind == "Deployment" && spec.scale_target_ref.name == deployment)
            .then(|| {
                let current = hpa.status.as_ref().and_then(|s| s.current_replicas);
                (
                    hpa.metadata.name.clone().unwrap_or_default(),
                    current.unwrap_or(0),
                )
            })
    }))
}

/// The HPA's replica counts read over one test.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HpaTrace {
    /// The HPA's name, once one was found.
    pub name: Option<String>,
    /// Every count read, in order.
    pub replicas: Vec<i32>,
}

impl HpaTrace {
    /// Adds a reading.
    pub fn push(&mut self, reading: Option<(String, i32)>) {
        if let Some((name, replicas)) = reading {
            self.name = Some(name);
            self.replicas.push(replicas);
        }
    }
}

impl std::fmt::Display for HpaTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.name, self.replicas.first(), self.replicas.last()) {
            (Some(name), Some(first), Some(last)) => {
                let peak = self.replicas.iter().max().unwrap_or(last);
                write!(
                    f,
                    "HPA {name}: {first} replicas at the start, peak {peak}, {last} at the end \
                     ({} readings)",
                    self.replicas.len()
                )
            }
            _ => f.write_str("no HorizontalPodAutoscaler targets the service"),
        }
    }
}
