"""`GET /openapi.json`: a valid OpenAPI 3 document that covers every route the server serves,
and a bounded property-based run of schemathesis against the live server: no 5xx, and every
response (status, content type, headers, body, errors included) as the document says."""

import time

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .harness import start_server

# Every route of the legacy contract, the OpenAI-compatible API and the document itself.
ROUTES = {
    ("POST", "/api/v1/embed"),
    ("GET", "/api/v1/models"),
    ("POST", "/v1/embeddings"),
    ("GET", "/v1/models"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
}

# Examples per operation; the GET routes have no inputs and stop after a few.
MAX_EXAMPLES = 60
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def fuzzed():
    """A server of its own: fuzzing must not disturb the shared one's counters."""
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def document(fuzzed):
    reply = fuzzed.get("/openapi.json")
    assert reply.status == 200, reply
    assert reply.header("content-type").startswith("application/json")
    return reply.json()


def operations(document) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


def test_the_document_is_valid_openapi_3(document):
    assert document["openapi"].startswith("3.")
    validate(document)  # raises on any violation of the OpenAPI specification


def test_the_document_covers_exactly_the_served_routes(fuzzed, document):
    assert operations(document) == ROUTES
    for method, path in sorted(ROUTES):
        reply = fuzzed.request(method, path, b"{}", {"Content-Type": "application/json"})
        assert reply.status not in (404, 405), (method, path, reply.status)
    assert fuzzed.get("/api/v2/embed").status == 404


def test_every_error_status_of_the_embedding_routes_is_documented(document):
    for path, media in (("/api/v1/embed", "text/plain"), ("/v1/embeddings", "application/json")):
        responses = document["paths"][path]["post"]["responses"]
        for status in ("400", "401", "404", "408", "413", "429", "500", "503"):
            assert media in responses[status]["content"], (path, status)
        for status in ("429", "503"):
            assert "Retry-After" in responses[status]["headers"], (path, status)


@pytest.fixture(scope="module")
def api_schema(fuzzed):
    return schemathesis.openapi.from_url(f"http://127.0.0.1:{fuzzed.rest_port}/openapi.json")


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_every_operation_conforms_to_the_document(api_schema, mode):
    # Driven through hypothesis directly: schemathesis' pytest plugin does not load under this
    # pytest. Each operation gets its own bounded, derandomised run.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    # schemathesis leaves out the document's own route.
    assert {o.label for o in operations} == {f"{m} {p}" for m, p in ROUTES} - {"GET /openapi.json"}
    for operation in operations:
        if mode == GenerationMode.NEGATIVE and operation.method.upper() != "POST":
            continue  # nothing to make invalid: the GET routes take no input

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def conforms(case):
            case.call_and_validate(checks=CHECKS, timeout=60)

        conforms()


def test_the_server_is_still_ready_after_fuzzing(fuzzed):
    started = time.monotonic()
    assert fuzzed.get("/health/ready").status == 200
    reply = fuzzed.embed(["still serving"])
    assert reply.status == 200 and len(reply.json()["embeddings"]) == 1
    assert fuzzed.process.poll() is None
    assert time.monotonic() - started < 60
