"""Legacy v1 embedding service stand-in: test tooling, not part of the product.

It stands in for the AkiDB 1.x Python/MLX embedding service during local rollouts and
benchmarks. It speaks the legacy v1 REST contract (`POST /api/v1/embed`, `GET /health`,
`GET /ready`) and behaves like that service where it matters for a comparison: inference is
serialised, one request at a time, as the GIL-bound MLX service did, while asyncio keeps accepting
and holding many keep-alive connections. `/metrics` uses the new service's metric names so
Prometheus gates can compare the stable (legacy) and canary (Candle) jobs.

It serves `sentence-transformers/paraphrase-MiniLM-L3-v2` with ONNX Runtime on the packaged ONNX
export. Differences from the legacy service: `model` in a response is the stand-in's own name (the
legacy service echoed the request), and `pooling: "cls"` is answered 400 because the export only
outputs mean-pooled embeddings.

    python tests/legacy_standin/server.py --model-dir DIR --host 127.0.0.1 --port 0
"""

import argparse
import asyncio
import json
import signal
import socket
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

MAX_SEQ_LENGTH = 128  # paraphrase-MiniLM-L3-v2's max_seq_length in sentence-transformers
EMBEDDING_OUTPUT = "461"  # the export's mean-pooled sentence embedding (not normalised)
MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
# Candle's buckets (service/src/metrics.rs): a bound at each SLO and at the rollback trigger.
DURATION_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.015, 0.0175, 0.02, 0.0225, 0.025, 0.03, 0.035, 0.04, 0.045,
    0.05, 0.06, 0.075, 0.09, 0.1, 0.125, 0.25, 0.5, 1, 2.5, 5, 10,
)
BUILD_VERSION = "1.x-legacy-standin"
EMBED_ROUTE = "/api/v1/embed"
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"


class Embedder:
    """Tokenizer and ONNX Runtime session for a model folder's ONNX export."""

    def __init__(self, model_dir: Path, threads: int):
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        # The packaged tokenizer.json pads and truncates to a fixed 128; without this every
        # input would count 128 tokens.
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_SEQ_LENGTH)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(model_dir / "onnx" / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )
        output = next(o for o in self.session.get_outputs() if o.name == EMBEDDING_OUTPUT)
        self.dimension = output.shape[-1]
        # Some exports (all-MiniLM-L6-v2's) take token types too: all zeros for one segment.
        self.takes_token_types = any(
            i.name == "token_type_ids" for i in self.session.get_inputs()
        )

    def embed(self, texts: list[str], normalize: bool) -> tuple[np.ndarray, int]:
        """Embeds texts as one batch padded to its longest; returns vectors and real token count."""
        encodings = self.tokenizer.encode_batch(texts)
        lengths = [len(encoding.ids) for encoding in encodings]
        input_ids = np.zeros((len(texts), max(lengths)), dtype=np.int64)
        attention_mask = np.zeros_like(input_ids)
        for row, (encoding, length) in enumerate(zip(encodings, lengths)):
            input_ids[row, :length] = encoding.ids
            attention_mask[row, :length] = 1
        feed = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.takes_token_types:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        (vectors,) = self.session.run([EMBEDDING_OUTPUT], feed)
        if normalize:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.maximum(norms, 1e-12)
        return vectors, sum(lengths)


class Metrics:
    """Request counter and latency histogram under the new service's metric names."""

    def __init__(self):
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.buckets: dict[str, list[int]] = {}  # route -> count per bucket, not cumulative
        self.sums: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()

    def observe(self, route: str, model: str, status: int, seconds: float) -> None:
        """Records one answered request."""
        self.requests[(route, model, status)] += 1
        buckets = self.buckets.setdefault(route, [0] * len(DURATION_BUCKETS))
        for index, bound in enumerate(DURATION_BUCKETS):
            if seconds <= bound:
                buckets[index] += 1
                break
        self.sums[route] += seconds
        self.counts[route] += 1

    def render(self) -> str:
        """Prometheus text exposition format."""
        lines = [
            "# HELP candle_requests_total Requests answered, by route, model and status.",
            "# TYPE candle_requests_total counter",
        ]
        for (route, model, status), count in sorted(self.requests.items()):
            labels = f'route="{escape(route)}",model="{escape(model)}",status="{status}"'
            lines.append(f"candle_requests_total{{{labels}}} {count}")
        lines += [
            "# HELP candle_request_duration_seconds Time from request received to response ready.",
            "# TYPE candle_request_duration_seconds histogram",
        ]
        for route, buckets in sorted(self.buckets.items()):
            label = f'route="{escape(route)}"'
            cumulative = 0
            for bound, count in zip(DURATION_BUCKETS, buckets):
                cumulative += count
                lines.append(
                    f'candle_request_duration_seconds_bucket{{{label},le="{bound:g}"}} {cumulative}'
                )
            lines += [
                f'candle_request_duration_seconds_bucket{{{label},le="+Inf"}} {self.counts[route]}',
                f"candle_request_duration_seconds_sum{{{label}}} {self.sums[route]}",
                f"candle_request_duration_seconds_count{{{label}}} {self.counts[route]}",
            ]
        lines += [
            "# HELP akidb_build_info Build of the serving process.",
            "# TYPE akidb_build_info gauge",
            f'akidb_build_info{{version="{BUILD_VERSION}",revision="none"}} 1',
        ]
        return "\n".join(lines) + "\n"


