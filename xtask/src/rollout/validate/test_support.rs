//! What the rule families' tests share: fixtures from `rollout/testdata/` and plan text parsed
//! as `rollout validate` parses it.

use std::path::Path;

use super::{ValidationError, Violation};
use crate::rollout::load::{self, PlanError};
use crate::rollout::plan::Weight;

/// A fixture's path (as errors name it) and text.
pub fn fixture(name: &str) -> (String, String) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/rollout/testdata")
        .join(name);
    let text = std::fs::read_to_string(&file)
        .unwrap_or_else(|error| panic!("{}: {error}", file.display()));
    (format!("testdata/{name}"), text)
}

/// Every rule plan `text` breaks.
pub fn violations_in(text: &str) -> Vec<Violation> {
    match load::parse(text, Path::new("plan.yaml")) {
        Err(PlanError::Invalid { violations, .. }) => violations,
        other => panic!("expected broken rules, got {other:?}"),
    }
}

/// Every rule the fixture `name` breaks.
pub fn violations(name: &str) -> Vec<Violation> {
    violations_in(&fixture(name).1)
}

/// The one rule the fixture `name` breaks, with its line.
pub fn the_violation(name: &str) -> (Option<usize>, ValidationError) {
    only(violations(name))
}

/// The one rule plan `text` breaks, with its line.
pub fn the_violation_in(text: &str) -> (Option<usize>, ValidationError) {
    only(violations_in(text))
}

fn only(violations: Vec<Violation>) -> (Option<usize>, ValidationError) {
    match violations.as_slice() {
        [only] => (only.line, only.error.clone()),
        many => panic!("expected one broken rule, got {many:#?}"),
    }
}

/// The syntax error of the fixture `name`, with its line.
pub fn syntax_error(name: &str) -> (Option<usize>, String) {
    let (file, text) = fixture(name);
    match load::parse(&text, Path::new(&file)) {
        Err(PlanError::Syntax { line, message, .. }) => (line, message),
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

/// A weight known to be in range.
pub fn weight(value: u64) -> Weight {
    Weight::try_from(value).expect("a weight in range")
}

/// A valid plan: staging, then 50%, then 100%, each weight soaked and checked. `#HALF` and
/// `#FULL` mark where [`base_with`] adds steps to the 50% and 100% stages.
pub const BASE: &str = "\
name: fixture
slos: {error_rate: 0.1%, p50: 20ms, p95: 35ms, p99: 50ms}
rollback:
  - name: errors
    urgency: immediate
    when:
      error_rate: {above: 1%, for: 5m}
stages:
  - id: staging
    name: Staging
    steps:
      - load_test: {rate: 100, duration: 1h}
  - id: half
    name: Half
    needs: [staging]
    environment: canary-50
    promotion: true
    steps:
      - canary: {weight: 50}
      - soak: {duration: 1h}
      - slo_check: {window: 1h, min_requests: 10}
      #HALF
  - id: full
    name: Full
    needs: [half]
    environment: production
    promotion: true
    steps:
      - canary: {weight: 100}
      - soak: {duration: 1h}
      - slo_check: {window: 1h, min_requests: 10}
      #FULL
";

/// [`BASE`] with each `(from, to)` replaced once.
pub fn base_with(replacements: &[(&str, &str)]) -> String {
    replacements
        .iter()
        .fold(BASE.to_owned(), |text, (from, to)| {
            assert!(text.contains(from), "the base plan has no `{from}`");
            text.replacen(from, to, 1)
        })
}

/// The 1-based line of the first occurrence of `needle` in `text`.
pub fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines()
        .position(|line| line.contains(needle))
        .map(|at| at + 1)
}

#[test]
fn the_base_plan_is_valid() {
    if let Err(error) = load::parse(BASE, Path::new("plan.yaml")) {
        panic!("{error}");
    }
}
