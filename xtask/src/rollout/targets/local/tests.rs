//! The local target end to end, with the real processes: the legacy stand-in, akidb-embed,
//! nginx and Prometheus. Needs `cargo xtask models`, `.venv` (`cargo xtask ci` makes it) and
//! `target/debug/akidb-embed` (`cargo build -p akidb-embed`); installs nginx and Prometheus
//! from Debian when they are missing.

use std::{path::PathBuf, thread, time::Duration};

use super::{LocalOptions, LocalTarget};
use crate::rollout::{
    plan::step::ParityReference,
    targets::{Outcome, Side, Target, TrafficStats},
};
use crate::stack::supervisor;

/// The request rate: modest, the machine is small and shared.
const RATE: u32 = 50;
/// How long each weight is held before its share is read.
const HOLD: Duration = Duration::from_secs(3);

fn must<T>(result: anyhow::Result<T>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("{what}: {error:#}"),
    }
}

/// Fails with what to run when something the test needs is missing.
fn workspace_with_prerequisites() -> PathBuf {
    let root = crate::project::root();
    let needs = [
        ("target/debug/akidb-embed", "cargo build -p akidb-embed"),
        (".venv/bin/python", "cargo xtask ci (it creates .venv)"),
        (
            "models/paraphrase-MiniLM-L3-v2/onnx/model.onnx",
            "cargo xtask models",
        ),
        (
            "models/all-MiniLM-L6-v2/model.safetensors",
            "cargo xtask models",
        ),
    ];
    for (path, fix) in needs {
        assert!(
            root.join(path).exists(),
            "the local target test needs {path}: run `{fix}` first"
        );
    }
    root
}

fn golden(name: &str) -> PathBuf {
    let path = crate::project::golden_dir().join(name);
    assert!(path.exists(), "{} is missing", path.display());
    path
}

fn share(stats: &TrafficStats) -> f64 {
    let routed = stats.canary + stats.stable;
    assert!(routed > 0, "no answered requests: {stats:?}");
    100.0 * stats.canary as f64 / routed as f64
}

/// Every process the target runs now, nginx's workers included.
fn child_pids(target: &LocalTarget) -> Vec<u32> {
    let running = target.running.as_ref().expect("started");
    let mut pids = vec![running.nginx.pid(), running.prometheus.pid()];
    pids.extend(supervisor::children_of(running.nginx.pid()));
    pids.extend(running.legacy.as_ref().map(|l| l.pid()));
    pids.extend(running.candle.as_ref().map(|c| c.pid()));
    pids
}

/// Sends one request through nginx with `X-Canary: value`; returns `X-Served-By`.
fn served_by_with_header(target: &LocalTarget, value: &str) -> String {
    let front_door = target.running.as_ref().expect("started").nginx.front_door();
    let response = ureq::post(&format!("http://{front_door}/api/v1/embed"))
        .set("X-Canary", value)
        .send_json(serde_json::json!({"texts": ["pinned"], "model": "paraphrase-MiniLM-L3-v2"}))
        .expect("embed through nginx");
    response.header("X-Served-By").unwrap_or("").to_string()
}

