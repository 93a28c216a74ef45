//! The kubernetes target against the fake API server (kube's real client, real paths).

use std::time::Duration;

use serde_json::{json, Value};

use super::{fake_apiserver::FakeApiServer, KubernetesOptions, KubernetesTarget};
use crate::rollout::targets::{Outcome, Target};

const NS: &str = "production";
const LEGACY: &str = "app.kubernetes.io/name";

fn legacy_labels() -> Value {
    json!({ LEGACY: "akidb-mlx", "app.kubernetes.io/part-of": "akidb" })
}

fn candle_labels() -> Value {
    json!({ LEGACY: "akidb-candle", "app.kubernetes.io/part-of": "akidb" })
}

/// The canary Ingress exactly as the repository ships it (at 1%).
fn canary_ingress() -> Value {
    let path = crate::project::root().join("rollout/k8s/ingress-canary-1.yaml");
    let text = std::fs::read_to_string(&path).expect("canary manifest");
    serde_yaml_ng::from_str(&text).expect("canary manifest is YAML")
}

fn deployment(name: &str, replicas: i64, labels: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "labels": labels },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { LEGACY: name } },
            "template": { "metadata": { "labels": { LEGACY: name } }, "spec": { "containers": [] } }
        }
    })
}

fn object(kind: &str, api_version: &str, name: &str, labels: Value) -> Value {
    json!({ "apiVersion": api_version, "kind": kind, "metadata": { "name": name, "labels": labels } })
}

/// The cluster in week 5: Candle and the legacy service side by side, each with its objects.
fn cluster(legacy_deployment_labels: Value) -> FakeApiServer {
    let fake = FakeApiServer::start(Duration::from_millis(300)).expect("fake API server");
    fake.insert(NS, canary_ingress());
    let mut primary = object(
        "Ingress",
        "networking.k8s.io/v1",
        "akidb-mlx",
        legacy_labels(),
    );
    primary["spec"] = json!({
        "ingressClassName": "nginx",
        "rules": [{ "host": "api.akidb.example.com", "http": { "paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": { "service": { "name": "akidb-mlx", "port": { "number": 8000 } } }
        }]}}]
    });
    fake.insert(NS, primary);
    fake.insert(NS, deployment("akidb-candle", 2, candle_labels()));
    fake.insert(NS, deployment("akidb-mlx", 2, legacy_deployment_labels));
    for (name, labels) in [
        ("akidb-candle", candle_labels()),
        ("akidb-mlx", legacy_labels()),
    ] {
        fake.insert(NS, object("Service", "v1", name, labels));
    }
    fake.insert(
        NS,
        object("ConfigMap", "v1", "akidb-candle", candle_labels()),
    );
    fake.insert(
        NS,
        object("ConfigMap", "v1", "akidb-mlx-config", legacy_labels()),
    );
    fake.insert(
        NS,
        object(
            "PersistentVolumeClaim",
            "v1",
            "akidb-candle-models",
            candle_labels(),
        ),
    );
    fake.insert(
        NS,
        object(
            "PersistentVolumeClaim",
            "v1",
            "akidb-mlx-models",
            legacy_labels(),
        ),
    );
    let mut hpa = object(
        "HorizontalPodAutoscaler",
        "autoscaling/v2",
        "akidb-candle",
        candle_labels(),
    );
    hpa["spec"] = json!({
        "scaleTargetRef": { "apiVersion": "apps/v1", "kind": "Deployment", "name": "akidb-candle" },
        "minReplicas": 2, "maxReplicas": 10
    });
    hpa["status"] = json!({ "currentReplicas": 2, "desiredReplicas": 2 });
    fake.insert(NS, hpa);
    fake
}

fn target_with(fake: &FakeApiServer, options: KubernetesOptions) -> KubernetesTarget {
    let mut config = kube::Config::new(fake.url().parse().expect("fake URL"));
    config.default_namespace = NS.to_string();
    let mut target =
        KubernetesTarget::with_config(options, config, Duration::from_millis(20)).expect("target");
    target.start().expect("start");
    target
}

