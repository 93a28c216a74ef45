//! The error counts: an exact one-sided test that the canary's error rate exceeds
//! `ratio` times the baseline's. Conditional on the total of errors, the canary's share of them
//! is binomial with probability `ratio·n_c / (ratio·n_c + n_b)` when the rates' ratio is exactly
//! `ratio` (errors as rare events, Poisson on each side): the classic exact rate-ratio test.

use statrs::distribution::{Binomial, DiscreteCDF};

/// What the error test found.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErrorTest {
    /// The canary's error rate over the baseline's (infinite when only the canary erred, 1 when
    /// neither did).
    pub ratio: f64,
    /// One-sided p-value of "the canary's rate is more than `ratio` times the baseline's".
    pub p_value: f64,
}

/// Tests `canary_errors` of `canary_requests` against `baseline_errors` of `baseline_requests`
/// for a rate ratio above `allowed`. `None` when a side had no requests.
pub fn rate_ratio_test(
    canary_errors: u64,
    canary_requests: u64,
    baseline_errors: u64,
    baseline_requests: u64,
    allowed: f64,
) -> Option<ErrorTest> {
    if canary_requests == 0 || baseline_requests == 0 {
        return None;
    }
    let canary_rate = canary_errors as f64 / canary_requests as f64;
    let baseline_rate = baseline_errors as f64 / baseline_requests as f64;
    let ratio = match (canary_errors, baseline_errors) {
        (0, 0) => 1.0,
        (_, 0) => f64::INFINITY,
        _ => canary_rate / baseline_rate,
    };
    let total = canary_errors + baseline_errors;
    let p_value = if canary_errors == 0 {
        1.0
    } else {
        let share = allowed * canary_requests as f64
            / (allowed * canary_requests as f64 + baseline_requests as f64);
        let binomial = Binomial::new(share, total).expect("a share in (0, 1)");
        // P(X >= canary_errors)
        binomial.sf(canary_errors - 1)
    };
    Some(ErrorTest { ratio, p_value })
}
