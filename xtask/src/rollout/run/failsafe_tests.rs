//! The runner's fail-safes, on the fake target: a failing action is retried then pauses the
//! run, unreadable or sparse metrics never pass a gate, a run stopped dead at any call resumes
//! to the end an uninterrupted run reaches without repeating a finished step, a second run is
//! refused, and a damaged state file or audit log stops the run instead of restarting it.

use std::{
    collections::BTreeMap,
    panic::{catch_unwind, AssertUnwindSafe},
    path::{Path, PathBuf},
    time::Duration,
};

use super::{
    audit::{AuditEntry, AuditLog},
    fake_target::FakeTarget,
    lock::RunLock,
    state::{RunState, RunStatus},
    test_support::{fixture, runner, runner_waiting, Fixture},
    RunOptions, Runner,
};

/// Three stages: staging (load test, parity, notify), a 10% canary behind an approval, then
/// 100% and the legacy service's retirement. Holds are milliseconds at this time scale.
const PLAN: &str = r##"
name: failsafe
time_scale: 0.001
slos: {error_rate: 1%, p50: 50ms, p95: 100ms, p99: 200ms}
canary: {max_weight: 100}
rollback:
  - name: errors
    urgency: immediate
    when:
      error_rate: {above: 5%, for: 5m}
stages:
  - id: staging
    name: Staging
    steps:
      - load_test: {rate: 50, duration: 10s}
      - parity: {corpus: golden/x.json, against: golden, min_cosine: 0.9999}
      - notify: {channel: "#rollout", message: staged}
  - id: canary
    name: Canary 10%
    needs: [staging]
    environment: canary-10
    promotion: true
    steps:
      - scale: {deployment: akidb-candle, replicas: 2}
      - canary: {weight: 10}
      - slo_check: {window: 10s, min_requests: 100}
  - id: ga
    name: All traffic
    needs: [canary]
    environment: production
    promotion: true
    steps:
      - canary: {weight: 100}
      - slo_check: {window: 10s, min_requests: 100}
      - mlx_teardown: {deployment: akidb-mlx, grace_period: 1s}
"##;

fn run(f: &Fixture, target: &mut FakeTarget) -> anyhow::Result<RunStatus> {
    runner(f, target).run(&f.plan_path)
}

fn resume(f: &Fixture, target: &mut FakeTarget) -> anyhow::Result<RunStatus> {
    runner(f, target).resume(&f.plan_path)
}

fn state(f: &Fixture) -> RunState {
    RunState::load(&f.files.state())
        .unwrap()
        .expect("a state file")
}

fn audit(f: &Fixture) -> Vec<AuditEntry> {
    AuditLog::new(f.files.audit(), "t".into()).read().unwrap()
}

/// Per step (and per stage), the results that mark it finished, in order.
fn finished_steps(entries: &[AuditEntry]) -> Vec<String> {
    entries
        .iter()
        .filter(|e| !e.stage.is_empty())
        .filter(|e| matches!(e.result.as_str(), "ok" | "skipped" | "approved"))
        .map(|e| format!("{}/{}: {}", e.stage, e.step, e.result))
        .collect()
}

/// What a finished run amounts to, without timings and counters that differ between runs.
fn end_state(s: &RunState) -> String {
    let stages: BTreeMap<_, _> = s
        .stages
        .iter()
        .map(|(id, r)| {
            let mut done = r.done.clone();
            done.sort_unstable();
            let gates: Vec<_> = r
                .gates
                .iter()
                .map(|g| format!("{}#{} {}", g.kind, g.step, g.verdict))
                .collect();
            (id.clone(), (done, r.finished, r.weight, gates))
        })
        .collect();
    let approvals: Vec<_> = s.approvals.keys().collect();
    format!(
        "{:?} weight {} rate {:?} stages {stages:?} approvals {approvals:?} rollback {:?}",
        s.status, s.weight, s.traffic_rate, s.rollback
    )
}

fn effects(t: &FakeTarget) -> String {
    format!(
        "weight {} replicas {:?} retired {}",
        t.weight, t.replicas, t.retired
    )
}

