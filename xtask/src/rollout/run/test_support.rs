//! What the runner's tests on the fake target share: a run's folder with its plan, and a
//! runner over it with quick retries and every stage approved.

use std::{path::PathBuf, time::Duration};

use super::{fake_target::FakeTarget, retry::RetryPolicy, RunFiles, RunOptions, Runner};
use crate::rollout::{load, plan::Plan};

/// A run's folder with its plan.
pub struct Fixture {
    _dir: tempfile::TempDir,
    /// The plan file.
    pub plan_path: PathBuf,
    /// The plan, validated.
    pub plan: Plan,
    /// The run's files.
    pub files: RunFiles,
}

/// A folder holding `text` as its plan.
pub fn fixture(text: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let plan_path = dir.path().join("plan.yaml");
    std::fs::write(&plan_path, text).unwrap();
    let plan = load::parse(text, &plan_path).unwrap_or_else(|e| panic!("{e}"));
    let files = RunFiles {
        dir: dir.path().join("run"),
    };
    Fixture {
        _dir: dir,
        plan_path,
        plan,
        files,
    }
}

/// Quick retries: the tests prove the bound, not the waiting.
pub const QUICK: RetryPolicy = RetryPolicy {
    attempts: 3,
    first_delay: Duration::from_millis(1),
    max_delay: Duration::from_millis(2),
};

/// A runner over the fixture's plan: every stage approved, never prompting, quick retries.
pub fn runner<'a>(f: &'a Fixture, target: &'a mut FakeTarget) -> Runner<'a> {
    runner_waiting(f, target, Duration::ZERO)
}

/// As [`runner`], with gates that may wait `sample_wait` for traffic.
pub fn runner_waiting<'a>(
    f: &'a Fixture,
    target: &'a mut FakeTarget,
    sample_wait: Duration,
) -> Runner<'a> {
    let options = RunOptions {
        approve: vec!["all".into()],
        non_interactive: true,
        sample_wait,
        ..RunOptions::default()
    };
    runner_with(f, target, options)
}

/// A runner over the fixture's plan with `options` and quick retries.
pub fn runner_with<'a>(
    f: &'a Fixture,
    target: &'a mut FakeTarget,
    options: RunOptions,
) -> Runner<'a> {
    Runner::new(
        &f.plan,
        target,
        f.files.clone(),
        options,
        PathBuf::from("/nonexistent"),
    )
    .with_retry(QUICK)
}
