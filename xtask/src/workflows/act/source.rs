//! What `workflows run` needs to know about a workflow file before act runs it: its jobs in
//! order, the runner labels they ask for, the actions they use, and its dispatch inputs.

use std::collections::BTreeSet;

use indexmap::IndexMap;
use serde_yaml_ng::Value;

/// Why a workflow file cannot be run here.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Not YAML, or not a workflow.
    #[error("{0}")]
    Malformed(String),
    /// An input the workflow does not declare, or a value its choices do not allow.
    #[error("{0}")]
    Input(String),
}

/// A workflow file, as far as act's invocation cares.
#[derive(Debug)]
pub struct WorkflowSource {
    /// Job ids, in the file's order.
    pub jobs: Vec<String>,
    /// Every `runs-on` label (matrix expressions resolved through `strategy.matrix.include`).
    pub labels: BTreeSet<String>,
    /// Every remote action, `owner/repo@ref` (local `./` and `docker://` actions excluded).
    pub actions: BTreeSet<String>,
    /// The events that start it.
    pub events: Vec<String>,
    /// `workflow_dispatch` inputs: name → the allowed values (empty: any).
    pub inputs: IndexMap<String, Vec<String>>,
    /// The values of matrix key `target` (Rust target triples, one leg each).
    pub matrix_targets: BTreeSet<String>,
}

impl WorkflowSource {
    /// Reads the parts of `text` act's invocation needs.
    pub fn parse(text: &str) -> Result<WorkflowSource, SourceError> {
        let doc: Value = serde_yaml_ng::from_str(text)
            .map_err(|e| SourceError::Malformed(format!("not YAML: {e}")))?;
        let jobs = doc
            .get("jobs")
            .and_then(Value::as_mapping)
            .ok_or_else(|| SourceError::Malformed("no `jobs:` map".into()))?;
        let mut source = WorkflowSource {
            jobs: Vec::new(),
            labels: BTreeSet::new(),
            actions: BTreeSet::new(),
            events: events(&doc),
            inputs: inputs(&doc),
            matrix_targets: BTreeSet::new(),
        };
        for (id, job) in jobs {
            let id = id
                .as_str()
                .ok_or_else(|| SourceError::Malformed("a job id is not a string".into()))?;
            source.jobs.push(id.to_owned());
            source.labels.extend(labels(job));
            source.matrix_targets.extend(matrix_values(job, "target"));
            for step in job
                .get("steps")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                if let Some(uses) = step.get("uses").and_then(Value::as_str) {
                    if !uses.starts_with("./") && !uses.starts_with("docker://") {
                        source.actions.insert(uses.to_owned());
                    }
                }
            }
        }
        Ok(source)
    }

    /// Checks `given` against the declared dispatch inputs.
    pub fn check_inputs(&self, given: &[(String, String)]) -> Result<(), SourceError> {
        for (key, value) in given {
            let Some(allowed) = self.inputs.get(key) else {
                let known: Vec<&str> = self.inputs.keys().map(String::as_str).collect();
                return Err(SourceError::Input(format!(
                    "--input {key}: the workflow has no such input (it has: {})",
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                )));
            };
            if !allowed.is_empty() && !allowed.contains(value) {
                return Err(SourceError::Input(format!(
                    "--input {key}={value}: not one of {}",
                    allowed.join(", ")
                )));
            }
        }
        Ok(())
    }
}

