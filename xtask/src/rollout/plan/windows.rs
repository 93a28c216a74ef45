//! The windows a plan judges: how far back its gates and triggers look, which is how long the
//! metrics system must keep data.

use std::time::Duration;

use super::{rollback::CONDITION_RANGE, step::Step, Plan};

impl Plan {
    /// The longest stretch of metrics any gate or trigger of the plan reads, in plan time: a
    /// load test's or soak's duration, an `slo_check` window, a trigger's `for` plus the range
    /// of its condition, a memory-growth window.
    pub fn longest_window(&self) -> Duration {
        let steps = self.stages().iter().flat_map(|stage| &stage.steps);
        let gates = steps.filter_map(|step| match step {
            Step::LoadTest(s) => Some(s.duration),
            Step::Soak(s) => Some(s.duration),
            Step::SloCheck(s) => Some(s.window),
            _ => None,
        });
        let triggers = self
            .rollback
            .iter()
            .map(|t| (t.hold() + CONDITION_RANGE).max(t.when.window()));
        gates.chain(triggers).max().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use crate::rollout::load;

    #[test]
    fn the_plans_longest_window_is_week_6s_seven_days() {
        let path = crate::project::root().join("rollout/plan.yaml");
        let plan = load::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan.longest_window().as_secs(), 7 * 86_400);
    }
}
