"""API keys: with `AKIDB_API_KEYS` set the embedding routes need `Authorization: Bearer KEY`
(401 with `WWW-Authenticate: Bearer` otherwise) while health, metrics and the model lists stay
open; without it nothing asks for a key."""

import openai
import pytest

from .harness import DEFAULT_MODEL, start_server

KEYS = ("e2e-key-one-0123456789", "e2e-key-two-0123456789")
WRONG = "e2e-key-wrong-0123456789"
LEGACY = ("/api/v1/embed", {"texts": ["hello world"]})
OPENAI = ("/v1/embeddings", {"model": DEFAULT_MODEL, "input": "hello world"})
OPEN_ROUTES = ["/health", "/ready", "/health/live", "/health/ready", "/metrics", "/v1/models", "/api/v1/models"]


def bearer(key):
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def secured():
    """A server with two API keys."""
    server = start_server(env={"AKIDB_API_KEYS": ",".join(KEYS)})
    try:
        yield server
    finally:
        server.stop()


# --- authentication on ------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, bearer(WRONG), {"Authorization": KEYS[0]}], ids=["none", "wrong", "no-scheme"])
def test_legacy_route_without_a_valid_key_is_401(secured, headers):
    reply = secured.post(*LEGACY, headers=headers)

    assert reply.status == 401
    assert reply.header("www-authenticate") == "Bearer"
    assert "embeddings" not in reply.text


@pytest.mark.parametrize("headers", [{}, bearer(WRONG)], ids=["none", "wrong"])
def test_openai_route_without_a_valid_key_is_401_in_the_envelope(secured, headers):
    reply = secured.post(*OPENAI, headers=headers)

    assert reply.status == 401
    assert reply.header("www-authenticate") == "Bearer"
    assert reply.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("key", KEYS)
def test_every_configured_key_is_accepted(secured, key):
    legacy = secured.post(*LEGACY, headers=bearer(key))
    oai = secured.post(*OPENAI, headers=bearer(key))

    assert legacy.status == 200 and len(legacy.json()["embeddings"]) == 1
    assert oai.status == 200 and len(oai.json()["data"]) == 1


@pytest.mark.parametrize("route", OPEN_ROUTES)
def test_health_metrics_and_model_lists_need_no_key(secured, route):
    assert secured.get(route).status == 200


def test_openai_client_with_a_wrong_key_raises_authentication_error(secured):
    with openai.OpenAI(
        base_url=f"http://127.0.0.1:{secured.rest_port}/v1", api_key=WRONG, max_retries=0
    ) as client:
        with pytest.raises(openai.AuthenticationError) as raised:
            client.embeddings.create(model=DEFAULT_MODEL, input="hello world")

    assert raised.value.status_code == 401
    assert raised.value.code == "invalid_api_key"


def test_openai_client_with_a_right_key_embeds(secured):
    with openai.OpenAI(
        base_url=f"http://127.0.0.1:{secured.rest_port}/v1", api_key=KEYS[1], max_retries=0
    ) as client:
        response = client.embeddings.create(model=DEFAULT_MODEL, input="hello world")

    assert len(response.data[0].embedding) == 384


def test_rejected_keys_are_counted_as_unauthorized(secured):
    before = secured.metrics().value("candle_errors_total", kind="unauthorized")

    secured.post(*LEGACY, headers=bearer(WRONG))

    assert secured.metrics().value("candle_errors_total", kind="unauthorized") == before + 1


def test_keys_never_reach_the_logs(secured):
    secured.post(*LEGACY, headers=bearer(KEYS[0]))
    secured.post(*LEGACY, headers=bearer(WRONG))

    logs = "\n".join(secured.stdout + secured.stderr)
    assert all(key not in logs for key in (*KEYS, WRONG))


# --- authentication off (the shared server has no keys) ----------------------------------------


@pytest.mark.parametrize("headers", [{}, bearer("anything-at-all-here")], ids=["none", "any"])
def test_without_configured_keys_no_key_is_needed(server, headers):
    assert server.post(*LEGACY, headers=headers).status == 200
    assert server.post(*OPENAI, headers=headers).status == 200


# --- gRPC ---------------------------------------------------------------------------------------


def test_grpc_embed_needs_a_valid_key_while_health_stays_open(secured, grpc_generated):
    import grpc

    from . import grpc_client

    chan = grpc_client.channel(secured.grpc_port)
    try:
        stub = grpc_generated.pb2_grpc.EmbeddingServiceStub(chan)
        request = grpc_generated.pb2.EmbedRequest(texts=["hello world"])
        for metadata in [(), (("authorization", f"Bearer {WRONG}"),)]:
            with pytest.raises(grpc.RpcError) as failure:
                stub.Embed(request, metadata=metadata)
            assert failure.value.code() == grpc.StatusCode.UNAUTHENTICATED
        reply = stub.Embed(request, metadata=(("authorization", f"Bearer {KEYS[1]}"),))
        assert len(reply.embeddings) == 1 and len(reply.embeddings[0].values) == 384
        assert grpc_client.health_status(chan) == "SERVING"
    finally:
        chan.close()
