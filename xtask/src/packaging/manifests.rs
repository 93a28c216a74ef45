//! `rollout/k8s/`: the canary Ingress at each weight of the rollout as plain manifests, for
//! operators without Helm. They are the chart's own Ingress, rendered at that weight, less the
//! labels that only Helm sets; `check` fails when a file and the chart disagree, `write`
//! regenerates them.

use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use super::helm::{self, Chart, ChartError, Values};

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

/// A plain manifest that is missing, unreadable or differs from the chart.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Rendering the chart failed.
    #[error(transparent)]
    Chart(#[from] ChartError),
    /// The chart rendered no Ingress at this weight.
    #[error("the chart renders no Ingress with canary.weight={0}")]
    NoIngress(u8),
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The manifest.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The file is not YAML.
    #[error("{path}: {source}")]
    Yaml {
        /// The manifest.
        path: PathBuf,
        /// The parser's message.
        source: serde_yaml_ng::Error,
    },
    /// The file and the chart differ.
    #[error(
        "{path} differs from the chart's Ingress at canary.weight={weight}; run \
         `cargo xtask chart manifests --write` (or change the chart).\n--- file\n{file}--- chart\n{chart}"
    )]
    Drift {
        /// The manifest.
        path: PathBuf,
        /// The weight it is for.
        weight: u8,
        /// The file's object.
        file: String,
        /// The chart's object.
        chart: String,
    },
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

/// Compares every file with the chart (as parsed YAML, so comments and layout do not count).
pub fn check(chart: &Chart, root: &Path) -> Result<(), SyncError> {
    for &(weight, name) in CANARY_INGRESSES {
        let path = root.join(DIR).join(name);
        let text = std::fs::read_to_string(&path).map_err(|source| SyncError::Io {
            path: path.clone(),
            source,
        })?;
        let file: Value = serde_yaml_ng::from_str(&text).map_err(|source| SyncError::Yaml {
            path: path.clone(),
            source,
        })?;
        let chart = expected(chart, weight)?;
        if file != chart {
            let show = |v: &Value| serde_yaml_ng::to_string(v).unwrap_or_default();
            return Err(SyncError::Drift {
                path,
                weight,
                file: show(&file),
                chart: show(&chart),
            });
        }
    }
    Ok(())
}

/// Writes every file from the chart.
pub fn write(chart: &Chart, root: &Path) -> Result<Vec<PathBuf>, SyncError> {
    let dir = root.join(DIR);
    std::fs::create_dir_all(&dir).map_err(|source| SyncError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut written = Vec::new();
    for &(weight, name) in CANARY_INGRESSES {
        let path = dir.join(name);
        let text =
            file_text(weight, &expected(chart, weight)?).map_err(|source| SyncError::Yaml {
                path: path.clone(),
                source,
            })?;
        std::fs::write(&path, text).map_err(|source| SyncError::Io {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
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
    fn a_manifest_that_differs_from_the_chart_is_drift() {
        let sh = crate::project::shell().unwrap();
        let chart = Chart::new(crate::tools::helm(&sh).unwrap(), &crate::project::root());
        let root = tempfile::tempdir().unwrap();
        write(&chart, root.path()).unwrap();
        check(&chart, root.path()).unwrap();
        let path = root.path().join(DIR).join("ingress-canary-10.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replace("canary-weight: '10'", "canary-weight: '11'"),
        )
        .unwrap();
        let error = check(&chart, root.path()).unwrap_err();
        assert!(
            matches!(error, SyncError::Drift { weight: 10, .. }),
            "{error}"
        );
    }

    #[test]
    fn comments_and_layout_are_not_drift() {
        let sh = crate::project::shell().unwrap();
        let chart = Chart::new(crate::tools::helm(&sh).unwrap(), &crate::project::root());
        let root = tempfile::tempdir().unwrap();
        write(&chart, root.path()).unwrap();
        let path = root.path().join(DIR).join("ingress-canary-1.yaml");
        let value = expected(&chart, 1).unwrap();
        // Flow style, no comments: the same object.
        let text = serde_json::to_string(&value).unwrap();
        std::fs::write(&path, text).unwrap();
        check(&chart, root.path()).unwrap();
    }
}
