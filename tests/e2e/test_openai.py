"""`POST /v1/embeddings` driven by the official `openai` Python client (and raw HTTP for the error
envelope): single and batch input, float and base64 encodings, `dimensions`, each model's own
normalisation, and errors in OpenAI's envelope."""

import base64

import numpy as np
import openai
import pytest

from .harness import (
    DEFAULT_MODEL,
    DIMENSION,
    HUB_IDS,
    NORMALIZED,
    PARITY_COSINE,
    SECOND_MODEL,
    SERVED_MODELS,
    cosine,
    golden_item,
    norm,
    unit,
)

HELLO = "hello world"
BATCH = ["A man is eating food.", "The girl is carrying a baby.", "東京は日本の首都です。"]


@pytest.fixture(scope="module")
def client(server):
    """The official client pointed at the shared server (authentication is off there)."""
    with openai.OpenAI(
        base_url=f"http://127.0.0.1:{server.rest_port}/v1", api_key="not-checked", max_retries=0
    ) as c:
        yield c


def test_single_string_input(client):
    # With no encoding_format the client asks for base64 and decodes it itself.
    response = client.embeddings.create(model=DEFAULT_MODEL, input=HELLO)

    assert response.object == "list"
    assert response.model == DEFAULT_MODEL
    assert len(response.data) == 1
    item = response.data[0]
    assert item.object == "embedding" and item.index == 0
    assert len(item.embedding) == DIMENSION
    reference = golden_item(DEFAULT_MODEL, HELLO)
    assert cosine(item.embedding, reference["embedding"]) >= PARITY_COSINE
    assert response.usage.prompt_tokens == response.usage.total_tokens == reference["tokens"]


def test_batch_input_keeps_order_and_indices(client):
    response = client.embeddings.create(model=DEFAULT_MODEL, input=BATCH, encoding_format="float")

    assert [d.index for d in response.data] == list(range(len(BATCH)))
    for text, d in zip(BATCH, response.data):
        reference = golden_item(DEFAULT_MODEL, text)
        assert cosine(d.embedding, reference["embedding"]) >= PARITY_COSINE
    assert response.usage.total_tokens == sum(golden_item(DEFAULT_MODEL, t)["tokens"] for t in BATCH)


def test_base64_decodes_to_the_float_vectors(client):
    floats = client.embeddings.create(model=DEFAULT_MODEL, input=BATCH, encoding_format="float")
    encoded = client.embeddings.create(model=DEFAULT_MODEL, input=BATCH, encoding_format="base64")

    for f, e in zip(floats.data, encoded.data):
        assert isinstance(e.embedding, str)
        decoded = np.frombuffer(base64.b64decode(e.embedding), dtype="<f4")
        assert decoded.shape == (DIMENSION,)
        assert np.array_equal(decoded, np.asarray(f.embedding, dtype=np.float32))


def test_hub_id_alias_is_answered_with_the_short_name(client):
    response = client.embeddings.create(model=HUB_IDS[DEFAULT_MODEL], input=HELLO)

    assert response.model == DEFAULT_MODEL


@pytest.mark.parametrize("model", SERVED_MODELS)
def test_dimensions_truncates_and_renormalises_only_a_normalised_model(client, model):
    full = client.embeddings.create(model=model, input=HELLO, encoding_format="float")
    short = client.embeddings.create(model=model, input=HELLO, dimensions=128, encoding_format="float")

    v = np.asarray(short.data[0].embedding)
    head = np.asarray(full.data[0].embedding[:128])
    assert v.shape == (128,)
    if NORMALIZED[model]:
        # As OpenAI's API: a shortened unit vector is a unit vector again.
        assert norm(v) == pytest.approx(1.0, abs=1e-5)
        assert np.allclose(v, unit(head), atol=1e-5)
    else:
        # An unnormalised model's vectors do not turn into unit vectors because of `dimensions`.
        assert np.array_equal(v.astype(np.float32), head.astype(np.float32))
        assert abs(norm(v) - 1.0) > 0.01


def test_each_model_is_normalised_as_its_own_configuration_says(client):
    l6 = client.embeddings.create(model=DEFAULT_MODEL, input=HELLO, encoding_format="float")
    l3 = client.embeddings.create(model=SECOND_MODEL, input=HELLO, encoding_format="float")

    assert norm(l6.data[0].embedding) == pytest.approx(1.0, abs=1e-4)
    reference = golden_item(SECOND_MODEL, HELLO)["embedding"]
    assert norm(l3.data[0].embedding) == pytest.approx(norm(reference), rel=1e-3)
    assert abs(norm(reference) - 1.0) > 0.01
    assert cosine(l3.data[0].embedding, reference) >= PARITY_COSINE


def test_user_field_is_accepted(client):
    response = client.embeddings.create(model=DEFAULT_MODEL, input=HELLO, user="user-1234")

    assert len(response.data) == 1


@pytest.mark.parametrize("model", ["qwen3-0.6b-4bit", "gemma-300m-4bit", "text-embedding-3-small"])
def test_unknown_model_raises_not_found(client, model):
    with pytest.raises(openai.NotFoundError) as raised:
        client.embeddings.create(model=model, input=HELLO)

    assert raised.value.status_code == 404
    assert raised.value.code == "model_not_found"
    for served in SERVED_MODELS:
        assert served in raised.value.message


def test_token_arrays_are_rejected_with_400(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.embeddings.create(model=DEFAULT_MODEL, input=[[101, 7592, 2088, 102]])

    assert raised.value.status_code == 400


def test_errors_come_in_openais_envelope(server):
    reply = server.post("/v1/embeddings", {"model": "qwen3-0.6b-4bit", "input": HELLO})

    assert reply.status == 404
    assert reply.header("content-type").startswith("application/json")
    error = reply.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == "model_not_found"
    assert isinstance(error["message"], str) and isinstance(error["type"], str)


@pytest.mark.parametrize(
    "payload",
    [
        {"model": DEFAULT_MODEL, "input": []},
        {"model": DEFAULT_MODEL, "input": HELLO, "encoding_format": "int8"},
        {"model": DEFAULT_MODEL, "input": HELLO, "dimensions": 0},
        {"model": DEFAULT_MODEL, "input": HELLO, "dimensions": DIMENSION + 1},
        {"model": DEFAULT_MODEL},
    ],
    ids=["empty-input", "bad-encoding", "dimensions-0", "dimensions-too-big", "input-missing"],
)
def test_invalid_requests_get_400_in_the_envelope(server, payload):
    reply = server.post("/v1/embeddings", payload)

    assert reply.status == 400, reply
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]


def test_a_bad_dimensions_is_refused_before_any_inference(server):
    # The shared server may be serving other tests' requests, but none of this module's run
    # while this one does: the default model's token counter must not move.
    before = server.metrics().value("candle_tokens_total", model=DEFAULT_MODEL)
    reply = server.post(
        "/v1/embeddings", {"model": DEFAULT_MODEL, "input": [HELLO] * 8, "dimensions": DIMENSION + 1}
    )
    after = server.metrics().value("candle_tokens_total", model=DEFAULT_MODEL)

    assert reply.status == 400, reply
    assert reply.json()["error"]["param"] == "dimensions"
    assert after == before, f"{after - before} tokens were embedded for a request refused"
