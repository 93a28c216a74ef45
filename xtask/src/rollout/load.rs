//! Reading a plan file: parse it (serde), then validate it, and say what is wrong where.

use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::plan::source_map::SourceMap;
use super::plan::spec::PlanSpec;
use super::plan::Plan;
use super::validate::{self, Violation};

/// Why a plan could not be used.
#[derive(Debug, Error)]
pub enum PlanError {
    /// The file could not be read.
    #[error("{}: cannot read the rollout plan", .file.display())]
    Read {
        /// The plan's path.
        file: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The text is not YAML, or not the plan's schema (unknown key or step kind, wrong type).
    #[error("{}: {message}", Position { file, line: *line, column: *column })]
    Syntax {
        /// The plan's path.
        file: PathBuf,
        /// 1-based, when known.
        line: Option<usize>,
        /// 1-based, when known.
        column: Option<usize>,
        /// What the parser said, without its own position.
        message: String,
    },
    /// The plan parses but breaks rules.
    #[error("{}", Violations { file, violations })]
    Invalid {
        /// The plan's path.
        file: PathBuf,
        /// Every broken rule, by line.
        violations: Vec<Violation>,
    },
}

/// `file:line:column`, as editors and terminals turn into links.
struct Position<'a> {
    file: &'a Path,
    line: Option<usize>,
    column: Option<usize>,
}

impl fmt::Display for Position<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        Ok(())
    }
}

/// One `file:line: problem` per violation.
struct Violations<'a> {
    file: &'a Path,
    violations: &'a [Violation],
}

impl fmt::Display for Violations<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.violations.len();
        write!(
            f,
            "{}: the rollout plan breaks {count} rule{}",
            self.file.display(),
            plural(count)
        )?;
        for violation in self.violations {
            let at = Position {
                file: self.file,
                line: violation.line,
                column: None,
            };
            write!(f, "\n  {at}: {}", violation.error)?;
        }
        Ok(())
    }
}

fn plural(count: usize) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}

/// Reads, parses and validates the plan at `file`.
pub fn load(file: &Path) -> Result<Plan, PlanError> {
    let text = std::fs::read_to_string(file).map_err(|source| PlanError::Read {
        file: file.to_path_buf(),
        source,
    })?;
    parse(&text, file)
}

/// Parses and validates plan text; `file` names it in errors.
pub fn parse(text: &str, file: &Path) -> Result<Plan, PlanError> {
    // Steps and rollback conditions are enums written as one-key maps (`- canary: {weight: 1}`),
    // which serde_yaml_ng reads only through `singleton_map` (its default is a `!canary` tag).
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    let spec: PlanSpec = serde_yaml_ng::with::singleton_map_recursive::deserialize(deserializer)
        .map_err(|error| syntax(file, &error))?;
    validate::validate(spec, &SourceMap::new(text)).map_err(|violations| PlanError::Invalid {
        file: file.to_path_buf(),
        violations,
    })
}