#[test]
fn local_target_shifts_weight_under_load_measures_and_stops_clean() {
    let root = workspace_with_prerequisites();
    let work = root
        .join("target/rollout")
        .join(format!("local-test-{}", std::process::id()));
    let mut target = LocalTarget::new(LocalOptions::for_workspace(&root, &work));
    let started = std::time::Instant::now();
    must(target.start(), "start");
    println!("started in {:?}", started.elapsed());

    must(target.start_traffic(RATE), "start traffic");
    thread::sleep(Duration::from_secs(1));
    let mut failed = must(target.take_traffic(), "take").failed;
    let mut sent = 0;

    // (weight, hold, tolerance in points). The share is binomial: at 50% the hold is long
    // enough (about 800 requests) to put ±5 points near three standard deviations; 200
    // requests would put it at 1.4 and fail one run in six. At 10%, 150 requests put ±10
    // points at four.
    let shifts = [
        (0, HOLD, 0.0),
        (10, HOLD, 10.0),
        (50, Duration::from_secs(16), 5.0),
        (100, HOLD, 0.0),
    ];
    for (weight, hold, tolerance) in shifts {
        must(target.set_canary_weight(weight), "set weight");
        // Requests routed before the reload may still be answered: leave them out of the share,
        // not out of the failures.
        thread::sleep(Duration::from_millis(200));
        let straddling = must(target.take_traffic(), "take");
        failed += straddling.failed;
        sent += straddling.sent;
        thread::sleep(hold);
        let stats = must(target.take_traffic(), "take");
        failed += stats.failed;
        sent += stats.sent;
        let observed = share(&stats);
        println!(
            "weight {weight}%: canary share {observed:.1}% of {} (failed {}, p95 {:?})",
            stats.canary + stats.stable,
            stats.failed,
            stats.p95
        );
        assert!(
            (observed - f64::from(weight)).abs() <= tolerance,
            "weight {weight}%: observed {observed:.1}% ({stats:?})"
        );
        if weight == 50 {
            let canary = must(
                target.measure(Side::Canary, Duration::from_secs(5)),
                "measure",
            );
            let stable = must(
                target.measure(Side::Stable, Duration::from_secs(5)),
                "measure",
            );
            println!("prometheus, last 5 s: canary {canary:?}; stable {stable:?}");
            assert!(canary.requests > 0, "{canary:?}");
            assert!(canary.p95.is_some(), "{canary:?}");
            assert!(canary.memory_bytes.is_some(), "{canary:?}");
            assert!(stable.requests > 0, "{stable:?}");
            assert_eq!(served_by_with_header(&target, "always"), "canary");
            assert_eq!(served_by_with_header(&target, "never"), "stable");
            let refused = target.teardown_legacy("akidb-mlx", Duration::ZERO);
            assert!(refused.is_err(), "teardown at 50% must be refused");
        }
    }
    println!("shifts: {sent} requests sent, {failed} failed");
    assert_eq!(failed, 0, "requests failed while the weight moved");

    let legacy = must(
        target.parity(
            &golden("paraphrase-MiniLM-L3-v2.json"),
            ParityReference::Legacy,
        ),
        "parity against legacy",
    );
    assert!(legacy.min_cosine >= 0.9999, "{legacy:?}");
    assert_eq!(legacy.token_mismatches, 0, "{legacy:?}");
    let stored = must(
        target.parity(&golden("all-MiniLM-L6-v2.json"), ParityReference::Golden),
        "parity against golden vectors",
    );
    assert!(stored.min_cosine >= 0.9999, "{stored:?}");

    must(target.inject_fault(), "inject fault");
    thread::sleep(Duration::from_millis(200));
    let _ = must(target.take_traffic(), "take");
    thread::sleep(Duration::from_secs(2));
    // Pause so that every request of the window has its answer before it is read.
    must(target.start_traffic(0), "pause traffic");
    thread::sleep(Duration::from_millis(500));
    let faulty = must(target.take_traffic(), "take");
    println!("after the fault at 100%: {faulty:?}");
    // Every request of the window failed and none succeeded. A request sent just before the
    // window opened may fail inside it, so failures can outnumber the window's sends by that.
    assert!(
        faulty.sent > 0 && faulty.failed >= faulty.sent && faulty.p50.is_none(),
        "{faulty:?}"
    );

    assert_eq!(
        must(target.scale("akidb-candle", 3), "scale"),
        Outcome::Skipped("local target runs one instance per side".into())
    );
    assert!(target.scale("akidb-unknown", 1).is_err());
    let legacy_pid = target
        .running
        .as_ref()
        .and_then(|r| r.legacy.as_ref())
        .map(|l| l.pid());
    let retired = must(
        target.teardown_legacy("akidb-mlx", Duration::ZERO),
        "teardown",
    );
    println!("{retired:?}");
    assert!(legacy_pid.is_some_and(|pid| !supervisor::is_alive(pid)));
    // Back to one replica: the stand-in comes back on its old port, where nginx and Prometheus
    // still look for it.
    assert!(matches!(
        must(target.scale("akidb-mlx", 1), "scale"),
        Outcome::Done(_)
    ));

    let pids = child_pids(&target);
    must(target.stop(), "stop");
    let left: Vec<u32> = pids
        .into_iter()
        .filter(|&pid| supervisor::is_alive(pid))
        .collect();
    assert!(left.is_empty(), "processes left running: {left:?}");
    println!("whole test: {:?}", started.elapsed());
    let _ = std::fs::remove_dir_all(&work);
}
