//! The rollback triggers on the fake target: each trigger of the plan made to fire at the 10%
//! and at the 50% stage rolls the run back by its name, within a minute of wall time at the
//! drill's speed; `for:` is Prometheus's (an immediate trigger acts at once, a planned one
//! after `for`); the teardown's grace period is watched; a resumed hold holds only what is left.

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    time::{Duration, Instant},
};

use super::{
    audit::AuditLog,
    fake_target::{FakeTarget, Fault},
    state::{RunState, RunStatus},
    test_support::{fixture, runner, Fixture},
};

/// The plan's own triggers (rollout/plan.yaml), at the drill's time scale, over two stages:
/// 10% then 50%, each soaking long enough (36 s) for any trigger to fire first.
fn plan_text(triggers: &str, time_scale: &str, soak: &str) -> String {
    format!(
        r##"
name: triggers
time_scale: {time_scale}
slos: {{error_rate: 0.1%, p50: 20ms, p95: 35ms, p99: 50ms}}
canary: {{max_weight: 50}}
rollback:
{triggers}
stages:
  - id: ten
    name: Ten
    environment: canary-10
    promotion: true
    steps:
      - canary: {{weight: 10}}
      - soak: {{duration: {soak}}}
      - slo_check: {{window: {soak}, min_requests: 100}}
  - id: fifty
    name: Fifty
    needs: [ten]
    environment: canary-50
    promotion: true
    steps:
      - canary: {{weight: 50}}
      - soak: {{duration: 100h}}
      - slo_check: {{window: 1h, min_requests: 100}}
"##
    )
}

/// The rollback triggers of rollout/plan.yaml, as written there.
fn plan_triggers() -> String {
    let text = std::fs::read_to_string(crate::project::plan_path()).expect("rollout/plan.yaml");
    let start = text.find("\nrollback:\n").expect("a rollback section") + "\nrollback:\n".len();
    let end = text[start..].find("\nstages:").expect("stages after it") + start;
    text[start..end].to_string()
}

fn state(f: &Fixture) -> RunState {
    RunState::load(&f.files.state()).unwrap().expect("state")
}

/// Runs the plan with `fault` starting at `weight` and checks that `trigger` rolled it back,
/// by name, in the stage at that weight, within a minute of the fault.
fn fires(trigger: &str, weight: u8, fault: Fault) {
    // The stage before the fault's passes quickly; the fault's stage holds for 36 s.
    let soak = if weight == 10 { "100h" } else { "1h" };
    let f = fixture(&plan_text(&plan_triggers(), "0.0001", soak));
    let mut target = FakeTarget::new();
    target.fault = Some((weight, fault));
    let status = runner(&f, &mut target).run(&f.plan_path).unwrap();
    let stage = if weight == 10 { "ten" } else { "fifty" };
    let RunStatus::RolledBack { reason } = &status else {
        panic!("{trigger} at {weight}%: the run ended {status:?}");
    };
    assert!(
        reason.contains(&format!("rollback trigger {trigger} (")) && reason.contains(stage),
        "{trigger} at {weight}%: {reason}"
    );
    assert_eq!(target.weight, 0, "all traffic back on stable");
    let took = target.rolled_back_at.unwrap() - target.fault_since.unwrap();
    assert!(
        took < Duration::from_secs(60),
        "{trigger} at {weight}%: {took:?}"
    );
    let s = state(&f);
    let rollback = s.rollback.expect("a rollback record");
    assert_eq!(rollback.stage, stage);
    assert!(rollback.reason.contains(trigger), "{}", rollback.reason);
    let entries = AuditLog::new(f.files.audit(), "t".into()).read().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.step == "rollback" && e.stage == stage && e.detail.contains(trigger)),
        "the audit log names {trigger}"
    );
    let report = std::fs::read_to_string(f.files.dir.join("report.md")).unwrap();
    assert!(report.contains(trigger), "the report names {trigger}");
}

const LEAK: Fault = Fault::MemoryGrowth(5.0);

#[test]
fn error_rate_critical_fires_at_10_and_50_percent() {
    fires("error-rate-critical", 10, Fault::ErrorRate(3.0));
    fires("error-rate-critical", 50, Fault::ErrorRate(3.0));
}

#[test]
fn error_rate_sustained_fires_at_10_and_50_percent() {
    // 0.7%: above the sustained trigger's 0.5%, below the critical one's 1%.
    fires("error-rate-sustained", 10, Fault::ErrorRate(0.7));
    fires("error-rate-sustained", 50, Fault::ErrorRate(0.7));
}

#[test]
fn p95_latency_sustained_fires_at_10_and_50_percent() {
    let slow = Fault::P95(Duration::from_millis(150));
    fires("p95-latency-sustained", 10, slow);
    fires("p95-latency-sustained", 50, slow);
}

#[test]
fn memory_leak_fires_at_10_percent() {
    fires("memory-leak", 10, LEAK);
}

#[test]
fn memory_leak_fires_at_50_percent() {
    fires("memory-leak", 50, LEAK);
}

