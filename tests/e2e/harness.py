"""Starting `akidb-embed serve` as a real process and talking to it over plain HTTP.

The binary comes from `AKIDB_EMBED_BIN` (default `<repo>/target/debug/akidb-embed`), the model
folders from `<repo>/models`, the reference vectors from `<repo>/tests/golden`.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("AKIDB_EMBED_BIN", REPO / "target" / "debug" / "akidb-embed"))
MODELS_DIR = REPO / "models"
GOLDEN_DIR = REPO / "tests" / "golden"

DEFAULT_MODEL = "all-MiniLM-L6-v2"
SECOND_MODEL = "paraphrase-MiniLM-L3-v2"
SERVED_MODELS = (DEFAULT_MODEL, SECOND_MODEL)
HUB_IDS = {
    DEFAULT_MODEL: "sentence-transformers/all-MiniLM-L6-v2",
    SECOND_MODEL: "sentence-transformers/paraphrase-MiniLM-L3-v2",
}
DIMENSION = 384
MAX_SEQ_LENGTH = {DEFAULT_MODEL: 256, SECOND_MODEL: 128}
# Served as a model's own configuration says: all-MiniLM-L6-v2 normalised, the L3 one not.
NORMALIZED = {DEFAULT_MODEL: True, SECOND_MODEL: False}
# The MLX service's defaults (v1.x), which v2 does not serve.
MLX_MODELS = ("qwen3-0.6b-4bit", "gemma-300m-4bit")

# Cosine every served vector reaches against its reference vector.
PARITY_COSINE = 0.9999

START_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 120.0

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# `rest=127.0.0.1:PORT` in the text format, `"rest":"127.0.0.1:PORT"` in the JSON format.
_REST_ADDR = re.compile(r"\brest\"?\s*[=:]\s*\"?\d{1,3}(?:\.\d{1,3}){3}:(\d+)")
_GRPC_ADDR = re.compile(r"\bgrpc\"?\s*[=:]\s*\"?\d{1,3}(?:\.\d{1,3}){3}:(\d+)")


# ---------------------------------------------------------------------------------------------
# Reference vectors
# ---------------------------------------------------------------------------------------------


@cache
def golden(model: str) -> list[dict]:
    """The reference items (`text`, `tokens`, `embedding`) of `model`."""
    path = GOLDEN_DIR / f"{model}.json"
    return json.loads(path.read_text())["items"]


def golden_item(model: str, text: str) -> dict:
    """The reference item of `model` for `text`."""
    return next(item for item in golden(model) if item["text"] == text)


def cosine(a, b) -> float:
    """Cosine similarity of two vectors."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def norm(v) -> float:
    """Euclidean length of a vector."""
    return float(np.linalg.norm(np.asarray(v, dtype=np.float64)))


def unit(v) -> np.ndarray:
    """`v` scaled to length 1."""
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------


@dataclass
class Reply:
    """Status, headers and raw body of one HTTP response."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        """The body as text."""
        return self.body.decode("utf-8")

    def json(self):
        """The body parsed as JSON."""
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """A header by case-insensitive name."""
        return self.headers.get(name.lower())


def http_request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> Reply:
    """One request on a fresh connection to 127.0.0.1:`port`."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        return Reply(
            status=response.status,
            headers={k.lower(): v for k, v in response.getheaders()},
            body=data,
        )
    finally:
        connection.close()


def post_json(port: int, path: str, payload, headers: dict[str, str] | None = None, **kw) -> Reply:
    """POSTs `payload` as JSON."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return http_request(port, "POST", path, json.dumps(payload).encode(), all_headers, **kw)


def free_port() -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refuses_connections(port: int) -> bool:
    """Whether a TCP connection to 127.0.0.1:`port` is refused: answered with a reset, which
    `connect` reports as refused, or as reset when the listener closes while the connection is
    being set up (seen when the server stops listening on SIGTERM during the attempt)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except (ConnectionRefusedError, ConnectionResetError):
        return True


