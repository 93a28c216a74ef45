//! A webhook that is down never stops a run or a rollback: the notify step and the rollback's
//! message are reported as failed in the audit log and the state, and the run goes on.

use super::{
    audit::AuditLog,
    fake_target::FakeTarget,
    test_support::{fixture, runner},
    *,
};

const PLAN: &str = r##"
name: notify
time_scale: 0.001
slos: {error_rate: 1%, p50: 50ms, p95: 100ms, p99: 200ms}
rollback:
  - name: errors
    urgency: immediate
    when:
      error_rate: {above: 5%, for: 5m}
stages:
  - id: staging
    name: Staging
    steps:
      - notify: {channel: "#notify-down", message: staged}
  - id: canary
    name: Canary 10%
    needs: [staging]
    environment: canary-10
    promotion: true
    steps:
      - canary: {weight: 10}
      - slo_check: {window: 10s, min_requests: 100}
"##;

#[test]
fn a_webhook_that_is_down_is_reported_and_blocks_neither_the_run_nor_its_rollback() {
    // Nothing listens on this port: every delivery fails.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    std::env::set_var(
        "AKIDB_NOTIFY_WEBHOOK_NOTIFY_DOWN",
        format!("http://127.0.0.1:{port}/hook"),
    );
    let f = fixture(PLAN);
    let mut target = FakeTarget::new();
    // Half the canary's requests fail at the front door: the slo_check fails, the run rolls back.
    target.door = Some((1000, 500));
    let status = runner(&f, &mut target)
        .run(&f.plan_path)
        .expect("the run ends");
    assert!(matches!(status, RunStatus::RolledBack { .. }), "{status:?}");
    let state = RunState::load(&f.files.state())
        .expect("readable")
        .expect("a state");
    let notify = &state.stages["staging"].gates[0];
    assert_eq!(
        (notify.kind.as_str(), notify.verdict.as_str()),
        ("notify", "failed")
    );
    assert!(
        notify.detail.contains("NOT delivered after 3 attempt(s)"),
        "{}",
        notify.detail
    );
    let audit = AuditLog::new(f.files.audit(), "t".into())
        .read()
        .expect("audit");
    let told: Vec<_> = audit
        .iter()
        .filter(|e| e.step == "notify")
        .map(|e| (e.stage.as_str(), e.result.as_str(), e.detail.as_str()))
        .collect();
    assert!(
        matches!(told.as_slice(), [("canary", "failed", detail)]
            if detail.starts_with("#notify-down: Rolled back in stage canary")),
        "{told:?}"
    );
}