/// One error-rate trigger of `urgency` with a 10 s `for`, at real time; the time from the fault
/// to the rollback.
fn rollback_after(urgency: &str) -> Duration {
    let trigger = format!(
        "  - name: errors\n    urgency: {urgency}\n    when:\n      error_rate: {{above: 1%, for: 10s}}\n"
    );
    let f = fixture(&plan_text(&trigger, "1.0", "40s"));
    let mut target = FakeTarget::new();
    target.fault = Some((10, Fault::ErrorRate(5.0)));
    let status = runner(&f, &mut target).run(&f.plan_path).unwrap();
    assert!(
        matches!(&status, RunStatus::RolledBack { reason } if reason.contains("errors")),
        "{status:?}"
    );
    target.rolled_back_at.unwrap() - target.fault_since.unwrap()
}

#[test]
fn immediate_acts_at_the_first_evaluation_and_planned_waits_for_its_for() {
    // The first evaluation comes two seconds after the shift (two scrapes of the new split).
    let immediate = rollback_after("immediate");
    assert!(immediate < Duration::from_secs(5), "{immediate:?}");
    let planned = rollback_after("planned");
    assert!(planned >= Duration::from_secs(12), "{planned:?}");
    assert!(planned < Duration::from_secs(20), "{planned:?}");
}

#[test]
fn the_teardown_grace_period_is_watched_and_the_legacy_comes_back_for_the_rollback() {
    let text = r##"
name: teardown
time_scale: 1.0
slos: {error_rate: 0.1%, p50: 20ms, p95: 35ms, p99: 50ms}
canary: {max_weight: 100}
rollback:
  - name: errors
    urgency: immediate
    when:
      error_rate: {above: 1%, for: 1m}
stages:
  - id: ga
    name: All
    environment: production
    promotion: true
    steps:
      - canary: {weight: 100}
      - slo_check: {window: 10s, min_requests: 100}
      - mlx_teardown: {deployment: akidb-mlx, grace_period: 30s}
"##;
    let f = fixture(text);
    let mut target = FakeTarget::new();
    target.fault = Some((100, Fault::ErrorRate(5.0)));
    target.fault_at_teardown = true;
    let status = runner(&f, &mut target).run(&f.plan_path).unwrap();
    assert!(
        matches!(&status, RunStatus::RolledBack { reason } if reason.contains("errors")),
        "{status:?}"
    );
    assert!(!target.retired, "the legacy service is not retired");
    let journal = target.journal.borrow().join(", ");
    assert!(
        journal.ends_with("scale akidb-mlx 0, scale akidb-mlx 1, set_canary_weight 0"),
        "{journal}"
    );
}

#[test]
fn a_resumed_hold_holds_only_what_is_left() {
    let text = r##"
name: resume
time_scale: 1.0
slos: {error_rate: 0.1%, p50: 20ms, p95: 35ms, p99: 50ms}
canary: {max_weight: 10}
rollback:
  - name: errors
    urgency: immediate
    when:
      error_rate: {above: 1%, for: 1m}
stages:
  - id: ten
    name: Ten
    environment: canary-10
    promotion: true
    steps:
      - canary: {weight: 10}
      - soak: {duration: 8s}
      - slo_check: {window: 8s, min_requests: 100}
"##;
    let f = fixture(text);
    let mut target = FakeTarget::new();
    target
        .crash_after
        .set(Some(Instant::now() + Duration::from_secs(5)));
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let crashed = catch_unwind(AssertUnwindSafe(|| {
        runner(&f, &mut target).run(&f.plan_path)
    }));
    std::panic::set_hook(quiet);
    assert!(crashed.is_err(), "the run was killed in its hold");
    let held = state(&f).held.get("ten#1").copied().unwrap_or_default();
    assert!(
        (3.5..8.0).contains(&held),
        "held {held:.1}s before the kill"
    );
    let resumed = Instant::now();
    let mut target = FakeTarget::new();
    let status = runner(&f, &mut target).resume(&f.plan_path).unwrap();
    let took = resumed.elapsed();
    assert_eq!(status, RunStatus::Completed);
    assert!(
        took < Duration::from_secs_f64(8.0 - held + 1.5),
        "resumed after {held:.1}s of 8s, the hold took {took:?}"
    );
    let total = state(&f).held["ten#1"];
    assert!(total >= 8.0, "held {total:.1}s in all");
}

#[test]
fn a_load_test_before_any_canary_traffic_loads_and_judges_the_candidate() {
    let text = r##"
name: staging
time_scale: 0.0001
slos: {error_rate: 0.1%, p50: 20ms, p95: 35ms, p99: 50ms}
rollback:
  - name: errors
    urgency: immediate
    when:
      error_rate: {above: 1%, for: 5m}
stages:
  - id: staging
    name: Staging
    steps:
      - load_test: {rate: 50, duration: 10h}
"##;
    let f = fixture(text);
    let mut target = FakeTarget::new();
    assert_eq!(
        runner(&f, &mut target).run(&f.plan_path).unwrap(),
        RunStatus::Completed
    );
    let journal = target.journal.borrow().join(", ");
    assert!(
        journal
            .contains("start_traffic 50, pin_traffic_to_canary true, pin_traffic_to_canary false"),
        "{journal}"
    );
    let gate = &state(&f).stages["staging"].gates[0];
    assert_eq!(gate.verdict, "pass");
    assert!(
        gate.detail.starts_with("candidate (Candle"),
        "{}",
        gate.detail
    );
}
