"""`akidb.embedding.v1.EmbeddingService` through a client protoc generates from the project's
proto: Embed's shape and vectors, GetModelInfo, the v1.x status codes, gRPC health and
reflection v1."""

import grpc
import numpy as np
import pytest

from . import grpc_client
from .conftest import MAX_TEXTS
from .harness import (
    DEFAULT_MODEL,
    DIMENSION,
    HUB_IDS,
    MAX_SEQ_LENGTH,
    MLX_MODELS,
    PARITY_COSINE,
    SECOND_MODEL,
    SERVED_MODELS,
    cosine,
    golden_item,
    norm,
)

TEXT = "Paris is the capital and most populous city of France."


def embed(stub, pb2, texts, **fields):
    return stub.Embed(pb2.EmbedRequest(texts=texts, **fields), timeout=60)


def test_embed_answers_the_v1_message(stub, grpc_generated):
    reply = embed(stub, grpc_generated.pb2, [TEXT, "hello world"])

    assert reply.model == DEFAULT_MODEL
    assert reply.dimension == DIMENSION
    assert len(reply.embeddings) == 2
    assert all(len(e.values) == DIMENSION for e in reply.embeddings)
    assert reply.usage.total_tokens == (
        golden_item(DEFAULT_MODEL, TEXT)["tokens"] + golden_item(DEFAULT_MODEL, "hello world")["tokens"]
    )
    assert reply.usage.duration_ms >= 0


def test_embed_matches_the_reference_and_normalises_by_default(stub, grpc_generated):
    reference = golden_item(DEFAULT_MODEL, TEXT)

    values = embed(stub, grpc_generated.pb2, [TEXT]).embeddings[0].values

    assert cosine(values, reference["embedding"]) >= PARITY_COSINE
    assert norm(values) == pytest.approx(1.0, abs=1e-4)


def test_embed_honours_model_and_normalize(stub, grpc_generated):
    reference = golden_item(SECOND_MODEL, TEXT)

    reply = embed(stub, grpc_generated.pb2, [TEXT], model=SECOND_MODEL, normalize=False)

    assert reply.model == SECOND_MODEL
    assert cosine(reply.embeddings[0].values, reference["embedding"]) >= PARITY_COSINE
    assert norm(reply.embeddings[0].values) == pytest.approx(norm(reference["embedding"]), rel=1e-3)
    assert reply.usage.total_tokens == reference["tokens"]


def test_embed_accepts_hub_ids(stub, grpc_generated):
    by_alias = embed(stub, grpc_generated.pb2, [TEXT], model=HUB_IDS[SECOND_MODEL])
    by_name = embed(stub, grpc_generated.pb2, [TEXT], model=SECOND_MODEL)

    assert by_alias.model == SECOND_MODEL
    assert np.allclose(by_alias.embeddings[0].values, by_name.embeddings[0].values, atol=1e-6)


def test_embed_agrees_with_rest(stub, grpc_generated, server):
    rest = server.embed([TEXT], pooling="cls").json()["embeddings"][0]

    values = embed(stub, grpc_generated.pb2, [TEXT], pooling="cls").embeddings[0].values

    assert np.allclose(values, rest, atol=1e-6)


def test_get_model_info_describes_the_default_model(stub, grpc_generated):
    info = stub.GetModelInfo(grpc_generated.pb2.GetModelInfoRequest(), timeout=10)

    assert info.model == DEFAULT_MODEL
    assert info.dimension == DIMENSION
    assert info.max_tokens == MAX_SEQ_LENGTH[DEFAULT_MODEL]


def rpc_error(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


def test_empty_input_is_invalid_argument(stub, grpc_generated):
    error = rpc_error(lambda: embed(stub, grpc_generated.pb2, []))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "texts cannot be empty"


def test_too_many_texts_is_invalid_argument(stub, grpc_generated):
    error = rpc_error(lambda: embed(stub, grpc_generated.pb2, ["x"] * (MAX_TEXTS + 1)))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == f"Maximum {MAX_TEXTS} texts per request"


def test_the_configured_number_of_texts_passes(stub, grpc_generated):
    reply = embed(stub, grpc_generated.pb2, [f"text {i}" for i in range(MAX_TEXTS)])

    assert len(reply.embeddings) == MAX_TEXTS


@pytest.mark.parametrize("model", [*MLX_MODELS, "nope"])
def test_unknown_model_is_not_found_listing_the_served_models(stub, grpc_generated, model):
    error = rpc_error(lambda: embed(stub, grpc_generated.pb2, [TEXT], model=model))

    assert error.code() == grpc.StatusCode.NOT_FOUND
    for served in SERVED_MODELS:
        assert served in error.details()


def test_unknown_pooling_is_invalid_argument(stub, grpc_generated):
    error = rpc_error(lambda: embed(stub, grpc_generated.pb2, [TEXT], pooling="max"))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_health_check_reports_serving(grpc_channel):
    assert grpc_client.health_status(grpc_channel) == "SERVING"


def test_reflection_v1_lists_the_embedding_service(grpc_channel):
    services = grpc_client.reflected_services(grpc_channel)

    assert grpc_client.SERVICE in services
    assert "grpc.health.v1.Health" in services


def test_grpc_requests_are_counted_under_the_http_status_their_outcome_maps_to(
    stub, grpc_generated, server
):
    # One status vocabulary for every route: an alert or a gate matches `5..` whatever the
    # transport. A served call is 200; an unknown model is 404, as the REST API answers it.
    served = {"route": "grpc.Embed", "model": DEFAULT_MODEL, "status": "200"}
    missing = {"route": "grpc.Embed", "model": "", "status": "404"}
    before = server.metrics()
    served_before = before.value("candle_requests_total", **served) or 0
    missing_before = before.value("candle_requests_total", **missing) or 0

    embed(stub, grpc_generated.pb2, [TEXT])
    rpc_error(lambda: embed(stub, grpc_generated.pb2, [TEXT], model="nope"))

    after = server.metrics()
    assert after.value("candle_requests_total", **served) == served_before + 1
    assert after.value("candle_requests_total", **missing) == missing_before + 1
    assert not after.find("candle_requests_total", route="grpc.Embed", status="OK")
