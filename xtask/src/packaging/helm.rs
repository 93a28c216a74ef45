//! The Helm chart as the checks see it: `helm lint` and `helm template` with the project's
//! pinned helm, at the release name, namespace and Kubernetes version the checks fix.

use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

/// The chart's folder, relative to the workspace root.
pub const CHART_DIR: &str = "charts/akidb-candle";
/// The release every check renders (the objects' names derive from it).
pub const RELEASE: &str = "akidb-candle";
/// The namespace of the rollout's production environment.
pub const NAMESPACE: &str = "production";
/// The Kubernetes version rendered for and validated against.
pub const KUBE_VERSION: &str = "1.32.0";

/// A helm run that failed.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// helm exited non-zero; `stderr` says why.
    #[error("helm {action} {values}failed:\n{stderr}")]
    Helm {
        /// `lint` or `template`.
        action: &'static str,
        /// The values set, for the message.
        values: String,
        /// helm's own explanation.
        stderr: String,
    },
    /// helm could not be started.
    #[error("running helm: {0}")]
    Spawn(#[from] std::io::Error),
    /// helm printed something that is not YAML.
    #[error("helm template printed invalid YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
}

/// One set of values to render with (`--set key=value` pairs).
#[derive(Debug, Clone)]
pub struct Values {
    /// A short name for file names and messages (`canary-10`).
    pub name: String,
    /// `key=value` pairs, as `helm --set` reads them.
    pub set: Vec<String>,
}

impl Values {
    /// Values with the given name and `--set` pairs.
    pub fn new(name: impl Into<String>, set: &[&str]) -> Self {
        Self {
            name: name.into(),
            set: set.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn describe(&self) -> String {
        if self.set.is_empty() {
            String::new()
        } else {
            format!("--set {} ", self.set.join(","))
        }
    }
}

/// The chart, rendered with a given helm binary.
pub struct Chart {
    helm: PathBuf,
    dir: PathBuf,
}

impl Chart {
    /// The chart in `root` (the workspace), rendered by the helm at `helm`.
    pub fn new(helm: PathBuf, root: &Path) -> Self {
        Self {
            helm,
            dir: root.join(CHART_DIR),
        }
    }

    fn helm(
        &self,
        action: &'static str,
        values: &Values,
        args: &[&str],
    ) -> Result<String, ChartError> {
        let mut command = std::process::Command::new(&self.helm);
        command.arg(action).args(args);
        for pair in &values.set {
            command.arg("--set").arg(pair);
        }
        let output = command.output()?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(ChartError::Helm {
                action,
                values: values.describe(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            })
        }
    }

    /// `helm lint --strict`: warnings fail too.
    pub fn lint(&self, values: &Values) -> Result<String, ChartError> {
        let dir = self.dir.display().to_string();
        self.helm("lint", values, &["--strict", &dir])
    }

    /// `helm template`: the rendered manifests as one multi-document YAML text.
    pub fn template(&self, values: &Values) -> Result<String, ChartError> {
        let dir = self.dir.display().to_string();
        self.helm(
            "template",
            values,
            &[
                RELEASE,
                &dir,
                "--namespace",
                NAMESPACE,
                "--kube-version",
                KUBE_VERSION,
            ],
        )
    }

    /// `helm template`, parsed: one value per non-empty document.
    pub fn objects(&self, values: &Values) -> Result<Vec<Value>, ChartError> {
        parse_documents(&self.template(values)?)
    }
}

/// Every non-empty document of a multi-document YAML text.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, ChartError> {
    let mut objects = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value = <Value as serde::Deserialize>::deserialize(document)?;
        if !value.is_null() {
            objects.push(value);
        }
    }
    Ok(objects)
}

/// The object's `kind`, or "" when it has none.
pub fn kind(object: &Value) -> &str {
    object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_skip_empty_ones_and_keep_order() {
        let text = "---\n# Source: a\nkind: A\n---\n---\nkind: B\n";
        let objects = parse_documents(text).unwrap();
        let kinds: Vec<&str> = objects.iter().map(kind).collect();
        assert_eq!(kinds, ["A", "B"]);
    }
}
