"""Hostile input against the live server: broken encodings, absurd sizes and shapes, wrong
types, slow clients and idle connections. Each gets a defined status in the route's own error
shape (plain text on the v1 route as v1.x answered, OpenAI's envelope on `/v1/*`), and after
each the server is still ready and still embeds."""

import json
import socket
import threading
import time

import pytest

from .harness import DEFAULT_MODEL, http_request, start_server

HEADER_TIMEOUT_S = 2
BODY_TIMEOUT_S = 2
MAX_CONNECTIONS = 12
MAX_TEXTS = 256  # the default
MAX_BODY_BYTES = 8 * 1024 * 1024  # the default
# Slack for a loaded 2-core machine; no assertion depends on being fast.
SLACK_S = 20

LEGACY = "/api/v1/embed"
OPENAI = "/v1/embeddings"


@pytest.fixture(scope="module")
def hostile():
    """Default limits, except short client timeouts and a small connection limit."""
    server = start_server(
        env={
            "AKIDB_HEADER_READ_TIMEOUT_SECONDS": str(HEADER_TIMEOUT_S),
            "AKIDB_BODY_READ_TIMEOUT_SECONDS": str(BODY_TIMEOUT_S),
            "AKIDB_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
        }
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def still_serving(request):
    """After every test: ready, and a normal request still embeds."""
    yield
    if "hostile" not in request.fixturenames:
        return
    server = request.getfixturevalue("hostile")
    assert server.process.poll() is None, server.output()
    deadline = time.monotonic() + HEADER_TIMEOUT_S + SLACK_S
    while True:
        try:
            ready = server.get("/health/ready", timeout=10)
            break
        except OSError:
            # Only the connection-limit test may leave the listener briefly full.
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.2)
    assert ready.status == 200, ready
    reply = server.embed(["a normal request"])
    assert reply.status == 200 and len(reply.json()["embeddings"]) == 1, reply


# --- raw HTTP ---------------------------------------------------------------------------------


