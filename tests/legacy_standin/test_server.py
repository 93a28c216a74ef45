"""End-to-end tests of the legacy v1 stand-in, run against a real server process.

The model folder comes from `AKIDB_LEGACY_MODEL_DIR` (default
`<repo>/models/paraphrase-MiniLM-L3-v2`), the reference vectors from `<repo>/tests/golden`. Without them the module fails: run `cargo xtask models` first.
"""

import http.client
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = Path(
    os.environ.get("AKIDB_LEGACY_MODEL_DIR", REPO / "models" / "paraphrase-MiniLM-L3-v2")
)
GOLDEN_FILE = REPO / "tests" / "golden" / "paraphrase-MiniLM-L3-v2.json"
SERVER = Path(__file__).with_name("server.py")
NAME = "paraphrase-MiniLM-L3-v2"
LISTENING = re.compile(r"legacy-standin listening on http://127\.0\.0\.1:(\d+)\n")

if not (MODEL_DIR / "onnx" / "model.onnx").is_file() or not GOLDEN_FILE.is_file():
    raise RuntimeError(
        f"needs {MODEL_DIR}/onnx/model.onnx and {GOLDEN_FILE}: run `cargo xtask models` "
        "(or set AKIDB_LEGACY_MODEL_DIR)"
    )

GOLDEN = json.loads(GOLDEN_FILE.read_text())["items"]


def start_server(*options: str, model_dir: Path = MODEL_DIR) -> tuple[subprocess.Popen, int]:
    """Starts the stand-in on a free port; returns the process and the port it printed."""
    process = subprocess.Popen(
        [sys.executable, str(SERVER), "--model-dir", str(model_dir), "--port", "0", *options],
        stdout=subprocess.PIPE,
        text=True,
    )
    ready, _, _ = select.select([process.stdout], [], [], 60)
    line = process.stdout.readline() if ready else ""
    match = LISTENING.fullmatch(line)
    if match is None:
        process.kill()
        process.wait()
        pytest.fail(f"stand-in did not start: {line!r}")
    return process, int(match[1])


def stop_server(process: subprocess.Popen) -> int:
    """Sends SIGTERM and returns the exit status."""
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=10)


@pytest.fixture(scope="module")
def port():
    """A stand-in with the default options, shared by the module; must exit 0 on SIGTERM."""
    process, port = start_server()
    yield port
    assert stop_server(process) == 0


@dataclass
class Reply:
    """Status, headers and body of one response."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        """The body as JSON, after checking the content type."""
        assert self.headers["Content-Type"] == "application/json"
        return json.loads(self.body)

    @property
    def text(self) -> str:
        """The body as plain text, after checking the content type."""
        assert self.headers["Content-Type"].startswith("text/plain")
        return self.body.decode()


def call(port: int, method: str, path: str, body=None) -> Reply:
    """One request on a fresh connection; dicts and lists are sent as JSON."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


def embed(port: int, texts: list[str], **fields) -> dict:
    """A successful `POST /api/v1/embed`."""
    reply = call(port, "POST", "/api/v1/embed", {"texts": texts, **fields})
    assert reply.status == 200, reply.body
    return reply.json()


