"""Fixtures: one shared server for the read-only tests, and the generated gRPC client."""

import pytest

from . import grpc_client
from .harness import Server, start_server

# The shared server's per-request limit (configured above the v1.x minimum of 32).
MAX_TEXTS = 40


@pytest.fixture(scope="session")
def server() -> Server:
    """Both models from `<repo>/models`, default options except `--max-texts-per-request 40`.
    Shared by every test that only reads from it."""
    process = start_server("--max-texts-per-request", str(MAX_TEXTS))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def grpc_generated(tmp_path_factory) -> grpc_client.Generated:
    """The Python client protoc generates from `service/proto`."""
    return grpc_client.generate(tmp_path_factory.mktemp("grpc_generated"))


@pytest.fixture(scope="session")
def grpc_channel(server):
    """A channel to the shared server's gRPC port."""
    chan = grpc_client.channel(server.grpc_port)
    yield chan
    chan.close()


@pytest.fixture(scope="session")
def stub(grpc_generated, grpc_channel):
    """An `EmbeddingService` stub on the shared server."""
    return grpc_generated.pb2_grpc.EmbeddingServiceStub(grpc_channel)
