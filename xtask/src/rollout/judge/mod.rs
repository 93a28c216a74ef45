//! The statistical judge: the canary against the baseline measured over the same window.
//!
//! Independent of targets and of the runner: the runner feeds it what a target measured, `cargo
//! xtask rollout judge` what two sample files hold, and `replay` what Prometheus held, and all
//! three get the very same verdict. The statistics:
//!
//! - `rank`: Mann-Whitney U (ties by mid-ranks, normal approximation with a continuity
//!   correction) for a shift of the whole distribution, with its effect size;
//! - `quantile`: distribution-free intervals on the ratio of the tail quantiles (P95, P99);
//! - `errors`: an exact test of the error counts' rate ratio.
//!
//! An improvement never fails; an empty, all-zero or non-finite sample is inconclusive, never
//! a pass.

pub mod errors;
pub mod quantile;
pub mod rank;
pub mod sample;
mod verdict;

pub use self::verdict::{judge, Call, Judgement, Row};
pub use sample::{Histogram, Latencies, SampleFile, SideSample};

/// Why two samples cannot be judged.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JudgeError {
    /// A NaN or infinite value.
    #[error("a {0} is not a finite number")]
    NonFinite(&'static str),
    /// A latency below zero.
    #[error("a latency is negative")]
    Negative,
    /// Histogram buckets that cannot be used.
    #[error("histogram buckets: {0}")]
    Buckets(&'static str),
    /// More errors than requests.
    #[error("{errors} errors of {requests} requests")]
    ErrorsExceedRequests {
        /// Errors.
        errors: u64,
        /// Requests.
        requests: u64,
    },
}

#[cfg(test)]
mod tests;
