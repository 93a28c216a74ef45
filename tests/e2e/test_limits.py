"""Configured limits: body size (413), characters per text (413), and queue capacity (429 with
`Retry-After`), on both the v1 and the OpenAI routes."""

import json
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from . import grpc_client
from .harness import SECOND_MODEL, post_json, start_server

MAX_BODY_BYTES = 100_000
MAX_CHARS = 2_400
QUEUE_CAPACITY = 40


@pytest.fixture(scope="module")
def limited():
    """Body limit 100,000 bytes, 2,400 characters per text, 40 texts waiting per model."""
    server = start_server(
        "--queue-capacity",
        str(QUEUE_CAPACITY),
        env={"AKIDB_MAX_BODY_BYTES": str(MAX_BODY_BYTES), "AKIDB_MAX_CHARS_PER_TEXT": str(MAX_CHARS)},
    )
    try:
        yield server
    finally:
        server.stop()


def oversize_body(key):
    body = json.dumps({key: ["a" * 1000] * 120}).encode()
    assert len(body) > MAX_BODY_BYTES
    return body


# --- body size --------------------------------------------------------------------------------


def test_body_over_the_limit_is_413_on_the_v1_route(limited):
    reply = limited.request(
        "POST", "/api/v1/embed", oversize_body("texts"), {"Content-Type": "application/json"}
    )

    assert reply.status == 413
    assert "embeddings" not in reply.text


def test_body_over_the_limit_is_413_in_the_envelope_on_the_openai_route(limited):
    reply = limited.request(
        "POST", "/v1/embeddings", oversize_body("input"), {"Content-Type": "application/json"}
    )

    assert reply.status == 413
    assert reply.json()["error"]["message"]


def test_body_just_under_the_limit_is_served(limited):
    # Long single words tokenise to [CLS] [UNK] [SEP]: a big body, little inference.
    payload = {"texts": ["a" * MAX_CHARS] * QUEUE_CAPACITY}
    assert len(json.dumps(payload)) < MAX_BODY_BYTES

    reply = limited.post("/api/v1/embed", payload)

    assert reply.status == 200
    assert len(reply.json()["embeddings"]) == QUEUE_CAPACITY


def test_oversize_bodies_are_counted_as_payload_too_large(limited):
    before = limited.metrics().value("candle_errors_total", kind="payload_too_large")

    limited.request("POST", "/api/v1/embed", oversize_body("texts"), {"Content-Type": "application/json"})

    assert limited.metrics().value("candle_errors_total", kind="payload_too_large") == before + 1


# --- characters per text ----------------------------------------------------------------------


def test_text_at_the_character_limit_is_served(limited):
    assert limited.embed(["é" * MAX_CHARS]).status == 200  # characters, not bytes


def test_text_over_the_character_limit_is_413_on_the_v1_route(limited):
    reply = limited.embed(["short", "a" * (MAX_CHARS + 1)])

    assert reply.status == 413
    assert reply.header("content-type").startswith("text/plain")
    assert str(MAX_CHARS) in reply.text


def test_text_over_the_character_limit_is_413_in_the_envelope_on_the_openai_route(limited):
    reply = limited.post("/v1/embeddings", {"input": "a" * (MAX_CHARS + 1)})

    assert reply.status == 413
    assert reply.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "path, payload",
    [
        ("/api/v1/embed", {"texts": ["a" * (MAX_CHARS + 1)]}),
        ("/v1/embeddings", {"input": "a" * (MAX_CHARS + 1)}),
    ],
    ids=["v1", "openai"],
)
def test_a_text_over_the_limit_is_counted_as_payload_too_large_on_both_routes(limited, path, payload):
    before = limited.metrics()

    assert limited.post(path, payload).status == 413

    after = limited.metrics()
    for kind in ("payload_too_large", "bad_request"):
        moved = after.value("candle_errors_total", kind=kind) - before.value("candle_errors_total", kind=kind)
        assert moved == (1 if kind == "payload_too_large" else 0), (kind, moved)


# --- overload ---------------------------------------------------------------------------------


# Each overload request fills the whole queue with ~128-token texts: while one is being
# embedded the others cannot be admitted.
QUEUE_FILLER = [" ".join(["embedding service canary rollout latency"] * 30)] * QUEUE_CAPACITY


def test_full_queue_is_429_with_retry_after(limited):
    payload = {"texts": QUEUE_FILLER, "model": SECOND_MODEL}
    before = limited.metrics().value("candle_errors_total", kind="overloaded")

    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(lambda _: post_json(limited.rest_port, "/api/v1/embed", payload), range(6)))

    statuses = sorted(r.status for r in replies)
    assert set(statuses) <= {200, 429}, statuses
    assert 200 in statuses and 429 in statuses, statuses
    for reply in replies:
        if reply.status == 429:
            assert reply.header("retry-after")
            assert reply.header("content-type").startswith("text/plain")
        else:
            assert len(reply.json()["embeddings"]) == QUEUE_CAPACITY
    after = limited.metrics().value("candle_errors_total", kind="overloaded")
    assert after - before == statuses.count(429)


def test_full_queue_is_resource_exhausted_over_grpc(limited, grpc_generated):
    chan = grpc_client.channel(limited.grpc_port)
    stub = grpc_generated.pb2_grpc.EmbeddingServiceStub(chan)
    request = grpc_generated.pb2.EmbedRequest(texts=QUEUE_FILLER, model=SECOND_MODEL)

    def call(_):
        try:
            return stub.Embed(request, timeout=60)
        except grpc.RpcError as e:
            return e

    try:
        with ThreadPoolExecutor(6) as pool:
            outcomes = list(pool.map(call, range(6)))
    finally:
        chan.close()

    codes = [o.code() if isinstance(o, grpc.RpcError) else grpc.StatusCode.OK for o in outcomes]
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    assert grpc.StatusCode.OK in codes and grpc.StatusCode.RESOURCE_EXHAUSTED in codes, codes
