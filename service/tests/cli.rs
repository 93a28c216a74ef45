//! `akidb-embed embed` prints the legacy response shape as JSON, with the reference vectors,
//! whichever encoder and kernel the engine's variables pick.

mod common;

use std::process::Command;

/// The engine's variables, removed unless a test sets them.
const ENGINE_VARS: &[&str] = &["AKIDB_ENCODER", "AKIDB_MATMUL", "AKIDB_THREADS"];

/// `akidb-embed embed` of two texts with `vars` set.
fn embed(vars: &[(&str, &str)]) -> std::process::Output {
    embed_texts(
        "all-MiniLM-L6-v2",
        &["hello world", "A man is eating food."],
        vars,
    )
}

/// `akidb-embed embed` of `texts` on `model` with `vars` set.
fn embed_texts(model: &str, texts: &[&str], vars: &[(&str, &str)]) -> std::process::Output {
    let models = common::models_dir();
    common::real_model(model);
    let mut command = Command::new(env!("CARGO_BIN_EXE_akidb-embed"));
    command
        .args(["embed", "--model", model, "--models-dir"])
        .arg(&models)
        .args(texts);
    for var in ENGINE_VARS {
        command.env_remove(var);
    }
    command.envs(vars.iter().copied());
    command.output().unwrap()
}

#[test]
fn embed_prints_json_with_the_reference_vector() {
    check_reference_vectors(&[]);
}

#[test]
fn the_engines_variables_pick_the_encoder_kernel_and_threads() {
    check_reference_vectors(&[("AKIDB_MATMUL", "gemm"), ("AKIDB_THREADS", "2")]);
    // Where AMX runs, `auto` is AMX: the strict f32 panels and AMX each match the reference
    // (elsewhere `amx` falls back to the fastest kernel, with a warning).
    check_reference_vectors(&[("AKIDB_MATMUL", "panels")]);
    check_reference_vectors(&[("AKIDB_MATMUL", "amx")]);
    check_reference_vectors(&[("AKIDB_ENCODER", "candle")]);
}

/// On AMX the products are within ~2⁻¹⁶ of f32 ones: every reference text of both models
/// gives the strict f32 panels' vector back to within f32 noise, far inside the reference
/// parity (`PARITY_COSINE`). Skipped, with a notice, where the CPU or OS does not run AMX.
#[test]
fn amx_vectors_match_the_f32_panels_ones() {
    if !akidb_kernels::amx::available() {
        println!("skipped: this CPU or OS does not run AMX with bf16");
        return;
    }
    for model in ["all-MiniLM-L6-v2", "paraphrase-MiniLM-L3-v2"] {
        let golden: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(common::golden_dir().join(format!("{model}.json"))).unwrap(),
        )
        .unwrap();
        let texts: Vec<&str> = golden["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["text"].as_str().unwrap())
            .collect();
        let run = |kernel: &str| {
            let out = embed_texts(model, &texts, &[("AKIDB_MATMUL", kernel)]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            body["embeddings"]
                .as_array()
                .unwrap()
                .iter()
                .map(common::floats)
                .collect::<Vec<_>>()
        };
        let (panels, amx) = (run("panels"), run("amx"));
        assert_eq!(panels.len(), texts.len());
        let lowest = panels
            .iter()
            .zip(&amx)
            .map(|(p, a)| common::cosine(p, a))
            .fold(f64::INFINITY, f64::min);
        println!(
            "{model}: AMX against the f32 panels, lowest cosine 1 - {:.1e}",
            1.0 - lowest
        );
        assert!(lowest >= 0.999999, "{model}: cosine {lowest}");
    }
}

#[test]
fn a_bad_engine_variable_names_the_key_and_the_allowed_values() {
    let out = embed(&[("AKIDB_MATMUL", "sse")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for part in ["embedding.matmul", "AKIDB_MATMUL", "sse", "gemm", "avx2"] {
        assert!(err.contains(part), "{part}: {err}");
    }
    let out = embed(&[("AKIDB_ENCODER", "onnx")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for part in ["embedding.encoder", "AKIDB_ENCODER", "packed", "candle"] {
        assert!(err.contains(part), "{part}: {err}");
    }
}

/// `embed` with `vars` prints the reference vectors, normalised, and the token count.
fn check_reference_vectors(vars: &[(&str, &str)]) {
    let out = embed(vars);
    assert!(
        out.status.success(),
        "{vars:?}: {}",
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
        assert!(
            cosine >= common::PARITY_COSINE,
            "{vars:?} {text:?}: cosine {cosine}"
        );
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
