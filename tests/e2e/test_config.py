"""Configuration: invalid settings stop the process before it listens, with a message naming the
key; flags override environment variables, which override the TOML file; the v1.x keys and
variables keep their meaning; the JSON log format."""

import json

import pytest

from . import grpc_client
from .harness import (
    DEFAULT_MODEL,
    HUB_IDS,
    MODELS_DIR,
    SECOND_MODEL,
    free_port,
    run_to_exit,
    start_server,
)


def assert_refused(done, *words):
    """Exited non-zero without listening, and stderr names every one of `words`."""
    assert done.returncode != 0, (done.stdout, done.stderr)
    assert "listening" not in done.stdout
    for word in words:
        assert word in done.stderr, (word, done.stderr)


def write_toml(tmp_path, text):
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


# --- refused configurations -------------------------------------------------------------------


def test_mlx_provider_from_the_environment_is_refused_pointing_to_candle():
    done = run_to_exit(env={"AKIDB_EMBEDDING_PROVIDER": "mlx"})

    assert_refused(done, "embedding.provider", "candle")


def test_mlx_provider_from_a_v1_config_file_is_refused_pointing_to_candle(tmp_path):
    config = write_toml(tmp_path, '[embedding]\nprovider = "mlx"\nmodel = "qwen3-0.6b-4bit"\n')

    done = run_to_exit("--config", str(config))

    assert_refused(done, "embedding.provider", "candle")


def test_non_numeric_rest_port_is_refused_naming_key_and_variable():
    # No --rest-port flag here: it would override the variable under test.
    done = run_to_exit("--grpc-port", "0", env={"AKIDB_REST_PORT": "abc"}, ports=False)

    assert_refused(done, "server.rest_port", "AKIDB_REST_PORT")


def test_per_request_limit_below_the_v1_limit_of_32_is_refused():
    done = run_to_exit("--max-texts-per-request", "10")

    assert_refused(done, "limits.max_texts_per_request")


@pytest.mark.parametrize(
    "toml, key",
    [
        ("[server]\nrest_prot = 8080\n", "rest_prot"),
        ("[limits]\nmax_texts = 64\n", "max_texts"),
        ("[embeddings]\nmodel = \"all-MiniLM-L6-v2\"\n", "embeddings"),
    ],
    ids=["misspelt-server-key", "unknown-limits-key", "unknown-section"],
)
def test_unknown_toml_key_is_refused_naming_it(tmp_path, toml, key):
    done = run_to_exit("--config", str(write_toml(tmp_path, toml)))

    assert_refused(done, key)


def test_api_key_shorter_than_16_characters_is_refused():
    done = run_to_exit(env={"AKIDB_API_KEYS": "long-enough-key-0123,short"})

    assert_refused(done, "auth.api_keys")


def test_missing_config_file_is_refused(tmp_path):
    done = run_to_exit("--config", str(tmp_path / "absent.toml"))

    assert_refused(done, "absent.toml")


# --- precedence: flags > environment > file > defaults ----------------------------------------

# A v1.x config.toml, as operators already have it (plus nothing v2-only).
LEGACY_TOML = """\
[embedding]
provider = "candle"
model = "sentence-transformers/all-MiniLM-L6-v2"

[server]
host = "127.0.0.1"
rest_port = {rest_port}
grpc_port = 0
timeout_seconds = 30
"""


@pytest.mark.parametrize("layers", ["file", "file+env", "file+env+flag"])
def test_rest_port_precedence_is_flag_then_env_then_file(tmp_path, layers):
    file_port, env_port, flag_port = free_port(), free_port(), free_port()
    config = write_toml(tmp_path, LEGACY_TOML.format(rest_port=file_port))
    args, env, expected = ["--config", str(config)], {}, file_port
    if "env" in layers:
        env["AKIDB_REST_PORT"] = str(env_port)
        expected = env_port
    if "flag" in layers:
        args += ["--rest-port", str(flag_port)]
        expected = flag_port
    # An empty models folder: only the sockets matter here, not the models.
    (tmp_path / "models").mkdir()

    server = start_server(*args, env=env, models_dir=tmp_path / "models", ports=False, ready=False)
    try:
        assert server.rest_port == expected
        assert server.get("/health/live").status == 200
    finally:
        server.stop()


