"""Faults: model folders that are corrupt, missing or removed, SIGTERM with requests in flight
and idle keep-alive connections open, and SIGKILL followed by a restart on the same ports.
(The draining of many in-flight requests is covered by test_shutdown.py.)"""

import http.client
import os
import signal
import threading
import time

import pytest

from .harness import (
    DEFAULT_MODEL,
    MODELS_DIR,
    SECOND_MODEL,
    free_port,
    post_json,
    refuses_connections,
    start_server,
)

SLACK_S = 30


def models_dir_with(tmp_path, corrupt: str | None = None, skip: tuple[str, ...] = ()):
    """A models folder linking the repo's models, with `corrupt`'s weights truncated."""
    root = tmp_path / "models"
    root.mkdir()
    for name in (DEFAULT_MODEL, SECOND_MODEL):
        if name in skip:
            continue
        if name != corrupt:
            (root / name).symlink_to(MODELS_DIR / name, target_is_directory=True)
            continue
        folder = root / name
        folder.mkdir()
        for entry in (MODELS_DIR / name).iterdir():
            if entry.name != "model.safetensors":
                (folder / entry.name).symlink_to(entry)
        weights = (MODELS_DIR / name / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(weights[: len(weights) // 3])
    return root


def log_of(server) -> str:
    return "\n".join(server.stdout + server.stderr)


# --- model folders at start-up ----------------------------------------------------------------


def test_a_corrupt_second_model_is_reported_and_the_others_are_served(tmp_path):
    root = models_dir_with(tmp_path, corrupt=SECOND_MODEL)
    server = start_server(models_dir=root)
    try:
        ready = server.get("/health/ready").json()
        assert ready["models"] == [DEFAULT_MODEL]
        assert server.embed(["still served"]).status == 200
        refused = server.embed(["x"], model=SECOND_MODEL)
        assert refused.status == 404 and DEFAULT_MODEL in refused.text
        log = log_of(server)
        assert "model not loaded" in log
        assert str(root / SECOND_MODEL / "model.safetensors") in log
    finally:
        server.stop()


def test_a_corrupt_default_model_fails_readiness_naming_the_file(tmp_path):
    root = models_dir_with(tmp_path, corrupt=DEFAULT_MODEL)
    server = start_server(models_dir=root, ready=False)
    try:
        reply = server.wait_status("/health/ready", lambda r: r.json()["status"] != "loading")
        assert reply.status == 503
        body = reply.json()
        assert body["status"] == "failed"
        assert "model.safetensors" in body["message"] and DEFAULT_MODEL in body["message"]
        assert server.get("/health").status == 503
        assert server.get("/health/live").status == 200
        refused = server.embed(["x"])
        assert refused.status == 503 and refused.header("retry-after")
        assert "start-up failed" in log_of(server)
    finally:
        server.stop()


def test_a_configured_model_whose_folder_is_missing_is_named_in_the_log(tmp_path):
    root = models_dir_with(tmp_path, skip=(SECOND_MODEL,))
    server = start_server("--models", f"{DEFAULT_MODEL},{SECOND_MODEL}", models_dir=root)
    try:
        assert server.get("/health/ready").json()["models"] == [DEFAULT_MODEL]
        log = log_of(server)
        assert f'configured model "{SECOND_MODEL}" was not found' in log, log
    finally:
        server.stop()


def test_a_missing_models_folder_fails_readiness_naming_it(tmp_path):
    missing = tmp_path / "no-such-folder"
    server = start_server(models_dir=missing, ready=False)
    try:
        reply = server.wait_status("/health/ready", lambda r: r.json()["status"] != "loading")
        assert reply.status == 503 and reply.json()["status"] == "failed"
        assert str(missing) in reply.json()["message"]
    finally:
        server.stop()


def test_a_model_folder_removed_after_start_up_keeps_being_served(tmp_path):
    root = models_dir_with(tmp_path)
    server = start_server(models_dir=root)
    try:
        for link in root.iterdir():
            link.unlink()  # the links only: the repo's models stay
        root.rmdir()
        reply = server.embed(["loaded models live in memory"], model=SECOND_MODEL)
        assert reply.status == 200
        assert server.get("/health/ready").status == 200
    finally:
        server.stop()


# --- SIGTERM ----------------------------------------------------------------------------------


def test_sigterm_answers_requests_in_flight_and_does_not_wait_for_idle_connections():
    grace = 60
    # Idle connections are not cut by the header timeout here: only the drain can close them.
    server = start_server(
        "--shutdown-grace-seconds",
        str(grace),
        env={"AKIDB_HEADER_READ_TIMEOUT_SECONDS": "600", "AKIDB_TIMEOUT_SECONDS": str(grace)},
    )
    idle = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    try:
        # A keep-alive connection that stays open and idle.
        idle.request("GET", "/health/live")
        assert idle.getresponse().read()
        # ~128 tokens each: every request is still in flight when the last one arrives.
        texts = [f"in flight during shutdown {i} " * 20 for i in range(8)]
        replies: list[object] = [None] * 6

        def call(i: int) -> None:
            try:
                replies[i] = post_json(
                    server.rest_port, "/api/v1/embed", {"texts": texts, "model": SECOND_MODEL}, timeout=grace
                )
            except Exception as e:  # reported below
                replies[i] = e

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(replies))]
        for t in threads:
            t.start()
        deadline = time.monotonic() + SLACK_S
        while (server.metrics().value("candle_requests_in_flight") or 0) < len(replies) + 1:
            assert time.monotonic() < deadline, "the requests never arrived"
            time.sleep(0.02)
        signalled = time.monotonic()
        server.terminate()
        code = server.process.wait(timeout=grace + 5)
        took = time.monotonic() - signalled
        for t in threads:
            t.join(timeout=10)
        bad = [r for r in replies if isinstance(r, Exception) or r.status != 200]
        assert not bad, bad
        assert code == 0, server.output()
        assert took < grace, "an idle keep-alive connection held the shutdown"
        assert refuses_connections(server.rest_port)
        assert "drained" in log_of(server) and "grace period over" not in log_of(server)
    finally:
        idle.close()
        server.stop()


# --- SIGKILL and restart ----------------------------------------------------------------------


def test_sigkill_under_load_then_restart_on_the_same_ports_becomes_ready(record_property):
    rest, grpc = free_port(), free_port()
    ports = ("--rest-port", str(rest), "--grpc-port", str(grpc))
    first = start_server(*ports, ports=False)
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            try:
                post_json(rest, "/api/v1/embed", {"texts": ["killed mid-request"] * 8}, timeout=5)
            except Exception:
                time.sleep(0.05)

    loaders = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    try:
        for t in loaders:
            t.start()
        time.sleep(0.5)
        os.kill(first.process.pid, signal.SIGKILL)
        assert first.process.wait(timeout=10) == -signal.SIGKILL
    finally:
        first.stop()
    started = time.monotonic()
    second = start_server(*ports, ports=False)
    try:
        ready_after = time.monotonic() - started
        stop.set()
        assert (second.rest_port, second.grpc_port) == (rest, grpc)
        reply = second.embed(["back again"])
        assert reply.status == 200 and len(reply.json()["embeddings"]) == 1
        record_property("restart_to_ready_seconds", round(ready_after, 2))
        print(f"restart after SIGKILL: ready in {ready_after:.2f}s")
    finally:
        stop.set()
        for t in loaders:
            t.join(timeout=10)
        second.stop()
