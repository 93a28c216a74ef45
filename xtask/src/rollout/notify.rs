//! Telling people: the plan's `notify` steps, and every rollback, posted to Slack-compatible
//! incoming webhooks (Slack, Mattermost, Rocket.Chat take the same JSON body).
//!
//! Each channel's webhook URL comes from the environment, never from the plan (a webhook URL is
//! a credential):
//! - `AKIDB_NOTIFY_WEBHOOK_<CHANNEL>`, the channel upper-cased without its `#`, every character
//!   outside `A-Z0-9` written `_` (`#akidb-rollout`: `AKIDB_NOTIFY_WEBHOOK_AKIDB_ROLLOUT`);
//! - `AKIDB_NOTIFY_WEBHOOKS`, a JSON object of channel to URL, for one GitHub secret that holds
//!   them all; a per-channel variable wins over it.
//!
//! A channel without a URL is only logged, and says so. Delivery is retried with exponential
//! backoff; a failure is returned as a [`Delivery`], never raised: a message nobody received
//! must not stop a rollout, and least of all a rollback.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use backon::{BlockingRetryable, ExponentialBuilder};
use serde_json::json;
use thiserror::Error;

use super::plan::{Plan, Stage, Step};

/// The prefix of the per-channel webhook variables.
pub const WEBHOOK_PREFIX: &str = "AKIDB_NOTIFY_WEBHOOK_";
/// The variable holding a JSON object of channel to webhook URL.
pub const WEBHOOKS_MAP: &str = "AKIDB_NOTIFY_WEBHOOKS";

/// Why a message did not reach its webhook.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum NotifyError {
    /// [`WEBHOOKS_MAP`] is set but unreadable.
    #[error("{WEBHOOKS_MAP} is not a JSON object of channel to URL: {0}")]
    Map(String),
    /// The webhook answered with an error.
    #[error("the webhook answered {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of its body.
        body: String,
    },
    /// The webhook could not be reached.
    #[error("the webhook could not be reached: {0}")]
    Transport(String),
}

impl NotifyError {
    /// Whether another try may succeed: not after a refusal of the request itself.
    fn is_transient(&self) -> bool {
        match self {
            NotifyError::Map(_) => false,
            NotifyError::Status { status, .. } => *status == 429 || *status >= 500,
            NotifyError::Transport(_) => true,
        }
    }
}

/// What became of a message.
#[derive(Clone, Debug, PartialEq)]
pub enum Delivery {
    /// The webhook accepted it.
    Delivered {
        /// Tries it took.
        attempts: u32,
    },
    /// No webhook is configured for the channel: the message is in the audit log only.
    LoggedOnly {
        /// The variable that would configure one.
        variable: String,
    },
    /// Every try failed (or the configuration is broken).
    Failed {
        /// Tries made.
        attempts: u32,
        /// The last error.
        error: NotifyError,
    },
}

impl Delivery {
    /// The audit log's result word.
    pub fn result(&self) -> &'static str {
        match self {
            Delivery::Delivered { .. } => "delivered",
            Delivery::LoggedOnly { .. } => "logged_only",
            Delivery::Failed { .. } => "failed",
        }
    }
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Delivery::Delivered { attempts } => write!(f, "delivered ({attempts} attempt(s))"),
            Delivery::LoggedOnly { variable } => {
                write!(
                    f,
                    "only logged: no webhook (set {variable} or {WEBHOOKS_MAP})"
                )
            }
            Delivery::Failed { attempts, error } => {
                write!(f, "NOT delivered after {attempts} attempt(s): {error}")
            }
        }
    }
}

/// The variable that holds `channel`'s webhook URL.
pub fn variable(channel: &str) -> String {
    format!("{WEBHOOK_PREFIX}{}", normalise(channel))
}

