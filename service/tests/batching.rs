//! Dynamic batching, seen from outside: concurrent requests are served in fewer forward passes
//! than requests (counted by `candle_batch_size` in `/metrics`), v1 and OpenAI requests share
//! passes although their normalisation differs, and every vector is the one the request gets
//! when it is embedded alone.

mod common;

use akidb_embed::{
    config::Limits,
    engine::{EmbedOptions, EmbeddingModel},
};
use serde_json::{json, Value};

const MODEL: &str = "paraphrase-MiniLM-L3-v2";
/// Requests of each API.
const EACH: usize = 8;

fn texts() -> Vec<String> {
    let path = common::golden_dir().join(format!("{MODEL}.json"));
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    golden["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["text"].as_str().unwrap().to_string())
        .filter(|t| !t.is_empty())
        .take(2 * EACH)
        .collect()
}

/// Largest difference between two vectors, relative to the reference's length.
fn relative_difference(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .fold(0f64, f64::max);
    worst / common::norm(want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_v1_and_openai_requests_share_forward_passes_with_unchanged_vectors() {
    let texts = texts();
    assert_eq!(texts.len(), 2 * EACH);
    let limits = Limits {
        // Once a request is queued, the batcher waits up to 3 s for more (the cut-off is far
        // above these texts' tokens), so every request of this test can join the first pass.
        max_batch_wait_us: 3_000_000,
        ..Limits::default()
    };
    let service = common::service::start(&common::models_dir(), &[MODEL], limits).await;
    let passes_before = service
        .metric("candle_batch_size_count", &[("model", MODEL)])
        .await;
    let inputs_before = service
        .metric("candle_batch_size_sum", &[("model", MODEL)])
        .await;
    let small_before = service
        .metric("candle_batch_size_bucket", &[("model", MODEL), ("le", "8")])
        .await;

    // Even positions through the v1 API (normalised by default), odd ones through the OpenAI
    // API (this model's own setting: not normalised), all at once.
    let service = std::sync::Arc::new(service);
    let mut requests = tokio::task::JoinSet::new();
    for (i, text) in texts.iter().enumerate() {
        let service = std::sync::Arc::clone(&service);
        let text = text.clone();
        requests.spawn(async move {
            let reply = if i % 2 == 0 {
                service
                    .post("/api/v1/embed", &json!({"texts": [text], "model": MODEL}))
                    .await
            } else {
                service
                    .post("/v1/embeddings", &json!({"input": text, "model": MODEL}))
                    .await
            };
            assert_eq!(reply.status, 200, "request {i}: {}", reply.body);
            let vector = if i % 2 == 0 {
                common::floats(&reply.body["embeddings"][0])
            } else {
                common::floats(&reply.body["data"][0]["embedding"])
            };
            (i, vector)
        });
    }
    let mut served = vec![Vec::new(); texts.len()];
    while let Some(done) = requests.join_next().await {
        let (i, vector) = done.unwrap();
        served[i] = vector;
    }

    let passes = service
        .metric("candle_batch_size_count", &[("model", MODEL)])
        .await
        - passes_before;
    let inputs = service
        .metric("candle_batch_size_sum", &[("model", MODEL)])
        .await
        - inputs_before;
    let small = service
        .metric("candle_batch_size_bucket", &[("model", MODEL), ("le", "8")])
        .await
        - small_before;
    println!("{} requests served in {passes} forward passes", texts.len());
    assert_eq!(inputs, texts.len() as f64);
    assert!(
        passes < texts.len() as f64,
        "{passes} passes for {} requests",
        texts.len()
    );
    // A pass of more than 8 inputs held requests of both APIs (each sent 8).
    assert!(
        small < passes,
        "no pass mixed v1 and OpenAI requests ({passes} passes, {small} of at most 8 inputs)"
    );

    // The same vectors as each text embedded alone, with each request's own normalisation.
    let model = EmbeddingModel::from_dir(common::real_model(MODEL)).unwrap();
    for (i, text) in texts.iter().enumerate() {
        let normalize = (i % 2 == 0).then_some(true);
        let options = EmbedOptions {
            pooling: None,
            normalize,
        };
        let alone = model.embed(&[text.as_str()], options).unwrap();
        let want = &alone.vectors[0];
        let difference = relative_difference(&served[i], want);
        assert!(
            difference < 1e-5,
            "text {i} {text:?}: differs from its vector alone by {difference:e}"
        );
        let length = common::norm(&served[i]);
        if normalize.is_some() {
            assert!((length - 1.0).abs() < 1e-5, "text {i}: length {length}");
        } else {
            assert!(
                (length - 1.0).abs() > 0.01,
                "text {i} was normalised: {length}"
            );
        }
    }
}
