"""`GET /metrics`: every family is exposed from the start (the counters of embed requests and
errors at zero), and the counters move with the requests served. Runs on its own server so that
"before the first embed request" is really before it."""

import pytest

from .harness import DEFAULT_MODEL, SECOND_MODEL, SERVED_MODELS, start_server

FAMILIES = [
    "candle_requests_total",
    "candle_request_duration_seconds",
    "candle_errors_total",
    "candle_requests_in_flight",
    "candle_queue_depth",
    "candle_batch_size",
    "candle_tokens_total",
    "candle_model_load_duration_seconds",
    "candle_model_inference_duration_seconds",
    "candle_memory_usage_bytes",
    "akidb_build_info",
]
ERROR_KINDS = [
    "bad_request",
    "unknown_model",
    "unauthorized",
    "payload_too_large",
    "overloaded",
    "timeout",
    "not_ready",
    "inference",
]
EMBED_200 = {"route": "/api/v1/embed", "model": DEFAULT_MODEL, "status": "200"}


@pytest.fixture(scope="module")
def fresh():
    """A server that has served no embed request when the module starts."""
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def at_start(fresh):
    """The first scrape, before any embed request."""
    return fresh.metrics()


def test_metrics_are_prometheus_text(fresh):
    reply = fresh.get("/metrics")

    assert reply.status == 200
    assert reply.header("content-type").startswith("text/plain")


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_is_exposed_from_the_start(at_start, family):
    assert family in at_start.families


@pytest.mark.parametrize("kind", ERROR_KINDS)
def test_every_error_kind_starts_at_zero(at_start, kind):
    assert at_start.value("candle_errors_total", kind=kind) == 0


def test_embed_request_counter_starts_at_zero(at_start):
    assert at_start.value("candle_requests_total", **EMBED_200) == 0


def test_build_info_names_version_2_0_0(at_start):
    (labels, value), = at_start.find("akidb_build_info")
    assert labels["version"] == "2.0.0"
    assert labels["revision"]
    assert value == 1


@pytest.mark.parametrize("model", SERVED_MODELS)
def test_model_load_time_is_recorded_per_model(at_start, model):
    assert at_start.value("candle_model_load_duration_seconds", model=model) > 0


def test_memory_usage_is_positive(at_start):
    assert at_start.value("candle_memory_usage_bytes") > 0


def test_successful_embeds_are_counted_by_route_model_and_status(fresh, at_start):
    before = fresh.metrics()
    replies = [fresh.embed(["hello world", "A man is eating food."]) for _ in range(3)]
    assert all(r.status == 200 for r in replies)
    after = fresh.metrics()

    assert after.value("candle_requests_total", **EMBED_200) == before.value(
        "candle_requests_total", **EMBED_200
    ) + 3
    tokens = sum(r.json()["usage"]["total_tokens"] for r in replies)
    assert after.value("candle_tokens_total", model=DEFAULT_MODEL) - before.value(
        "candle_tokens_total", model=DEFAULT_MODEL
    ) == tokens
    for histogram, labels in [
        ("candle_request_duration_seconds_count", {"route": "/api/v1/embed"}),
        ("candle_batch_size_count", {"model": DEFAULT_MODEL}),
        ("candle_model_inference_duration_seconds_count", {"model": DEFAULT_MODEL}),
    ]:
        assert after.value(histogram, **labels) >= before.value(histogram, **labels) + 1, histogram


def test_the_model_label_is_the_model_that_served(fresh):
    labels = {"route": "/v1/embeddings", "model": SECOND_MODEL, "status": "200"}
    before = fresh.metrics().value("candle_requests_total", **labels) or 0

    assert fresh.post("/v1/embeddings", {"model": SECOND_MODEL, "input": "hi"}).status == 200

    assert fresh.metrics().value("candle_requests_total", **labels) == before + 1


@pytest.mark.parametrize(
    "payload, kind",
    [({"texts": []}, "bad_request"), ({"texts": ["x"], "model": "qwen3-0.6b-4bit"}, "unknown_model")],
    ids=["empty", "unknown-model"],
)
def test_failed_requests_are_counted_by_kind(fresh, payload, kind):
    before = fresh.metrics().value("candle_errors_total", kind=kind)

    fresh.post("/api/v1/embed", payload)

    assert fresh.metrics().value("candle_errors_total", kind=kind) == before + 1


def test_queues_are_idle_between_requests(fresh):
    metrics = fresh.metrics()

    for model in SERVED_MODELS:
        assert metrics.value("candle_queue_depth", model=model) == 0
    # This scrape is itself a request in flight.
    assert metrics.value("candle_requests_in_flight") <= 1
