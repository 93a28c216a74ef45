//! The Alertmanager configuration: critical alerts page through PagerDuty, warnings go to
//! Slack. Keys and webhook URLs are read from files Alertmanager is given at deploy time (a
//! mounted Secret), so the repository holds no secret.

use serde::Serialize;

use super::alerts::Severity;

/// Where the PagerDuty Events v2 routing key is mounted.
pub const PAGERDUTY_ROUTING_KEY_FILE: &str = "/etc/alertmanager/secrets/pagerduty-routing-key";
/// Where the Slack incoming-webhook URL is mounted.
pub const SLACK_WEBHOOK_URL_FILE: &str = "/etc/alertmanager/secrets/slack-webhook-url";
/// The Slack channel of warnings.
pub const SLACK_CHANNEL: &str = "#akidb-alerts";

/// `alertmanager.yml`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertmanagerConfig {
    /// Defaults of every alert.
    pub global: Global,
    /// The routing tree.
    pub route: Route,
    /// Where alerts go.
    pub receivers: Vec<Receiver>,
}

/// `global:`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Global {
    /// How long an alert that stops being sent stays firing.
    pub resolve_timeout: String,
}

/// A node of the routing tree.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Route {
    /// The receiver when no child matches.
    pub receiver: String,
    /// Alerts with the same values here are sent together.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub group_by: Vec<String>,
    /// Which alerts this node takes (`severity="critical"`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub matchers: Vec<String>,
    /// How long to wait for more alerts of a new group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_wait: Option<String>,
    /// How long to wait before telling about new alerts of a group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_interval: Option<String>,
    /// How long to wait before repeating a notification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repeat_interval: Option<String>,
    /// Child routes, tried in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
}

/// A named receiver.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Receiver {
    /// What routes refer to.
    pub name: String,
    /// PagerDuty integrations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pagerduty_configs: Vec<PagerDuty>,
    /// Slack integrations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub slack_configs: Vec<Slack>,
}

/// A PagerDuty Events v2 integration.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PagerDuty {
    /// The file holding the routing key.
    pub routing_key_file: String,
    /// Also tell when the alert resolves.
    pub send_resolved: bool,
    /// The incident's severity in PagerDuty.
    pub severity: String,
}

/// A Slack incoming-webhook integration.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Slack {
    /// The file holding the webhook URL.
    pub api_url_file: String,
    /// The channel.
    pub channel: String,
    /// Also tell when the alert resolves.
    pub send_resolved: bool,
}

const PAGERDUTY: &str = "pagerduty-critical";
const SLACK: &str = "slack-warning";

fn severity_is(severity: Severity) -> String {
    format!(r#"severity="{}""#, severity.label())
}

/// The configuration: critical to PagerDuty, warning (and anything unlabelled) to Slack.
pub fn config() -> AlertmanagerConfig {
    let child = |receiver: &str, severity: Severity, repeat: &str| Route {
        receiver: receiver.to_string(),
        group_by: Vec::new(),
        matchers: vec![severity_is(severity)],
        group_wait: None,
        group_interval: None,
        repeat_interval: Some(repeat.to_string()),
        routes: Vec::new(),
    };
    AlertmanagerConfig {
        global: Global {
            resolve_timeout: "5m".to_string(),
        },
        route: Route {
            receiver: SLACK.to_string(),
            group_by: vec!["alertname".to_string(), "namespace".to_string()],
            matchers: Vec::new(),
            group_wait: Some("30s".to_string()),
            group_interval: Some("5m".to_string()),
            repeat_interval: Some("4h".to_string()),
            routes: vec![
                child(PAGERDUTY, Severity::Critical, "1h"),
                child(SLACK, Severity::Warning, "4h"),
            ],
        },
        receivers: vec![
            Receiver {
                name: PAGERDUTY.to_string(),
                pagerduty_configs: vec![PagerDuty {
                    routing_key_file: PAGERDUTY_ROUTING_KEY_FILE.to_string(),
                    send_resolved: true,
                    severity: Severity::Critical.label().to_string(),
                }],
                slack_configs: Vec::new(),
            },
            Receiver {
                name: SLACK.to_string(),
                pagerduty_configs: Vec::new(),
                slack_configs: vec![Slack {
                    api_url_file: SLACK_WEBHOOK_URL_FILE.to_string(),
                    channel: SLACK_CHANNEL.to_string(),
                    send_resolved: true,
                }],
            },
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn critical_pages_and_warning_goes_to_slack_with_secrets_from_files() {
        let config = config();
        let receiver = |severity: Severity| {
            let route = config
                .route
                .routes
                .iter()
                .find(|route| route.matchers == [severity_is(severity)])
                .expect("a route per severity");
            config
                .receivers
                .iter()
                .find(|r| r.name == route.receiver)
                .expect("the route's receiver")
        };
        assert_eq!(receiver(Severity::Critical).pagerduty_configs.len(), 1);
        assert_eq!(receiver(Severity::Warning).slack_configs.len(), 1);
        let text = serde_yaml_ng::to_string(&config).expect("YAML");
        assert!(!text.contains("routing_key:") && !text.contains("api_url:"));
    }
}
