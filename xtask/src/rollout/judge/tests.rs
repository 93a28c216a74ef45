//! The judge against known results. Reference values are scipy 1.17.1's on the same samples:
//! `scipy.stats.mannwhitneyu(canary, baseline, alternative='greater', method='asymptotic',
//! use_continuity=True)`, `scipy.stats.quantile_test(x, p=q).confidence_interval(c)` and
//! `scipy.stats.binomtest(k, n, p, alternative='greater')`.

use super::{
    errors::rate_ratio_test,
    judge,
    quantile::{bracketing_ranks, quantile_interval},
    rank::mann_whitney,
    sample::shared_classes,
    Call, Histogram, Latencies, SideSample,
};
use crate::rollout::plan::compare::Compare;

const BASE: [f64; 20] = [
    10.0, 11.0, 12.0, 12.0, 13.0, 14.0, 15.0, 15.0, 16.0, 18.0, 19.0, 20.0, 21.0, 22.0, 25.0, 12.0,
    14.0, 16.0, 13.0, 17.0,
];

fn raw(values: &[f64]) -> Latencies {
    Latencies::Raw(values.to_vec())
}

fn close(got: f64, want: f64, tolerance: f64) {
    assert!(
        (got - want).abs() <= tolerance * want.abs().max(1e-300),
        "got {got}, want {want}"
    );
}

fn rank(canary: &[f64]) -> super::rank::RankTest {
    let classes = shared_classes(&raw(canary), &raw(&BASE)).expect("raw samples");
    mann_whitney(&classes).expect("both sides")
}

#[test]
fn mann_whitney_matches_scipy_on_shifted_wider_equal_and_faster_samples() {
    // Shifted by 4 ms: U 307.5, p 0.0018572306418628295.
    let shifted: Vec<f64> = BASE.iter().map(|v| v + 4.0).collect();
    let t = rank(&shifted);
    close(t.u, 307.5, 1e-12);
    close(t.p_value, 0.0018572306418628295, 1e-9);
    close(t.effect, 307.5 / 400.0, 1e-12);
    // Same median, two values moved far into the tail: U 220.5, p 0.29357649265054. The rank
    // test barely sees a wider tail; the quantile ratios are what catch it.
    let mut wide = BASE;
    wide[18] = 40.0;
    wide[19] = 55.0;
    let t = rank(&wide);
    close(t.u, 220.5, 1e-12);
    close(t.p_value, 0.29357649265054, 1e-9);
    // Identical: U 200 (A = 0.5), p 0.5054169310136817.
    let t = rank(&BASE);
    close(t.u, 200.0, 1e-12);
    close(t.p_value, 0.5054169310136817, 1e-9);
    assert_eq!(t.rank_biserial(), 0.0);
    // Faster by 5 ms: U 73.5, p 0.9997114438297944.
    let faster: Vec<f64> = BASE.iter().map(|v| v - 5.0).collect();
    let t = rank(&faster);
    close(t.u, 73.5, 1e-12);
    close(t.p_value, 0.9997114438297944, 1e-9);
}

#[test]
fn the_rank_test_on_buckets_treats_a_bucket_as_ties() {
    // The same data bucketed: equal to the raw test on the bucket indices (every value of a
    // bucket tied), which the classes give directly.
    let classes = vec![(1, 3), (2, 2), (5, 1)];
    let t = mann_whitney(&classes).expect("both sides");
    let expand = |side: usize| -> Vec<f64> {
        classes
            .iter()
            .enumerate()
            .flat_map(|(i, c)| {
                std::iter::repeat_n(i as f64, if side == 0 { c.0 } else { c.1 } as usize)
            })
            .collect()
    };
    let raw_classes = shared_classes(&raw(&expand(0)), &raw(&expand(1))).expect("raw");
    assert_eq!(mann_whitney(&raw_classes), Some(t));
    // All tied: no variance, no evidence of a shift.
    assert_eq!(mann_whitney(&[(5, 5)]).expect("both").p_value, 1.0);
    assert_eq!(mann_whitney(&[(5, 0)]), None, "an empty side");
}

#[test]
fn quantile_intervals_use_scipys_order_statistics() {
    // x = 1..=100: scipy's intervals are [40, 61] (median, 95%), [39, 62] (median, 97.5%),
    // [90, 100] (P95, 95%).
    let x: Vec<f64> = (1..=100).map(f64::from).collect();
    for (q, c, low, high) in [
        (0.5, 0.95, 40.0, 61.0),
        (0.5, 0.975, 39.0, 62.0),
        (0.95, 0.95, 90.0, 100.0),
    ] {
        let i = quantile_interval(&raw(&x), q, c).expect("non-empty");
        assert_eq!((i.low, i.high), (low, high), "q {q} at {c}");
    }
    // A P99 of 100 observations has no upper bound at 95%: scipy answers nan there.
    assert!(bracketing_ranks(100, 0.99, 0.95).1 > 100);
    let i = quantile_interval(&raw(&x), 0.99, 0.95).expect("non-empty");
    assert!(i.high.is_infinite());
    assert_eq!(quantile_interval(&raw(&[]), 0.5, 0.95), None);
}

