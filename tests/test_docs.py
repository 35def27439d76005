"""The documentation, executed (issue 9).

- docs/api-guide.md: every ``sh``/``bash`` block that calls ``curl`` is run, in order, by
  one bash (``set -euo pipefail``, so the shell variables one block sets reach the
  next) against a real system (tests/e2e/system.py: studio, API, workers and beat on
  loopback, a fresh PostgreSQL database, Redis); every block must exit 0. The curl
  commands must name every route of the app, and the API's own request counter
  (``/metrics``) must show that the run called each of them.
- docs/webhooks.md, "Verifying a webhook": the Python and the Node receivers run as
  servers, as a reader would copy them, with the official ``standardwebhooks``
  libraries (PyPI, npm), and are sent requests signed by reelyard's own signing code
  (``reelyard.webhooks.headers_for``/``body_of``): signed ones are answered 2xx and
  handled once per ``webhook-id``, tampered ones 401. Node and npm are required: their
  absence fails the test.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from models.webhooks import new_secret
from reelyard.settings import Settings
from reelyard.webhooks import body_of, headers_for
from tests.conftest import _worker_index
from tests.e2e.system import (
    System,
    free_port,
    run_system,
    wait_for,
)
from tests.workers.pipeline_fixtures import PhotoServer, serve_photos

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "api-guide.md"
WEBHOOKS = ROOT / "docs" / "webhooks.md"
VERIFYING = "### Verifying a webhook"
METRICS_TOKEN = "docs-metrics-token"  # noqa: S105 (the test system's, not a credential)
#: the marker the guide's script prints before each block
BLOCK_MARK = "@@docs-block "
#: routes that need no curl example, and why
NOT_IN_THE_GUIDE = {
    "static": "Flask's default static route; the API serves no static folder",
    "docs.docs_asset": "the files of the /docs page (Swagger UI), fetched by the browser",
}
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
API_URL = re.compile(r'"\$REELYARD_API_URL(/[^"?]*)')


# --- reading the docs -----------------------------------------------------------------


def fenced_blocks(text: str, languages: set[str]) -> list[str]:
    return [body for language, body in FENCE.findall(text) if language in languages]


def guide_blocks() -> list[str]:
    """The guide's shell blocks that call curl, in order."""
    blocks = [b for b in fenced_blocks(GUIDE.read_text(), {"sh", "bash"}) if "curl" in b]
    assert blocks, f"no curl example in {GUIDE}"
    return blocks


def section(text: str, heading: str) -> str:
    """From ``heading`` to the next heading of the same level or above."""
    start = text.index(f"\n{heading}\n")
    level = len(heading) - len(heading.lstrip("#"))
    following = re.compile(rf"^#{{1,{level}}} ", re.MULTILINE)
    end = following.search(text, start + len(heading) + 2)
    return text[start : end.start() if end else len(text)]


def receiver_snippet(language: str) -> str:
    blocks = fenced_blocks(section(WEBHOOKS.read_text(), VERIFYING), {language})
    assert len(blocks) == 1, f"{WEBHOOKS} {VERIFYING!r}: {len(blocks)} {language} blocks"
    return blocks[0]


def curl_calls(block: str) -> list[tuple[str, str]]:
    """(method, path) of each curl command of a block; path segments that are shell
    variables stay as they are (``/v1/jobs/$JOB``)."""
    calls = []
    for line in block.replace("\\\n", " ").splitlines():
        command = line[line.find("curl ") :] if "curl " in line else ""
        url = API_URL.search(command)
        if url is None:
            continue
        explicit = re.search(r"(?:-X|--request)\s+(\w+)", command)
        sends_data = re.search(r"\s(?:-d|--data[\w-]*|--json)\s", command)
        if explicit:
            method = explicit.group(1)
        elif sends_data and not re.search(r"\s(?:-G|--get)\s", command):
            method = "POST"
        else:
            method = "GET"
        calls.append((method, url.group(1)))
    return calls


def rule_matches(rule: str, path: str) -> bool:
    """Whether ``path`` (with shell variables) is a URL of the Flask rule ``rule``."""
    rule_parts, path_parts = rule.split("/"), path.split("/")
    if len(rule_parts) != len(path_parts):
        return False
    return all(
        (want.startswith("<") and bool(got)) or want == got
        for want, got in zip(rule_parts, path_parts, strict=True)
    )