fn events(doc: &Value) -> Vec<String> {
    // YAML 1.1 readers take a bare `on` for `true`; serde_yaml_ng keeps it a string.
    match doc.get("on") {
        Some(Value::String(event)) => vec![event.clone()],
        Some(Value::Sequence(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::Mapping(map)) => map
            .keys()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn inputs(doc: &Value) -> IndexMap<String, Vec<String>> {
    let Some(map) = doc
        .get("on")
        .and_then(|on| on.get("workflow_dispatch"))
        .and_then(|d| d.get("inputs"))
        .and_then(Value::as_mapping)
    else {
        return IndexMap::new();
    };
    map.iter()
        .filter_map(|(name, input)| {
            let options = input
                .get("options")
                .and_then(Value::as_sequence)
                .map(|o| {
                    o.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            Some((name.as_str()?.to_owned(), options))
        })
        .collect()
}

/// The labels of one job's `runs-on`: a label, a list of labels, or `${{ matrix.KEY }}`.
/// The values `key` takes in the job's matrix (its `include` entries and its own list).
fn matrix_values(job: &Value, key: &str) -> Vec<String> {
    let matrix = job.get("strategy").and_then(|s| s.get("matrix"));
    let include = matrix
        .and_then(|m| m.get("include"))
        .and_then(Value::as_sequence);
    let listed = matrix.and_then(|m| m.get(key)).and_then(Value::as_sequence);
    include
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.get(key))
        .chain(listed.into_iter().flatten())
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

fn labels(job: &Value) -> Vec<String> {
    let runs_on = job.get("runs-on");
    let given: Vec<&str> = match runs_on {
        Some(Value::String(label)) => vec![label.as_str()],
        Some(Value::Sequence(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for label in given {
        let key = label
            .trim()
            .strip_prefix("${{")
            .and_then(|l| l.strip_suffix("}}"))
            .map(str::trim)
            .and_then(|e| e.strip_prefix("matrix."));
        match key {
            Some(key) => out.extend(matrix_values(job, key)),
            None => out.push(label.to_owned()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
name: t
on:
  workflow_dispatch:
    inputs:
      target: { type: choice, options: [kubernetes, local], default: kubernetes }
      time_scale: { type: string }
  push:
    tags: ["v*"]
jobs:
  build:
    strategy:
      matrix:
        include:
          - runner: ubuntu-24.04
          - runner: ubuntu-24.04-arm
    runs-on: ${{ matrix.runner }}
    steps:
      - uses: actions/checkout@v6
      - uses: ./local/action
      - run: echo
  publish:
    needs: build
    runs-on: self-hosted
    steps:
      - uses: actions/upload-artifact@v6
"#;

    #[test]
    fn jobs_labels_actions_and_inputs_are_read() {
        let source = WorkflowSource::parse(FILE).expect("parses");
        assert_eq!(source.jobs, ["build", "publish"]);
        let labels: Vec<&str> = source.labels.iter().map(String::as_str).collect();
        assert_eq!(labels, ["self-hosted", "ubuntu-24.04", "ubuntu-24.04-arm"]);
        let actions: Vec<&str> = source.actions.iter().map(String::as_str).collect();
        assert_eq!(
            actions,
            ["actions/checkout@v6", "actions/upload-artifact@v6"]
        );
        assert_eq!(source.events, ["workflow_dispatch", "push"]);
        assert_eq!(source.inputs["target"], ["kubernetes", "local"]);
    }

    #[test]
    fn unknown_inputs_and_values_outside_the_choices_are_refused() {
        let source = WorkflowSource::parse(FILE).expect("parses");
        let pair = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
        assert!(source.check_inputs(&pair("target", "local")).is_ok());
        assert!(source.check_inputs(&pair("time_scale", "0.1")).is_ok());
        let wrong = source.check_inputs(&pair("target", "moon")).unwrap_err();
        assert!(
            wrong.to_string().contains("not one of kubernetes, local"),
            "{wrong}"
        );
        let unknown = source.check_inputs(&pair("stage", "x")).unwrap_err();
        assert!(
            unknown.to_string().contains("target, time_scale"),
            "{unknown}"
        );
    }

    #[test]
    fn a_file_without_jobs_is_refused() {
        assert!(WorkflowSource::parse("name: x\non: push\n").is_err());
        assert!(WorkflowSource::parse(": : :").is_err());
    }
}
