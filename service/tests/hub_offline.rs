//! Loading a model by HuggingFace Hub id from a pre-filled hf-hub cache, offline: the cache
//! layout (`models--org--name/refs/main`, `snapshots/<revision>/…`) is built in a temporary
//! `HF_HOME` from the local model files, and `HF_HUB_OFFLINE=1` forbids any download.

mod common;

use std::{path::Path, process::Command};

const ID: &str = "sentence-transformers/all-MiniLM-L6-v2";
const REVISION: &str = "0123456789abcdef0123456789abcdef01234567";
const FILES: &[&str] = &[
    "config.json",
    "tokenizer.json",
    "model.safetensors",
    "modules.json",
    "sentence_bert_config.json",
    "1_Pooling/config.json",
];

/// `HF_HOME/hub` holding `files` of the local all-MiniLM-L6-v2 under Hub id `ID`, as hf-hub lays
/// out a download: blobs by name, snapshot entries linking to them, `refs/main` naming the
/// snapshot.
fn fill_cache(hf_home: &Path, files: &[&str]) {
    let source = common::real_model("all-MiniLM-L6-v2");
    let repo = hf_home
        .join("hub")
        .join(format!("models--{}", ID.replace('/', "--")));
    let snapshot = repo.join("snapshots").join(REVISION);
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), REVISION).unwrap();
    for (i, file) in files.iter().enumerate() {
        let blob = repo.join("blobs").join(format!("blob{i}"));
        std::fs::copy(source.join(file), &blob).unwrap();
        let entry = snapshot.join(file);
        std::fs::create_dir_all(entry.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&blob, &entry).unwrap();
    }
}

fn embed_offline(hf_home: &Path, text: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_akidb-embed"))
        .args(["embed", "--hub", "--model", ID, text])
        .env("HF_HOME", hf_home)
        .env("HF_HUB_OFFLINE", "1")
        // Any attempt to reach the network would fail here rather than hang.
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env_remove("AKIDB_EMBEDDING_MODEL")
        .output()
        .unwrap()
}

#[test]
fn a_hub_id_loads_from_a_prefilled_cache_offline_with_the_reference_vector() {
    let home = tempfile::tempdir().unwrap();
    fill_cache(home.path(), FILES);
    let text = "A man is eating food.";
    let out = embed_offline(home.path(), text);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Named by the id's last segment, as a models folder of that name would be.
    assert_eq!(body["model"], "all-MiniLM-L6-v2");
    let (tokens, reference) = common::golden_item("all-MiniLM-L6-v2", text);
    assert_eq!(body["usage"]["total_tokens"], tokens);
    let vector = common::floats(&body["embeddings"][0]);
    let cosine = common::cosine(&vector, &reference);
    assert!(cosine >= common::PARITY_COSINE, "cosine {cosine}");
}

#[test]
fn offline_a_file_missing_from_the_cache_is_named() {
    let home = tempfile::tempdir().unwrap();
    fill_cache(
        home.path(),
        &FILES
            .iter()
            .copied()
            .filter(|f| *f != "tokenizer.json")
            .collect::<Vec<_>>(),
    );
    let out = embed_offline(home.path(), "hello");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(ID) && err.contains("tokenizer.json") && err.contains("offline"),
        "{err}"
    );
}