fn syntax(file: &Path, error: &serde_yaml_ng::Error) -> PlanError {
    let location = error.location();
    let line = location.as_ref().map(|l| l.line());
    let column = location.as_ref().map(|l| l.column());
    let mut message = error.to_string();
    // The position goes in front, where tools look for it; drop the copy serde_yaml_ng appends.
    if let (Some(line), Some(column)) = (line, column) {
        let suffix = format!(" at line {line} column {column}");
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_owned();
        }
    }
    PlanError::Syntax {
        file: file.to_path_buf(),
        line,
        column,
        message,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytesize::ByteSize;

    use super::*;
    use crate::rollout::plan::rollback::{RollbackCondition, Urgency};
    use crate::rollout::plan::step::{ParityReference, Step};
    use crate::rollout::plan::{Stage, Weight};

    const HOUR: Duration = Duration::from_secs(3600);

    fn checked_in_plan() -> Plan {
        let file = crate::project::plan_path();
        match load(&file) {
            Ok(plan) => plan,
            Err(error) => panic!("{error}"),
        }
    }

    fn stage<'a>(plan: &'a Plan, id: &str) -> &'a Stage {
        match plan.stages().iter().find(|stage| stage.id == id) {
            Some(stage) => stage,
            None => panic!("the plan has no stage `{id}`"),
        }
    }

    /// How long a stage holds its traffic after its last canary step.
    fn held_after_canary(stage: &Stage) -> Duration {
        let last_canary = stage
            .steps
            .iter()
            .rposition(|step| matches!(step, Step::Canary(_)));
        stage.steps[last_canary.map_or(0, |at| at + 1)..]
            .iter()
            .map(Step::hold)
            .sum()
    }

    #[test]
    fn checked_in_plan_ramps_1_10_50_100_one_week_at_a_time_with_approval() {
        let plan = checked_in_plan();
        let ids: Vec<&str> = plan
            .stages()
            .iter()
            .map(|stage| stage.id.as_str())
            .collect();
        assert_eq!(
            ids,
            ["week-1", "week-2", "week-3", "week-4", "week-5", "week-6"]
        );
        let ramps: Vec<(String, Option<&str>)> = plan
            .stages()
            .iter()
            .filter(|stage| stage.exit_weight > stage.entry_weight)
            .map(|stage| (stage.exit_weight.to_string(), stage.environment.as_deref()))
            .collect();
        let expected = [
            ("1%", Some("canary-1")),
            ("10%", Some("canary-10")),
            ("50%", Some("canary-50")),
            ("100%", Some("production")),
        ]
        .map(|(weight, environment)| (weight.to_owned(), environment));
        assert_eq!(ramps, expected);
        assert_eq!(plan.max_weight, Weight::try_from(100).ok());
    }

    #[test]
    fn checked_in_plan_holds_each_weight_as_long_as_the_seed_says() {
        let plan = checked_in_plan();
        assert_eq!(held_after_canary(stage(&plan, "week-2")), 72 * HOUR);
        assert!(held_after_canary(stage(&plan, "week-3")) >= 4 * 24 * HOUR);
        assert!(held_after_canary(stage(&plan, "week-4")) >= 4 * 24 * HOUR);
        assert_eq!(held_after_canary(stage(&plan, "week-5")), 72 * HOUR);
        let at_full =
            held_after_canary(stage(&plan, "week-5")) + stage(&plan, "week-6").steps[0].hold();
        assert!(
            at_full >= 7 * 24 * HOUR,
            "MLX is torn down only after 7+ days at 100%"
        );
    }

    #[test]
    fn checked_in_plan_encodes_the_seed_slos() {
        let plan = checked_in_plan();
        let slos = plan.slos.resolve(&plan.slos).expect("complete SLOs");
        assert_eq!(slos.error_rate.value(), 0.1);
        assert_eq!(slos.p50, Duration::from_millis(20));
        assert_eq!(slos.p95, Duration::from_millis(35));
        assert_eq!(slos.p99, Duration::from_millis(50));
        assert_eq!(slos.memory_per_pod, Some(ByteSize::gib(4)));
        // Every gate checks them as written: none overrides.
        for step in plan.stages().iter().flat_map(|stage| &stage.steps) {
            match step {
                Step::LoadTest(gate) => assert_eq!(gate.thresholds, slos),
                Step::Soak(gate) => assert_eq!(gate.thresholds, slos),
                Step::SloCheck(gate) => assert_eq!(gate.thresholds, slos),
                _ => {}
            }
        }
    }

    #[test]
    fn checked_in_plan_validates_staging_before_any_traffic() {
        let plan = checked_in_plan();
        let week1 = stage(&plan, "week-1");
        let load_test = week1.steps.iter().find_map(|step| match step {
            Step::LoadTest(load_test) => Some((load_test.rate, load_test.duration)),
            _ => None,
        });
        assert_eq!(load_test, Some((500, 48 * HOUR)));
        let parity: Vec<(f64, ParityReference)> = week1
            .steps
            .iter()
            .filter_map(|step| match step {
                Step::Parity(parity) => Some((parity.min_cosine, parity.against)),
                _ => None,
            })
            .collect();
        assert!(parity.iter().all(|&(cosine, _)| cosine == 0.9999));
        assert!(parity
            .iter()
            .any(|&(_, against)| against == ParityReference::Legacy));
        assert!(parity
            .iter()
            .any(|&(_, against)| against == ParityReference::Golden));
    }

    #[test]
    fn checked_in_plan_tags_the_workspace_version_and_then_retires_mlx() {
        let plan = checked_in_plan();
        let kinds: Vec<&str> = stage(&plan, "week-5")
            .steps
            .iter()
            .map(Step::kind)
            .collect();
        for kind in ["slo_check", "ga_tag", "image_push", "helm_push"] {
            assert!(kinds.contains(&kind), "week 5 has no {kind}: {kinds:?}");
        }
        let tag = stage(&plan, "week-5")
            .steps
            .iter()
            .find_map(|step| match step {
                Step::GaTag(ga) => Some(ga.tag.clone()),
                _ => None,
            });
        assert_eq!(tag, Some(format!("v{}", env!("CARGO_PKG_VERSION"))));
        let teardown = stage(&plan, "week-6")
            .steps
            .iter()
            .find_map(|step| match step {
                Step::MlxTeardown(teardown) => Some(teardown.grace_period),
                _ => None,
            });
        assert_eq!(teardown, Some(24 * HOUR));
        assert!(matches!(
            stage(&plan, "week-6").steps.last(),
            Some(Step::Notify(_))
        ));
    }

    #[test]
    fn checked_in_plan_rolls_back_on_the_seed_triggers() {
        let plan = checked_in_plan();
        let triggers: Vec<(Urgency, String)> = plan
            .rollback
            .iter()
            .map(|trigger| {
                let condition = match &trigger.when {
                    RollbackCondition::ErrorRate(s) => {
                        format!("error_rate > {} for {:?}", s.above, s.duration)
                    }
                    RollbackCondition::P95Latency(s) => {
                        format!("p95 > {} for {:?}", s.above, s.duration)
                    }
                    RollbackCondition::MemoryGrowth(g) => {
                        format!("memory growth > {} over {:?}", g.above, g.over)
                    }
                };
                (trigger.urgency, condition)
            })
            .collect();
        assert_eq!(
            triggers,
            [
                (Urgency::Immediate, "error_rate > 1% for 300s".to_owned()),
                (Urgency::Planned, "error_rate > 0.5% for 1800s".to_owned()),
                (Urgency::Planned, "p95 > 100ms for 3600s".to_owned()),
                (
                    Urgency::Planned,
                    "memory growth > 20% over 21600s".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn names_the_file_line_and_column_of_a_syntax_error() {
        let error = parse(
            "name: x\nstages:\n  - id: [unclosed\n",
            Path::new("plan.yaml"),
        )
        .expect_err("broken");
        let text = error.to_string();
        assert!(text.starts_with("plan.yaml:"), "{text}");
        assert!(
            matches!(error, PlanError::Syntax { line: Some(_), .. }),
            "{text}"
        );
    }

    #[test]
    fn names_the_file_it_cannot_read() {
        let error = load(Path::new("no/such/plan.yaml")).expect_err("missing");
        assert_eq!(
            error.to_string(),
            "no/such/plan.yaml: cannot read the rollout plan"
        );
    }
}
