"""`POST /api/v1/embed`, row by row of the v1 contract (legacy-api.md): the request fields, the
response's shape and types, and the statuses and exact plain-text bodies of its errors."""

import json

import numpy as np
import pytest

from .conftest import MAX_TEXTS
from .harness import DEFAULT_MODEL, DIMENSION, SECOND_MODEL, cosine, golden_item, norm, unit

HELLO = "hello world"
FOOD = "A man is eating food."
HORSE = "A man is riding a horse."


def vector(server, text, **fields):
    """The one vector `/api/v1/embed` gives for `text`."""
    reply = server.embed([text], **fields)
    assert reply.status == 200, reply
    return np.asarray(reply.json()["embeddings"][0])


def is_number(x) -> bool:
    """A JSON number (and not a bool)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def assert_plain_text(reply, status, body):
    """An error in v1.x's form: `status`, a text/plain body equal to `body`."""
    assert reply.status == status, reply
    assert reply.header("content-type").startswith("text/plain"), reply.headers
    assert reply.text == body


# --- the 200 response -------------------------------------------------------------------------


def test_embed_answers_the_v1_fields_with_their_types(server):
    reply = server.embed([HELLO, FOOD])

    assert reply.status == 200
    assert reply.header("content-type").startswith("application/json")
    body = reply.json()
    assert set(body) >= {"embeddings", "model", "dimension", "usage"}
    assert isinstance(body["embeddings"], list) and len(body["embeddings"]) == 2
    for v in body["embeddings"]:
        assert isinstance(v, list) and len(v) == DIMENSION
        assert all(is_number(x) for x in v)
    assert body["model"] == DEFAULT_MODEL
    assert type(body["dimension"]) is int and body["dimension"] == DIMENSION
    usage = body["usage"]
    assert type(usage["total_tokens"]) is int and type(usage["duration_ms"]) is int
    assert usage["duration_ms"] >= 0


def test_total_tokens_is_the_real_tokenizer_count_with_special_tokens(server):
    body = server.embed([HELLO, FOOD]).json()

    expected = golden_item(DEFAULT_MODEL, HELLO)["tokens"] + golden_item(DEFAULT_MODEL, FOOD)["tokens"]
    assert body["usage"]["total_tokens"] == expected == 12


def test_embeddings_come_back_in_input_order(server):
    texts = [HORSE, HELLO, FOOD]

    batch = server.embed(texts).json()["embeddings"]

    for text, v in zip(texts, batch):
        assert cosine(v, vector(server, text)) >= 0.9999
    assert cosine(batch[0], batch[1]) < 0.9


def test_normalize_defaults_to_true(server):
    assert norm(vector(server, FOOD)) == pytest.approx(1.0, abs=1e-4)


def test_normalize_true_equals_the_default(server):
    assert np.allclose(vector(server, FOOD, normalize=True), vector(server, FOOD), atol=1e-6)


def test_normalize_false_returns_the_unnormalised_pooled_vector(server):
    raw = vector(server, FOOD, normalize=False)

    assert abs(norm(raw) - 1.0) > 0.01
    assert np.allclose(unit(raw), vector(server, FOOD), atol=1e-5)


def test_explicit_mean_pooling_equals_the_models_own(server):
    assert np.allclose(vector(server, FOOD, pooling="mean"), vector(server, FOOD), atol=1e-6)


def test_cls_pooling_is_honoured(server):
    cls = vector(server, FOOD, pooling="cls")

    assert len(cls) == DIMENSION
    assert norm(cls) == pytest.approx(1.0, abs=1e-4)
    assert cosine(cls, vector(server, FOOD)) < 0.999


def test_null_optional_fields_mean_their_defaults(server):
    body = server.embed([FOOD], model=None, pooling=None, normalize=None).json()

    assert body["model"] == DEFAULT_MODEL
    assert np.allclose(body["embeddings"][0], vector(server, FOOD), atol=1e-6)


def test_model_field_names_the_model_that_served(server):
    assert server.embed([FOOD], model=SECOND_MODEL).json()["model"] == SECOND_MODEL
    assert server.embed([FOOD]).json()["model"] == DEFAULT_MODEL


def test_accepts_exactly_the_configured_number_of_texts(server):
    reply = server.embed([f"text number {i}" for i in range(MAX_TEXTS)])

    assert reply.status == 200
    assert len(reply.json()["embeddings"]) == MAX_TEXTS


def test_accepts_the_v1_limit_of_32_texts(server):
    reply = server.embed([f"text number {i}" for i in range(32)])

    assert reply.status == 200
    assert len(reply.json()["embeddings"]) == 32


# --- errors: the v1.x plain-text bodies -------------------------------------------------------


def test_rejects_empty_texts_with_400(server):
    assert_plain_text(server.embed([]), 400, "texts cannot be empty")


def test_rejects_more_texts_than_the_limit_with_400_and_the_configured_number(server):
    reply = server.embed(["x"] * (MAX_TEXTS + 1))

    assert_plain_text(reply, 400, f"Maximum {MAX_TEXTS} texts per request")


def test_rejects_malformed_json_with_400_and_axums_text(server):
    reply = server.request(
        "POST", "/api/v1/embed", b'{"texts": ["a",', {"Content-Type": "application/json"}
    )

    assert reply.status == 400
    assert reply.text.startswith("Failed to parse the request body as JSON")


@pytest.mark.parametrize(
    "payload",
    [
        {"texts": "a single string"},
        {"texts": [1, 2, 3]},
        {"texts": ["a"], "normalize": "yes"},
        {"texts": ["a"], "model": 7},
        {"model": DEFAULT_MODEL},
    ],
    ids=["texts-string", "texts-numbers", "normalize-string", "model-number", "texts-missing"],
)
def test_rejects_wrong_types_with_422_and_axums_text(server, payload):
    reply = server.post("/api/v1/embed", payload)

    assert reply.status == 422
    assert reply.text.startswith("Failed to deserialize the JSON body into the target type")


def test_rejects_a_body_without_json_content_type_with_415(server):
    reply = server.request("POST", "/api/v1/embed", json.dumps({"texts": ["a"]}).encode())

    assert reply.status == 415
    assert reply.text == "Expected request with `Content-Type: application/json`"


def test_rejects_an_unknown_pooling_with_400(server):
    reply = server.embed([FOOD], pooling="max")

    assert reply.status == 400
    assert reply.header("content-type").startswith("text/plain")
    assert "max" in reply.text


def test_rejects_a_text_over_the_character_limit_with_413(server):
    # The default limit is 100,000 characters per text.
    reply = server.embed(["a" * 100_001])

    assert reply.status == 413
    assert reply.header("content-type").startswith("text/plain")


# --- request ids ------------------------------------------------------------------------------


def test_every_response_carries_a_request_id(server):
    for reply in (server.embed([FOOD]), server.embed([]), server.get("/health"), server.get("/nope")):
        assert reply.header("x-request-id"), (reply.status, reply.headers)


def test_a_sent_request_id_is_echoed(server):
    reply = server.post("/api/v1/embed", {"texts": [FOOD]}, {"x-request-id": "e2e-req-0042"})

    assert reply.header("x-request-id") == "e2e-req-0042"