def escape(value: str) -> str:
    """Escapes a Prometheus label value."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass
class Request:
    """One parsed HTTP/1.x request."""

    method: str
    path: str
    headers: dict[str, str]
    keep_alive: bool
    received: float
    body: bytes = b""


@dataclass
class Response:
    """Status, body and extra headers of an answer."""

    status: int
    body: bytes
    content_type: str = TEXT
    headers: tuple[tuple[str, str], ...] = ()


class HttpError(Exception):
    """A request that cannot be served as HTTP; answered, then the connection is closed."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class InvalidRequest(Exception):
    """An embed body the contract rejects, with the status the legacy service gave."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def text(status: int, message: str, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    """A plain-text response, as the legacy service answered errors."""
    return Response(status, message.encode(), TEXT, headers)


def json_response(payload: dict) -> Response:
    """A 200 JSON response."""
    return Response(200, json.dumps(payload).encode(), JSON)


def render(response: Response, keep_alive: bool) -> bytes:
    """Status line, headers and body as one bytes object, so each response is a single write."""
    status = HTTPStatus(response.status)
    head = [
        f"HTTP/1.1 {status.value} {status.phrase}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
        *(f"{name}: {value}" for name, value in response.headers),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body


async def read_head(reader: asyncio.StreamReader) -> Request | None:
    """Reads a request line and headers; None when the client closed the connection."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        raise HttpError(431, "request head too large") from None
    received = time.perf_counter()
    request_line, *header_lines = head.decode("latin-1").lstrip("\r\n").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3:
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise HttpError(505, "only HTTP/1.0 and HTTP/1.1 are served")
    headers: dict[str, str] = {}
    for line in filter(None, header_lines):
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise HttpError(400, "malformed header line")
        name, value = name.lower(), value.strip()
        if name == "content-length" and headers.get(name, value) != value:
            raise HttpError(400, "conflicting Content-Length headers")
        headers[name] = value
    connection = {token.strip() for token in headers.get("connection", "").lower().split(",")}
    if version == "HTTP/1.1":
        keep_alive = "close" not in connection
    else:
        keep_alive = "keep-alive" in connection
    path = target.partition("?")[0]
    return Request(method, path, headers, keep_alive, received)


