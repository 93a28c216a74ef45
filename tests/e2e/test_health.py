"""Health and readiness: the v1.x `/health` and `/ready` shapes, the Kubernetes-style
`/health/live` and `/health/ready`, gRPC health, and a server whose default model is missing."""

import pytest

from . import grpc_client
from .harness import SERVED_MODELS, start_server


# --- a normal server --------------------------------------------------------------------------


def test_health_says_healthy_in_the_v1_shape(server):
    reply = server.get("/health")

    assert reply.status == 200
    body = reply.json()
    assert body["status"] == "healthy"
    assert isinstance(body["message"], str)


def test_ready_says_ready_in_the_v1_shape(server):
    reply = server.get("/ready")

    assert reply.status == 200
    body = reply.json()
    assert body["status"] == "ready"
    assert isinstance(body["message"], str)


def test_liveness_says_alive(server):
    reply = server.get("/health/live")

    assert reply.status == 200
    assert reply.json()["status"] == "alive"


def test_readiness_is_ready_and_lists_both_models(server):
    reply = server.get("/health/ready")

    assert reply.status == 200
    body = reply.json()
    assert body["status"] == "ready"
    assert isinstance(body["message"], str)
    assert sorted(body["models"]) == sorted(SERVED_MODELS)


def test_probes_answer_while_models_load_then_turn_ready():
    server = start_server(ready=False)
    try:
        # Ports are bound before the models load: probes answer at once. Loading may already be
        # over here; the window before warm-up ends is held open and checked, 503 then 200, by
        # `readiness_is_503_until_the_warm_up_passed_and_200_after` (service/src/startup.rs).
        assert server.get("/health/live").status == 200
        first = server.get("/health/ready")
        assert (first.status, first.json()["status"]) in ((503, "loading"), (200, "ready"))
        if first.status == 503:
            assert first.header("retry-after")

        server.wait_ready()
        ready = server.get("/health/ready").json()
        assert ready["status"] == "ready"
        assert sorted(ready["models"]) == sorted(SERVED_MODELS)
    finally:
        server.stop()


# --- a server whose default model does not exist ----------------------------------------------


@pytest.fixture(scope="module")
def failed():
    """`--model nope`: both ports bound, loading fails, the process keeps answering probes."""
    server = start_server("--model", "nope", ready=False)
    try:
        server.wait_status("/health/ready", lambda r: r.json().get("status") != "loading", timeout=60)
        yield server
    finally:
        server.stop()


def test_readiness_fails_when_the_default_model_does_not_exist(failed):
    reply = failed.get("/health/ready")

    assert reply.status == 503
    body = reply.json()
    assert body["status"] == "failed"
    assert "nope" in body["message"]


def test_health_is_unhealthy_when_start_up_failed(failed):
    reply = failed.get("/health")

    assert reply.status == 503
    body = reply.json()
    assert body["status"] == "unhealthy"
    assert "nope" in body["message"]


def test_ready_is_not_ready_when_start_up_failed(failed):
    reply = failed.get("/ready")

    assert reply.status == 503
    assert reply.json()["status"] == "not_ready"


def test_liveness_stays_alive_when_start_up_failed(failed):
    assert failed.get("/health/live").status == 200
    assert failed.process.poll() is None


def test_embed_is_503_with_retry_after_when_not_ready(failed):
    reply = failed.embed(["hello"])

    assert reply.status == 503
    assert reply.header("retry-after")
    assert "embeddings" not in reply.text


def test_grpc_health_is_not_serving_when_start_up_failed(failed):
    chan = grpc_client.channel(failed.grpc_port)
    try:
        assert grpc_client.health_status(chan) == "NOT_SERVING"
    finally:
        chan.close()
