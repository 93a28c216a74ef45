//! What `rollout run` does with the flags left out: on the local target, the plan's drill
//! (its time scale, traffic cap and approvals); on any other target, the plan as written.

use crate::rollout::plan::{
    drill::{Drill, DrillApprovals, DrillTarget},
    TimeScale,
};

/// What the command line asked for.
#[derive(Clone, Copy, Debug, Default)]
pub struct Asked {
    /// Whether the run is on the local target.
    pub local: bool,
    /// `--no-drill`.
    pub no_drill: bool,
    /// `--time-scale`.
    pub time_scale: Option<TimeScale>,
    /// `--max-rate`.
    pub max_rate: Option<u32>,
    /// `--non-interactive`: pause at approvals rather than prompt (nor let the drill approve).
    pub non_interactive: bool,
}

/// The settings a run goes with.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The time scale overriding the plan's, if any.
    pub time_scale: Option<TimeScale>,
    /// The traffic cap, if any.
    pub max_rate: Option<u32>,
    /// Whether the drill approves stages that no terminal is asked about.
    pub drill_approvals: bool,
    /// Whether the plan's drill is in force.
    pub drilling: bool,
}

/// The settings of a run: each flag given wins; a flag left out takes the drill's value when
/// the plan declares a drill for this target and `--no-drill` is not given.
pub fn settings(drill: Option<&Drill>, asked: Asked) -> Settings {
    let drill = drill.filter(|d| {
        !asked.no_drill
            && match d.target {
                DrillTarget::Local => asked.local,
            }
    });
    Settings {
        time_scale: asked.time_scale.or(drill.map(|d| d.time_scale)),
        max_rate: asked
            .max_rate
            .or(drill.and_then(|d| d.max_rate.map(|r| r.get()))),
        drill_approvals: !asked.non_interactive
            && drill.is_some_and(|d| d.approvals == DrillApprovals::Drill),
        drilling: drill.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn drill() -> Drill {
        Drill {
            target: DrillTarget::Local,
            time_scale: "0.0001".parse().unwrap(),
            max_rate: NonZeroU32::new(50),
            approvals: DrillApprovals::Drill,
        }
    }

    #[test]
    fn a_flagless_local_run_takes_the_drill() {
        let s = settings(
            Some(&drill()),
            Asked {
                local: true,
                ..Asked::default()
            },
        );
        assert_eq!(s.time_scale.map(TimeScale::factor), Some(0.0001));
        assert_eq!(s.max_rate, Some(50));
        assert!(s.drill_approvals && s.drilling);
    }

    #[test]
    fn the_kubernetes_target_ignores_the_drill() {
        let s = settings(Some(&drill()), Asked::default());
        assert_eq!(
            s,
            Settings {
                time_scale: None,
                max_rate: None,
                drill_approvals: false,
                drilling: false
            }
        );
    }

    #[test]
    fn flags_win_and_no_drill_or_non_interactive_turn_parts_off() {
        let asked = Asked {
            local: true,
            time_scale: Some("0.5".parse().unwrap()),
            max_rate: Some(7),
            non_interactive: true,
            ..Asked::default()
        };
        let s = settings(Some(&drill()), asked);
        assert_eq!(s.time_scale.map(TimeScale::factor), Some(0.5));
        assert_eq!(s.max_rate, Some(7));
        assert!(!s.drill_approvals, "--non-interactive pauses at approvals");
        let s = settings(
            Some(&drill()),
            Asked {
                local: true,
                no_drill: true,
                ..Asked::default()
            },
        );
        assert!(!s.drilling && s.time_scale.is_none() && s.max_rate.is_none());
    }
}
