//! What the runner tells whoever watches it: every timeline event as it is recorded, and each
//! tick of a hold. The runner records the timeline itself; an [`Observer`] (the terminal's
//! progress display) only looks.

use std::time::{Duration, Instant};

use super::timeline::{Event, Figures, Timeline};
use super::Runner;
use crate::rollout::targets::Side;

/// How often a hold samples both sides into the timeline.
const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// The trailing window of a sample (Prometheus scrapes every second: four scrapes).
const SAMPLE_WINDOW: Duration = Duration::from_secs(4);

/// Watches a run.
pub trait Observer {
    /// An event, as the timeline records it.
    fn event(&mut self, event: &Event);
    /// A hold goes on: `left` of `total` remains.
    fn hold(&mut self, _left: Duration, _total: Duration) {}
}

/// Watches nothing.
pub struct Silent;

impl Observer for Silent {
    fn event(&mut self, _event: &Event) {}
}

/// The runner's timeline and observer.
pub(super) struct Watch {
    timeline: Timeline,
    observer: Box<dyn Observer>,
    last_sample: Option<Instant>,
    warned: bool,
}

impl Watch {
    pub(super) fn new(timeline: Timeline) -> Self {
        Self {
            timeline,
            observer: Box::new(Silent),
            last_sample: None,
            warned: false,
        }
    }
}

impl Runner<'_> {
    /// The same runner, watched by `observer`.
    pub fn with_observer(mut self, observer: Box<dyn Observer>) -> Self {
        self.watch.observer = observer;
        self
    }

    /// Records `event` in the timeline and shows it. A timeline that cannot be written costs
    /// the report its charts, not the rollout its run: it is said once, and the run goes on.
    pub(super) fn observe(&mut self, event: Event) {
        self.watch.observer.event(&event);
        if let Err(error) = self.watch.timeline.record(event) {
            if !std::mem::replace(&mut self.watch.warned, true) {
                eprintln!("rollout: the timeline is not recorded ({error}); the run goes on");
            }
        }
    }

    /// One tick of a hold: shown, and every [`SAMPLE_EVERY`] both sides sampled.
    pub(super) fn tick(&mut self, left: Duration, total: Duration, weight: u8) {
        self.watch.observer.hold(left, total);
        if self
            .watch
            .last_sample
            .is_some_and(|at| at.elapsed() < SAMPLE_EVERY)
        {
            return;
        }
        self.watch.last_sample = Some(Instant::now());
        let figures = |side| {
            self.target
                .measure(side, SAMPLE_WINDOW)
                .map(|m| Figures::of(&m, SAMPLE_WINDOW))
        };
        match (figures(Side::Canary), figures(Side::Stable)) {
            (Err(_), Err(_)) => {}
            (canary, stable) => self.observe(Event::Sample {
                weight,
                canary: canary.unwrap_or_default(),
                stable: stable.unwrap_or_default(),
            }),
        }
    }
}

impl Runner<'_> {
    /// The timeline's record of a run beginning.
    pub(super) fn started(&self, resumed: bool) -> Event {
        Event::Started {
            plan: self.plan.name.clone(),
            target: self.target.name().into(),
            time_scale: self.plan.time_scale().factor(),
            resumed,
        }
    }
}
