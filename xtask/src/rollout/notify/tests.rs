//! Delivery against a local webhook receiver (axum on 127.0.0.1, a free port) that records
//! what it is sent and answers with the statuses a test scripts.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use super::*;

/// What the receiver got: content type and parsed body, per request.
type Received = Arc<Mutex<Vec<(String, Value)>>>;

struct Receiver {
    addr: SocketAddr,
    received: Received,
}

impl Receiver {
    /// Answers each request with the next of `statuses`, then 200.
    fn start(statuses: &[u16]) -> Receiver {
        let received: Received = Arc::default();
        let script = Arc::new(Mutex::new(
            statuses.iter().copied().collect::<VecDeque<_>>(),
        ));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("an address");
        let state = (received.clone(), script);
        // Serves until the test process ends.
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let app = Router::new()
                    .route("/hooks/{id}", post(hook))
                    .with_state(state);
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                axum::serve(listener, app).await.expect("serving");
            });
        });
        Receiver { addr, received }
    }

    fn url(&self, id: &str) -> String {
        format!("http://{}/hooks/{id}", self.addr)
    }

    fn received(&self) -> Vec<(String, Value)> {
        self.received.lock().expect("not poisoned").clone()
    }
}

async fn hook(
    State((received, script)): State<(Received, Arc<Mutex<VecDeque<u16>>>)>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = serde_json::from_str(&body).unwrap_or(Value::String(body));
    received
        .lock()
        .expect("not poisoned")
        .push((content_type, body));
    let status = script
        .lock()
        .expect("not poisoned")
        .pop_front()
        .unwrap_or(200);
    StatusCode::from_u16(status).expect("a status")
}

fn notifier(vars: &[(&str, &str)]) -> Notifier {
    Notifier::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .with_retry(3, Duration::from_millis(10))
}

#[test]
fn a_channel_names_its_webhook_variable() {
    assert_eq!(
        variable("#akidb-rollout"),
        "AKIDB_NOTIFY_WEBHOOK_AKIDB_ROLLOUT"
    );
    assert_eq!(variable("ops.alerts"), "AKIDB_NOTIFY_WEBHOOK_OPS_ALERTS");
}

#[test]
fn posts_the_message_as_slack_json_to_the_channels_webhook() {
    let receiver = Receiver::start(&[]);
    let notify = notifier(&[("AKIDB_NOTIFY_WEBHOOK_AKIDB_ROLLOUT", &receiver.url("a"))]);
    let delivery = notify.deliver("#akidb-rollout", "1% canary deployment started");
    assert_eq!(delivery, Delivery::Delivered { attempts: 1 });
    assert_eq!(
        receiver.received(),
        [(
            "application/json".to_owned(),
            json!({"text": "1% canary deployment started", "channel": "#akidb-rollout"})
        )]
    );
}

#[test]
fn retries_a_webhook_that_is_down_for_a_moment() {
    let receiver = Receiver::start(&[503, 429]);
    let notify = notifier(&[("AKIDB_NOTIFY_WEBHOOK_OPS", &receiver.url("b"))]);
    assert_eq!(
        notify.deliver("ops", "hello"),
        Delivery::Delivered { attempts: 3 }
    );
    assert_eq!(receiver.received().len(), 3);
}

#[test]
fn a_webhook_that_refuses_the_message_is_reported_not_retried() {
    let receiver = Receiver::start(&[404]);
    let notify = notifier(&[("AKIDB_NOTIFY_WEBHOOK_OPS", &receiver.url("c"))]);
    let delivery = notify.deliver("ops", "hello");
    let Delivery::Failed { attempts: 1, error } = &delivery else {
        panic!("expected one failed attempt, got {delivery:?}");
    };
    assert!(
        matches!(error, NotifyError::Status { status: 404, .. }),
        "{error:?}"
    );
    assert_eq!(delivery.result(), "failed");
    assert_eq!(receiver.received().len(), 1);
}

#[test]
fn an_unreachable_webhook_fails_after_every_retry_without_naming_its_url() {
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("http://127.0.0.1:{port}/services/T000/SECRET");
    let delivery = notifier(&[("AKIDB_NOTIFY_WEBHOOK_OPS", &url)]).deliver("ops", "hello");
    let Delivery::Failed { attempts: 3, error } = &delivery else {
        panic!("expected three failed attempts, got {delivery:?}");
    };
    assert!(matches!(error, NotifyError::Transport(_)), "{error:?}");
    assert!(!delivery.to_string().contains("SECRET"), "{delivery}");
}

#[test]
fn without_a_webhook_the_message_is_only_logged_and_says_so() {
    let notify = notifier(&[]);
    let delivery = notify.deliver("#akidb-rollout", "hello");
    assert_eq!(
        delivery,
        Delivery::LoggedOnly {
            variable: "AKIDB_NOTIFY_WEBHOOK_AKIDB_ROLLOUT".into()
        }
    );
    assert_eq!(
        delivery.to_string(),
        "only logged: no webhook (set AKIDB_NOTIFY_WEBHOOK_AKIDB_ROLLOUT or AKIDB_NOTIFY_WEBHOOKS)"
    );
    assert_eq!(notify.describe("#akidb-rollout"), delivery.to_string());
}

#[test]
fn one_map_variable_serves_every_channel_and_a_channel_variable_wins() {
    let receiver = Receiver::start(&[]);
    let map = json!({"#akidb-rollout": receiver.url("map"), "#ops": receiver.url("map")});
    let notify = notifier(&[
        ("AKIDB_NOTIFY_WEBHOOKS", &map.to_string()),
        ("AKIDB_NOTIFY_WEBHOOK_OPS", &receiver.url("own")),
    ]);
    assert_eq!(
        notify.webhook("#akidb-rollout"),
        Some(receiver.url("map").as_str())
    );
    assert_eq!(notify.webhook("#ops"), Some(receiver.url("own").as_str()));
    assert_eq!(
        notify.deliver("#akidb-rollout", "hi"),
        Delivery::Delivered { attempts: 1 }
    );
}

#[test]
fn a_broken_map_is_a_failed_delivery_not_a_crash() {
    let notify = notifier(&[("AKIDB_NOTIFY_WEBHOOKS", "#ops=https://x")]);
    assert!(matches!(
        notify.deliver("#ops", "hi"),
        Delivery::Failed {
            attempts: 0,
            error: NotifyError::Map(_)
        }
    ));
}

#[test]
fn a_rollback_is_announced_on_its_stages_channel_or_the_plans_first() {
    let text = "\
name: x
slos: {error_rate: 0.1%, p50: 20ms, p95: 35ms, p99: 50ms}
stages:
  - id: a
    name: A
    steps:
      - notify: {channel: '#first', message: m}
  - id: b
    name: B
    needs: [a]
    steps:
      - wait: {duration: 1h}
  - id: c
    name: C
    needs: [b]
    steps:
      - notify: {channel: '#c-one', message: m}
      - notify: {channel: '#c-two', message: m}
";
    let plan = crate::rollout::load::parse(text, std::path::Path::new("plan.yaml"))
        .unwrap_or_else(|error| panic!("{error}"));
    let stage = |id: &str| {
        plan.stages()
            .iter()
            .find(|stage| stage.id == id)
            .expect("a stage")
    };
    assert_eq!(rollback_channel(&plan, stage("c")), Some("#c-two"));
    assert_eq!(rollback_channel(&plan, stage("b")), Some("#first"));
}
