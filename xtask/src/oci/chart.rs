//! `helm_push`: package a chart with helm and push the `.tgz` as a Helm OCI artifact, the
//! layout `helm push` writes (config `application/vnd.cncf.helm.config.v1+json`, one layer
//! `application/vnd.cncf.helm.chart.content.v1.tar+gzip`, tag = the chart's version).

use std::{collections::BTreeMap, path::Path};

use bytes::Bytes;
use oci_client::{
    client::{Config, ImageLayer},
    manifest::{OciImageManifest, OCI_IMAGE_MEDIA_TYPE},
};
use serde::Deserialize;
use xshell::{cmd, Shell};

use super::{error::OciError, reference::ChartRegistry, session, PushOptions, Pushed};

/// The media type of a Helm chart's config blob.
pub const HELM_CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.helm.config.v1+json";
/// The media type of a Helm chart's content layer.
pub const HELM_CHART_MEDIA_TYPE: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";

/// The fields of Chart.yaml the push needs; the whole file becomes the config blob.
#[derive(Deserialize)]
struct ChartMeta {
    name: String,
    version: String,
    #[serde(default)]
    description: Option<String>,
}

/// Packages the chart in `chart_dir` with helm and pushes it to `registry`
/// (`oci://HOST/PATH`) as `HOST/PATH/NAME:VERSION`.
pub fn push_chart(
    sh: &Shell,
    chart_dir: &Path,
    registry: &str,
    options: &PushOptions,
) -> Result<Pushed, OciError> {
    let registry = ChartRegistry::parse(registry)?;
    let chart_err = |reason: String| OciError::Chart {
        path: chart_dir.to_path_buf(),
        reason,
    };
    let chart_yaml = std::fs::read_to_string(chart_dir.join("Chart.yaml"))
        .map_err(|e| chart_err(format!("reading Chart.yaml: {e}")))?;
    let meta: ChartMeta =
        serde_yaml_ng::from_str(&chart_yaml).map_err(|e| chart_err(format!("Chart.yaml: {e}")))?;
    let metadata: serde_json::Value =
        serde_yaml_ng::from_str(&chart_yaml).map_err(|e| chart_err(format!("Chart.yaml: {e}")))?;
    let config = serde_json::to_vec(&metadata).map_err(|e| chart_err(e.to_string()))?;

    let helm = crate::tools::helm(sh).map_err(|e| chart_err(format!("installing helm: {e}")))?;
    let out = sh
        .create_temp_dir()
        .map_err(|e| chart_err(format!("creating a folder for the package: {e}")))?;
    let out_dir = out.path();
    cmd!(sh, "{helm} package {chart_dir} --destination {out_dir}")
        .quiet()
        .ignore_stdout()
        .run()
        .map_err(|e| chart_err(format!("helm package failed: {e}")))?;
    let package = out_dir.join(format!("{}-{}.tgz", meta.name, meta.version));
    let tgz = std::fs::read(&package)
        .map_err(|e| chart_err(format!("reading {}: {e}", package.display())))?;

    let target = registry.chart_reference(&meta.name, &meta.version)?;
    let mut annotations = BTreeMap::from([
        ("org.opencontainers.image.title".to_string(), meta.name),
        ("org.opencontainers.image.version".to_string(), meta.version),
    ]);
    if let Some(description) = meta.description {
        annotations.insert("org.opencontainers.image.description".into(), description);
    }
    let layer = ImageLayer::new(tgz, HELM_CHART_MEDIA_TYPE.to_string(), None);
    let config = Config::new(config, HELM_CONFIG_MEDIA_TYPE.to_string(), None);
    let mut manifest =
        OciImageManifest::build(std::slice::from_ref(&layer), &config, Some(annotations));
    manifest.media_type = Some(OCI_IMAGE_MEDIA_TYPE.to_string());
    let body = serde_json::to_vec(&manifest).map_err(|e| chart_err(e.to_string()))?;

    let runtime = session::runtime()?;
    let digest = runtime.block_on(async {
        let session = session::Session::new(&target, options)?;
        session
            .push_blob(&target, layer.data, &manifest.layers[0].digest)
            .await?;
        session
            .push_blob(&target, config.data, &manifest.config.digest)
            .await?;
        session
            .push_manifest(&target, Bytes::from(body), OCI_IMAGE_MEDIA_TYPE)
            .await
    })?;
    Ok(Pushed {
        reference: target.to_string(),
        digest,
    })
}