# ---------------------------------------------------------------------------------------------
# Prometheus text
# ---------------------------------------------------------------------------------------------

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass
class Metrics:
    """Samples of one `/metrics` scrape."""

    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)
    families: set[str] = field(default_factory=set)

    @classmethod
    def parse(cls, text: str) -> "Metrics":
        """Parses the Prometheus text format."""
        metrics = cls()
        for line in text.splitlines():
            if line.startswith("# TYPE ") or line.startswith("# HELP "):
                metrics.families.add(line.split()[2])
                continue
            match = _SAMPLE.match(line)
            if match:
                labels = dict(_LABEL.findall(match[2] or ""))
                metrics.samples.append((match[1], labels, float(match[3])))
        return metrics

    def find(self, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
        """Samples of `name` whose labels include `labels`."""
        return [
            (l, v)
            for n, l, v in self.samples
            if n == name and all(l.get(k) == want for k, want in labels.items())
        ]

    def value(self, name: str, **labels: str) -> float | None:
        """The one sample of `name` with exactly these labels (extra `le` excluded), or None."""
        found = [v for l, v in self.find(name, **labels) if set(l) == set(labels)]
        assert len(found) <= 1, f"{name}{labels} is ambiguous: {found}"
        return found[0] if found else None


# ---------------------------------------------------------------------------------------------
# The server process
# ---------------------------------------------------------------------------------------------


class ServerFailed(Exception):
    """The server exited or never became ready."""


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test runner's environment without any AKIDB_* or RUST_LOG setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AKIDB_") and k != "RUST_LOG"}
    env["NO_COLOR"] = "1"
    env.update(extra or {})
    return env


def serve_command(
    *args: str, models_dir: Path | str | None = MODELS_DIR, ports: bool = True, bare: bool = False
) -> list[str]:
    """`akidb-embed serve` on loopback (`--host`), on free ports (unless not `ports`), with the
    repo's models (or `models_dir`, or none when None), plus `args`; only `args` when `bare`."""
    command = [str(BINARY), "serve"]
    if bare:
        return command + list(args)
    command += ["--host", "127.0.0.1"]
    if ports:
        command += ["--rest-port", "0", "--grpc-port", "0"]
    if models_dir is not None:
        command += ["--models-dir", str(models_dir)]
    return command + list(args)


class Server:
    """A running `akidb-embed serve` process, its ports and its output."""

    def __init__(self, command: list[str], env: dict[str, str]):
        self.command = command
        self.process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.rest_port: int | None = None
        self.grpc_port: int | None = None
        self.listening_line: str | None = None
        self._listening = threading.Event()
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read, args=(self.process.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, lines: list[str]) -> None:
        for line in stream:
            lines.append(_ANSI.sub("", line.rstrip("\n")))

    def _read_stdout(self) -> None:
        for raw in self.process.stdout:
            line = _ANSI.sub("", raw.rstrip("\n"))
            self.stdout.append(line)
            if not self._listening.is_set() and "listening" in line:
                rest, grpc = _REST_ADDR.search(line), _GRPC_ADDR.search(line)
                if rest and grpc:
                    self.rest_port, self.grpc_port = int(rest[1]), int(grpc[1])
                    self.listening_line = line
                    self._listening.set()

    def output(self) -> str:
        """Everything the process printed so far, for failure messages."""
        return "--- stdout ---\n" + "\n".join(self.stdout[-60:]) + "\n--- stderr ---\n" + "\n".join(
            self.stderr[-60:]
        )

    def wait_listening(self, timeout: float = START_TIMEOUT_S) -> "Server":
        """Waits for the `listening` log line and reads the two ports from it."""
        deadline = time.monotonic() + timeout
        while not self._listening.wait(0.05):
            if self.process.poll() is not None:
                for reader in self._readers:
                    reader.join(timeout=5)
                raise ServerFailed(
                    f"exited with {self.process.returncode} before listening\n{self.output()}"
                )
            if time.monotonic() > deadline:
                raise ServerFailed(f"no `listening` line within {timeout}s\n{self.output()}")
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> "Server":
        """Waits until `/health/ready` answers 200; fails at once if it says `failed`."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerFailed(f"exited with {self.process.returncode}\n{self.output()}")
            try:
                last = self.get("/health/ready", timeout=10)
            except OSError:
                time.sleep(0.1)
                continue
            if last.status == 200:
                return self
            try:
                status = last.json().get("status")
            except ValueError:
                status = None
            if status == "failed":
                raise ServerFailed(f"/health/ready says failed: {last.text}\n{self.output()}")
            time.sleep(0.1)
        raise ServerFailed(f"not ready within {timeout}s (last: {last})\n{self.output()}")

    def wait_status(self, path: str, predicate, timeout: float = READY_TIMEOUT_S) -> Reply:
        """Polls GET `path` until `predicate(reply)` holds; returns that reply."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.get(path, timeout=10)
            if predicate(last):
                return last
            time.sleep(0.1)
        raise ServerFailed(f"GET {path} never matched (last: {last})\n{self.output()}")

    # HTTP shortcuts on the REST port.

    def get(self, path: str, headers: dict[str, str] | None = None, **kw) -> Reply:
        """GET `path`."""
        return http_request(self.rest_port, "GET", path, headers=headers, **kw)

    def post(self, path: str, payload, headers: dict[str, str] | None = None, **kw) -> Reply:
        """POST `payload` as JSON to `path`."""
        return post_json(self.rest_port, path, payload, headers, **kw)

    def request(self, method: str, path: str, body: bytes | None = None, headers=None, **kw) -> Reply:
        """Any request with a raw body."""
        return http_request(self.rest_port, method, path, body, headers, **kw)

    def embed(self, texts, **fields) -> Reply:
        """POST /api/v1/embed."""
        return self.post("/api/v1/embed", {"texts": texts, **fields})

    def metrics(self) -> Metrics:
        """Scrapes /metrics."""
        reply = self.get("/metrics")
        assert reply.status == 200, reply
        return Metrics.parse(reply.text)

    def terminate(self) -> None:
        """Sends SIGTERM."""
        self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout`; returns the exit status
        after SIGTERM, or None when it had to be killed."""
        if self.process.poll() is not None:
            return self.process.returncode
        self.terminate()
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None
        finally:
            for reader in self._readers:
                reader.join(timeout=5)


def start_server(
    *args: str,
    env: dict[str, str] | None = None,
    models_dir: Path | str | None = MODELS_DIR,
    ports: bool = True,
    bare: bool = False,
    ready: bool = True,
) -> Server:
    """Starts `akidb-embed serve ARGS` on free loopback ports and waits for `listening` (and
    for readiness when `ready`). The caller must `stop()` it; on failure it is stopped here."""
    if not BINARY.is_file():
        raise ServerFailed(f"{BINARY} does not exist: build it (cargo build -p akidb-embed)")
    command = serve_command(*args, models_dir=models_dir, ports=ports, bare=bare)
    server = Server(command, child_env(env))
    try:
        server.wait_listening()
        if ready:
            server.wait_ready()
    except BaseException:
        server.stop(timeout=10)
        raise
    return server


@dataclass
class Exited:
    """A process that ran to its end."""

    returncode: int
    stdout: str
    stderr: str


def run_to_exit(*args: str, env: dict[str, str] | None = None, timeout: float = 30.0, **kw) -> Exited:
    """Runs `akidb-embed serve ARGS` expecting it to stop on its own (a configuration error)."""
    command = serve_command(*args, **kw)
    try:
        done = subprocess.run(
            command,
            env=child_env(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        # `subprocess.run` killed it: it did not refuse the configuration.
        raise AssertionError(
            f"`{' '.join(command)}` was still running after {timeout}s: {e.stdout!r} {e.stderr!r}"
        ) from None
    return Exited(done.returncode, _ANSI.sub("", done.stdout), _ANSI.sub("", done.stderr))