def test_json_log_format_carries_the_same_listening_fields(tmp_path):
    (tmp_path / "models").mkdir()

    server = start_server("--log-format", "json", models_dir=tmp_path / "models", ready=False)
    try:
        record = json.loads(server.listening_line)

        def find(node, key):
            if isinstance(node, dict):
                if key in node:
                    return node[key]
                return next((v for v in (find(c, key) for c in node.values()) if v is not None), None)
            return None

        assert find(record, "rest") == f"127.0.0.1:{server.rest_port}"
        assert find(record, "grpc") == f"127.0.0.1:{server.grpc_port}"
        assert server.get("/health/live").status == 200
    finally:
        server.stop()


def test_v1_environment_variables_alone_configure_sockets_models_and_logs(tmp_path):
    rest_port, grpc_port = free_port(), free_port()
    env = {
        "AKIDB_HOST": "127.0.0.1",
        "AKIDB_REST_PORT": str(rest_port),
        "AKIDB_GRPC_PORT": str(grpc_port),
        "AKIDB_MODELS_DIR": str(MODELS_DIR),
        "AKIDB_EMBEDDING_PROVIDER": "candle",
        "AKIDB_EMBEDDING_MODEL": HUB_IDS[DEFAULT_MODEL],
        "AKIDB_LOG_FORMAT": "json",
        "AKIDB_LOG_LEVEL": "info",
    }

    server = start_server(env=env, bare=True)
    try:
        assert (server.rest_port, server.grpc_port) == (rest_port, grpc_port)
        json.loads(server.listening_line)
        assert server.embed(["hello world"]).json()["model"] == DEFAULT_MODEL
    finally:
        server.stop()


# --- the served set and the default, from file and legacy variable -----------------------------


@pytest.fixture(scope="module")
def l3_only(tmp_path_factory):
    """Models and limit from the TOML file, the default from the v1.x variable (a Hub id)."""
    config = tmp_path_factory.mktemp("l3_only") / "config.toml"
    config.write_text(
        f'[embedding]\nmodels = ["{SECOND_MODEL}"]\n\n[limits]\nmax_texts_per_request = 50\n'
    )
    server = start_server("--config", str(config), env={"AKIDB_EMBEDDING_MODEL": HUB_IDS[SECOND_MODEL]})
    try:
        yield server
    finally:
        server.stop()


def test_configured_default_answers_requests_without_a_model(l3_only):
    body = l3_only.embed(["hello world"]).json()

    assert body["model"] == SECOND_MODEL


def test_only_the_configured_models_are_served(l3_only):
    reply = l3_only.embed(["hello world"], model=DEFAULT_MODEL)

    assert reply.status == 404
    assert SECOND_MODEL in reply.text
    listed = l3_only.get("/api/v1/models").json()
    assert listed["default"] == SECOND_MODEL
    assert [m["id"] for m in listed["models"]] == [SECOND_MODEL]
    assert l3_only.get("/health/ready").json()["models"] == [SECOND_MODEL]


def test_grpc_model_info_describes_the_configured_default(l3_only, grpc_generated):
    chan = grpc_client.channel(l3_only.grpc_port)
    try:
        stub = grpc_generated.pb2_grpc.EmbeddingServiceStub(chan)
        info = stub.GetModelInfo(grpc_generated.pb2.GetModelInfoRequest(), timeout=10)
    finally:
        chan.close()

    assert info.model == SECOND_MODEL
    assert info.max_tokens == 128


def test_per_request_limit_from_the_file_applies(l3_only):
    assert l3_only.embed(["x"] * 50).status == 200
    reply = l3_only.embed(["x"] * 51)

    assert reply.status == 400
    assert reply.text == "Maximum 50 texts per request"
