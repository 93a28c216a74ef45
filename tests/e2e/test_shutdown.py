"""SIGTERM with requests in flight: new connections are refused at once, every accepted request
is still answered in full, and the process exits 0 within the grace period.

40 concurrent requests of 32 texts each. Whether 40 requests computed as fast as the server can
are ever all in flight together depends on the machine and the build (a faster engine answered
them as they arrived), so the test holds them in flight itself: each request is sent with its
headers and half its body, which the server has accepted and counts in flight while it waits for
the rest. SIGTERM lands then; the rest of every body is sent only once new connections are
refused, so every request is read, batched and embedded while the server drains.
"""

import http.client
import json
import threading
import time

from .harness import SECOND_MODEL, refuses_connections, start_server

CONCURRENT_REQUESTS = 40
TEXTS_PER_REQUEST = 32
WORDS_PER_TEXT = 6
GRACE_SECONDS = 60

VOCABULARY = (
    "embedding vector database canary rollout latency kubernetes cluster model tokenizer batch "
    "queue shutdown signal request response server client metric histogram gauge counter"
).split()


def text_of(seed: int) -> str:
    """WORDS_PER_TEXT words, different for each seed."""
    return " ".join(VOCABULARY[(seed * 7 + i * 3) % len(VOCABULARY)] for i in range(WORDS_PER_TEXT))


def wait_in_flight(server, at_least: int, timeout: float = 30.0) -> float:
    """Waits until `candle_requests_in_flight` reaches `at_least`; returns the last value."""
    deadline = time.monotonic() + timeout
    value = 0.0
    while time.monotonic() < deadline:
        value = server.metrics().value("candle_requests_in_flight") or 0.0
        if value >= at_least:
            return value
        time.sleep(0.02)
    raise AssertionError(f"only {value} requests in flight after {timeout}s\n{server.output()}")


def send_half(port: int, body: bytes) -> http.client.HTTPConnection:
    """Sends the headers of a POST to `/api/v1/embed` and the first half of `body`."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=GRACE_SECONDS + 30)
    connection.putrequest("POST", "/api/v1/embed")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(message_body=body[: len(body) // 2])
    return connection


def test_sigterm_answers_every_accepted_request_then_exits_0():
    server = start_server("--shutdown-grace-seconds", str(GRACE_SECONDS))
    connections: list[http.client.HTTPConnection] = []
    try:
        bodies = [
            json.dumps(
                {
                    "texts": [
                        text_of(r * TEXTS_PER_REQUEST + t) for t in range(TEXTS_PER_REQUEST)
                    ],
                    "model": SECOND_MODEL,
                }
            ).encode()
            for r in range(CONCURRENT_REQUESTS)
        ]
        connections = [send_half(server.rest_port, body) for body in bodies]
        # Every request accepted and waiting for its body (the scrape counts itself too).
        wait_in_flight(server, CONCURRENT_REQUESTS + 1)

        signalled = time.monotonic()
        server.terminate()

        refused_while_draining = False
        while server.process.poll() is None and time.monotonic() - signalled < 10:
            if refuses_connections(server.rest_port):
                refused_while_draining = server.process.poll() is None
                break
            time.sleep(0.02)

        results: list[object] = [None] * CONCURRENT_REQUESTS

        def finish(i: int) -> None:
            try:
                connections[i].send(bodies[i][len(bodies[i]) // 2 :])
                response = connections[i].getresponse()
                results[i] = (response.status, response.read())
            except Exception as e:  # recorded and reported below
                results[i] = e

        threads = [threading.Thread(target=finish, args=(i,)) for i in range(CONCURRENT_REQUESTS)]
        for t in threads:
            t.start()
        exit_code = server.process.wait(timeout=GRACE_SECONDS + 5)
        exited_after = time.monotonic() - signalled
        for t in threads:
            t.join(timeout=30)

        failures = [
            (i, r if isinstance(r, Exception) else (r[0], r[1][:200]))
            for i, r in enumerate(results)
            if not isinstance(r, tuple) or r[0] != 200
        ]
        assert not failures, f"{len(failures)} accepted requests not answered 200: {failures[:5]}"
        for _, body in results:
            assert len(json.loads(body)["embeddings"]) == TEXTS_PER_REQUEST
        assert exit_code == 0, server.output()
        assert exited_after < GRACE_SECONDS
        assert refused_while_draining, "new connections were still accepted while draining"
        assert refuses_connections(server.rest_port)
    finally:
        for connection in connections:
            connection.close()
        server.stop()
