//! Settings from defaults, TOML, the environment and flags, and the errors that name the key.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn toml(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

#[test]
fn defaults_match_the_legacy_ports() {
    let s = Settings::load(None, env(&[]), &[]).unwrap();
    assert_eq!((s.server.rest_port, s.server.grpc_port), (8080, 9090));
    assert_eq!(s.embedding.provider, "candle");
}

#[test]
fn flags_override_environment_which_overrides_the_file() {
    let file = toml("[server]\nrest_port = 1111\ngrpc_port = 2222\nhost = \"127.0.0.1\"\n");
    let s = Settings::load(Some(file.path()), env(&[("AKIDB_REST_PORT", "3333")]), &[]).unwrap();
    assert_eq!(s.server.rest_port, 3333);
    assert_eq!(s.server.grpc_port, 2222);
    let flag = [("server.rest_port", figment::value::Value::from(4444u16))];
    let s = Settings::load(
        Some(file.path()),
        env(&[("AKIDB_REST_PORT", "3333")]),
        &flag,
    )
    .unwrap();
    assert_eq!(s.server.rest_port, 4444);
}

#[test]
fn legacy_config_file_is_accepted() {
    let file = toml(
            "[embedding]\nprovider = \"candle\"\nmodel = \"sentence-transformers/all-MiniLM-L6-v2\"\n\
             [server]\nhost = \"0.0.0.0\"\nrest_port = 8080\ngrpc_port = 9090\ntimeout_seconds = 30\n",
        );
    let s = Settings::load(Some(file.path()), env(&[]), &[]).unwrap();
    assert_eq!(s.embedding.model, "sentence-transformers/all-MiniLM-L6-v2");
}

#[test]
fn mlx_provider_is_refused_with_what_to_set() {
    let err = Settings::load(None, env(&[("AKIDB_EMBEDDING_PROVIDER", "mlx")]), &[]).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("embedding.provider") && msg.contains("candle"),
        "{msg}"
    );
}

#[test]
fn a_bad_value_names_the_key_and_the_variable() {
    let err = Settings::load(None, env(&[("AKIDB_REST_PORT", "abc")]), &[]).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("server.rest_port") && msg.contains("AKIDB_REST_PORT"),
        "{msg}"
    );
}

#[test]
fn an_unknown_key_in_the_file_is_named() {
    let file = toml("[server]\nrest_prot = 1\n");
    let msg = Settings::load(Some(file.path()), env(&[]), &[])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("rest_prot"), "{msg}");
}

#[test]
fn the_example_file_spells_out_the_defaults() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let s = Settings::load(Some(&example), env(&[]), &[]).unwrap();
    assert_eq!(s, Settings::default());
}

#[test]
fn connection_limits_come_from_the_environment_and_zero_is_refused() {
    let s = Settings::load(
        None,
        env(&[
            ("AKIDB_MAX_CONNECTIONS", "8"),
            ("AKIDB_HEADER_READ_TIMEOUT_SECONDS", "2"),
            ("AKIDB_BODY_READ_TIMEOUT_SECONDS", "3"),
        ]),
        &[],
    )
    .unwrap();
    assert_eq!(s.server.max_connections, 8);
    assert_eq!(s.header_read_timeout(), Duration::from_secs(2));
    assert_eq!(s.body_read_timeout(), Duration::from_secs(3));
    let err = Settings::load(None, env(&[("AKIDB_MAX_CONNECTIONS", "0")]), &[]).unwrap_err();
    assert!(err.to_string().contains("server.max_connections"), "{err}");
}

#[test]
fn text_limit_below_the_legacy_32_is_refused() {
    let err = Settings::load(None, env(&[("AKIDB_MAX_TEXTS_PER_REQUEST", "10")]), &[]).unwrap_err();
    assert!(err.to_string().contains("limits.max_texts_per_request"));
}

#[test]
fn engine_choices_come_from_the_file_and_their_variables() {
    let s = Settings::load(None, env(&[]), &[]).unwrap();
    assert_eq!(
        (s.embedding.encoder, s.embedding.matmul, s.embedding.threads),
        (Implementation::Packed, KernelRequest::Auto, 0)
    );
    let file = toml("[embedding]\nencoder = \"candle\"\nmatmul = \"avx2\"\nthreads = 3\n");
    let s = Settings::load(Some(file.path()), env(&[]), &[]).unwrap();
    assert_eq!(
        (s.embedding.encoder, s.embedding.matmul, s.embedding.threads),
        (
            Implementation::Candle,
            KernelRequest::Micro(akidb_kernels::panel::Micro::Avx2),
            3
        )
    );
    let s = Settings::load(
        Some(file.path()),
        env(&[
            ("AKIDB_ENCODER", "packed"),
            ("AKIDB_MATMUL", "gemm"),
            ("AKIDB_THREADS", "2"),
        ]),
        &[],
    )
    .unwrap();
    assert_eq!(
        (s.embedding.encoder, s.embedding.matmul, s.embedding.threads),
        (Implementation::Packed, KernelRequest::Gemm, 2)
    );
}