#[test]
fn the_error_test_matches_scipys_binomial_test() {
    // binomtest(12, 20, 0.5, 'greater') = 0.2517223358154297: equal rates allowed.
    let t = rate_ratio_test(12, 1000, 8, 1000, 1.0).expect("requests");
    close(t.p_value, 0.2517223358154297, 1e-9);
    close(t.ratio, 1.5, 1e-12);
    // binomtest(5, 5, 2/3, 'greater') = 0.13168724279835387: the baseline had none, four times
    // its rate allowed.
    let t = rate_ratio_test(5, 1000, 0, 2000, 4.0).expect("requests");
    close(t.p_value, 0.13168724279835387, 1e-9);
    assert!(t.ratio.is_infinite());
    // binomtest(30, 40, 0.6, 'greater') = 0.035222480114168786.
    let t = rate_ratio_test(30, 1000, 10, 1000, 1.5).expect("requests");
    close(t.p_value, 0.035222480114168786, 1e-9);
    // No errors anywhere: nothing to fail on.
    assert_eq!(
        rate_ratio_test(0, 10, 0, 10, 1.0)
            .expect("requests")
            .p_value,
        1.0
    );
    assert_eq!(rate_ratio_test(0, 0, 0, 10, 1.0), None);
}

fn compare(min_samples: u64) -> Compare {
    Compare {
        p95_ratio: Some(1.2),
        p99_ratio: Some(1.3),
        error_rate_ratio: Some(2.0),
        confidence: 0.95,
        min_samples,
        max_shift_effect: None,
    }
}

/// `n` latencies spread evenly over [10, 20) ms, in a scrambled order.
fn spread(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 10.0 + ((i * 7919) % n) as f64 * 10.0 / n as f64)
        .collect()
}

fn side(latencies: Vec<f64>, errors: u64) -> SideSample {
    SideSample {
        requests: latencies.len() as u64,
        latencies: Latencies::Raw(latencies),
        errors,
    }
}

#[test]
fn a_canary_like_the_baseline_passes_and_a_faster_one_never_fails() {
    let same = judge(
        &side(spread(4000), 2),
        &side(spread(4000), 2),
        &compare(100),
    );
    assert_eq!(same.verdict, Call::Pass, "{same}");
    // The drill's case: a baseline ten times slower.
    let slow_baseline: Vec<f64> = spread(4000).iter().map(|v| v * 10.0).collect();
    let faster = judge(
        &side(spread(4000), 0),
        &side(slow_baseline, 40),
        &compare(100),
    );
    assert_eq!(faster.verdict, Call::Pass, "{faster}");
    let mut strict = compare(100);
    strict.max_shift_effect = Some(0.6);
    let faster = judge(
        &side(spread(500), 0),
        &side(spread(500).iter().map(|v| v * 3.0).collect(), 0),
        &strict,
    );
    assert_eq!(faster.verdict, Call::Pass, "{faster}");
}

#[test]
fn a_doubled_tail_at_the_same_median_fails_on_the_quantile_ratio() {
    let baseline = spread(4000);
    let canary: Vec<f64> = baseline
        .iter()
        .map(|&v| if v >= 19.0 { v * 2.0 } else { v })
        .collect();
    let j = judge(&side(canary, 0), &side(baseline, 0), &compare(100));
    assert_eq!(j.verdict, Call::Fail, "{j}");
    let failed: Vec<&str> = j
        .rows
        .iter()
        .filter(|r| r.call == Call::Fail)
        .map(|r| r.statistic.as_str())
        .collect();
    assert_eq!(failed, ["P95 ratio", "P99 ratio"], "{j}");
}

#[test]
fn a_shift_fails_the_rank_test_only_when_it_gates() {
    let baseline = spread(1000);
    let canary: Vec<f64> = baseline.iter().map(|v| v + 1.5).collect();
    let reported = judge(
        &side(canary.clone(), 0),
        &side(baseline.clone(), 0),
        &compare(100),
    );
    assert_eq!(reported.rows[0].call, Call::Pass, "{reported}");
    let mut gating = compare(100);
    gating.max_shift_effect = Some(0.56);
    let j = judge(&side(canary, 0), &side(baseline, 0), &gating);
    assert_eq!(j.rows[0].call, Call::Fail, "{j}");
    assert_eq!(j.verdict, Call::Fail, "{j}");
}

