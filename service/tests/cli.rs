//! `akidb-embed embed` prints the legacy response shape as JSON, with the reference vectors.

mod common;

use std::process::Command;

#[test]
fn embed_prints_json_with_the_reference_vector() {
    let models = common::models_dir();
    common::real_model("all-MiniLM-L6-v2");
    let out = Command::new(env!("CARGO_BIN_EXE_akidb-embed"))
        .args(["embed", "--model", "all-MiniLM-L6-v2", "--models-dir"])
        .arg(&models)
        .args(["hello world", "A man is eating food."])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["model"], "all-MiniLM-L6-v2");
    assert_eq!(body["dimension"], 384);
    let texts = ["hello world", "A man is eating food."];
    let vectors = body["embeddings"].as_array().unwrap();
    assert_eq!(vectors.len(), texts.len());
    let mut tokens = 0;
    for (text, vector) in texts.iter().zip(vectors) {
        let (count, reference) = common::golden_item("all-MiniLM-L6-v2", text);
        tokens += count;
        let vector = common::floats(vector);
        let cosine = common::cosine(&vector, &reference);
        assert!(cosine >= common::PARITY_COSINE, "{text:?}: cosine {cosine}");
        assert!(
            (common::norm(&vector) - 1.0).abs() < 1e-5,
            "{text:?} is not normalised"
        );
    }
    assert_eq!(body["usage"]["total_tokens"], tokens);
}

#[test]
fn unknown_model_folder_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_akidb-embed"))
        .args(["embed", "--model", "qwen3-0.6b-4bit", "--models-dir"])
        .arg(dir.path())
        .arg("text")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("qwen3-0.6b-4bit") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn version_names_2_0_0() {
    let out = Command::new(env!("CARGO_BIN_EXE_akidb-embed"))
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2.0.0"), "{text}");
}
