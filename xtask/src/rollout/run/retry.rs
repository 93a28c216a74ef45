//! Bounded retries with exponential backoff for the runner's actions on a target: a registry,
//! an API or a metrics server that is down for a moment costs a few seconds, one that stays down
//! ends the step with an error naming the action and every attempt (the runner then pauses).

use std::time::Duration;

use backon::{BlockingRetryable, ExponentialBuilder};

/// How often, and how patiently, an action is tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all (at least one).
    pub attempts: usize,
    /// Wait before the second try; each later wait doubles, up to `max_delay`.
    pub first_delay: Duration,
    /// Longest wait between two tries.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Four tries over about 3.5 s: enough for a restarting registry or a reloading proxy,
    /// short enough that a run does not hang on a service that is gone.
    fn default() -> Self {
        Self {
            attempts: 4,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

/// An action that failed on every try.
#[derive(Debug, thiserror::Error)]
#[error("{what} failed {attempts} time(s), giving up: {last:#}")]
pub struct GaveUp {
    /// The action.
    pub what: String,
    /// Tries made.
    pub attempts: usize,
    /// The last try's error.
    pub last: anyhow::Error,
}

impl RetryPolicy {
    /// Runs `op` until it succeeds or the tries run out; each failure but the last is printed
    /// with the wait before the next try.
    pub fn run<T>(
        &self,
        what: &str,
        mut op: impl FnMut() -> anyhow::Result<T>,
    ) -> Result<T, GaveUp> {
        let attempts = self.attempts.max(1);
        let mut tries = 0;
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.first_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(attempts - 1);
        (|| {
            tries += 1;
            op()
        })
        .retry(backoff)
        .sleep(std::thread::sleep)
        .notify(|error: &anyhow::Error, wait: Duration| {
            println!("rollout: {what} failed ({error:#}); retrying in {wait:?}");
        })
        .call()
        .map_err(|last| GaveUp {
            what: what.to_string(),
            attempts: tries,
            last,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick(attempts: usize) -> RetryPolicy {
        RetryPolicy {
            attempts,
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(4),
        }
    }

    #[test]
    fn an_action_that_recovers_succeeds_after_its_failures() {
        let mut calls = 0;
        let value = quick(4)
            .run("push", || {
                calls += 1;
                if calls < 3 {
                    anyhow::bail!("registry unavailable")
                }
                Ok(calls)
            })
            .expect("third try succeeds");
        assert_eq!((value, calls), (3, 3));
    }

    #[test]
    fn an_action_that_stays_down_is_tried_a_bounded_number_of_times_then_named() {
        let mut calls = 0;
        let error = quick(3)
            .run("image push to registry.local", || -> anyhow::Result<()> {
                calls += 1;
                anyhow::bail!("connection refused (try {calls})")
            })
            .expect_err("never succeeds");
        assert_eq!(calls, 3);
        assert_eq!(error.attempts, 3);
        let text = error.to_string();
        assert!(
            text.contains("image push to registry.local failed 3 time(s)")
                && text.contains("connection refused (try 3)"),
            "{text}"
        );
    }

    #[test]
    fn no_attempts_still_means_one_try() {
        let mut calls = 0;
        let _ = quick(0).run("x", || -> anyhow::Result<()> {
            calls += 1;
            anyhow::bail!("down")
        });
        assert_eq!(calls, 1);
    }
}
