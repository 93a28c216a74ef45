//! `rollout/k8s/`: the canary Ingress at each weight of the rollout as plain manifests, for
//! operators without Helm. They are the chart's own Ingress, rendered at that weight, less the
//! labels that only Helm sets. They are generated files (`crate::generated`): `check` fails,
//! with a diff, when a file is not what the chart generates, and `write` regenerates them.

use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use super::helm::{self, Chart, ChartError, Values};
use crate::generated::{self, GeneratedError, GeneratedFile};

/// The folder of the plain manifests, relative to the workspace root.
pub const DIR: &str = "rollout/k8s";

/// The Ingress files and the canary weight each one sets, in rollout order.
pub const CANARY_INGRESSES: &[(u8, &str)] = &[
    (1, "ingress-canary-1.yaml"),
    (10, "ingress-canary-10.yaml"),
    (50, "ingress-canary-50.yaml"),
    (100, "ingress-cutover-100.yaml"),
];

/// Labels Helm's release bookkeeping sets; an object applied without Helm does not carry them.
const HELM_ONLY_LABELS: &[&str] = &["helm.sh/chart", "app.kubernetes.io/managed-by"];

/// A plain manifest that could not be generated, or differs from what the chart generates.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Rendering the chart failed.
    #[error(transparent)]
    Chart(#[from] ChartError),
    /// The chart rendered no Ingress at this weight.
    #[error("the chart renders no Ingress with canary.weight={0}")]
    NoIngress(u8),
    /// The Ingress could not be written as YAML.
    #[error("{path}: {source}")]
    Yaml {
        /// The manifest.
        path: PathBuf,
        /// The parser's message.
        source: serde_yaml_ng::Error,
    },
    /// A file is stale or could not be written.
    #[error(transparent)]
    Generated(#[from] GeneratedError),
}

/// The values that render the canary Ingress at `weight`.
pub fn canary_values(weight: u8) -> Values {
    Values::new(
        format!("canary-{weight}"),
        &[&format!("canary.weight={weight}")],
    )
}

/// The chart's Ingress at `weight`, as a plain manifest carries it.
pub fn expected(chart: &Chart, weight: u8) -> Result<Value, SyncError> {
    let mut ingress = chart
        .objects(&canary_values(weight))?
        .into_iter()
        .find(|object| helm::kind(object) == "Ingress")
        .ok_or(SyncError::NoIngress(weight))?;
    if let Some(labels) = ingress
        .get_mut("metadata")
        .and_then(|m| m.get_mut("labels"))
        .and_then(Value::as_mapping_mut)
    {
        for label in HELM_ONLY_LABELS {
            labels.shift_remove(*label);
        }
    }
    Ok(ingress)
}

fn file_text(weight: u8, ingress: &Value) -> Result<String, serde_yaml_ng::Error> {
    let header = if weight == 100 {
        "# Cut-over: every request goes to the Candle service, while the legacy service's Ingress\n\
         # stays in place as the target of a rollback (set the weight back to 0)."
            .to_string()
    } else {
        format!("# Canary: {weight}% of requests go to the Candle service; the rest stay on the legacy one.")
    };
    Ok(format!(
        "{header}\n# `X-Canary: always` / `X-Canary: never` on a request overrides the weight.\n\
         # Generated from charts/akidb-candle by `cargo xtask chart manifests --write`; CI fails\n\
         # when this file and the chart disagree.\n{}",
        serde_yaml_ng::to_string(ingress)?
    ))
}

/// The command that regenerates the files.
pub const COMMAND: &str = "cargo xtask chart manifests --write";

/// Every file as the chart generates it.
pub fn files(chart: &Chart) -> Result<Vec<GeneratedFile>, SyncError> {
    let mut files = Vec::new();
    for &(weight, name) in CANARY_INGRESSES {
        let path = Path::new(DIR).join(name);
        let contents =
            file_text(weight, &expected(chart, weight)?).map_err(|source| SyncError::Yaml {
                path: path.clone(),
                source,
            })?;
        files.push(GeneratedFile { path, contents });
    }
    Ok(files)
}

/// Fails, with each stale file's diff, when a file under `root` is not what the chart
/// generates.
pub fn check(chart: &Chart, root: &Path) -> Result<(), SyncError> {
    generated::check(root, &files(chart)?, COMMAND)?;
    Ok(())
}

/// Writes every file that differs from what the chart generates; returns those written.
pub fn write(chart: &Chart, root: &Path) -> Result<Vec<PathBuf>, SyncError> {
    Ok(generated::write(root, &files(chart)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::plan::Step;

    #[test]
    fn one_manifest_for_each_canary_weight_of_the_plan() {
        let plan = crate::rollout::load::load(&crate::project::plan_path())
            .expect("the checked-in plan loads");
        let plan_weights: Vec<u8> = plan
            .stages()
            .iter()
            .flat_map(|stage| &stage.steps)
            .filter_map(|step| match step {
                Step::Canary(canary) => Some(canary.weight.percent()),
                _ => None,
            })
            .collect();
        let manifest_weights: Vec<u8> = CANARY_INGRESSES.iter().map(|(w, _)| *w).collect();
        assert_eq!(plan_weights, manifest_weights);
    }

    #[test]
    fn a_manifest_that_differs_from_the_chart_is_stale_with_its_diff() {
        let sh = crate::project::shell().unwrap();
        let chart = Chart::new(crate::tools::helm(&sh).unwrap(), &crate::project::root());
        let root = tempfile::tempdir().unwrap();
        assert_eq!(
            write(&chart, root.path()).unwrap().len(),
            CANARY_INGRESSES.len()
        );
        check(&chart, root.path()).unwrap();
        let path = root.path().join(DIR).join("ingress-canary-10.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replace("canary-weight: '10'", "canary-weight: '11'"),
        )
        .unwrap();
        let error = check(&chart, root.path()).unwrap_err().to_string();
        assert!(error.contains("ingress-canary-10.yaml differs"), "{error}");
        assert!(error.contains("canary-weight: '11'"), "{error}");
        assert!(error.contains(COMMAND), "{error}");
        assert_eq!(write(&chart, root.path()).unwrap().len(), 1);
    }

    #[test]
    fn the_committed_manifests_are_what_the_chart_generates() {
        let sh = crate::project::shell().unwrap();
        let chart = Chart::new(crate::tools::helm(&sh).unwrap(), &crate::project::root());
        check(&chart, &crate::project::root()).unwrap();
    }
}
