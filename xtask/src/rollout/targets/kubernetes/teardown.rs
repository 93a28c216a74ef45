//! Retiring the legacy service: every object it leaves (Deployment, Service, Ingress, ConfigMap,
//! PersistentVolumeClaim) is found by the legacy label, and each one is checked for that label
//! before anything changes, so a wrong name or selector deletes nothing.
//!
//! ingress-nginx serves a canary only beside its primary Ingress, and answers 503 for canary
//! requests once the primary's Service has no endpoints (kubernetes/ingress-nginx#13086). So the
//! legacy (primary) Ingress is first pointed at the canary's backend, then the legacy pods go,
//! and when the legacy Ingress is deleted the canary Ingress becomes the primary.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, PersistentVolumeClaim, Service},
    networking::v1::Ingress,
};
use kube::{
    api::{DeleteParams, ListParams, Patch, PatchParams},
    core::ObjectList,
    Resource,
};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::{
    api::{objects, Cluster},
    deployments,
    error::TargetError,
    ingress,
};

/// What the teardown acts on.
pub struct Teardown<'a> {
    /// Namespace of every object.
    pub namespace: &'a str,
    /// The legacy Deployment the plan names.
    pub deployment: &'a str,
    /// The legacy label, as `key=value` pairs (and as the selector text).
    pub labels: &'a [(String, String)],
    /// The selector text sent to the API.
    pub selector: &'a str,
    /// The canary Ingress, which must be at 100% and is never deleted.
    pub canary_ingress: &'a str,
    /// The canary Deployment, which is never deleted.
    pub canary_deployment: &'a str,
    /// How long the legacy pods stay at zero before their objects go.
    pub grace: Duration,
    /// How long scaling to zero may take.
    pub timeout: Duration,
    /// Poll interval of waits.
    pub poll: Duration,
}

/// One object found by the legacy label.
#[derive(Clone, Debug)]
struct Found {
    kind: &'static str,
    name: String,
    labels: BTreeMap<String, String>,
}

