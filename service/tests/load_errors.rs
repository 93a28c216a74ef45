//! A broken model folder gives a clear error that names the file, never a panic.

mod common;

use std::path::Path;

use akidb_embed::engine::{EmbeddingModel, EngineError};
use serde_json::json;

fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::e5_small_v2().write(dir.path());
    dir
}

fn load_err(dir: &Path) -> EngineError {
    match EmbeddingModel::from_dir(dir) {
        Ok(_) => panic!("{} loaded although it is broken", dir.display()),
        Err(e) => e,
    }
}

fn assert_names(err: &EngineError, file: &str) {
    let msg = err.to_string();
    assert!(msg.contains(file), "error {msg:?} does not name {file}");
}

#[test]
fn missing_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-model");
    let err = load_err(&missing);
    assert!(matches!(err, EngineError::MissingFolder { .. }));
    assert_names(&err, "no-such-model");
}

#[test]
fn missing_weights_name_model_safetensors() {
    let dir = folder();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let err = load_err(dir.path());
    assert!(matches!(err, EngineError::MissingFile { .. }));
    assert_names(&err, "model.safetensors");
}

#[test]
fn corrupt_weights_name_model_safetensors() {
    let dir = folder();
    std::fs::write(
        dir.path().join("model.safetensors"),
        b"\x10\0\0\0\0\0\0\0{not json",
    )
    .unwrap();
    let err = load_err(dir.path());
    assert!(matches!(err, EngineError::CorruptWeights { .. }), "{err}");
    assert_names(&err, "model.safetensors");
}

#[test]
fn truncated_weights_name_model_safetensors() {
    let dir = folder();
    let path = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_err(dir.path());
    assert!(matches!(err, EngineError::CorruptWeights { .. }), "{err}");
    assert_names(&err, "model.safetensors");
}

#[test]
fn weights_of_another_shape_name_model_safetensors() {
    let dir = folder();
    let other = tempfile::tempdir().unwrap();
    common::bert_base_uncased().write(other.path());
    std::fs::copy(
        other.path().join("model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    let err = load_err(dir.path());
    assert!(matches!(err, EngineError::CorruptWeights { .. }), "{err}");
    assert_names(&err, "model.safetensors");
}

#[test]
fn unsupported_architecture_names_config_json() {
    let dir = folder();
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["model_type"] = json!("gpt2");
    common::write_json(&path, &config);
    let err = load_err(dir.path());
    assert!(matches!(err, EngineError::UnsupportedArchitecture { .. }));
    assert_names(&err, "config.json");
    assert!(err.to_string().contains("gpt2") && err.to_string().contains("bert"));
}

#[test]
fn invalid_config_json_is_named() {
    let dir = folder();
    std::fs::write(dir.path().join("config.json"), "{ \"model_type\": ").unwrap();
    let err = load_err(dir.path());
    assert_names(&err, "config.json");
}

#[test]
fn tokenizer_larger_than_the_vocabulary_names_tokenizer_json() {
    let dir = folder();
    let path = dir.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    // Shrink the model's vocabulary below the tokenizer's, keeping weights consistent with it.
    let smaller = common::tiny_vocab_size() - 5;
    config["vocab_size"] = json!(smaller);
    common::write_json(&path, &config);
    let err = load_err(dir.path());
    assert!(
        matches!(
            err,
            EngineError::VocabularyMismatch { .. } | EngineError::CorruptWeights { .. }
        ),
        "{err}"
    );
    // Weights that do match the smaller vocabulary leave the tokenizer as the only culprit.
    let mut spec = common::e5_small_v2();
    spec.layers = 1;
    let dir2 = tempfile::tempdir().unwrap();
    spec.write(dir2.path());
    let tok_path = dir2.path().join("tokenizer.json");
    let mut tok: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&tok_path).unwrap()).unwrap();
    for extra in ["zebra", "quantum", "##ly"] {
        let n = tok["model"]["vocab"].as_object().unwrap().len();
        tok["model"]["vocab"][extra] = json!(n);
    }
    common::write_json(&tok_path, &tok);
    let err = load_err(dir2.path());
    assert!(
        matches!(err, EngineError::VocabularyMismatch { .. }),
        "{err}"
    );
    assert_names(&err, "tokenizer.json");
}

#[test]
fn missing_tokenizer_is_named() {
    let dir = folder();
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    let err = load_err(dir.path());
    assert_names(&err, "tokenizer.json");
}

#[test]
fn unsupported_pooling_mode_names_the_pooling_config() {
    let dir = folder();
    common::write_json(
        &dir.path().join("1_Pooling/config.json"),
        &json!({"pooling_mode_cls_token": false, "pooling_mode_mean_tokens": false,
                "pooling_mode_max_tokens": true}),
    );
    let err = load_err(dir.path());
    assert_names(&err, "1_Pooling");
}