#[test]
fn a_bad_engine_choice_names_the_key_the_variable_and_the_allowed_values() {
    let msg = Settings::load(None, env(&[("AKIDB_MATMUL", "sse")]), &[])
        .unwrap_err()
        .to_string();
    for part in [
        "embedding.matmul",
        "AKIDB_MATMUL",
        "\"sse\"",
        "gemm",
        "panels",
        "avx512",
    ] {
        assert!(msg.contains(part), "{part}: {msg}");
    }
    let msg = Settings::load(None, env(&[("AKIDB_ENCODER", "onnx")]), &[])
        .unwrap_err()
        .to_string();
    for part in [
        "embedding.encoder",
        "AKIDB_ENCODER",
        "onnx",
        "packed",
        "candle",
    ] {
        assert!(msg.contains(part), "{part}: {msg}");
    }
    let file = toml("[embedding]\nmatmul = \"fast\"\n");
    let msg = Settings::load(Some(file.path()), env(&[]), &[])
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("embedding.matmul") && msg.contains("fast"),
        "{msg}"
    );
}

#[test]
fn hub_offline_mode_follows_hf_hubs_variable() {
    for (value, offline) in [("1", true), ("true", true), ("TRUE", true), ("0", false)] {
        let s = Settings::load(None, env(&[("HF_HUB_OFFLINE", value)]), &[]).unwrap();
        assert_eq!(s.embedding.offline, offline, "HF_HUB_OFFLINE={value}");
    }
    let s = Settings::load(
        None,
        env(&[("AKIDB_OFFLINE", "true"), ("HF_HUB_OFFLINE", "0")]),
        &[],
    )
    .unwrap();
    assert!(s.embedding.offline, "HF_HUB_OFFLINE never turns it off");
}

#[test]
fn the_engine_commands_read_only_the_engines_variables() {
    let s = Settings::load_engine(env(&[
        ("AKIDB_REST_PORT", "abc"),
        ("AKIDB_API_KEYS", "short"),
        ("AKIDB_MODELS_DIR", "/elsewhere"),
        ("AKIDB_MATMUL", "gemm"),
        ("AKIDB_ENCODER", "candle"),
        ("AKIDB_THREADS", "2"),
        ("HF_HUB_OFFLINE", "1"),
    ]))
    .unwrap();
    assert_eq!(s.embedding.matmul, KernelRequest::Gemm);
    assert_eq!(s.embedding.encoder, Implementation::Candle);
    assert_eq!(s.embedding.threads, 2);
    assert!(s.embedding.offline);
    assert_eq!(s.embedding.models_dir, PathBuf::from("./models"));
    let err = Settings::load_engine(env(&[("AKIDB_THREADS", "many")])).unwrap_err();
    assert!(err.to_string().contains("AKIDB_THREADS"), "{err}");
}

#[test]
fn lists_come_from_comma_separated_variables() {
    let s = Settings::load(
        None,
        env(&[
            ("AKIDB_MODELS", "a, b"),
            ("AKIDB_API_KEYS", "0123456789abcdef,fedcba9876543210"),
        ]),
        &[],
    )
    .unwrap();
    assert_eq!(s.embedding.models, vec!["a", "b"]);
    assert_eq!(s.auth.api_keys.len(), 2);
    assert!(
        !format!("{:?}", s.auth).contains("0123456789abcdef"),
        "keys never in Debug"
    );
}

#[test]
fn io_threads_default_to_a_quarter_of_the_cores_and_come_from_the_environment() {
    let s = Settings::load(None, env(&[]), &[]).unwrap();
    assert_eq!(s.io_threads(2), 1, "at least one");
    assert_eq!(s.io_threads(16), 4);
    let s = Settings::load(None, env(&[("AKIDB_IO_THREADS", "3")]), &[]).unwrap();
    assert_eq!(s.io_threads(2), 3, "a setting wins over the cores");
}
