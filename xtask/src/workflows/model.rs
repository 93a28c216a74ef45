//! The part of GitHub Actions' workflow syntax the generated workflows use, as typed structs
//! that serialize to the YAML GitHub reads. Maps keep insertion order, so the output is stable.

use indexmap::IndexMap;
use serde::Serialize;

/// A workflow file.
#[derive(Debug, Serialize)]
pub struct Workflow {
    /// Shown in the Actions tab.
    pub name: String,
    /// What starts it.
    pub on: On,
    /// The `GITHUB_TOKEN`'s scopes.
    pub permissions: IndexMap<String, String>,
    /// At most one run of the group at a time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// By id, in order.
    pub jobs: IndexMap<String, Job>,
}

/// Triggers.
#[derive(Debug, Serialize)]
pub struct On {
    /// A manual start with inputs.
    pub workflow_dispatch: WorkflowDispatch,
}

/// `workflow_dispatch` and its inputs.
#[derive(Debug, Serialize)]
pub struct WorkflowDispatch {
    /// By name, in order.
    pub inputs: IndexMap<String, Input>,
}

/// A dispatch input.
#[derive(Debug, Serialize)]
pub struct Input {
    /// Shown in the run form.
    pub description: String,
    /// Whether the form needs it.
    pub required: bool,
    /// `choice` or `string`.
    #[serde(rename = "type")]
    pub kind: InputKind,
    /// The choices of a `choice` input.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// Preselected value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// The types of input used here.
#[derive(Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    /// One of `options`.
    Choice,
    /// Free text.
    String,
}

/// `concurrency:`.
#[derive(Debug, Serialize)]
pub struct Concurrency {
    /// The group's name.
    pub group: String,
    /// Whether a new run cancels the running one.
    #[serde(rename = "cancel-in-progress")]
    pub cancel_in_progress: bool,
}

/// A job.
#[derive(Debug, Serialize)]
pub struct Job {
    /// Shown in the run's graph.
    pub name: String,
    /// Jobs that must end first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    /// When the job runs at all.
    #[serde(rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// The runner label.
    #[serde(rename = "runs-on")]
    pub runs_on: String,
    /// The deployment environment (its protection rules gate the job).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Minutes before GitHub cancels it.
    #[serde(rename = "timeout-minutes")]
    pub timeout_minutes: u32,
    /// Variables of every step.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub env: IndexMap<String, String>,
    /// In order.
    pub steps: Vec<JobStep>,
}

/// A step: an action (`uses`) or a shell script (`run`).
#[derive(Debug, Default, Serialize)]
pub struct JobStep {
    /// Shown in the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When the step runs.
    #[serde(rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// An action, `owner/repo@ref`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uses: Option<String>,
    /// The action's inputs.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub with: IndexMap<String, String>,
    /// Variables of this step.
    #[serde(skip_serializing_if = "IndexMap::is_empty")]
    pub env: IndexMap<String, String>,
    /// A bash script.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

impl JobStep {
    /// A step that runs `action` with `with`.
    pub fn uses(name: &str, action: &str, with: &[(&str, &str)]) -> JobStep {
        JobStep {
            name: Some(name.to_owned()),
            uses: Some(action.to_owned()),
            with: pairs(with),
            ..JobStep::default()
        }
    }

    /// A step that runs `script`.
    pub fn run(name: &str, script: &str) -> JobStep {
        JobStep {
            name: Some(name.to_owned()),
            run: Some(script.to_owned()),
            ..JobStep::default()
        }
    }

    /// The same step, run only when `condition` holds.
    pub fn when(self, condition: &str) -> JobStep {
        JobStep {
            condition: Some(condition.to_owned()),
            ..self
        }
    }

    /// The same step with these variables.
    pub fn with_env(self, env: &[(&str, &str)]) -> JobStep {
        JobStep {
            env: pairs(env),
            ..self
        }
    }
}

/// An ordered map from pairs.
pub fn pairs(items: &[(&str, &str)]) -> IndexMap<String, String> {
    items
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}
