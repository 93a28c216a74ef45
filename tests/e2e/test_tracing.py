"""Traces: with `AKIDB_OTLP_ENDPOINT` set, each request's spans (request, tokenize, queue,
inference) are exported over OTLP/gRPC, as children of the caller's W3C `traceparent`.

The collector here is a fake: a gRPC server speaking the real OTLP `TraceService/Export` that
only records what it receives."""

import secrets
import threading
import time
from concurrent import futures

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from .harness import start_server


class FakeCollector(trace_service_pb2_grpc.TraceServiceServicer):
    """Records every exported span."""

    def __init__(self):
        self.spans = []
        self.lock = threading.Lock()

    def Export(self, request, context):  # noqa: N802 (gRPC method name)
        with self.lock:
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    self.spans.extend(scope.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def collector():
    fake = FakeCollector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield fake, port
    finally:
        server.stop(grace=None)


def test_request_spans_are_exported_under_the_callers_traceparent(collector):
    fake, port = collector
    trace_id = secrets.token_hex(16)
    caller_span = secrets.token_hex(8)
    # A short export delay: spans arrive while the server runs, not only at its shutdown flush.
    server = start_server(
        env={"AKIDB_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "OTEL_BSP_SCHEDULE_DELAY": "100"}
    )
    try:
        reply = server.post(
            "/api/v1/embed",
            {"texts": ["hello world", "tracing"]},
            headers={"traceparent": f"00-{trace_id}-{caller_span}-01"},
        )
        assert reply.status == 200
        deadline = time.time() + 30
        while time.time() < deadline:
            with fake.lock:
                ours = [s for s in fake.spans if s.trace_id.hex() == trace_id]
            if {"request", "tokenize", "queue", "inference"} <= {s.name for s in ours}:
                break
            time.sleep(0.2)
    finally:
        server.stop()
    by_name = {s.name: s for s in ours}
    assert {"request", "tokenize", "queue", "inference"} <= set(by_name), [s.name for s in ours]
    request = by_name["request"]
    assert request.parent_span_id.hex() == caller_span
    for child in ("tokenize", "queue", "inference"):
        assert by_name[child].parent_span_id == request.span_id, child
