//! `load_test` on a cluster: the load generator's Job as the API server receives it, watched
//! to its end and deleted, with the HPA read over the test.

use super::*;

const JOBS: &str = "/apis/batch/v1/namespaces/production/jobs";

fn load_target(fake: &FakeApiServer) -> KubernetesTarget {
    let mut options = KubernetesOptions::for_namespace(NS);
    options.load_image = "registry.example/oha:test".into();
    target_with(fake, options)
}

#[test]
fn a_load_test_runs_a_job_at_the_stage_rate_watches_it_and_deletes_it() {
    let fake = cluster(legacy_labels());
    fake.set_job_run(Duration::from_millis(300), true);
    let mut target = load_target(&fake);
    target
        .start_load(400, Duration::from_secs(2 * 86_400))
        .expect("the Job is created");
    let created = fake
        .received()
        .into_iter()
        .find(|r| r.method == "POST")
        .expect("a POST");
    assert_eq!(created.path, JOBS);
    let job: Value = serde_json::from_str(&created.body).expect("a JSON Job");
    let name = job["metadata"]["name"].as_str().expect("a name").to_owned();
    assert!(name.starts_with("akidb-load-test-"), "{name}");
    for labels in [
        &job["metadata"]["labels"],
        &job["spec"]["template"]["metadata"]["labels"],
    ] {
        assert_eq!(labels["app.kubernetes.io/managed-by"], "akidb-rollout");
        assert_eq!(labels["app.kubernetes.io/component"], "load-test");
    }
    assert_eq!(job["spec"]["backoffLimit"], 0);
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["containers"][0]["image"], "registry.example/oha:test");
    let args: Vec<&str> = pod["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let after = |flag: &str| {
        let at = args.iter().position(|a| *a == flag).expect(flag);
        args[at + 1]
    };
    assert_eq!(after("-q"), "400");
    assert_eq!(after("-z"), "172800s");
    assert_eq!(after("-m"), "POST");
    assert_eq!(
        args.last().copied(),
        Some("http://akidb-candle.production.svc:8080/api/v1/embed")
    );
    let body: Value = serde_json::from_str(after("-d")).expect("a JSON request body");
    assert!(body["texts"].is_array(), "{body}");
    assert_eq!(fake.names(NS, "jobs"), std::slice::from_ref(&name));

    let text = target
        .finish_load()
        .expect("the Job succeeded")
        .expect("a summary");
    // The fake's HPA controller adds a replica per request while the Job runs (2 -> 10).
    assert!(
        text.contains("HPA akidb-candle: 2 replicas at the start, peak 10, 10 at the end"),
        "{text}"
    );
    assert!(text.contains("400 req/s for 2days"), "{text}");
    let deleted = fake
        .received()
        .into_iter()
        .find(|r| r.method == "DELETE")
        .expect("a DELETE");
    assert_eq!(deleted.path, format!("{JOBS}/{name}"));
    assert_eq!(deleted.body, r#"{"propagationPolicy":"Background"}"#);
    assert!(fake.names(NS, "jobs").is_empty());
    // Nothing left to finish.
    assert_eq!(target.finish_load().expect("nothing running"), None);
}

#[test]
fn a_failed_load_generator_fails_the_step_and_is_still_deleted() {
    let fake = cluster(legacy_labels());
    fake.set_job_run(Duration::from_millis(100), false);
    let mut target = load_target(&fake);
    target
        .start_load(50, Duration::from_secs(60))
        .expect("the Job is created");
    let error = target.finish_load().expect_err("the Job failed");
    let message = format!("{error:#}");
    assert!(
        message.contains("load test Job akidb-load-test-"),
        "{message}"
    );
    assert!(message.contains("kubectl logs job/"), "{message}");
    assert!(fake.names(NS, "jobs").is_empty(), "the Job is deleted");
}

#[test]
fn a_load_test_cut_short_by_stop_deletes_its_job() {
    let fake = cluster(legacy_labels());
    fake.set_job_run(Duration::from_secs(3600), true);
    let mut target = load_target(&fake);
    target
        .start_load(50, Duration::from_secs(3600))
        .expect("the Job is created");
    assert_eq!(fake.names(NS, "jobs").len(), 1);
    target.stop().expect("stopped");
    assert!(fake.names(NS, "jobs").is_empty());
}

#[test]
fn each_load_test_has_its_own_job_and_a_retried_create_is_not_an_error() {
    let fake = cluster(legacy_labels());
    fake.set_job_run(Duration::from_millis(50), true);
    let mut target = load_target(&fake);
    target
        .start_load(10, Duration::from_secs(1))
        .expect("first");
    target.finish_load().expect("first ends");
    target
        .start_load(20, Duration::from_secs(1))
        .expect("second");
    target.finish_load().expect("second ends");
    let posted: Vec<String> = fake
        .received()
        .into_iter()
        .filter(|r| r.method == "POST")
        .map(|r| {
            let job: Value = serde_json::from_str(&r.body).expect("JSON");
            job["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(posted.len(), 2);
    assert_ne!(posted[0], posted[1]);
}

#[test]
fn a_dry_run_prints_the_jobs_creation_and_deletion() {
    let fake = cluster(legacy_labels());
    let mut options = KubernetesOptions::for_namespace(NS);
    options.dry_run = true;
    let mut target = target_with(&fake, options);
    target
        .start_load(500, Duration::from_secs(60))
        .expect("start");
    target.finish_load().expect("finish");
    assert!(fake.received().is_empty());
    let calls: Vec<String> = target
        .recorder()
        .expect("a dry run records")
        .calls()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with(&format!("POST {JOBS}")) && c.contains("\"-q\",\"500\"")),
        "{calls:#?}"
    );
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with(&format!("DELETE {JOBS}/akidb-load-test-"))),
        "{calls:#?}"
    );
}