fn target(fake: &FakeApiServer) -> KubernetesTarget {
    target_with(fake, KubernetesOptions::for_namespace(NS))
}

fn annotation(fake: &FakeApiServer, ingress: &str, key: &str) -> Option<String> {
    fake.object(NS, "ingresses", ingress)?["metadata"]["annotations"][key]
        .as_str()
        .map(str::to_string)
}

fn weight(fake: &FakeApiServer) -> Option<String> {
    annotation(
        fake,
        "akidb-candle-canary",
        "nginx.ingress.kubernetes.io/canary-weight",
    )
}

fn writes(fake: &FakeApiServer) -> Vec<String> {
    fake.received()
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

#[test]
fn canary_weights_1_10_50_100_are_set_on_the_canary_ingress() {
    let fake = cluster(legacy_labels());
    let mut target = target(&fake);
    for percent in [1, 10, 50, 100] {
        target.set_canary_weight(percent).expect("weight");
        assert_eq!(weight(&fake), Some(percent.to_string()));
        let canary = annotation(
            &fake,
            "akidb-candle-canary",
            "nginx.ingress.kubernetes.io/canary",
        );
        assert_eq!(canary.as_deref(), Some("true"));
    }
    // The header override the chart sets survives the patches.
    assert_eq!(
        annotation(
            &fake,
            "akidb-candle-canary",
            "nginx.ingress.kubernetes.io/canary-by-header"
        )
        .as_deref(),
        Some("X-Canary")
    );
    let patches: Vec<_> = fake
        .received()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .collect();
    assert_eq!(patches.len(), 4);
    for patch in patches {
        assert_eq!(
            patch.path,
            "/apis/networking.k8s.io/v1/namespaces/production/ingresses/akidb-candle-canary"
        );
        assert_eq!(
            patch.content_type.as_deref(),
            Some("application/merge-patch+json")
        );
        let body: Value = serde_json::from_str(&patch.body).expect("JSON body");
        assert!(
            body["metadata"]["resourceVersion"].is_string(),
            "{}",
            patch.body
        );
    }
    assert!(target.set_canary_weight(101).is_err());
}

#[test]
fn an_injected_conflict_is_re_read_and_retried() {
    let fake = cluster(legacy_labels());
    let mut target = target(&fake);
    fake.inject_conflicts(1);
    target
        .set_canary_weight(10)
        .expect("retried after the conflict");
    assert_eq!(weight(&fake), Some("10".into()));
    let methods: Vec<String> = fake.received().into_iter().map(|r| r.method).collect();
    assert_eq!(methods, ["GET", "PATCH", "GET", "PATCH"]);
}

#[test]
fn endless_conflicts_give_up_after_a_bounded_number_of_attempts() {
    let fake = cluster(legacy_labels());
    let mut target = target(&fake);
    fake.inject_conflicts(100);
    let error = target.set_canary_weight(10).expect_err("keeps conflicting");
    assert!(
        format!("{error:#}").contains("still conflicting after 5 attempts"),
        "{error:#}"
    );
    assert_eq!(weight(&fake), Some("1".into()));
}

#[test]
fn a_missing_object_is_a_clear_error() {
    let fake = cluster(legacy_labels());
    let mut options = KubernetesOptions::for_namespace(NS);
    options.canary_ingress = "akidb-candle-typo".into();
    let mut target = target_with(&fake, options);
    let error = target.set_canary_weight(10).expect_err("no such Ingress");
    assert_eq!(
        format!("{error:#}"),
        "Ingress akidb-candle-typo not found in namespace `production` (GET \
         /apis/networking.k8s.io/v1/namespaces/production/ingresses/akidb-candle-typo)"
    );
    let error = target
        .scale("akidb-embed", 3)
        .expect_err("no such Deployment");
    assert!(
        format!("{error:#}")
            .starts_with("Deployment akidb-embed not found in namespace `production`"),
        "{error:#}"
    );
}

#[test]
fn an_ingress_that_is_not_a_canary_is_never_given_a_weight() {
    let fake = cluster(legacy_labels());
    let mut options = KubernetesOptions::for_namespace(NS);
    options.canary_ingress = "akidb-mlx".into();
    let mut target = target_with(&fake, options);
    let error = target
        .set_canary_weight(10)
        .expect_err("the primary Ingress");
    assert!(
        format!("{error:#}").contains("is not an ingress-nginx canary"),
        "{error:#}"
    );
    assert!(writes(&fake).is_empty());
}

#[test]
fn scaling_waits_until_every_replica_is_ready_and_reports_the_hpa() {
    let fake = cluster(legacy_labels());
    let mut target = target(&fake);
    let Outcome::Done(text) = target.scale("akidb-candle", 3).expect("scaled") else {
        panic!("scaling is never skipped");
    };
    // The fake's controller reports the third pod ready only after its delay.
    assert!(text.contains("akidb-candle: 3/3 replicas ready"), "{text}");
    assert!(
        text.contains("HPA akidb-candle: min 2, max 10, current 2, desired 2"),
        "{text}"
    );
    let deployment = fake
        .object(NS, "deployments", "akidb-candle")
        .expect("deployment");
    assert_eq!(deployment["spec"]["replicas"], 3);
    assert_eq!(deployment["status"]["readyReplicas"], 3);
    let scale = fake
        .received()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .expect("patch");
    assert_eq!(
        scale.path,
        "/apis/apps/v1/namespaces/production/deployments/akidb-candle/scale"
    );
    assert_eq!(scale.body, r#"{"spec":{"replicas":3}}"#);
    // Outside the HPA's bounds, the outcome says the HPA will undo it.
    let Outcome::Done(text) = target.scale("akidb-candle", 12).expect("scaled") else {
        panic!("scaling is never skipped");
    };
    assert!(text.contains("12 is outside [2, 10]"), "{text}");
}

#[test]
fn a_deployment_that_never_gets_ready_times_out_with_its_counts() {
    let fake = FakeApiServer::start(Duration::from_secs(3600)).expect("fake");
    fake.insert(NS, deployment("akidb-candle", 2, candle_labels()));
    let mut options = KubernetesOptions::for_namespace(NS);
    options.rollout_timeout = Duration::from_millis(200);
    let mut target = target_with(&fake, options);
    let error = target.scale("akidb-candle", 5).expect_err("never ready");
    assert!(
        format!("{error:#}").contains("2 of 5 replicas ready"),
        "{error:#}"
    );
}

#[test]
fn teardown_deletes_only_the_labelled_legacy_objects() {
    let fake = cluster(legacy_labels());
    let mut target = target(&fake);
    target.set_canary_weight(100).expect("cut-over");
    let Outcome::Done(text) = target
        .teardown_legacy("akidb-mlx", Duration::from_millis(10))
        .expect("teardown")
    else {
        panic!("teardown is never skipped");
    };
    assert!(text.contains("deleted Deployment akidb-mlx"), "{text}");
    assert_eq!(fake.names(NS, "deployments"), ["akidb-candle"]);
    assert_eq!(fake.names(NS, "services"), ["akidb-candle"]);
    assert_eq!(fake.names(NS, "configmaps"), ["akidb-candle"]);
    assert_eq!(
        fake.names(NS, "persistentvolumeclaims"),
        ["akidb-candle-models"]
    );
    assert_eq!(fake.names(NS, "ingresses"), ["akidb-candle-canary"]);
    assert_eq!(fake.names(NS, "horizontalpodautoscalers"), ["akidb-candle"]);
    // The remaining Ingress is the primary now: ingress-nginx drops a canary without one.
    assert_eq!(
        annotation(
            &fake,
            "akidb-candle-canary",
            "nginx.ingress.kubernetes.io/canary"
        ),
        None
    );
    // Order: the legacy Ingress routes to Candle before its pods go; pods go before objects.
    let writes = writes(&fake);
    let at = |what: &str| {
        writes
            .iter()
            .position(|w| w == what)
            .unwrap_or_else(|| panic!("{what} in {writes:?}"))
    };
    let repoint = at("PATCH /apis/networking.k8s.io/v1/namespaces/production/ingresses/akidb-mlx");
    let scale = at("PATCH /apis/apps/v1/namespaces/production/deployments/akidb-mlx/scale");
    let delete = at("DELETE /apis/apps/v1/namespaces/production/deployments/akidb-mlx");
    let ingress = at("DELETE /apis/networking.k8s.io/v1/namespaces/production/ingresses/akidb-mlx");
    assert!(
        repoint < scale && scale < delete && delete < ingress,
        "{writes:?}"
    );
    let repointed = fake
        .received()
        .into_iter()
        .find(|r| r.path.ends_with("/ingresses/akidb-mlx") && r.method == "PATCH")
        .expect("repoint");
    assert!(
        repointed
            .body
            .contains(r#""service":{"name":"akidb-candle","port":{"name":"http"}}"#),
        "{}",
        repointed.body
    );
}

#[test]
fn teardown_refuses_a_legacy_deployment_without_the_label_and_deletes_nothing() {
    let fake = cluster(json!({ LEGACY: "something-else" }));
    let mut target = target(&fake);
    target.set_canary_weight(100).expect("cut-over");
    let before = writes(&fake);
    let error = target
        .teardown_legacy("akidb-mlx", Duration::from_millis(10))
        .expect_err("unlabelled");
    let message = format!("{error:#}");
    assert!(
        message.starts_with("refusing the legacy teardown, nothing was deleted"),
        "{message}"
    );
    assert!(
        message.contains("Deployment akidb-mlx does not carry the legacy label"),
        "{message}"
    );
    assert_eq!(writes(&fake), before);
    assert_eq!(fake.names(NS, "deployments"), ["akidb-candle", "akidb-mlx"]);
}

#[test]
fn teardown_refuses_a_canary_object_carrying_the_legacy_label() {
    let fake = cluster(legacy_labels());
    fake.insert(NS, deployment("akidb-candle", 2, legacy_labels()));
    let mut target = target(&fake);
    target.set_canary_weight(100).expect("cut-over");
    let before = writes(&fake);
    let error = target
        .teardown_legacy("akidb-mlx", Duration::from_millis(10))
        .expect_err("mislabelled canary");
    assert!(
        format!("{error:#}").contains("Deployment akidb-candle is the canary's"),
        "{error:#}"
    );
    assert_eq!(writes(&fake), before);
}

#[test]
fn teardown_refuses_a_deployment_other_than_the_configured_legacy_one() {
    let fake = cluster(legacy_labels());
    let mut target = target(&fake);
    target.set_canary_weight(100).expect("cut-over");
    let before = writes(&fake);
    let error = target
        .teardown_legacy("akidb-candle", Duration::from_millis(10))
        .expect_err("not the legacy deployment");
    assert!(
        format!("{error:#}").contains("the legacy deployment is `akidb-mlx`"),
        "{error:#}"
    );
    assert_eq!(writes(&fake), before);
}

#[test]
fn teardown_refuses_before_the_canary_carries_all_traffic() {
    let fake = cluster(legacy_labels());
    let mut target = target(&fake);
    target.set_canary_weight(50).expect("weight");
    let error = target
        .teardown_legacy("akidb-mlx", Duration::from_millis(10))
        .expect_err("at 50%");
    assert!(format!("{error:#}").contains("is at 50%"), "{error:#}");
    assert_eq!(fake.names(NS, "deployments"), ["akidb-candle", "akidb-mlx"]);
}

#[test]
fn a_dry_run_prints_every_call_and_makes_none() {
    let fake = cluster(legacy_labels());
    let mut options = KubernetesOptions::for_namespace(NS);
    options.dry_run = true;
    let mut target = target_with(&fake, options);
    target.set_canary_weight(10).expect("weight");
    target.scale("akidb-candle", 3).expect("scale");
    target
        .teardown_legacy("akidb-mlx", Duration::from_secs(86_400))
        .expect("teardown (no wait in a dry run)");
    assert!(fake.received().is_empty(), "{:?}", fake.received());
    let calls: Vec<String> = target
        .recorder()
        .expect("a dry run records")
        .calls()
        .iter()
        .map(ToString::to_string)
        .collect();
    let has = |line: &str| assert!(calls.iter().any(|c| c == line), "{line} in {calls:#?}");
    has("GET /apis/networking.k8s.io/v1/namespaces/production/ingresses/akidb-candle-canary");
    has(
        r#"PATCH /apis/networking.k8s.io/v1/namespaces/production/ingresses/akidb-candle-canary (application/merge-patch+json) {"metadata":{"annotations":{"nginx.ingress.kubernetes.io/canary":"true","nginx.ingress.kubernetes.io/canary-weight":"10"}}}"#,
    );
    has(
        r#"PATCH /apis/apps/v1/namespaces/production/deployments/akidb-candle/scale (application/merge-patch+json) {"spec":{"replicas":3}}"#,
    );
    has("GET /apis/autoscaling/v2/namespaces/production/horizontalpodautoscalers");
    has("GET /apis/apps/v1/namespaces/production/deployments?labelSelector=app.kubernetes.io%2Fname%3Dakidb-mlx");
    has(
        r#"PATCH /apis/apps/v1/namespaces/production/deployments/akidb-mlx/scale (application/merge-patch+json) {"spec":{"replicas":0}}"#,
    );
    has(
        r#"DELETE /apis/apps/v1/namespaces/production/deployments/akidb-mlx (application/json) {"propagationPolicy":"Background"}"#,
    );
}

#[test]
fn no_synthetic_traffic_and_no_fault_injection_on_a_cluster() {
    let fake = cluster(legacy_labels());
    let mut target = target(&fake);
    target.start_traffic(500).expect("a no-op");
    assert_eq!(target.take_traffic().expect("stats"), Default::default());
    let error = target.inject_fault().expect_err("refused");
    assert!(
        format!("{error:#}").contains("refuses it on a real cluster"),
        "{error:#}"
    );
    let error = target
        .measure(
            crate::rollout::targets::Side::Canary,
            Duration::from_secs(60),
        )
        .expect_err("no Prometheus given");
    assert!(
        format!("{error:#}").contains("--prometheus-url"),
        "{error:#}"
    );
    assert!(fake.received().is_empty());
}

/// The cluster's Prometheus, played by a real Prometheus scraping a stand-in exporter: each
/// scrape adds 10 answered and 1 failed request to Candle's series, and to ingress-nginx's
/// series for the canary upstream, while 100 stable-routed requests must not count.
mod cluster_prometheus {
    use std::{
        io::{Read, Write},
        net::{SocketAddr, TcpListener},
        sync::atomic::{AtomicU64, Ordering},
        sync::Arc,
        time::Instant,
    };

    use super::*;
    use crate::{
        rollout::targets::Side,
        stack::{programs::Tools, prometheus::Prometheus, supervisor::Ledger},
    };

    fn exposition(n: u64, nginx: bool) -> String {
        let mut text = format!(
            "# TYPE candle_requests_total counter\n\
             candle_requests_total{{route=\"/api/v1/embed\",status=\"200\"}} {ok}\n\
             candle_requests_total{{route=\"/api/v1/embed\",status=\"500\"}} {n}\n\
             # TYPE candle_request_duration_seconds histogram\n\
             candle_request_duration_seconds_bucket{{route=\"/api/v1/embed\",le=\"0.01\"}} {fast}\n\
             candle_request_duration_seconds_bucket{{route=\"/api/v1/embed\",le=\"0.05\"}} {all}\n\
             candle_request_duration_seconds_bucket{{route=\"/api/v1/embed\",le=\"+Inf\"}} {all}\n\
             candle_request_duration_seconds_sum{{route=\"/api/v1/embed\"}} {sum}\n\
             candle_request_duration_seconds_count{{route=\"/api/v1/embed\"}} {all}\n\
             # TYPE candle_memory_usage_bytes gauge\n\
             candle_memory_usage_bytes 150000000\n",
            ok = 10 * n,
            fast = 2 * n,
            all = 11 * n,
            sum = 0.02 * (11 * n) as f64,
        );
        if nginx {
            text.push_str(&format!(
                "# TYPE nginx_ingress_controller_requests counter\n\
                 nginx_ingress_controller_requests{{service=\"akidb-mlx\",canary=\"production-akidb-candle-http\",status=\"200\"}} {ok}\n\
                 nginx_ingress_controller_requests{{service=\"akidb-mlx\",canary=\"production-akidb-candle-http\",status=\"503\"}} {n}\n\
                 nginx_ingress_controller_requests{{service=\"akidb-mlx\",canary=\"\",status=\"200\"}} {stable}\n",
                ok = 10 * n,
                stable = 100 * n,
            ));
        }
        text
    }

    /// Serves the exposition on a free port; every scrape counts one more round of requests.
    fn exporter(nginx: bool) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let scrapes = Arc::new(AtomicU64::new(0));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buffer = [0u8; 4096];
                let _ = stream.read(&mut buffer);
                let n = scrapes.fetch_add(1, Ordering::SeqCst) + 1;
                let body = exposition(n, nginx);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        address
    }

    #[test]
    fn gates_and_the_front_door_read_the_clusters_prometheus() {
        let tools = Tools::ensure().expect("prometheus installed");
        let dir = tempfile::tempdir().expect("temp dir");
        let ledger = Ledger::new(dir.path().join("children"));
        // Job `canary` scrapes Candle and ingress-nginx; job `stable` the legacy service.
        let mut prometheus = Prometheus::start(
            &tools.prometheus,
            dir.path(),
            exporter(false),
            exporter(true),
            crate::stack::prometheus::MIN_RETENTION,
            &ledger,
        )
        .expect("prometheus");
        let mut options = KubernetesOptions::for_namespace(NS);
        options.prometheus_url = Some(prometheus.api().url().to_string());
        options.canary_job = "canary".into();
        options.stable_job = "stable".into();
        let fake = FakeApiServer::start(Duration::from_millis(10)).expect("fake");
        let target = target_with(&fake, options);
        let window = Duration::from_secs(30);
        let deadline = Instant::now() + Duration::from_secs(60);
        let measured = loop {
            let m = target.measure(Side::Canary, window).expect("measure");
            let front = target.front_door(Side::Canary, window);
            if let (true, Ok((answered, failed))) = (m.requests > 0 && m.p95.is_some(), &front) {
                if *answered > 0 && *failed > 0 {
                    break (m, (*answered, *failed));
                }
            }
            assert!(
                Instant::now() < deadline,
                "no series after a minute: {m:?} {front:?}"
            );
            std::thread::sleep(Duration::from_millis(500));
        };
        let (m, (answered, failed)) = measured;
        prometheus.stop().expect("stop prometheus");
        // 1 in 11 requests fails, on both views; the stable-routed requests do not count.
        let rate = m.errors as f64 / m.requests as f64;
        assert!((0.05..0.15).contains(&rate), "{m:?}");
        let front_rate = failed as f64 / answered as f64;
        assert!(
            (0.05..0.15).contains(&front_rate),
            "{answered} answered, {failed} failed"
        );
        let p95 = m.p95.expect("p95");
        assert!(
            p95 > Duration::from_millis(10) && p95 <= Duration::from_millis(50),
            "{p95:?}"
        );
        assert_eq!(m.memory_bytes, Some(150_000_000));
        assert!(
            fake.received().is_empty(),
            "measuring never calls the API server"
        );
    }
}

mod load;
