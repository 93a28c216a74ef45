//! Bounded retries with exponential backoff for registry calls, and which failures are worth
//! retrying: an unreachable registry, a timeout, 5xx and 429 are; 401/403 and other refusals
//! are not.

use std::{error::Error as _, future::Future, time::Duration};

use oci_client::errors::{OciDistributionError, OciErrorCode};

/// How often and how patiently a registry call is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// The wait after the first failure; it doubles after each further one.
    pub first_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, waiting 1 s, 2 s, 4 s, 8 s between them (15 s in all).
    fn default() -> Self {
        Self {
            attempts: 5,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.first_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// What a failed registry call means for the push.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// Worth another attempt.
    Transient(String),
    /// The credentials were refused.
    Auth(String),
    /// Anything else: the request itself is wrong.
    Fatal(String),
}

/// Sorts an oci-client error into [`Failure`]s.
pub fn classify(error: &OciDistributionError) -> Failure {
    let text = chain(error);
    match error {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => Failure::Auth(text),
        OciDistributionError::ServerError { code, .. } => by_status(*code, text),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes = envelope.errors.iter().map(|e| &e.code);
            if codes
                .clone()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                Failure::Auth(text)
            } else if codes.clone().any(|c| *c == OciErrorCode::Toomanyrequests) {
                Failure::Transient(text)
            } else {
                Failure::Fatal(text)
            }
        }
        OciDistributionError::RequestError(e) => match e.status() {
            Some(status) => by_status(status.as_u16(), text),
            None if e.is_connect() || e.is_timeout() || e.is_request() || e.is_body() => {
                Failure::Transient(text)
            }
            None => Failure::Fatal(text),
        },
        _ => Failure::Fatal(text),
    }
}

fn by_status(code: u16, text: String) -> Failure {
    match code {
        401 | 403 => Failure::Auth(text),
        408 | 429 | 500..=599 => Failure::Transient(text),
        _ => Failure::Fatal(text),
    }
}

/// An error and its sources on one line: reqwest's own message hides the cause
/// ("connection refused") in its source.
fn chain(error: &OciDistributionError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The outcome of [`retry`] when it gives up.
#[derive(Debug)]
pub enum GaveUp {
    /// Every attempt failed transiently.
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// Time spent, waits included.
        elapsed: Duration,
        /// The last error.
        last: String,
    },
    /// The credentials were refused (not retried).
    Auth(String),
    /// A failure retrying cannot fix (not retried).
    Fatal(String),
}

/// Runs `call` until it succeeds, fails for good, or `policy.attempts` transient failures.
pub async fn retry<T, F, Fut>(policy: &RetryPolicy, mut call: F) -> Result<T, GaveUp>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, OciDistributionError>>,
{
    let start = std::time::Instant::now();
    let attempts = policy.attempts.max(1);
    let mut attempt = 1;
    loop {
        let error = match call().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        match classify(&error) {
            Failure::Auth(text) => return Err(GaveUp::Auth(text)),
            Failure::Fatal(text) => return Err(GaveUp::Fatal(text)),
            Failure::Transient(text) if attempt >= attempts => {
                return Err(GaveUp::Exhausted {
                    attempts: attempt,
                    elapsed: start.elapsed(),
                    last: text,
                })
            }
            Failure::Transient(_) => {
                tokio::time::sleep(policy.backoff(attempt)).await;
                attempt += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy::default();
        let waits: Vec<u64> = (1..=6).map(|a| policy.backoff(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 8, 8]);
        assert_eq!(policy.backoff(200), policy.max_backoff);
    }

    #[test]
    fn refusals_are_not_retried_but_outages_are() {
        let server = |code| OciDistributionError::ServerError {
            code,
            url: "http://r/v2/".into(),
            message: String::new(),
        };
        assert!(matches!(classify(&server(401)), Failure::Auth(_)));
        assert!(matches!(classify(&server(403)), Failure::Auth(_)));
        assert!(matches!(classify(&server(503)), Failure::Transient(_)));
        assert!(matches!(classify(&server(429)), Failure::Transient(_)));
        assert!(matches!(classify(&server(400)), Failure::Fatal(_)));
        let unauthorized = OciDistributionError::UnauthorizedError { url: "u".into() };
        assert!(matches!(classify(&unauthorized), Failure::Auth(_)));
    }

    #[test]
    fn gives_up_after_the_attempts_and_stops_at_once_on_auth() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let policy = RetryPolicy {
            attempts: 3,
            first_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        };
        let mut calls = 0;
        let outcome: Result<(), GaveUp> = runtime.block_on(retry(&policy, || {
            calls += 1;
            async {
                Err(OciDistributionError::ServerError {
                    code: 502,
                    url: "u".into(),
                    message: "bad gateway".into(),
                })
            }
        }));
        assert!(matches!(
            outcome,
            Err(GaveUp::Exhausted { attempts: 3, .. })
        ));
        assert_eq!(calls, 3);
        calls = 0;
        let outcome: Result<(), GaveUp> = runtime.block_on(retry(&policy, || {
            calls += 1;
            async { Err(OciDistributionError::UnauthorizedError { url: "u".into() }) }
        }));
        assert!(matches!(outcome, Err(GaveUp::Auth(_))));
        assert_eq!(calls, 1);
    }
}