def cosine(a, b) -> float:
    """Cosine similarity in float64."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_embed_returns_v1_response_shape(port):
    body = embed(port, ["hello world", "a second, longer sentence"])
    assert set(body) == {"embeddings", "model", "dimension", "usage"}
    assert body["model"] == NAME
    assert body["dimension"] == 384
    assert [len(vector) for vector in body["embeddings"]] == [384, 384]
    assert all(isinstance(x, float) for vector in body["embeddings"] for x in vector)
    assert set(body["usage"]) == {"total_tokens", "duration_ms"}
    assert isinstance(body["usage"]["total_tokens"], int) and body["usage"]["total_tokens"] > 8
    assert isinstance(body["usage"]["duration_ms"], int) and body["usage"]["duration_ms"] >= 0


def test_reports_own_model_name_whatever_the_request_names(port):
    assert embed(port, ["x"], model="qwen3-0.6b-4bit")["model"] == NAME


def test_rejects_empty_texts_with_400(port):
    reply = call(port, "POST", "/api/v1/embed", {"texts": []})
    assert (reply.status, reply.text) == (400, "texts cannot be empty")


def test_rejects_more_than_max_texts_with_400(port):
    reply = call(port, "POST", "/api/v1/embed", {"texts": ["x"] * 33})
    assert (reply.status, reply.text) == (400, "Maximum 32 texts per request")


def test_accepts_exactly_max_texts(port):
    assert len(embed(port, ["x"] * 32)["embeddings"]) == 32


def test_rejects_malformed_json_with_400(port):
    reply = call(port, "POST", "/api/v1/embed", b'{"texts": ["unterminated"')
    assert reply.status == 400
    assert reply.text.startswith("invalid JSON body")


@pytest.mark.parametrize(
    "body",
    [
        {},
        [],
        {"texts": "not a list"},
        {"texts": [1, 2]},
        {"texts": ["x"], "model": 3},
        {"texts": ["x"], "pooling": "max"},
        {"texts": ["x"], "normalize": "yes"},
    ],
)
def test_rejects_wrong_types_with_422(port, body):
    reply = call(port, "POST", "/api/v1/embed", body)
    assert reply.status == 422
    assert reply.text


def test_accepts_mean_pooling_and_rejects_cls_with_400(port):
    assert embed(port, ["x"], pooling="mean")["dimension"] == 384
    reply = call(port, "POST", "/api/v1/embed", {"texts": ["x"], "pooling": "cls"})
    assert reply.status == 400
    assert "cls" in reply.text


def test_health_and_ready(port):
    health = call(port, "GET", "/health")
    assert health.status == 200 and health.json()["status"] == "healthy"
    assert isinstance(health.json()["message"], str)
    ready = call(port, "GET", "/ready")
    assert ready.status == 200 and ready.json()["status"] == "ready"


def test_unknown_route_is_404_and_wrong_method_is_405(port):
    assert call(port, "GET", "/api/v2/nothing").status == 404
    wrong = call(port, "GET", "/api/v1/embed")
    assert wrong.status == 405 and wrong.headers["Allow"] == "POST"
    assert call(port, "POST", "/health").status == 405


def test_metrics_use_the_new_service_names(port):
    embed(port, ["counted"])
    call(port, "POST", "/api/v1/embed", {"texts": []})
    reply = call(port, "GET", "/metrics")
    assert reply.status == 200
    metrics = reply.text
    assert "# TYPE candle_requests_total counter" in metrics
    for status in (200, 400):
        assert re.search(
            rf'^candle_requests_total\{{route="/api/v1/embed",model="{NAME}",status="{status}"\}} '
            r"[1-9]\d*$",
            metrics,
            re.MULTILINE,
        )
    assert "# TYPE candle_request_duration_seconds histogram" in metrics
    bounds = re.findall(
        r'^candle_request_duration_seconds_bucket\{route="/api/v1/embed",le="([^"]+)"\}',
        metrics,
        re.MULTILINE,
    )
    assert bounds == (
        "0.001 0.0025 0.005 0.01 0.015 0.0175 0.02 0.0225 0.025 0.03 0.035 0.04 0.045 0.05 0.06 "
        "0.075 0.09 0.1 0.125 0.25 0.5 1 2.5 5 10 +Inf"
    ).split()
    assert 'candle_request_duration_seconds_count{route="/api/v1/embed"}' in metrics
    build_info = 'akidb_build_info{version="1.x-legacy-standin",revision="none"} 1'
    assert build_info in metrics.splitlines()


@pytest.mark.parametrize("item", GOLDEN, ids=[f"item{i}" for i in range(len(GOLDEN))])
def test_single_text_matches_golden(port, item):
    body = embed(port, [item["text"]], normalize=False)
    assert body["usage"]["total_tokens"] == item["tokens"]
    assert cosine(body["embeddings"][0], item["embedding"]) >= 0.9999


def test_batched_equals_single(port):
    texts = [item["text"] for item in GOLDEN]
    singles = [embed(port, [text], normalize=False)["embeddings"][0] for text in texts]
    batched, tokens = [], 0
    for start in range(0, len(texts), 32):  # the default per-request limit
        body = embed(port, texts[start : start + 32], normalize=False)
        batched += body["embeddings"]
        tokens += body["usage"]["total_tokens"]
    assert tokens == sum(item["tokens"] for item in GOLDEN)
    assert len(batched) == len(singles)
    for single, vector in zip(singles, batched):
        assert cosine(single, vector) >= 0.99999


def test_normalizes_to_unit_length_by_default(port):
    texts = [item["text"] for item in GOLDEN[:8]]
    for vector in embed(port, texts)["embeddings"]:
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    raw = embed(port, texts[:1], normalize=False)["embeddings"][0]
    assert np.linalg.norm(raw) != pytest.approx(1.0, abs=1e-3)


def test_keep_alive_requests_do_not_stall(port):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    body = json.dumps({"texts": ["a short sentence"]})
    headers = {"Content-Type": "application/json"}
    connection.request("POST", "/api/v1/embed", body, headers)
    connection.getresponse().read()
    sock = connection.sock
    started = time.perf_counter()
    for _ in range(50):
        connection.request("POST", "/api/v1/embed", body, headers)
        response = connection.getresponse()
        response.read()
        assert response.status == 200 and response.getheader("Connection") == "keep-alive"
    elapsed = time.perf_counter() - started
    assert connection.sock is sock, "the connection was not kept alive"
    connection.close()
    assert elapsed < 2.0
    assert elapsed / 50 < 0.020, f"mean {elapsed / 50 * 1000:.1f} ms: delayed-ACK stall?"


def test_serves_two_connections_concurrently(port):
    idle = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    idle.request("GET", "/health")
    idle.getresponse().read()  # now an idle keep-alive connection the server must not wait on

    def twenty_requests(text: str) -> list[int]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = json.dumps({"texts": [text]})
        statuses = []
        for _ in range(20):
            connection.request("POST", "/api/v1/embed", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
        connection.close()
        return statuses

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(twenty_requests, ["first connection", "second connection"]))
    assert results == [[200] * 20, [200] * 20]
    idle.request("GET", "/ready")
    assert idle.getresponse().status == 200
    idle.close()


def test_honours_connection_close(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nConnection: close\r\n" in received


def test_answers_expect_100_continue(port):
    body = json.dumps({"texts": ["x"]}).encode()
    head = (
        "POST /api/v1/embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode())
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")


def test_limit_message_uses_the_configured_number():
    process, port = start_server("--max-texts", "2")
    try:
        reply = call(port, "POST", "/api/v1/embed", {"texts": ["a", "b", "c"]})
        assert (reply.status, reply.text) == (400, "Maximum 2 texts per request")
    finally:
        assert stop_server(process) == 0


def test_sigterm_finishes_the_request_in_progress():
    process, port = start_server()
    body = json.dumps({"texts": ["finished after SIGTERM"]}).encode()
    head = f"POST /api/v1/embed HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode() + body[:5])
        time.sleep(0.3)  # the server has read the head: the request is in progress
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert process.poll() is None, "exited before answering the request in progress"
        sock.sendall(body[5:])
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nConnection: close\r\n" in received
    assert process.wait(timeout=10) == 0


def test_serves_an_export_that_takes_token_types_too():
    """all-MiniLM-L6-v2's export has a `token_type_ids` input, which the L3 export lacks."""
    model_dir = REPO / "models" / "all-MiniLM-L6-v2"
    golden = json.loads((REPO / "tests" / "golden" / "all-MiniLM-L6-v2.json").read_text())
    if not (model_dir / "onnx" / "model.onnx").is_file():
        pytest.skip(f"needs {model_dir}/onnx/model.onnx: run `cargo xtask models`")
    process, port = start_server("--name", "all-MiniLM-L6-v2", model_dir=model_dir)
    try:
        items = golden["items"][:4]
        body = embed(port, [item["text"] for item in items])
        for item, vector in zip(items, body["embeddings"]):
            want = np.asarray(item["embedding"])
            cosine = float(np.dot(vector, want) / np.linalg.norm(vector) / np.linalg.norm(want))
            assert cosine > 0.9999, (item["text"], cosine)
    finally:
        assert stop_server(process) == 0
