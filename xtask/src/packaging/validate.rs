//! Rendered manifests against the Kubernetes API schemas (`kubernetes-validate --strict`:
//! wrong types and unknown fields fail) and against checkov's policies.

use std::path::{Path, PathBuf};

use xshell::{cmd, Shell};

use super::helm::KUBE_VERSION;

/// checkov checks this chart does not meet on purpose, each with the reason.
pub const CHECKOV_SKIPS: &[(&str, &str)] = &[
    (
        "CKV_K8S_43",
        "image by digest: the chart cannot know the digest before the image is pushed; \
         `image.digest` pins one, and release tags are never moved",
    ),
    (
        "CKV_K8S_15",
        "imagePullPolicy Always: tags are immutable releases, so IfNotPresent is correct and a \
         registry outage does not stop pods from restarting",
    ),
    (
        "CKV_K8S_35",
        "API keys from a Secret as an environment variable: the service reads them only from \
         AKIDB_API_KEYS (or the non-secret config file) and never logs them",
    ),
];

/// Validates every document of `manifests` against the Kubernetes version the chart targets.
/// Custom resources (ServiceMonitor, PrometheusRule) have no schema there and are skipped
/// with a warning.
pub fn kubernetes(sh: &Shell, validator: &Path, manifests: &[PathBuf]) -> anyhow::Result<()> {
    cmd!(
        sh,
        "{validator} --kubernetes-version {KUBE_VERSION} --strict --quiet {manifests...}"
    )
    .run()?;
    Ok(())
}

/// Runs checkov's Kubernetes policies over every file in the folder `manifests`; a failed
/// check fails.
pub fn policies(sh: &Shell, checkov: &Path, manifests: &Path) -> anyhow::Result<()> {
    for (id, why) in CHECKOV_SKIPS {
        println!("checkov: skipping {id}: {why}");
    }
    let skips = CHECKOV_SKIPS
        .iter()
        .map(|(id, _)| *id)
        .collect::<Vec<_>>()
        .join(",");
    cmd!(
        sh,
        "{checkov} --quiet --compact --skip-download --framework kubernetes --skip-check {skips} -d {manifests}"
    )
    .run()?;
    Ok(())
}