async def read_body(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: Request
) -> bytes:
    """Reads a Content-Length body, answering `Expect: 100-continue` first (curl sends it)."""
    if "transfer-encoding" in request.headers:
        raise HttpError(411, "chunked request bodies are not supported: send Content-Length")
    length = request.headers.get("content-length", "0")
    if not (length.isascii() and length.isdigit()):
        raise HttpError(400, "invalid Content-Length")
    if int(length) > MAX_BODY_BYTES:
        raise HttpError(413, f"request body larger than {MAX_BODY_BYTES} bytes")
    if int(length) and request.headers.get("expect", "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    return await reader.readexactly(int(length))


def parse_embed_request(body: bytes) -> tuple[list[str], bool]:
    """Validates an embed body: 400 for bad JSON, 422 for wrong fields; returns texts, normalize."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as error:
        raise InvalidRequest(400, f"invalid JSON body: {error}") from None
    if not isinstance(payload, dict):
        raise InvalidRequest(422, "request body must be a JSON object")
    texts = payload.get("texts")
    if texts is None:
        raise InvalidRequest(422, "texts: field required")
    if not isinstance(texts, list) or not all(isinstance(item, str) for item in texts):
        raise InvalidRequest(422, "texts: expected an array of strings")
    if not isinstance(payload.get("model", ""), (str, type(None))):
        raise InvalidRequest(422, "model: expected a string")
    pooling = payload.get("pooling")
    if pooling is not None and pooling not in ("mean", "cls"):
        raise InvalidRequest(422, 'pooling: expected "mean" or "cls"')
    if pooling == "cls":
        raise InvalidRequest(
            400, 'pooling "cls" is not supported: the ONNX export only outputs mean pooling'
        )
    normalize = payload.get("normalize")
    if normalize is None:
        normalize = True
    if not isinstance(normalize, bool):
        raise InvalidRequest(422, "normalize: expected a boolean")
    return texts, normalize


class LegacyStandin:
    """The v1 routes over asyncio HTTP/1.1, with inference serialised on one worker thread."""

    def __init__(self, embedder: Embedder, name: str, max_texts: int):
        self.embedder = embedder
        self.name = name
        self.max_texts = max_texts
        self.metrics = Metrics()
        # One worker: requests queue here and run one at a time, like the GIL-bound service.
        self.inference = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self.connections: dict[asyncio.Task, bool] = {}  # connection task -> request in progress
        self.draining = False
        self.routes = {
            EMBED_ROUTE: ("POST", self.embed),
            "/health": ("GET", self.health),
            "/ready": ("GET", self.ready),
            "/metrics": ("GET", self.render_metrics),
        }

    async def serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Serves one connection's requests in order until it closes or the server drains."""
        # Without TCP_NODELAY a keep-alive response can wait ~40 ms for the client's delayed ACK.
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = asyncio.current_task()
        self.connections[task] = False
        try:
            while not self.draining:
                try:
                    request = await read_head(reader)
                    if request is None:
                        return
                    self.connections[task] = True
                    request.body = await read_body(reader, writer, request)
                except HttpError as error:
                    writer.write(render(text(error.status, str(error)), keep_alive=False))
                    await writer.drain()
                    return
                response = await self.respond(request)
                keep_alive = request.keep_alive and not self.draining
                writer.write(render(response, keep_alive))
                await writer.drain()
                self.connections[task] = False
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client went away, or shutdown closed this idle connection
        finally:
            del self.connections[task]
            writer.close()

    async def drain(self) -> None:
        """Closes idle connections and waits for the requests in progress to be answered."""
        self.draining = True
        for task, busy in list(self.connections.items()):
            if not busy:
                task.cancel()
        await asyncio.gather(*self.connections, return_exceptions=True)
        self.inference.shutdown()

    async def respond(self, request: Request) -> Response:
        """Routes a request and records it in the metrics."""
        route = request.path if request.path in self.routes else "unmatched"
        if route == "unmatched":
            response = text(404, f"Not Found: {request.path}")
        elif request.method != self.routes[route][0]:
            allowed = self.routes[route][0]
            response = text(405, f"Method Not Allowed: use {allowed}", (("Allow", allowed),))
        else:
            response = await self.routes[route][1](request)
        model = self.name if route == EMBED_ROUTE else ""
        self.metrics.observe(route, model, response.status, time.perf_counter() - request.received)
        return response

    async def embed(self, request: Request) -> Response:
        """`POST /api/v1/embed` per the v1 contract."""
        try:
            texts, normalize = parse_embed_request(request.body)
        except InvalidRequest as error:
            return text(error.status, str(error))
        if not texts:
            return text(400, "texts cannot be empty")
        if len(texts) > self.max_texts:
            return text(400, f"Maximum {self.max_texts} texts per request")
        loop = asyncio.get_running_loop()
        try:
            vectors, tokens = await loop.run_in_executor(
                self.inference, self.embedder.embed, texts, normalize
            )
        except Exception as error:  # any tokenizer or runtime failure is the contract's 500
            return text(500, f"Embedding failed: {error}")
        duration_ms = round((time.perf_counter() - request.received) * 1000)
        return json_response(
            {
                "embeddings": vectors.tolist(),
                "model": self.name,
                "dimension": self.embedder.dimension,
                "usage": {"total_tokens": tokens, "duration_ms": duration_ms},
            }
        )

    async def health(self, request: Request) -> Response:
        """`GET /health`: the process is up."""
        return json_response({"status": "healthy", "message": f"legacy stand-in ({self.name})"})

    async def ready(self, request: Request) -> Response:
        """`GET /ready`: always ready, since the model is loaded before the port opens."""
        return json_response({"status": "ready", "message": f"model {self.name} loaded"})

    async def render_metrics(self, request: Request) -> Response:
        """`GET /metrics` in the Prometheus text format."""
        return Response(200, self.metrics.render().encode(), "text/plain; version=0.0.4")


async def serve(args: argparse.Namespace) -> None:
    """Loads the model, listens, and serves until SIGTERM or SIGINT."""
    embedder = Embedder(args.model_dir, args.threads)
    embedder.embed(["warm-up"], normalize=True)
    standin = LegacyStandin(embedder, args.name, args.max_texts)
    server = await asyncio.start_server(
        standin.serve_connection, args.host, args.port, limit=MAX_HEAD_BYTES
    )
    port = server.sockets[0].getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"legacy-standin listening on http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()
    await standin.drain()


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-dir", type=Path, required=True, help="folder with tokenizer.json, onnx/model.onnx"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    parser.add_argument("--max-texts", type=int, default=32, help="texts per request")
    parser.add_argument("--name", default="paraphrase-MiniLM-L3-v2", help="reported model name")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(serve(parse_args()))
