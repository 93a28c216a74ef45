"""Every `curl` example of docs/API.md, run with the real `curl` against a real server.

Each ```sh block of docs/API.md that calls `curl` is an example and carries its expectations in
comment lines:

    # expect: 413                         the HTTP status (required, exactly one)
    # expect-header: Retry-After: 1       a response header; the value is a substring (optional)
    # expect-body: texts cannot be empty  a substring of the body (optional)
    # server: unavailable                 run against the server whose start-up failed (optional)

The examples read `$AKIDB_URL` and `$AKIDB_API_KEY`. The `default` server is configured as the
document says: both models, every limit at its default, one API key. The `unavailable` server's
default model does not exist, so start-up fails and everything but liveness answers 503.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .harness import REPO, start_server

API_DOC = REPO / "docs" / "API.md"
# The router serves exactly the handlers annotated with `#[utoipa::path(...)]` (utoipa_axum
# registers each route from its annotation), so the annotations list every route.
HANDLERS = REPO / "service" / "src" / "api"
API_KEY = "docs-example-key-0123456789"

_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)
_CURL = re.compile(r"(?<![\w-])curl\b")
_DIRECTIVE = re.compile(r"^\s*#\s*(expect|expect-header|expect-body|server):\s*(.+?)\s*$")
_STATUS_LINE = re.compile(r"^AKIDB_DOC_STATUS (\d{3})$", re.MULTILINE)
_ROUTE = re.compile(r'#\[utoipa::path\((?:[^\]]*?)\bpath\s*=\s*"([^"]+)"', re.DOTALL)
_URL_PATH = re.compile(r'\$\{?AKIDB_URL\}?(/[A-Za-z0-9/_.-]*)')

# Statuses the service really returns and the examples must show (429 and 500 cannot be
# produced by one deterministic request: docs/API.md describes them without an example).
STATUSES_WITH_EXAMPLES = {200, 400, 401, 404, 405, 413, 415, 422, 503}


@dataclass
class Example:
    """One runnable example of the document."""

    line: int
    script: str
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    bodies: list[str] = field(default_factory=list)
    server: str = "default"

    @property
    def paths(self) -> set[str]:
        """The URL paths the example requests."""
        return set(_URL_PATH.findall(self.script))


class DocError(Exception):
    """docs/API.md has an example this test cannot run as written."""


def parse_examples(markdown: str) -> list[Example]:
    """The `curl` examples of `markdown`, with their expectations."""
    examples = []
    for match in _BLOCK.finditer(markdown):
        script = match.group(1)
        line = markdown.count("\n", 0, match.start()) + 1
        code = [l for l in script.splitlines() if not l.lstrip().startswith("#")]
        if not any(_CURL.search(l) for l in code):
            continue
        directives: dict[str, list[str]] = {}
        for l in script.splitlines():
            found = _DIRECTIVE.match(l)
            if found:
                directives.setdefault(found[1], []).append(found[2])
        statuses = directives.get("expect", [])
        if len(statuses) != 1 or not re.fullmatch(r"\d{3}", statuses[0]):
            raise DocError(f"docs/API.md:{line}: a curl example needs exactly one `# expect: NNN`")
        headers = []
        for header in directives.get("expect-header", []):
            name, sep, value = header.partition(":")
            if not sep:
                raise DocError(f"docs/API.md:{line}: `# expect-header: Name: value`, got {header!r}")
            headers.append((name.strip().lower(), value.strip()))
        servers = directives.get("server", ["default"])
        if len(servers) != 1 or servers[0] not in ("default", "unavailable"):
            raise DocError(f"docs/API.md:{line}: `# server:` is `default` or `unavailable`")
        examples.append(
            Example(line, script, int(statuses[0]), headers, directives.get("expect-body", []), servers[0])
        )
    return examples


EXAMPLES = parse_examples(API_DOC.read_text(encoding="utf-8"))


def test_the_parser_reads_expectations_and_refuses_an_example_without_one():
    doc = (
        "```sh\n# expect: 401\n# expect-header: WWW-Authenticate: Bearer\n"
        'curl -sS "$AKIDB_URL/api/v1/embed"\n```\n'
        "```sh\ngrpcurl -plaintext localhost:9090 list\n```\n"
    )
    [example] = parse_examples(doc)
    assert (example.status, example.headers, example.paths) == (
        401,
        [("www-authenticate", "Bearer")],
        {"/api/v1/embed"},
    )
    with pytest.raises(DocError, match="exactly one"):
        parse_examples('```sh\ncurl -sS "$AKIDB_URL/health"\n```\n')


def test_every_route_of_the_router_has_an_example():
    routes = {
        path
        for source in sorted(HANDLERS.glob("*.rs"))
        for path in _ROUTE.findall(source.read_text(encoding="utf-8"))
    }
    assert len(routes) >= 10, f"too few routes found in {HANDLERS}: {routes}"
    shown = set().union(*(e.paths for e in EXAMPLES))

    assert routes - shown == set(), "routes without an example in docs/API.md"


def test_the_examples_show_every_status_a_single_request_can_get():
    shown = {e.status for e in EXAMPLES}

    assert STATUSES_WITH_EXAMPLES - shown == set()


@pytest.fixture(scope="module")
def servers():
    """The two servers the examples run against, by name."""
    if shutil.which("curl") is None:
        pytest.fail("the examples need curl on PATH")
    started = {}
    try:
        started["default"] = start_server(env={"AKIDB_API_KEYS": API_KEY})
        started["unavailable"] = start_server(
            "--model", "no-such-model", env={"AKIDB_API_KEYS": API_KEY}, ready=False
        )
        # `/health` turns 503 only once start-up has failed (readiness is 503 while loading too).
        started["unavailable"].wait_status("/health", lambda r: r.status == 503)
        yield started
    finally:
        for server in started.values():
            server.stop()


@dataclass
class Ran:
    """What one example did."""

    status: int
    headers: dict[str, str]
    body: str
    output: str


def run_example(example: Example, port: int, workdir: Path) -> Ran:
    """Runs the example's script with bash; `curl` is the real curl, told to record the status,
    the headers and the body of the (single) response."""
    headers_file, body_file = workdir / "headers", workdir / "body"
    preamble = (
        "set -eo pipefail\n"
        "curl() { command curl --dump-header \"$AKIDB_DOC_HEADERS\" --output \"$AKIDB_DOC_BODY\" "
        "--write-out 'AKIDB_DOC_STATUS %{http_code}\\n' \"$@\"; }\n"
    )
    env = {
        **os.environ,
        "AKIDB_URL": f"http://127.0.0.1:{port}",
        "AKIDB_API_KEY": API_KEY,
        "AKIDB_DOC_HEADERS": str(headers_file),
        "AKIDB_DOC_BODY": str(body_file),
    }
    done = subprocess.run(
        ["bash", "-c", preamble + example.script],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    assert done.returncode == 0, f"docs/API.md:{example.line}: the example failed\n{output}"
    statuses = _STATUS_LINE.findall(done.stdout)
    assert len(statuses) == 1, f"docs/API.md:{example.line}: one request per example\n{output}"
    # The last header block is the final response (curl also records `100 Continue`).
    blocks = [b for b in headers_file.read_text(errors="replace").split("\r\n\r\n") if b.strip()]
    headers = {}
    for line in blocks[-1].strip().splitlines()[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    body = body_file.read_text(errors="replace") if body_file.exists() else ""
    return Ran(int(statuses[0]), headers, body, output)


@pytest.mark.parametrize("example", EXAMPLES, ids=[f"API.md:{e.line}" for e in EXAMPLES])
def test_example_gets_its_documented_status(servers, example, tmp_path):
    ran = run_example(example, servers[example.server].rest_port, tmp_path)

    where = f"docs/API.md:{example.line}"
    assert ran.status == example.status, f"{where}: documented {example.status}, got {ran.status}\n{ran.body}"
    for name, value in example.headers:
        assert name in ran.headers, f"{where}: no {name} header in {ran.headers}"
        assert value in ran.headers[name], f"{where}: {name}: {ran.headers[name]!r} lacks {value!r}"
    for text in example.bodies:
        assert text in ran.body, f"{where}: body lacks {text!r}: {ran.body[:500]!r}"
