//! Dynamic batching, seen from outside: requests that arrive while the model is busy are served
//! together in one forward pass (counted by `candle_batch_size` in `/metrics`), v1 and OpenAI
//! requests share it although their normalisation differs, and every vector is the one the
//! request gets when it is embedded alone.

mod common;

use akidb_embed::{
    config::Limits,
    engine::{EmbedOptions, EmbeddingModel},
};
use serde_json::{json, Value};

const MODEL: &str = "paraphrase-MiniLM-L3-v2";
/// Requests of each API.
const EACH: usize = 8;
/// Texts of the request that keeps the model busy, each cut at the model's 128 tokens.
const LONG_TEXTS: usize = 128;
/// Tokens per pass: 16 of those texts.
const PASS_TOKENS: usize = 16 * 128;

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
        // The long request runs in passes of exactly 16 texts; the short requests (about 200
        // tokens together) fit one pass. Texts still being tokenized when the model is free
        // again are waited for, up to 3 s.
        max_batch_tokens: PASS_TOKENS,
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

    // The model is kept busy by one request of long texts (8 passes); once its first pass is
    // done, the short requests are sent, all at once, and wait behind it.
    let service = std::sync::Arc::new(service);
    let busy = {
        let service = std::sync::Arc::clone(&service);
        let long = "the quick brown fox jumps over the lazy dog ".repeat(40);
        let texts = vec![long; LONG_TEXTS];
        tokio::spawn(async move {
            let reply = service
                .post("/api/v1/embed", &json!({"texts": texts, "model": MODEL}))
                .await;
            assert_eq!(reply.status, 200, "the long request: {}", reply.body);
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while service
        .metric("candle_batch_size_count", &[("model", MODEL)])
        .await
        < passes_before + 1.0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the long request's first pass did not end within 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }

    // Even positions through the v1 API (normalised by default), odd ones through the OpenAI
    // API (this model's own setting: not normalised), all at once.
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
    busy.await.unwrap();

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
    let long_passes = (LONG_TEXTS / 16) as f64;
    println!(
        "{} short requests served in {} forward passes after the long request's {long_passes}",
        texts.len(),
        passes - long_passes
    );
    assert_eq!(inputs, (texts.len() + LONG_TEXTS) as f64);
    // Every pass held more than 8 inputs, and the 16 short requests (8 of each API) took one.
    assert_eq!(small, 0.0, "a pass of at most 8 inputs ({passes} passes)");
    assert_eq!(
        passes,
        long_passes + 1.0,
        "the short requests were not served in one pass"
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