def read_response(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], bytes] | None:
    """One HTTP response from `sock`, or None when the server closed without one."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return status, headers, body
    except ConnectionResetError:
        return None


def head_of(path: str, length: int | None, extra: str = "") -> bytes:
    framing = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{framing}{extra}\r\n"
    ).encode()


def assert_error_shape(path: str, status: int, headers: dict[str, str], body: bytes, want: int):
    assert status == want, (status, body[:300])
    if path == OPENAI:
        assert headers["content-type"].startswith("application/json")
        error = json.loads(body)["error"]
        assert error["message"] and error["type"]
    else:
        assert headers["content-type"].startswith("text/plain")
        assert body


def post_raw(server, path: str, body: bytes):
    return server.request("POST", path, body, {"Content-Type": "application/json"})


def check(reply, path: str, want: int):
    assert_error_shape(path, reply.status, reply.headers, reply.body, want)
    return reply


ROUTES = [LEGACY, OPENAI]


def payload(path: str, texts) -> dict:
    return {"texts": texts} if path == LEGACY else {"input": texts}


# --- encodings --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ROUTES)
def test_invalid_utf8_is_400(hostile, path):
    key = "texts" if path == LEGACY else "input"
    body = b'{"' + key.encode() + b'": ["caf\xc3\x28 \xff\xfe"]}'
    reply = check(post_raw(hostile, path, body), path, 400)
    if path == LEGACY:
        assert reply.text.startswith("Failed to parse the request body as JSON")


@pytest.mark.parametrize("escape", [r"\ud800", r"\udc00", r"a\ud800b"])
@pytest.mark.parametrize("path", ROUTES)
def test_lone_surrogate_escapes_are_400(hostile, path, escape):
    key = "texts" if path == LEGACY else "input"
    body = ('{"%s": ["%s"]}' % (key, escape)).encode()
    check(post_raw(hostile, path, body), path, 400)


@pytest.mark.parametrize("path", ROUTES)
def test_escaped_nul_characters_are_embedded(hostile, path):
    reply = hostile.post(path, payload(path, ["nul\u0000inside", "\u0000"]))
    assert reply.status == 200, reply
    body = reply.json()
    assert len(body["embeddings"] if path == LEGACY else body["data"]) == 2


@pytest.mark.parametrize("path", ROUTES)
def test_raw_nul_bytes_in_a_string_are_400(hostile, path):
    key = "texts" if path == LEGACY else "input"
    body = b'{"' + key.encode() + b'": ["nul\x00raw"]}'
    check(post_raw(hostile, path, body), path, 400)


# --- shapes and sizes -------------------------------------------------------------------------


DEEP = "[" * 10_000 + "]" * 10_000


@pytest.mark.parametrize("path", ROUTES)
def test_json_nested_10000_deep_in_an_unknown_field_is_skipped(hostile, path):
    # Unknown fields are ignored (as v1.x did); skipping one is iterative, so depth costs no stack.
    key = "texts" if path == LEGACY else "input"
    body = ('{"%s": ["a"], "deep": %s}' % (key, DEEP)).encode()
    assert post_raw(hostile, path, body).status == 200


@pytest.mark.parametrize("path,status", [(LEGACY, 422), (OPENAI, 400)])
def test_json_nested_10000_deep_in_the_texts_is_refused(hostile, path, status):
    # The v1 route sees a list where a string belongs (422, as v1.x); the OpenAI route's
    # string-or-list input reads the nesting and hits the depth limit (400).
    key = "texts" if path == LEGACY else "input"
    body = ('{"%s": %s}' % (key, DEEP)).encode()
    check(post_raw(hostile, path, body), path, status)


@pytest.mark.parametrize("path", ROUTES)
def test_100000_texts_are_400_naming_the_limit(hostile, path):
    reply = check(hostile.post(path, payload(path, ["a"] * 100_000)), path, 400)
    assert str(MAX_TEXTS) in reply.text


@pytest.mark.parametrize("path", ROUTES)
def test_a_10_mb_text_is_413(hostile, path):
    check(hostile.post(path, payload(path, ["a" * 10_000_000])), path, 413)


@pytest.mark.parametrize("path", ROUTES)
def test_a_50_mb_declared_body_is_413_before_it_is_sent(hostile, path):
    with socket.create_connection(("127.0.0.1", hostile.rest_port)) as sock:
        sock.sendall(head_of(path, 50 * 1024 * 1024))
        # Only the head went out: the answer comes from the declared length alone.
        response = read_response(sock, timeout=SLACK_S)
    assert response is not None, "closed without a response"
    assert_error_shape(path, *response, want=413)


@pytest.mark.parametrize("path", ROUTES)
def test_a_50_mb_body_sent_in_full_gets_413_not_a_reset(hostile, path):
    # Clients that send the whole body before reading (most do) still read the 413.
    body = json.dumps(payload(path, ["a" * 1_000_000] * 50)).encode()
    assert len(body) > 50_000_000
    check(post_raw(hostile, path, body), path, 413)


@pytest.mark.parametrize("path", ROUTES)
def test_a_50_mb_chunked_body_is_413(hostile, path):
    key = "texts" if path == LEGACY else "input"
    start = ('{"%s": [' % key).encode()
    chunk = ('"' + "a" * 1_048_000 + '",').encode()

    def send(sock):
        try:
            sock.sendall(b"%x\r\n%s\r\n" % (len(start), start))
            for _ in range(50):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:
            pass  # the server stopped reading: allowed

    with socket.create_connection(("127.0.0.1", hostile.rest_port)) as sock:
        sock.sendall(head_of(path, None))
        sender = threading.Thread(target=send, args=(sock,), daemon=True)
        sender.start()
        response = read_response(sock, timeout=SLACK_S + 30)
        sender.join(timeout=SLACK_S)
    assert response is not None, "closed without a response"
    assert_error_shape(path, *response, want=413)


def test_a_body_at_the_limit_is_read_and_validated(hostile):
    # 8 MiB of texts: read in full, then refused for the number of texts, not the size.
    texts = ["a" * 30_000] * 270
    body = json.dumps({"texts": texts}).encode()
    assert len(body) <= MAX_BODY_BYTES
    reply = check(post_raw(hostile, LEGACY, body), LEGACY, 400)
    assert f"Maximum {MAX_TEXTS} texts per request" in reply.text


@pytest.mark.parametrize("body", [b"", b"null", b"[]", b'"texts"', b"42", b"{"], ids=repr)
@pytest.mark.parametrize("path", ROUTES)
def test_bodies_that_are_not_a_request_object_are_4xx(hostile, path, body):
    reply = post_raw(hostile, path, body)
    assert reply.status in (400, 422), (reply.status, reply.body[:200])
    check(reply, path, reply.status)


# --- wrong types for every field ---------------------------------------------------------------

WRONG_LEGACY = {
    "texts": ["one string", 7, {"a": 1}, None, [1, 2], [["nested"]], True],
    "model": [7, ["all-MiniLM-L6-v2"], {"name": "x"}, True],
    "pooling": [1, True, ["mean"], {"kind": "mean"}],
    "normalize": ["yes", 1, ["true"], {"on": True}],
}


@pytest.mark.parametrize(
    "field,value",
    [(f, v) for f, vs in WRONG_LEGACY.items() for v in vs],
    ids=lambda x: json.dumps(x) if not isinstance(x, str) else x,
)
def test_legacy_wrong_types_are_422_with_axums_text(hostile, field, value):
    request = {"texts": ["hello"], field: value}
    reply = check(hostile.post(LEGACY, request), LEGACY, 422)
    assert reply.text.startswith("Failed to deserialize the JSON body into the target type")


WRONG_OPENAI = {
    "input": [7, {"a": 1}, None, [1, "mixed"], [["nested"]], True],
    "model": [7, ["m"], {"name": "x"}],
    "encoding_format": [1, ["float"], "int8"],
    "dimensions": ["10", 1.5, [10], 0, -3],
    "user": [1, ["u"], {"id": 1}],
}


@pytest.mark.parametrize(
    "field,value",
    [(f, v) for f, vs in WRONG_OPENAI.items() for v in vs],
    ids=lambda x: json.dumps(x) if not isinstance(x, str) else x,
)
def test_openai_wrong_types_are_400_in_the_envelope(hostile, field, value):
    request = {"input": "hello", "model": DEFAULT_MODEL, field: value}
    reply = check(hostile.post(OPENAI, request), OPENAI, 400)
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == field, error


@pytest.mark.parametrize("path", ROUTES)
def test_unknown_fields_are_ignored_as_v1x_ignored_them(hostile, path):
    request = {**payload(path, ["hello"]), "unknown": {"deep": [1, 2]}, "texts_extra": 1}
    reply = hostile.post(path, request)
    assert reply.status == 200, reply


# --- slow and idle clients --------------------------------------------------------------------


def test_a_client_trickling_its_headers_is_cut_off(hostile):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", hostile.rest_port)) as sock:
        sock.sendall(b"POST /api/v1/embed HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        closed = False
        sock.settimeout(0.5)
        while time.monotonic() - started < HEADER_TIMEOUT_S + SLACK_S:
            try:
                sock.sendall(b"X-Slow: a\r\n")
                if sock.recv(4096) == b"":
                    closed = True
                    break
            except socket.timeout:
                continue
            except OSError:
                closed = True
                break
    assert closed, "the server kept a connection whose headers never ended"


@pytest.mark.parametrize("path", ROUTES)
def test_a_client_trickling_its_body_gets_408(hostile, path):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", hostile.rest_port)) as sock:
        sock.sendall(head_of(path, 10_000))
        sock.settimeout(0.3)
        response = None
        while time.monotonic() - started < BODY_TIMEOUT_S + SLACK_S:
            try:
                sock.sendall(b" ")
            except OSError:
                response = read_response(sock, timeout=5)
                break
            try:
                response = read_response(sock, timeout=0.3)
                break
            except TimeoutError:
                continue
    assert response is not None, "no answer to a body that never ended"
    assert_error_shape(path, *response, want=408)
    assert time.monotonic() - started >= BODY_TIMEOUT_S


def test_an_idle_connection_is_closed_after_the_header_timeout(hostile):
    with socket.create_connection(("127.0.0.1", hostile.rest_port)) as sock:
        response = read_response(sock, timeout=HEADER_TIMEOUT_S + SLACK_S)
        # Closed without a request; a 408 before closing is fine too.
        assert response is None or response[0] == 408


def test_connections_over_the_limit_get_503_and_idle_ones_are_reaped(hostile):
    # The server notices a client's close asynchronously, so the previous request's connection
    # may hold its slot a moment longer: give it time, and when a request still gets through,
    # open one more idle connection and ask again (a bounded number of times).
    time.sleep(0.5)
    idle = [socket.create_connection(("127.0.0.1", hostile.rest_port)) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.2)
        reply = http_request(hostile.rest_port, "GET", "/health/ready", timeout=10)
        while reply.status == 200 and len(idle) < MAX_CONNECTIONS + 2:
            idle.append(socket.create_connection(("127.0.0.1", hostile.rest_port)))
            time.sleep(0.2)
            reply = http_request(hostile.rest_port, "GET", "/health/ready", timeout=10)
        assert reply.status == 503, f"{len(idle)} idle connections open, limit {MAX_CONNECTIONS}: {reply}"
        assert reply.header("retry-after") == "1"
        assert "too many open connections" in reply.text
        # The idle connections hold no slot for long: each is closed after the header timeout
        # (an extra one opened above may itself have been over the limit and refused).
        for number, sock in enumerate(idle):
            response = read_response(sock, timeout=HEADER_TIMEOUT_S + SLACK_S)
            allowed = (408, 503) if number >= MAX_CONNECTIONS else (408,)
            assert response is None or response[0] in allowed, response
    finally:
        for sock in idle:
            sock.close()
    # The autouse fixture then checks readiness and a normal embed on new connections.


# --- API keys in logs -------------------------------------------------------------------------

KEY = "hostile-right-key-0123456789"
WRONG_KEY = "hostile-WRONG-key-9876543210"


def test_a_wrong_api_key_never_reaches_the_logs_even_at_trace_level():
    server = start_server(
        env={"AKIDB_API_KEYS": KEY, "AKIDB_LOG_LEVEL": "debug,akidb_embed=trace,tower_http=trace,hyper=trace"}
    )
    try:
        for headers in ({"Authorization": f"Bearer {WRONG_KEY}"}, {"Authorization": WRONG_KEY}):
            assert server.post(LEGACY, {"texts": ["x"]}, headers=headers).status == 401
            assert server.post(OPENAI, {"input": "x"}, headers=headers).status == 401
        assert server.post(LEGACY, {"texts": ["x"]}, headers={"Authorization": f"Bearer {KEY}"}).status == 200
    finally:
        server.stop()
    logs = "\n".join(server.stdout + server.stderr)
    assert "request" in logs  # the filter did log requests
    assert WRONG_KEY not in logs and KEY not in logs
