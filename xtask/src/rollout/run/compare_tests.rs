//! Gates that compare the canary with the baseline, on the fake target: a canary faster than
//! a slow baseline passes, a canary whose tail doubled rolls back though every absolute SLO
//! holds, and a comparison without samples pauses the run; the report shows each comparison.

use super::{
    fake_target::FakeTarget,
    report,
    state::{RunState, RunStatus},
    test_support::{fixture, runner},
};
use crate::rollout::judge::{Latencies, SideSample};

const PLAN: &str = r##"
name: compare
time_scale: 0.001
slos: {error_rate: 1%, p50: 50ms, p95: 100ms, p99: 200ms}
canary: {max_weight: 100}
rollback:
  - name: errors
    urgency: immediate
    when:
      error_rate: {above: 50%, for: 5m}
stages:
  - id: canary
    name: Canary 10%
    environment: canary-10
    promotion: true
    steps:
      - canary: {weight: 10}
      - slo_check:
          window: 10s
          min_requests: 100
          compare: {p95_ratio: 1.2, p99_ratio: 1.3, error_rate_ratio: 2, confidence: 0.95}
  - id: ga
    name: All traffic
    needs: [canary]
    environment: production
    promotion: true
    steps:
      - canary: {weight: 100}
      - slo_check: {window: 10s, min_requests: 100}
"##;

/// `n` latencies spread evenly over `[lo, lo + 10)` ms.
fn spread(n: usize, lo: f64, scale: f64) -> SideSample {
    let latencies: Vec<f64> = (0..n)
        .map(|i| (lo + ((i * 7919) % n) as f64 * 10.0 / n as f64) * scale)
        .collect();
    SideSample {
        requests: n as u64,
        latencies: Latencies::Raw(latencies),
        errors: 0,
    }
}

fn run_with(samples: Option<(SideSample, SideSample)>) -> (RunStatus, RunState, String) {
    let f = fixture(PLAN);
    let mut target = FakeTarget::new();
    target.samples = samples;
    let status = runner(&f, &mut target)
        .run(&f.plan_path)
        .expect("the run ends");
    let state = RunState::load(&f.files.state())
        .expect("readable")
        .expect("a state file");
    report::write(&f.files.dir, &f.plan, &state).expect("report written");
    let md = std::fs::read_to_string(f.files.dir.join("report.md")).expect("report");
    (status, state, md)
}

#[test]
fn a_canary_faster_than_a_slow_baseline_passes_and_the_report_shows_the_comparison() {
    let (status, state, md) = run_with(Some((spread(2000, 5.0, 1.0), spread(2000, 5.0, 8.0))));
    assert_eq!(status, RunStatus::Completed, "{md}");
    let comparisons = &state.stages["canary"].comparisons;
    assert_eq!(comparisons.len(), 1);
    assert_eq!(comparisons[0].verdict, "pass", "{md}");
    assert!(md.contains("## Canary vs baseline"), "{md}");
    assert!(
        md.contains("| canary | 1 | slo_check | P95 ratio |"),
        "{md}"
    );
}

#[test]
fn a_doubled_tail_within_the_absolute_slos_rolls_back() {
    let baseline = spread(2000, 5.0, 1.0);
    let Latencies::Raw(values) = &baseline.latencies else {
        unreachable!("raw")
    };
    // Every absolute SLO holds (the fake's P95 is 9 ms), but the canary's slowest tenth
    // takes twice as long as the baseline's.
    let canary = SideSample {
        latencies: Latencies::Raw(
            values
                .iter()
                .map(|&v| if v >= 14.0 { v * 2.0 } else { v })
                .collect(),
        ),
        ..baseline.clone()
    };
    let (status, state, md) = run_with(Some((canary, baseline)));
    let RunStatus::RolledBack { reason } = status else {
        panic!("expected a rollback: {status:?}\n{md}")
    };
    assert!(reason.contains("P95 ratio"), "{reason}");
    assert_eq!(state.weight, 0);
    assert!(md.contains("**fail**"), "{md}");
}

#[test]
fn a_comparison_without_samples_pauses_never_passes() {
    let (status, state, _) = run_with(None);
    let RunStatus::Paused { reason } = status else {
        panic!("expected a pause: {status:?}")
    };
    assert!(reason.contains("could not be read"), "{reason}");
    assert_eq!(
        state.stages["canary"].comparisons[0].verdict,
        "inconclusive"
    );
}