#[test]
fn more_errors_than_allowed_fail_and_a_few_do_not() {
    let j = judge(
        &side(spread(2000), 40),
        &side(spread(2000), 5),
        &compare(100),
    );
    assert_eq!(j.verdict, Call::Fail, "{j}");
    assert!(j.reason.contains("error rate ratio"), "{j}");
    let j = judge(
        &side(spread(2000), 3),
        &side(spread(2000), 2),
        &compare(100),
    );
    assert_eq!(j.verdict, Call::Pass, "{j}");
}

#[test]
fn tiny_empty_zero_and_nan_samples_are_inconclusive_never_a_pass() {
    let c = compare(100);
    let tiny = judge(&side(spread(20), 0), &side(spread(20), 0), &c);
    assert_eq!(tiny.verdict, Call::Inconclusive, "{tiny}");
    assert!(tiny.reason.contains("at least 100"), "{tiny}");
    let empty = judge(&side(spread(500), 0), &side(vec![], 0), &c);
    assert_eq!(empty.verdict, Call::Inconclusive);
    assert!(empty.reason.contains("baseline is empty"), "{empty}");
    let zeros = judge(&side(spread(500), 0), &side(vec![0.0; 500], 0), &c);
    assert_eq!(zeros.verdict, Call::Inconclusive);
    assert!(zeros.reason.contains("zero"), "{zeros}");
    let mut nan = spread(500);
    nan[7] = f64::NAN;
    let j = judge(&side(spread(500), 0), &side(nan.clone(), 0), &c);
    assert_eq!(j.verdict, Call::Inconclusive);
    assert!(
        j.reason.contains("baseline: a latency is not a finite"),
        "{j}"
    );
    let j = judge(&side(nan, 0), &side(spread(500), 0), &c);
    assert_eq!(j.verdict, Call::Inconclusive);
    assert!(j.reason.starts_with("canary"), "{j}");
    // Enough for P95 but not for an upper bound on P99: P99 is inconclusive, and says how many
    // samples would bound it.
    let j = judge(&side(spread(200), 0), &side(spread(200), 0), &c);
    assert_eq!(j.verdict, Call::Inconclusive, "{j}");
    let p99 = j
        .rows
        .iter()
        .find(|r| r.statistic == "P99 ratio")
        .expect("row");
    assert!(p99.value.contains("bounded from"), "{j}");
    let bad = SideSample {
        errors: 5,
        ..side(spread(500), 0)
    };
    let bad = SideSample { requests: 2, ..bad };
    assert_eq!(
        judge(&bad, &side(spread(500), 0), &c).verdict,
        Call::Inconclusive
    );
}

#[test]
fn histograms_are_judged_within_their_bucket_bounds() {
    let bounds = vec![
        1.0,
        2.5,
        5.0,
        10.0,
        15.0,
        20.0,
        25.0,
        35.0,
        50.0,
        f64::INFINITY,
    ];
    let histogram = |counts: Vec<u64>| SideSample {
        requests: counts.iter().sum(),
        latencies: Latencies::Histogram(Histogram {
            bounds: bounds.clone(),
            counts,
        }),
        errors: 0,
    };
    // Candle fast, the stand-in slow: a pass whatever the buckets.
    let canary = histogram(vec![0, 100, 3000, 800, 100, 0, 0, 0, 0, 0]);
    let baseline = histogram(vec![0, 0, 0, 0, 0, 0, 500, 2500, 900, 100]);
    assert_eq!(judge(&canary, &baseline, &compare(100)).verdict, Call::Pass);
    // The canary's tail moved two buckets up: a fail.
    let baseline = histogram(vec![0, 100, 3000, 800, 100, 0, 0, 0, 0, 0]);
    let canary = histogram(vec![0, 100, 3000, 400, 0, 0, 400, 100, 0, 0]);
    let j = judge(&canary, &baseline, &compare(100));
    assert_eq!(j.verdict, Call::Fail, "{j}");
    // Identical histograms: the quantile sits in one bucket on both sides, and the ratio's
    // interval is the bucket's width (10..15 ms: [0.67, 1.5]), which straddles 1.2: the
    // buckets are too coarse to pass it.
    let j = judge(&baseline, &baseline, &compare(100));
    let p95 = j
        .rows
        .iter()
        .find(|r| r.statistic == "P95 ratio")
        .expect("row");
    assert_eq!(p95.call, Call::Inconclusive, "{j}");
    // Different bounds on the two sides: the rank test cannot pair them.
    let other = SideSample {
        latencies: Latencies::Histogram(Histogram {
            bounds: vec![5.0, f64::INFINITY],
            counts: vec![4000, 1000],
        }),
        requests: 5000,
        errors: 0,
    };
    let j = judge(&other, &baseline, &compare(100));
    assert_eq!(j.rows[0].call, Call::Inconclusive, "{j}");
}