def app_routes() -> set[tuple[str, str]]:
    """(method, rule) of every route of the API, but those in :data:`NOT_IN_THE_GUIDE`."""
    settings = Settings(
        database_url="postgresql+psycopg://nobody@127.0.0.1:1/none",
        broker_url="redis://127.0.0.1:1/0",
        redis_url="memory://",
    )
    app = create_app(settings)
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in NOT_IN_THE_GUIDE:
            continue
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            routes.add((method, rule.rule))
    return routes


def test_every_route_has_a_curl_example() -> None:
    calls = [call for block in guide_blocks() for call in curl_calls(block)]
    missing = sorted(
        (method, rule)
        for method, rule in app_routes()
        if not any(m == method and rule_matches(rule, path) for m, path in calls)
    )
    assert not missing, f"routes without a curl example in {GUIDE.name}: {missing}"


def test_every_curl_example_is_a_route() -> None:
    routes = app_routes()
    unknown = [
        (method, path)
        for block in guide_blocks()
        for method, path in curl_calls(block)
        if not any(m == method and rule_matches(rule, path) for m, rule in routes)
    ]
    assert not unknown, f"curl examples of no route: {unknown}"


# --- the guide against a running system -----------------------------------------------


@dataclass
class Receiver:
    """A webhook receiver on loopback that answers 204 and keeps what it got."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)


@contextlib.contextmanager
def serve_receiver() -> Iterator[Receiver]:
    receiver = Receiver("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            receiver.received.append({"headers": dict(self.headers), "body": json.loads(body)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/reelyard"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def system(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    yield from run_system(
        tmp_path_factory.mktemp("docs-system"),
        "redis",
        _worker_index(request),
        name="docs",
        env_overrides={"REELYARD_METRICS_TOKEN": METRICS_TOKEN},
    )


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PhotoServer]:
    with serve_photos(tmp_path_factory.mktemp("photos")) as server:
        yield server


def guide_script(blocks: list[str]) -> str:
    lines = ["set -euo pipefail"]
    for number, block in enumerate(blocks, 1):
        lines += [f"echo '{BLOCK_MARK}{number}'", block]
    return "\n".join(lines) + "\n"


def split_transcript(output: str) -> dict[int, str]:
    """The output of each block that ran, by its number."""
    parts = re.split(rf"^{re.escape(BLOCK_MARK)}(\d+)\n", output, flags=re.MULTILINE)
    return {int(number): text for number, text in zip(parts[1::2], parts[2::2], strict=True)}


def requested_routes(system: System) -> set[tuple[str, str]]:
    """(method, route) of every request the API counted (``reelyard_http_requests_total``)."""
    response = httpx.get(
        f"{system.api_url}/metrics",
        headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return {
        (sample.labels["method"], sample.labels["route"])
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == "reelyard_http_requests_total"
    }


@pytest.mark.slow
def test_the_guide_runs_against_a_real_system(
    system: System, photos: PhotoServer, tmp_path: Path
) -> None:
    blocks = guide_blocks()
    script = tmp_path / "guide.sh"
    script.write_text(guide_script(blocks))
    env = {
        **os.environ,
        "REELYARD_API_URL": system.api_url,
        "REELYARD_API_KEY": system.key,
        "PHOTOS": photos.base_url,
        "REELYARD_METRICS_TOKEN": METRICS_TOKEN,
    }
    with serve_receiver() as receiver:
        env["WEBHOOK_URL"] = receiver.url
        done = subprocess.run(
            ["bash", str(script)],  # noqa: S607 (bash from PATH, as a reader runs it)
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=240,
            check=False,
        )
        received = list(receiver.received)
    (tmp_path / "transcript.txt").write_text(done.stdout)
    outputs = split_transcript(done.stdout)
    if done.returncode != 0:
        failed = max(outputs, default=0)
        pytest.fail(
            f"{GUIDE.name}: block {failed} of {len(blocks)} exited {done.returncode}:\n"
            f"{blocks[failed - 1] if failed else script.read_text()}\n--- its output:\n"
            f"{outputs.get(failed, done.stdout)[-4000:]}\n--- the system:\n{system.logs()}"
        )
    assert sorted(outputs) == list(range(1, len(blocks) + 1)), sorted(outputs)
    assert (tmp_path / "summer-sale.mp4").stat().st_size > 0
    types = {message["body"]["type"] for message in received}
    assert "job.succeeded" in types, received
    missing = app_routes() - requested_routes(system)
    assert not missing, f"routes the guide's run never called: {sorted(missing)}"


# --- the webhook receivers ------------------------------------------------------------


@dataclass
class ReceiverProcess:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def run_receiver(argv: list[str], cwd: Path, secret: str) -> Iterator[ReceiverProcess]:
    """A receiver snippet as a server on a free port, until it answers; stopped after."""
    port = free_port()
    log = cwd / "receiver.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**os.environ, "WEBHOOK_SECRET": secret, "PORT": str(port)},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    receiver = ReceiverProcess(process, f"http://127.0.0.1:{port}/webhooks", log)

    def listening() -> bool:
        assert process.poll() is None, f"{argv} exited:\n{receiver.output()}"
        with socket.socket() as probe:
            probe.settimeout(0.5)
            return probe.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(f"{argv} to listen", listening, timeout_s=30)
        yield receiver
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


JOB_ID = "job_01JD3Q8X6R9V2M4K7T0B5N8C1W"
SIGNED_ID, ROTATED_ID, WRONG_ID = (f"msg_01JD3Q8X6R9V2M4K7T0B5N8C1{c}" for c in "ABC")


def signed(secrets: list[str], message_id: str) -> tuple[bytes, dict[str, str]]:
    """A ``job.succeeded`` message as delivery sends it (non-ASCII included)."""
    payload = {
        "type": "job.succeeded",
        "timestamp": "2026-11-24T15:02:11.482913+00:00",
        "data": {"id": JOB_ID, "object": "job", "title": "Soldes d'été"},
    }
    body = body_of(payload)
    return body, headers_for(message_id, body, secrets)


def check_receiver(receiver: ReceiverProcess, secret: str) -> None:
    body, headers = signed([secret], SIGNED_ID)
    rotated_body, rotated_headers = signed([new_secret(), secret], ROTATED_ID)
    wrong_body, wrong_headers = signed([new_secret()], WRONG_ID)
    tampered = body.replace(b"succeeded", b"failed")
    with httpx.Client(timeout=10) as client:

        def post(content: bytes, sent: dict[str, str]) -> int:
            return client.post(receiver.url, content=content, headers=sent).status_code

        answers = {
            "signed": post(body, headers),
            "signed, again": post(body, headers),
            "signed during a rotation": post(rotated_body, rotated_headers),
            "tampered": post(tampered, headers),
            "another secret": post(wrong_body, wrong_headers),
            "unsigned": post(body, {"Content-Type": "application/json"}),
        }
    expected = {
        "signed": 204,
        "signed, again": 204,
        "signed during a rotation": 204,
        "tampered": 401,
        "another secret": 401,
        "unsigned": 401,
    }
    assert answers == expected, receiver.output()
    handled = [line.split() for line in receiver.output().splitlines() if "received" in line]
    assert handled == [
        ["received", SIGNED_ID, "job.succeeded", JOB_ID],
        ["received", ROTATED_ID, "job.succeeded", JOB_ID],
    ], receiver.output()


@pytest.mark.slow
def test_the_python_receiver_verifies_with_standardwebhooks(tmp_path: Path) -> None:
    (tmp_path / "receiver.py").write_text(receiver_snippet("python"))
    secret = new_secret()
    with run_receiver([sys.executable, "receiver.py"], tmp_path, secret) as receiver:
        check_receiver(receiver, secret)


def node_and_npm() -> tuple[str, str]:
    """node and npm from PATH; the test fails without them."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail(
            "node and npm are needed to run the Node webhook receiver of docs/webhooks.md"
            f" (node: {node}, npm: {npm}); install Node.js",
            pytrace=False,
        )
    return node, npm


@pytest.mark.slow
def test_the_node_receiver_verifies_with_standardwebhooks(tmp_path: Path) -> None:
    node, npm = node_and_npm()
    done = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--no-save", "standardwebhooks"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, f"npm install standardwebhooks failed:\n{done.stderr}"
    (tmp_path / "receiver.js").write_text(receiver_snippet("js"))
    secret = new_secret()
    with run_receiver([node, "receiver.js"], tmp_path, secret) as receiver:
        check_receiver(receiver, secret)
