"""Two models in one process, chosen per request; Hub ids as aliases; unknown and MLX model names
refused with a 404 that lists the served models and never carries a vector; the model lists."""

import numpy as np
import pytest

from .harness import (
    DEFAULT_MODEL,
    DIMENSION,
    HUB_IDS,
    MAX_SEQ_LENGTH,
    MLX_MODELS,
    NORMALIZED,
    SECOND_MODEL,
    SERVED_MODELS,
    cosine,
)

TEXT = "Vector databases store embeddings for similarity search."


def embed_one(server, model, **fields):
    reply = server.embed([TEXT], model=model, **fields)
    assert reply.status == 200, reply
    return reply.json()


def test_each_request_is_served_by_the_model_it_names(server):
    l6 = embed_one(server, DEFAULT_MODEL)
    l3 = embed_one(server, SECOND_MODEL)

    assert (l6["model"], l3["model"]) == (DEFAULT_MODEL, SECOND_MODEL)
    assert l6["dimension"] == l3["dimension"] == DIMENSION
    # Different weights: the vectors of one text are far apart, not a copy of the default's.
    assert cosine(l6["embeddings"][0], l3["embeddings"][0]) < 0.99


def test_requests_alternating_between_models_do_not_mix(server):
    first_l6 = embed_one(server, DEFAULT_MODEL)["embeddings"][0]
    first_l3 = embed_one(server, SECOND_MODEL)["embeddings"][0]

    for _ in range(2):
        assert np.allclose(embed_one(server, DEFAULT_MODEL)["embeddings"][0], first_l6, atol=1e-6)
        assert np.allclose(embed_one(server, SECOND_MODEL)["embeddings"][0], first_l3, atol=1e-6)


@pytest.mark.parametrize("model", SERVED_MODELS)
def test_hub_id_alias_gives_the_same_vector_as_the_short_name(server, model):
    by_name = embed_one(server, model)
    by_alias = embed_one(server, HUB_IDS[model])

    assert by_alias["model"] == model
    assert np.allclose(by_alias["embeddings"][0], by_name["embeddings"][0], atol=1e-6)


@pytest.mark.parametrize(
    "model", [*MLX_MODELS, "nope", "bert-base-uncased", "sentence-transformers/all-MiniLM-L12-v2"]
)
def test_unknown_model_gets_404_listing_the_served_models_and_no_vector(server, model):
    reply = server.embed([TEXT], model=model)

    assert reply.status == 404, reply
    assert reply.header("content-type").startswith("text/plain")
    assert "embeddings" not in reply.text
    for served in SERVED_MODELS:
        assert served in reply.text
    assert model in reply.text


def test_openai_models_lists_both_models(server):
    reply = server.get("/v1/models")

    assert reply.status == 200
    body = reply.json()
    assert body["object"] == "list"
    by_id = {m["id"]: m for m in body["data"]}
    assert set(by_id) == set(SERVED_MODELS)
    for name, m in by_id.items():
        assert m["object"] == "model"
        assert m["dimension"] == DIMENSION
        assert m["max_tokens"] == MAX_SEQ_LENGTH[name]
        assert m["pooling"] == "mean"
        assert m["loaded"] is True
        assert HUB_IDS[name] in m["aliases"]


def test_v1_models_lists_both_models_and_the_default(server):
    reply = server.get("/api/v1/models")

    assert reply.status == 200
    body = reply.json()
    assert body["default"] == DEFAULT_MODEL
    by_id = {m["id"]: m for m in body["models"]}
    assert set(by_id) == set(SERVED_MODELS)
    for name, m in by_id.items():
        assert m["dimension"] == DIMENSION
        assert m["max_tokens"] == MAX_SEQ_LENGTH[name]
        assert m["pooling"] == "mean"
        assert m["normalize"] is NORMALIZED[name]
        assert m["loaded"] is True
        assert m["default"] is (name == DEFAULT_MODEL)
        assert HUB_IDS[name] in m["aliases"]
