//! The GA rollout as a declarative, gated plan (`rollout/plan.yaml`).
//!
//! `plan` is what the rollout does (the model and its YAML schema), `validate` the rules a plan
//! must follow, `load` reads a file through both, and `dry_run` shows what a runner would do.
//! `judge` compares the canary with the baseline statistically, for gates, offline and in
//! `replay` (past data from Prometheus).
//! `run` is the runner (when: order, approvals, gates, state, rollback) and `target` how steps
//! touch the world (`local`, `kubernetes`); `publish` holds the release actions (git tag and
//! GitHub release, OCI pushes), the same on every target.

pub mod cli;
pub mod drill;
pub mod dry_run;
pub mod html;
pub mod judge;
pub mod load;
pub mod notify;
pub mod offline;
pub mod parity;
pub mod plan;
pub mod publish;
pub mod run;
pub mod targets;
pub mod validate;
