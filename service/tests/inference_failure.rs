//! A model that loads and warms up but fails on some inputs: the v1 API answers its contract's
//! 500 `Embedding failed: <reason>`, the OpenAI API a 500 `server_error`, gRPC `INTERNAL`, and
//! the failure is counted as `candle_errors_total{kind="inference"}`.

mod common;

use std::path::Path;

use akidb_embed::{
    config::Limits,
    grpc::proto::{embedding_service_server::EmbeddingService, EmbedRequest},
};
use serde_json::json;

const MODEL: &str = "mismatched";
/// A word whose id the tokenizer gives is beyond the model's embedding table.
const STRAY: &str = "overflow";

/// A small BERT whose tokenizer has as many entries as the model's vocabulary (so loading
/// accepts it) but maps `STRAY` to an id far beyond it: texts without it embed, texts with it
/// fail in the forward pass.
fn write_mismatched_model(dir: &Path) {
    common::TinyBert {
        hidden: 32,
        heads: 2,
        intermediate: 64,
        layers: 1,
        pooling: Some((false, true)),
        normalize: true,
        max_seq_length: Some(64),
        prefix: "",
    }
    .write(dir);
    let path = dir.join("tokenizer.json");
    let mut tokenizer: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let vocab = tokenizer["model"]["vocab"].as_object_mut().unwrap();
    vocab.remove("candle").unwrap();
    vocab.insert(STRAY.to_string(), json!(common::tiny_vocab_size() + 1000));
    common::write_json(&path, &tokenizer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inference_failure_is_500_embedding_failed_and_grpc_internal() {
    let root = tempfile::tempdir().unwrap();
    write_mismatched_model(&root.path().join(MODEL));
    // Loading and the warm-up pass: the failure is in some inputs only.
    let service = common::service::start(root.path(), &[MODEL], Limits::default()).await;
    let failing = format!("hello {STRAY}");

    let ok = service
        .post("/api/v1/embed", &json!({"texts": ["hello world"]}))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);

    let legacy = service
        .post("/api/v1/embed", &json!({"texts": ["hello world", failing]}))
        .await;
    assert_eq!(legacy.status, 500, "{}", legacy.body);
    assert!(
        legacy
            .text()
            .starts_with("Embedding failed: inference failed: token id ")
            && legacy.text().contains("outside the model's tables")
            && legacy.text().matches("inference failed").count() == 1,
        "{}",
        legacy.body
    );

    let openai = service
        .post("/v1/embeddings", &json!({"input": failing}))
        .await;
    assert_eq!(openai.status, 500, "{}", openai.body);
    assert_eq!(openai.body["error"]["type"], "server_error");
    assert!(
        openai.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("outside"),
        "{}",
        openai.body
    );

    let status = service
        .grpc()
        .embed(tonic::Request::new(EmbedRequest {
            texts: vec![failing.clone()],
            model: None,
            pooling: None,
            normalize: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Internal);
    assert!(
        status.message().starts_with("Embedding failed: "),
        "{}",
        status.message()
    );

    let counted = service
        .metric("candle_errors_total", &[("kind", "inference")])
        .await;
    assert_eq!(counted, 3.0);
    let legacy_500 = service
        .metric(
            "candle_requests_total",
            &[("route", "/api/v1/embed"), ("model", ""), ("status", "500")],
        )
        .await;
    assert_eq!(legacy_500, 1.0);
    // The service still serves after the failures.
    let again = service
        .post("/api/v1/embed", &json!({"texts": ["hello world"]}))
        .await;
    assert_eq!(again.status, 200, "{}", again.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_request_does_not_fail_the_requests_that_shared_its_pass() {
    let root = tempfile::tempdir().unwrap();
    write_mismatched_model(&root.path().join(MODEL));
    let limits = Limits {
        // Requests queued within 2 s share a pass.
        max_batch_wait_us: 2_000_000,
        ..Limits::default()
    };
    let service = std::sync::Arc::new(common::service::start(root.path(), &[MODEL], limits).await);
    let texts = [
        "hello world",
        "the man is eating",
        "hello overflow",
        "a vector database",
    ];
    let mut requests = tokio::task::JoinSet::new();
    for (i, text) in texts.iter().enumerate() {
        let service = std::sync::Arc::clone(&service);
        let body = json!({"texts": [text]});
        requests.spawn(async move { (i, service.post("/api/v1/embed", &body).await) });
    }
    while let Some(done) = requests.join_next().await {
        let (i, reply) = done.unwrap();
        if texts[i].contains(STRAY) {
            assert_eq!(reply.status, 500, "{}", reply.body);
        } else {
            assert_eq!(reply.status, 200, "{:?}: {}", texts[i], reply.body);
        }
    }
}
