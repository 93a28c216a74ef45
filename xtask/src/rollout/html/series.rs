//! A timeline turned into what the charts draw: samples on a time axis in seconds from the
//! first entry, and the markers (stage boundaries, approvals, gate verdicts, rollbacks).

use crate::rollout::run::timeline::{Entry, Event, Figures};

/// What a marker marks.
#[derive(Clone, Debug, PartialEq)]
pub enum Mark {
    /// A stage began.
    Stage,
    /// A stage's environment was approved.
    Approval,
    /// A gate decided: `pass`, `fail` or `inconclusive`.
    Gate(String),
    /// All traffic went back to stable.
    Rollback,
}

/// A moment on the time axis.
#[derive(Clone, Debug, PartialEq)]
pub struct Marker {
    /// Seconds from the origin.
    pub t: f64,
    /// What it marks.
    pub mark: Mark,
    /// The stage it belongs to.
    pub stage: String,
    /// A short label (the stage id, who approved, the gate, the trigger).
    pub label: String,
    /// The whole story (for the event table).
    pub detail: String,
}

/// Both sides at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Seconds from the origin.
    pub t: f64,
    /// The configured canary weight.
    pub weight: u8,
    /// The Candle service.
    pub canary: Figures,
    /// The legacy service.
    pub stable: Figures,
}

impl Point {
    /// The canary's share of what both sides answered, in percent.
    pub fn canary_share(&self) -> Option<f64> {
        let total = self.canary.rate + self.stable.rate;
        (total > 0.0).then(|| 100.0 * self.canary.rate / total)
    }
}

/// The charts' input.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// Unix seconds of the time axis' zero.
    pub origin: f64,
    /// Seconds from the origin to the last entry.
    pub end: f64,
    /// The samples, in time order.
    pub points: Vec<Point>,
    /// The markers, in time order.
    pub markers: Vec<Marker>,
}

impl Series {
    /// The series of `entries` (in file order).
    pub fn of(entries: &[Entry]) -> Self {
        let origin = entries.first().map_or(0.0, |e| e.at);
        let mut series = Series {
            origin,
            ..Series::default()
        };
        for entry in entries {
            let t = (entry.at - origin).max(0.0);
            series.end = series.end.max(t);
            let marker = |mark, stage: &str, label: String, detail: String| Marker {
                t,
                mark,
                stage: stage.to_string(),
                label,
                detail,
            };
            match &entry.event {
                Event::Sample {
                    weight,
                    canary,
                    stable,
                } => series.points.push(Point {
                    t,
                    weight: *weight,
                    canary: canary.clone(),
                    stable: stable.clone(),
                }),
                Event::Stage {
                    stage,
                    name,
                    weight,
                } => series.markers.push(marker(
                    Mark::Stage,
                    stage,
                    stage.clone(),
                    format!("{name} (canary at {weight}%)"),
                )),
                Event::Approval { stage, actor, via } => series.markers.push(marker(
                    Mark::Approval,
                    stage,
                    format!("approved by {actor} ({via})"),
                    format!("environment approved by {actor} via {via}"),
                )),
                Event::Gate {
                    stage,
                    kind,
                    verdict,
                    detail,
                } => series.markers.push(marker(
                    Mark::Gate(verdict.clone()),
                    stage,
                    format!("{kind}: {verdict}"),
                    detail.clone(),
                )),
                Event::Rollback { stage, reason } => series.markers.push(marker(
                    Mark::Rollback,
                    stage,
                    // The trigger, or the gate that failed; its figures are in the detail.
                    format!("rollback: {}", reason.split(": ").next().unwrap_or(reason)),
                    reason.clone(),
                )),
                Event::Started { .. } | Event::Step { .. } | Event::Finished { .. } => {}
            }
        }
        series
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: f64, event: Event) -> Entry {
        Entry { at, event }
    }

    #[test]
    fn samples_and_markers_land_on_a_time_axis_from_the_first_entry() {
        let side = |rate| Figures {
            rate,
            ..Figures::default()
        };
        let entries = [
            entry(
                100.0,
                Event::Stage {
                    stage: "week-2".into(),
                    name: "Canary".into(),
                    weight: 0,
                },
            ),
            entry(
                103.0,
                Event::Sample {
                    weight: 10,
                    canary: side(5.0),
                    stable: side(45.0),
                },
            ),
            entry(
                104.5,
                Event::Rollback {
                    stage: "week-2".into(),
                    reason: "rollback trigger error-rate-critical fired".into(),
                },
            ),
        ];
        let series = Series::of(&entries);
        assert_eq!(series.origin, 100.0);
        assert_eq!(series.end, 4.5);
        assert_eq!(series.points[0].t, 3.0);
        assert_eq!(series.points[0].canary_share(), Some(10.0));
        assert_eq!(series.markers.len(), 2);
        assert_eq!(series.markers[0].mark, Mark::Stage);
        assert_eq!(series.markers[1].mark, Mark::Rollback);
        assert!(series.markers[1].label.contains("error-rate-critical"));
        let gate = Series::of(&[entry(
            1.0,
            Event::Rollback {
                stage: "week-1".into(),
                reason: "load_test#0 of stage week-1 failed: 687 requests, P95 2234.6ms".into(),
            },
        )]);
        assert_eq!(
            gate.markers[0].label,
            "rollback: load_test#0 of stage week-1 failed"
        );
    }
}
