"""A real gRPC client of `akidb.embedding.v1.EmbeddingService`, generated at test time from the
project's proto with `grpc_tools.protoc`, plus the standard health and reflection clients."""

from __future__ import annotations

import importlib
import importlib.resources
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_tools import protoc

# reflection v1 and v1alpha have the same messages; grpcio-reflection ships only v1alpha's
# Python classes, so they are sent on the v1 method the server offers.
from grpc_reflection.v1alpha import reflection_pb2

from .harness import REPO

PROTO_ROOT = REPO / "service" / "proto"
PROTO = PROTO_ROOT / "akidb" / "embedding" / "v1" / "embedding.proto"
SERVICE = "akidb.embedding.v1.EmbeddingService"
REFLECTION_V1 = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"


@dataclass
class Generated:
    """The modules protoc generated from the project's proto."""

    pb2: ModuleType
    pb2_grpc: ModuleType


def generate(out_dir: Path) -> Generated:
    """Runs protoc on the project's proto into `out_dir` and imports the result."""
    includes = str(importlib.resources.files("grpc_tools") / "_proto")
    status = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{includes}",
            f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}",
            str(PROTO),
        ]
    )
    assert status == 0, f"protoc failed on {PROTO}"
    sys.path.insert(0, str(out_dir))
    try:
        pb2 = importlib.import_module("akidb.embedding.v1.embedding_pb2")
        pb2_grpc = importlib.import_module("akidb.embedding.v1.embedding_pb2_grpc")
    finally:
        sys.path.remove(str(out_dir))
    return Generated(pb2, pb2_grpc)


def channel(port: int) -> grpc.Channel:
    """An insecure channel to 127.0.0.1:`port`."""
    return grpc.insecure_channel(f"127.0.0.1:{port}")


def health_status(chan: grpc.Channel, service: str = SERVICE) -> str:
    """`grpc.health.v1.Health/Check` for `service`, as the enum's name (`SERVING`, ...)."""
    reply = health_pb2_grpc.HealthStub(chan).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=10
    )
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def reflected_services(chan: grpc.Channel) -> list[str]:
    """The services the server lists through reflection v1 (`list_services`)."""
    call = chan.stream_stream(
        REFLECTION_V1,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    replies = list(call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
    assert len(replies) == 1, replies
    return [s.name for s in replies[0].list_services_response.service]