#[test]
fn an_uninterrupted_run_completes_on_the_fake_target() {
    let f = fixture(PLAN);
    let mut target = FakeTarget::new();
    assert_eq!(run(&f, &mut target).unwrap(), RunStatus::Completed);
    assert_eq!(
        effects(&target),
        "weight 100 replicas [(\"akidb-candle\", 2), (\"akidb-mlx\", 0)] retired true"
    );
    assert_eq!(target.applied("scale akidb-candle"), 1);
    assert_eq!(target.applied("teardown"), 1);
    let steps = finished_steps(&audit(&f));
    assert!(
        steps.contains(&"ga/mlx_teardown#2: ok".to_string()),
        "{steps:?}"
    );
}

#[test]
fn a_run_stopped_dead_at_any_call_resumes_to_the_same_end_without_repeating_a_step() {
    let baseline = fixture(PLAN);
    let mut target = FakeTarget::new();
    run(&baseline, &mut target).unwrap();
    let calls = target.calls();
    let expected_state = end_state(&state(&baseline));
    let expected_steps = finished_steps(&audit(&baseline));
    let expected_effects = effects(&target);
    assert!(calls > 10, "the plan makes {calls} target calls");

    // A panic unwinds out of the runner as a kill ends it: no code of the runner runs after
    // the crash point (the lock's file handle closes, as the OS closes a dead process's).
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failures = Vec::new();
    for k in 1..=calls {
        let f = fixture(PLAN);
        let mut target = FakeTarget::new();
        target.crash_at(k);
        let crashed = catch_unwind(AssertUnwindSafe(|| run(&f, &mut target)));
        if crashed.is_ok() {
            failures.push(format!("call {k}: the run did not stop"));
            continue;
        }
        if !f.files.state().exists() {
            // Killed before the state was first written: a new run starts cleanly.
            run(&f, &mut target).unwrap();
        } else if state(&f).status != RunStatus::Completed {
            match resume(&f, &mut target) {
                Ok(RunStatus::Completed) => {}
                other => {
                    failures.push(format!("call {k}: resume ended {other:?}"));
                    continue;
                }
            }
        }
        let got_state = end_state(&state(&f));
        let got_steps = finished_steps(&audit(&f));
        if got_state != expected_state {
            failures.push(format!(
                "call {k}: state {got_state}\nexpected {expected_state}"
            ));
        }
        if got_steps != expected_steps {
            failures.push(format!(
                "call {k}: steps {got_steps:?}\nexpected {expected_steps:?}"
            ));
        }
        if effects(&target) != expected_effects
            || target.applied("scale akidb-candle") != 1
            || target.applied("teardown") != 1
        {
            failures.push(format!(
                "call {k}: effects {} (journal {:?})",
                effects(&target),
                target.journal.borrow()
            ));
        }
    }
    std::panic::set_hook(quiet);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn an_action_that_fails_a_few_times_is_retried_and_the_run_goes_on() {
    let f = fixture(PLAN);
    let mut target = FakeTarget::new();
    target.fail("scale", 2);
    assert_eq!(run(&f, &mut target).unwrap(), RunStatus::Completed);
    assert_eq!(target.applied("scale akidb-candle"), 1);
    assert!(audit(&f).iter().all(|e| e.result != "error"));
}

#[test]
fn an_action_that_stays_down_pauses_the_run_with_its_error_and_resume_finishes() {
    let f = fixture(PLAN);
    let mut target = FakeTarget::new();
    target.fail("set_canary_weight 10", 100);
    let status = run(&f, &mut target).unwrap();
    let RunStatus::Paused { reason } = &status else {
        panic!("{status:?}");
    };
    assert!(
        reason.contains("stage canary failed")
            && reason.contains("setting canary weight 10% failed 3 time(s)")
            && reason.contains("503"),
        "{reason}"
    );
    // Nothing half-applied: the split and the state agree, the failed step is not done.
    let s = state(&f);
    assert_eq!(s.status, status);
    assert_eq!((s.weight, target.weight), (0, 0));
    assert!(s.step_done("canary", 0) && !s.step_done("canary", 1));
    assert!(!s.stage_done("canary"));
    let log = audit(&f);
    assert!(
        log.iter()
            .any(|e| e.stage == "canary" && e.step == "canary#1" && e.result == "error"),
        "{log:?}"
    );

    target.recover();
    assert_eq!(resume(&f, &mut target).unwrap(), RunStatus::Completed);
    assert_eq!(
        target.applied("scale akidb-candle"),
        1,
        "the finished scale step is not repeated"
    );
    assert_eq!(state(&f).weight, 100);
}

#[test]
fn a_target_that_cannot_start_pauses_the_run_instead_of_leaving_it_running() {
    let f = fixture(PLAN);
    let mut target = FakeTarget::new();
    target.fail("start", 100);
    let status = run(&f, &mut target).unwrap();
    assert!(
        matches!(&status, RunStatus::Paused { reason }
            if reason.contains("could not be brought up") && reason.contains("starting the target failed 3 time(s)")),
        "{status:?}"
    );
    assert_eq!(state(&f).status, status);
    target.recover();
    assert_eq!(resume(&f, &mut target).unwrap(), RunStatus::Completed);
}

#[test]
fn unreachable_metrics_make_the_slo_check_inconclusive_and_the_stage_does_not_promote() {
    let f = fixture(PLAN);
    let mut target = FakeTarget::new();
    // Every canary measurement fails; the staging load test measures the stable side (a
    // target that cannot pin the load to the canary).
    target.cannot_pin = true;
    target.fail("measure canary", 1000);
    let status = run(&f, &mut target).unwrap();
    let RunStatus::Paused { reason } = &status else {
        panic!("{status:?}");
    };
    assert!(
        reason.contains("slo_check#2 of stage canary was inconclusive")
            && reason.contains("metrics could not be read")
            && reason.contains("503"),
        "{reason}"
    );
    let s = state(&f);
    let record = &s.stages["canary"];
    assert!(!record.finished && !s.step_done("canary", 2));
    assert_eq!(record.gates.last().unwrap().verdict, "inconclusive");
    assert!(!s.stages.contains_key("ga"), "the next stage never started");
    assert_eq!(
        s.weight, 10,
        "the split stays where the last finished step put it"
    );

    target.recover();
    assert_eq!(resume(&f, &mut target).unwrap(), RunStatus::Completed);
    let gates: Vec<_> = state(&f).stages["canary"]
        .gates
        .iter()
        .map(|g| g.verdict.clone())
        .collect();
    assert_eq!(gates, ["inconclusive", "pass"]);
}

#[test]
fn too_little_traffic_makes_the_gates_inconclusive_not_a_pass() {
    let f = fixture(PLAN);
    let mut target = FakeTarget::new();
    target.requests = 0;
    let status = run(&f, &mut target).unwrap();
    assert!(
        matches!(&status, RunStatus::Paused { reason }
            if reason.contains("load_test#0 of stage staging was inconclusive")
                && reason.contains("only 0 requests")),
        "{status:?}"
    );
    assert!(!state(&f).stage_done("staging"));
}

/// The plan without its load test, whose own minimum is about traffic rates, not samples.
fn without_load_test() -> String {
    PLAN.replace(
        "load_test: {rate: 50, duration: 10s}",
        "notify: {channel: x, message: y}",
    )
}

#[test]
fn a_sample_too_small_for_a_p99_is_inconclusive_when_the_runner_may_not_wait() {
    let f = fixture(&without_load_test());
    let mut target = FakeTarget::new();
    target.requests = 40;
    let status = run(&f, &mut target).unwrap();
    assert!(
        matches!(&status, RunStatus::Paused { reason }
            if reason.contains("slo_check#2 of stage canary was inconclusive")
                && reason.contains("P99 needs 100")),
        "{status:?}"
    );
}

#[test]
fn a_gate_on_sparse_traffic_waits_for_enough_requests_then_judges() {
    // 30 req/s: the 2 s window after the shift holds 60 requests, the P99 needs 100.
    let f = fixture(&without_load_test());
    let mut target = FakeTarget::new();
    target.rate = Some(30.0);
    let status = runner_waiting(&f, &mut target, Duration::from_secs(30))
        .run(&f.plan_path)
        .unwrap();
    assert_eq!(status, RunStatus::Completed, "{status:?}");
    // Each wait re-measures once: no tight loop of queries against the metrics system.
    assert!(
        target.calls() < 300,
        "{} calls to the target",
        target.calls()
    );
    let audit = audit(&f);
    let waits: Vec<&AuditEntry> = audit.iter().filter(|e| e.step == "sample_wait").collect();
    assert!(!waits.is_empty(), "the gate judged without waiting");
    assert!(
        waits.iter().all(|e| e.detail.contains("100 needed")),
        "{waits:?}"
    );
    let gates = &state(&f).stages["canary"].gates;
    assert!(
        gates
            .iter()
            .any(|g| g.kind == "slo_check" && g.verdict == "pass"),
        "{gates:?}"
    );
}

#[test]
fn a_canary_failing_at_the_front_door_is_judged_without_waiting_for_its_own_requests() {
    // The broken canary answers nothing, so its own metrics never reach a sample; the front
    // door sees every request to it fail, and errors are judged on any sample.
    let f = fixture(&without_load_test());
    let mut target = FakeTarget::new();
    target.requests = 0;
    target.door = Some((18, 18));
    let started = std::time::Instant::now();
    let status = runner_waiting(&f, &mut target, Duration::from_secs(60))
        .run(&f.plan_path)
        .unwrap();
    assert!(
        matches!(&status, RunStatus::RolledBack { reason } if reason.contains("front door")),
        "{status:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "it waited {:?} for traffic",
        started.elapsed()
    );
}

#[test]
fn unreachable_metrics_during_a_hold_leave_the_canary_unwatched_and_pause() {
    // A 3 s soak at 10%: the triggers are judged from 2 s after the shift on.
    let text = PLAN.replace(
        "      - slo_check: {window: 10s, min_requests: 100}\n  - id: ga",
        "      - soak: {duration: 3000s}\n      - slo_check: {window: 10s, min_requests: 100}\n  - id: ga",
    );
    let f = fixture(&text);
    let mut target = FakeTarget::new();
    target.cannot_pin = true;
    target.fail("measure canary", 1000);
    let status = run(&f, &mut target).unwrap();
    assert!(
        matches!(&status, RunStatus::Paused { reason }
            if reason.contains("soak#2 of stage canary was inconclusive")
                && reason.contains("rollback triggers could not be evaluated")),
        "{status:?}"
    );
}

#[test]
fn a_second_run_is_refused_while_one_holds_the_lock() {
    let f = fixture(PLAN);
    let _first = RunLock::acquire(&f.files.dir).unwrap();
    let mut target = FakeTarget::new();
    let error = run(&f, &mut target).unwrap_err().to_string();
    assert!(error.contains("another rollout run holds"), "{error}");
    let error = resume(&f, &mut target).unwrap_err().to_string();
    assert!(error.contains("another rollout run holds"), "{error}");
    assert_eq!(target.calls(), 0, "the refused run touched nothing");
    assert!(!f.files.state().exists());
}

/// Stops a run after the staging stage (paused for the canary's approval).
fn paused_run(f: &Fixture) {
    let mut target = FakeTarget::new();
    let options = RunOptions {
        non_interactive: true,
        ..RunOptions::default()
    };
    let status = super::test_support::runner_with(f, &mut target, options)
        .run(&f.plan_path)
        .unwrap();
    assert!(matches!(status, RunStatus::Paused { .. }), "{status:?}");
}

fn unchanged(path: &Path, before: &[u8]) {
    assert_eq!(
        std::fs::read(path).unwrap(),
        before,
        "{} was rewritten",
        path.display()
    );
}

#[test]
fn a_corrupt_state_file_stops_run_and_resume_and_is_left_as_it_is() {
    let f = fixture(PLAN);
    paused_run(&f);
    let text = std::fs::read_to_string(f.files.state()).unwrap();
    let corrupt = text.replace("\"weight\": 0", "\"weight\": \"zero\"");
    assert_ne!(corrupt, text);
    std::fs::write(f.files.state(), &corrupt).unwrap();
    let log_before = std::fs::read(f.files.audit()).unwrap();
    for (what, result) in [
        ("run", run(&f, &mut FakeTarget::new())),
        ("resume", resume(&f, &mut FakeTarget::new())),
    ] {
        let error = format!("{:#}", result.unwrap_err());
        assert!(
            error.contains("state.json")
                && error.contains("corrupt")
                && error.contains("expected u8 at line")
                && error.contains("refusing to start over"),
            "{what}: {error}"
        );
    }
    unchanged(&f.files.state(), corrupt.as_bytes());
    unchanged(&f.files.audit(), &log_before);
}

#[test]
fn a_corrupt_audit_log_stops_run_and_resume_naming_the_line() {
    let f = fixture(PLAN);
    paused_run(&f);
    let mut log = std::fs::read_to_string(f.files.audit()).unwrap();
    let lines = log.lines().count();
    log.push_str("{\"time\": \"2026-01-01T00:00:00Z\", \"stage\": \n");
    std::fs::write(f.files.audit(), &log).unwrap();
    let state_before = std::fs::read(f.files.state()).unwrap();
    for result in [
        run(&f, &mut FakeTarget::new()),
        resume(&f, &mut FakeTarget::new()),
    ] {
        let error = format!("{:#}", result.unwrap_err());
        assert!(
            error.contains(&format!("audit.jsonl:{}", lines + 1))
                && error.contains("audit log is corrupt"),
            "{error}"
        );
    }
    unchanged(&f.files.state(), &state_before);
    unchanged(&f.files.audit(), log.as_bytes());
}

#[test]
fn a_lost_state_file_of_an_unfinished_run_is_not_a_fresh_start() {
    let f = fixture(PLAN);
    paused_run(&f);
    std::fs::remove_file(f.files.state()).unwrap();
    let mut target = FakeTarget::new();
    let error = format!("{:#}", run(&f, &mut target).unwrap_err());
    assert!(
        error.contains("state.json is missing")
            && error.contains("a run is unfinished")
            && error.contains("refusing to start over"),
        "{error}"
    );
    assert_eq!(target.calls(), 0);
}

/// `--stop-before-publish` pauses a stage at its first release step, leaving every step before
/// it done; the resume (the rollout workflow's next job, with fresh credentials) runs only the
/// rest and finishes the stage.
#[test]
fn a_run_stopped_before_publishing_resumes_at_its_release_steps() {
    let text = PLAN.replace(
        "      - mlx_teardown: {deployment: akidb-mlx, grace_period: 1s}\n",
        "      - ga_tag: {tag: v2.0.0}\n      - mlx_teardown: {deployment: akidb-mlx, grace_period: 1s}\n",
    );
    let f = fixture(&text);
    let options = |stop_before_publish| RunOptions {
        approve: vec!["all".into()],
        non_interactive: true,
        stop_before_publish,
        ..RunOptions::default()
    };
    let mut target = FakeTarget::new();
    let status = Runner::new(
        &f.plan,
        &mut target,
        f.files.clone(),
        options(true),
        PathBuf::from("/nonexistent"),
    )
    .run(&f.plan_path)
    .unwrap();
    match &status {
        RunStatus::Paused { reason } => assert!(reason.contains("before ga_tag#2"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let state = RunState::load(&f.files.state()).unwrap().unwrap();
    assert_eq!(state.stages["ga"].done, [0, 1]);
    assert!(!state.stages["ga"].finished);
    let mut target = FakeTarget::new();
    let status = Runner::new(
        &f.plan,
        &mut target,
        f.files.clone(),
        options(false),
        PathBuf::from("/nonexistent"),
    )
    .resume(&f.plan_path)
    .unwrap();
    assert_eq!(status, RunStatus::Completed);
    let state = RunState::load(&f.files.state()).unwrap().unwrap();
    assert_eq!(state.stages["ga"].done, [0, 1, 2, 3]);
}

/// `rollout approve STAGE --comment TEXT` records who approved and why; a resume then goes
/// through that stage's approval and stops at the next one.
#[test]
fn an_approval_by_command_records_who_and_why_and_lets_the_stage_run() {
    let f = fixture(PLAN);
    paused_run(&f);
    super::approve(&f.files, &f.plan, "canary", Some("dashboards green")).unwrap();
    let state = RunState::load(&f.files.state()).unwrap().unwrap();
    let approval = &state.approvals["canary"];
    assert_eq!(approval.via, "approve command");
    assert_eq!(approval.comment.as_deref(), Some("dashboards green"));
    assert!(!approval.actor.is_empty());
    let entries = AuditLog::new(f.files.audit(), "test".into())
        .read()
        .unwrap();
    let last = entries.last().unwrap();
    assert_eq!(
        (last.stage.as_str(), last.step.as_str()),
        ("canary", "approve")
    );
    assert!(last.detail.contains("dashboards green"), "{}", last.detail);
    assert_eq!(last.actor, approval.actor);
    let error = super::approve(&f.files, &f.plan, "nope", None).unwrap_err();
    assert!(error.to_string().contains("no stage nope"), "{error}");
    let mut target = FakeTarget::new();
    let options = RunOptions {
        non_interactive: true,
        ..RunOptions::default()
    };
    let status = super::test_support::runner_with(&f, &mut target, options)
        .resume(&f.plan_path)
        .unwrap();
    match status {
        RunStatus::Paused { reason } => assert!(reason.contains("stage ga waits"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let state = RunState::load(&f.files.state()).unwrap().unwrap();
    assert!(state.stages["canary"].finished);
}

/// Inside GitHub Actions only the run's reviews on GitHub approve a stage: `--approve all`
/// approves nothing there. Once a reviewer approves, the stage runs, and the state and the
/// audit log name each reviewer with their comment.
#[test]
fn inside_github_actions_only_githubs_reviews_approve_a_stage() {
    use crate::github::{
        approvals::WorkflowRun,
        fake::{FakeGitHub, FakeReview},
    };
    let fake = FakeGitHub::start();
    fake.put_environment("canary-10", &["release-managers"], true, &["main"]);
    fake.put_environment("production", &["release-managers"], true, &["main"]);
    let f = fixture(PLAN);
    let options = || RunOptions {
        approve: vec!["all".into()],
        non_interactive: true,
        github: Some(WorkflowRun {
            api_url: fake.url(),
            repository: "akidb/akidb".parse().unwrap(),
            run_id: 77,
            token: Some(FakeGitHub::TOKEN.into()),
        }),
        ..RunOptions::default()
    };
    let mut target = FakeTarget::new();
    let status = super::test_support::runner_with(&f, &mut target, options())
        .run(&f.plan_path)
        .unwrap();
    match &status {
        RunStatus::Paused { reason } => {
            assert!(reason.contains("no approval of run 77"), "{reason}")
        }
        other => panic!("approved without a review: {other:?}"),
    }
    assert_eq!(target.weight, 0, "nothing moved before the approval");
    fake.review(
        77,
        FakeReview::new("canary-10", "approved", "reviewer-a", "dashboards green"),
    );
    fake.review(
        77,
        FakeReview::new("production", "approved", "reviewer-b", ""),
    );
    let mut target = FakeTarget::new();
    assert_eq!(
        super::test_support::runner_with(&f, &mut target, options())
            .resume(&f.plan_path)
            .unwrap(),
        RunStatus::Completed
    );
    let state = state(&f);
    let approval = &state.approvals["canary"];
    assert_eq!(approval.actor, "reviewer-a");
    assert_eq!(approval.via, "GitHub review of run 77");
    assert_eq!(approval.reviews.len(), 1);
    assert_eq!(
        approval.reviews[0].comment.as_deref(),
        Some("dashboards green")
    );
    let approved: Vec<String> = audit(&f)
        .into_iter()
        .filter(|e| e.step == "approve" && e.result == "approved")
        .map(|e| e.detail)
        .collect();
    assert!(
        approved[0].contains("GitHub review of run 77: reviewer-a: dashboards green"),
        "{approved:?}"
    );
}