fn normalise(channel: &str) -> String {
    channel
        .trim()
        .trim_start_matches('#')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Posts messages to the webhooks the environment names.
#[derive(Clone, Debug)]
pub struct Notifier {
    /// Normalised channel to URL.
    webhooks: HashMap<String, String>,
    /// Why [`WEBHOOKS_MAP`] could not be read, if it could not.
    map_error: Option<String>,
    attempts: u32,
    first_delay: Duration,
    timeout: Duration,
}

impl Notifier {
    /// The webhooks of this process's environment.
    pub fn from_env() -> Self {
        Self::from_vars(std::env::vars())
    }

    /// The webhooks of `vars` (name, value).
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut webhooks = HashMap::new();
        let mut singles = Vec::new();
        let mut map_error = None;
        for (name, value) in vars {
            if value.trim().is_empty() {
                continue;
            }
            if name == WEBHOOKS_MAP {
                match serde_json::from_str::<HashMap<String, String>>(&value) {
                    Ok(map) => webhooks.extend(map.into_iter().map(|(k, v)| (normalise(&k), v))),
                    Err(error) => map_error = Some(error.to_string()),
                }
            } else if let Some(channel) = name.strip_prefix(WEBHOOK_PREFIX) {
                singles.push((channel.to_owned(), value));
            }
        }
        // A per-channel variable wins over the map.
        webhooks.extend(singles);
        Self {
            webhooks,
            map_error,
            attempts: 3,
            first_delay: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }

    /// Tries `attempts` times in all, waiting `first_delay` before the second (then doubling).
    #[cfg(test)]
    pub fn with_retry(mut self, attempts: u32, first_delay: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.first_delay = first_delay;
        self
    }

    /// The webhook URL of `channel`, if one is configured.
    pub fn webhook(&self, channel: &str) -> Option<&str> {
        self.webhooks.get(&normalise(channel)).map(String::as_str)
    }

    /// What [`deliver`](Self::deliver) would do, without doing it: for dry runs.
    pub fn describe(&self, channel: &str) -> String {
        match (self.webhook(channel), &self.map_error) {
            (Some(_), _) => format!("posted to the webhook of {}", variable(channel)),
            (None, Some(error)) => format!("{}", NotifyError::Map(error.clone())),
            (None, None) => format!(
                "only logged: no webhook (set {} or {WEBHOOKS_MAP})",
                variable(channel)
            ),
        }
    }

    /// Posts `{"text": text, "channel": channel}` to `channel`'s webhook, retrying transient
    /// failures; never fails itself.
    pub fn deliver(&self, channel: &str, text: &str) -> Delivery {
        let Some(url) = self.webhook(channel) else {
            return match &self.map_error {
                Some(error) => Delivery::Failed {
                    attempts: 0,
                    error: NotifyError::Map(error.clone()),
                },
                None => Delivery::LoggedOnly {
                    variable: variable(channel),
                },
            };
        };
        let body = json!({ "text": text, "channel": channel });
        let agent = ureq::AgentBuilder::new().timeout(self.timeout).build();
        let tries = Cell::new(0);
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.first_delay)
            .with_max_times(self.attempts.saturating_sub(1) as usize);
        let outcome = (|| {
            tries.set(tries.get() + 1);
            post(&agent, url, &body)
        })
        .retry(backoff)
        .sleep(std::thread::sleep)
        .when(NotifyError::is_transient)
        .notify(|error: &NotifyError, wait: Duration| {
            println!("notify: {channel}: {error}; retrying in {wait:?}");
        })
        .call();
        match outcome {
            Ok(()) => Delivery::Delivered {
                attempts: tries.get(),
            },
            Err(error) => Delivery::Failed {
                attempts: tries.get(),
                error,
            },
        }
    }
}

fn post(agent: &ureq::Agent, url: &str, body: &serde_json::Value) -> Result<(), NotifyError> {
    match agent.post(url).send_json(body) {
        Ok(_) => Ok(()),
        Err(ureq::Error::Status(status, response)) => {
            let mut text = response.into_string().unwrap_or_default();
            text.truncate(200);
            Err(NotifyError::Status { status, body: text })
        }
        // The URL is a credential: name the failure, not the URL.
        Err(ureq::Error::Transport(transport)) => Err(NotifyError::Transport(
            transport
                .message()
                .map_or_else(|| transport.kind().to_string(), str::to_owned),
        )),
    }
}

/// The channel a rollback in `stage` is announced on: the stage's last `notify` channel, else
/// the plan's first; `None` when the plan notifies nobody.
pub fn rollback_channel<'p>(plan: &'p Plan, stage: &'p Stage) -> Option<&'p str> {
    let channel = |step: &'p Step| match step {
        Step::Notify(notify) => Some(notify.channel.as_str()),
        _ => None,
    };
    stage.steps.iter().rev().find_map(channel).or_else(|| {
        plan.stages()
            .iter()
            .flat_map(|stage| &stage.steps)
            .find_map(channel)
    })
}

#[cfg(test)]
mod tests;
