//! The memory-leak trigger's evidence: the canary's resident memory, sampled whenever the
//! triggers are evaluated, and its growth over the trigger's window.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

/// Samples kept at most (at one evaluation every few seconds, hours of history).
const MAX_SAMPLES: usize = 8192;

/// Resident memory over time, oldest first.
#[derive(Debug, Default)]
pub struct MemoryHistory {
    samples: VecDeque<(Instant, u64)>,
}

impl MemoryHistory {
    /// Adds a sample taken at `at`.
    pub fn record(&mut self, at: Instant, bytes: u64) {
        if self.samples.len() == MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((at, bytes));
    }

    /// How much the newest sample exceeds the newest one taken at least `span` before it, in
    /// percent; `None` until the history covers `span` (a leak is judged over the whole
    /// window, never on the first minutes of warm-up).
    pub fn growth(&self, span: Duration) -> Option<f64> {
        let &(now, latest) = self.samples.back()?;
        let &(_, baseline) = self
            .samples
            .iter()
            .rev()
            .find(|(at, _)| now.duration_since(*at) >= span)?;
        (baseline > 0).then(|| 100.0 * (latest as f64 - baseline as f64) / baseline as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1 << 20;

    #[test]
    fn no_verdict_until_the_window_is_covered() {
        let start = Instant::now();
        let mut history = MemoryHistory::default();
        assert_eq!(history.growth(Duration::from_secs(10)), None);
        history.record(start, 100 * MB);
        history.record(start + Duration::from_secs(5), 200 * MB);
        assert_eq!(history.growth(Duration::from_secs(10)), None);
    }

    #[test]
    fn growth_is_measured_against_the_sample_one_window_back() {
        let start = Instant::now();
        let mut history = MemoryHistory::default();
        for (second, mb) in [(0, 100), (4, 110), (8, 120), (12, 150)] {
            history.record(start + Duration::from_secs(second), mb * MB);
        }
        // One 8 s window back from 12 s is the sample at 4 s: 110 -> 150 MB.
        let growth = history.growth(Duration::from_secs(8)).unwrap();
        assert!((growth - 100.0 * 40.0 / 110.0).abs() < 1e-9, "{growth}");
        // Flat or shrinking memory is no growth.
        history.record(start + Duration::from_secs(20), 100 * MB);
        assert!(history.growth(Duration::from_secs(8)).unwrap() < 0.0);
    }

    #[test]
    fn the_history_is_bounded() {
        let start = Instant::now();
        let mut history = MemoryHistory::default();
        for i in 0..(MAX_SAMPLES as u64 + 10) {
            history.record(start + Duration::from_millis(i), MB);
        }
        assert_eq!(history.samples.len(), MAX_SAMPLES);
    }
}