impl Teardown<'_> {
    fn carries_label(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels
            .iter()
            .all(|(k, v)| labels.get(k).is_some_and(|have| have == v))
    }

    async fn list<K>(
        &self,
        cluster: &Cluster,
        kind: &'static str,
    ) -> Result<Vec<Found>, TargetError>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned + Clone,
    {
        let list = cluster
            .send::<ObjectList<K>>(
                &format!("{kind}s labelled {}", self.selector),
                self.namespace,
                objects::<K>(self.namespace).list(&ListParams::default().labels(self.selector)),
            )
            .await?;
        Ok(list
            .map(|l| l.items)
            .unwrap_or_default()
            .iter()
            .map(|object| Found {
                kind,
                name: object.meta().name.clone().unwrap_or_default(),
                labels: object.meta().labels.clone().unwrap_or_default(),
            })
            .collect())
    }

    async fn delete<K>(&self, cluster: &Cluster, kind: &str, name: &str) -> Result<(), TargetError>
    where
        K: Resource<DynamicType = ()>,
    {
        cluster
            .send::<serde_json::Value>(
                &format!("{kind} {name}"),
                self.namespace,
                objects::<K>(self.namespace).delete(name, &DeleteParams::background()),
            )
            .await?;
        Ok(())
    }

    /// Checks everything, then retires the legacy service; returns what was done.
    pub async fn run(&self, cluster: &Cluster) -> Result<String, TargetError> {
        let refuse = |why: String| Err(TargetError::TeardownRefused(why));
        if self.deployment == self.canary_deployment {
            return refuse(format!(
                "`{}` is the canary deployment, not the legacy one",
                self.deployment
            ));
        }
        // The canary must carry all traffic, and give the legacy Ingress its new backend.
        let canary = ingress::read(cluster, self.namespace, self.canary_ingress).await?;
        if let Some(canary) = &canary {
            match ingress::canary_weight(canary) {
                Some(100) => {}
                Some(weight) => {
                    return refuse(format!(
                        "the canary Ingress {} is at {weight}%; the legacy service retires only \
                         at 100%",
                        self.canary_ingress
                    ))
                }
                None => {
                    return refuse(format!(
                        "Ingress {} is not a canary (already promoted, or not the canary)",
                        self.canary_ingress
                    ))
                }
            }
        }
        // The named Deployment must be a legacy object, and so must be whatever the label finds.
        let named = deployments::read(cluster, self.namespace, self.deployment).await?;
        if let Some(named) = &named {
            let labels = named.metadata.labels.clone().unwrap_or_default();
            if !self.carries_label(&labels) {
                return refuse(format!(
                    "Deployment {} does not carry the legacy label {} (its labels: {labels:?})",
                    self.deployment, self.selector
                ));
            }
        }
        let mut found = Vec::new();
        found.extend(self.list::<Deployment>(cluster, "Deployment").await?);
        found.extend(self.list::<Service>(cluster, "Service").await?);
        found.extend(self.list::<ConfigMap>(cluster, "ConfigMap").await?);
        found.extend(
            self.list::<PersistentVolumeClaim>(cluster, "PersistentVolumeClaim")
                .await?,
        );
        found.extend(self.list::<Ingress>(cluster, "Ingress").await?);
        for object in &found {
            if !self.carries_label(&object.labels) {
                return refuse(format!(
                    "{} {} was listed for {} but does not carry it",
                    object.kind, object.name, self.selector
                ));
            }
            let canary_object = (object.kind == "Ingress" && object.name == self.canary_ingress)
                || (object.kind == "Deployment" && object.name == self.canary_deployment);
            if canary_object {
                return refuse(format!(
                    "{} {} is the canary's but carries the legacy label {}",
                    object.kind, object.name, self.selector
                ));
            }
        }
        if named.is_some()
            && !found
                .iter()
                .any(|o| o.kind == "Deployment" && o.name == self.deployment)
        {
            return refuse(format!(
                "Deployment {} is not among those labelled {}",
                self.deployment, self.selector
            ));
        }
        let ingresses: Vec<&Found> = found.iter().filter(|o| o.kind == "Ingress").collect();
        let mut done = Vec::new();

        // 1. The legacy Ingress routes to the canary's backend, so the canary never loses its
        //    primary's endpoints.
        if let Some(backend) = canary.as_ref().and_then(canary_backend) {
            for legacy in &ingresses {
                self.repoint(cluster, &legacy.name, &backend).await?;
                done.push(format!(
                    "pointed Ingress {} at the canary's backend",
                    legacy.name
                ));
            }
        }
        // 2. Zero legacy pods, then the grace period.
        for deployment in found.iter().filter(|o| o.kind == "Deployment") {
            deployments::set_replicas(cluster, self.namespace, &deployment.name, 0).await?;
            deployments::await_ready(
                cluster,
                self.namespace,
                &deployment.name,
                self.timeout,
                self.poll,
            )
            .await?;
            done.push(format!("scaled Deployment {} to 0", deployment.name));
        }
        if named.is_none() {
            // A dry run knows only the named Deployment.
            deployments::set_replicas(cluster, self.namespace, self.deployment, 0).await?;
        }
        println!(
            "kubernetes: legacy teardown: waiting the grace period ({:?})",
            self.grace
        );
        if !cluster.is_dry_run() {
            tokio::time::sleep(self.grace).await;
        }
        // 3. The objects, the Ingresses last; then the canary Ingress is the primary.
        for object in found.iter().filter(|o| o.kind != "Ingress") {
            match object.kind {
                "Deployment" => {
                    self.delete::<Deployment>(cluster, object.kind, &object.name)
                        .await?
                }
                "Service" => {
                    self.delete::<Service>(cluster, object.kind, &object.name)
                        .await?
                }
                "ConfigMap" => {
                    self.delete::<ConfigMap>(cluster, object.kind, &object.name)
                        .await?
                }
                _ => {
                    self.delete::<PersistentVolumeClaim>(cluster, object.kind, &object.name)
                        .await?
                }
            }
            done.push(format!("deleted {} {}", object.kind, object.name));
        }
        if named.is_none() {
            self.delete::<Deployment>(cluster, "Deployment", self.deployment)
                .await?;
        }
        for legacy in &ingresses {
            self.delete::<Ingress>(cluster, "Ingress", &legacy.name)
                .await?;
            done.push(format!("deleted Ingress {}", legacy.name));
        }
        if !ingresses.is_empty() || cluster.is_dry_run() {
            ingress::promote(cluster, self.namespace, self.canary_ingress, None).await?;
            done.push(format!(
                "Ingress {} is now the primary (canary annotations removed)",
                self.canary_ingress
            ));
        }
        Ok(done.join("; "))
    }

    /// Points every path of the legacy Ingress `name` at `backend` (a JSON merge patch of its
    /// rules, at the version read, retried on a conflict).
    async fn repoint(
        &self,
        cluster: &Cluster,
        name: &str,
        backend: &serde_json::Value,
    ) -> Result<(), TargetError> {
        let what = format!("Ingress {name}");
        for _ in 0..ingress::MAX_ATTEMPTS {
            let Some(current) = ingress::read(cluster, self.namespace, name).await? else {
                return Ok(());
            };
            let mut rules = serde_json::to_value(
                current
                    .spec
                    .as_ref()
                    .and_then(|s| s.rules.clone())
                    .unwrap_or_default(),
            )
            .unwrap_or_default();
            for rule in rules.as_array_mut().into_iter().flatten() {
                for path in rule["http"]["paths"].as_array_mut().into_iter().flatten() {
                    path["backend"] = backend.clone();
                }
            }
            let patch = Patch::Merge(json!({
                "metadata": { "resourceVersion": current.metadata.resource_version },
                "spec": { "rules": rules },
            }));
            let request =
                objects::<Ingress>(self.namespace).patch(name, &PatchParams::default(), &patch);
            match cluster
                .send::<Ingress>(&what, self.namespace, request)
                .await
            {
                Ok(_) => return Ok(()),
                Err(error) if error.is_conflict() => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(TargetError::Conflicts {
            what,
            attempts: ingress::MAX_ATTEMPTS,
        })
    }
}

/// The backend of the canary Ingress's first path.
fn canary_backend(canary: &Ingress) -> Option<serde_json::Value> {
    let path = canary
        .spec
        .as_ref()?
        .rules
        .as_ref()?
        .first()?
        .http
        .as_ref()?
        .paths
        .first()?;
    serde_json::to_value(&path.backend).ok()
}
