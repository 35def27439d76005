"""What a person sees in a browser: the API's docs page and Flower's dashboard.

A real headless Chromium (Debian's ``chromium``, driven by Playwright; no browser of
Playwright's own) against real processes on loopback: the studio, the API and a
pipeline worker started by :class:`tests.e2e.system.System`, and ``reelyard flower``
beside them on the same broker. Screenshots are kept under each test's ``tmp_path``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import _worker_index
from tests.e2e.system import (
    COMMANDS,
    Proc,
    System,
    free_port,
    run_system,
    wait_for,
)

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("REELYARD_TEST_CHROMIUM", "/usr/bin/chromium"))
#: Chromium on a machine without a network: no background fetches, no sandbox (root)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FLOWER_USER = "ops"
FLOWER_PASSWORD = "browser-test-password"  # noqa: S105 (a test's own throwaway password)
#: the worker the dashboard must show: ``reelyard worker -Q pipeline`` names itself so
PIPELINE_WORKER = f"pipeline@{socket.gethostname()}"
PAGE_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.exists(), (
        f"{CHROMIUM} is missing: apt-get install chromium chromium-driver (.ci/run does)"
    )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    """The studio, the API and one pipeline worker, on a broker and database of their own."""
    yield from run_system(
        tmp_path_factory.mktemp("browser-system"),
        "redis",
        _worker_index(request),
        name="browser",
        commands={"pipeline": COMMANDS["pipeline"]},
    )


@pytest.fixture(scope="module")
def flower(system: System) -> Iterator[str]:
    """``reelyard flower`` with a password, on the system's broker; its base URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc: Proc = system.spawn(
        "flower",
        ["flower", "--port", str(port)],
        {"REELYARD_FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{FLOWER_PASSWORD}"},
    )

    def up() -> bool:
        assert proc.alive, f"flower exited:\n{proc.output()[-4000:]}"
        try:
            return httpx.get(f"{url}/healthcheck", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for("flower to answer", up, timeout_s=60)
    yield url
    proc.stop()


def record_requests(page: Page) -> list[str]:
    """Every URL the page asks for, in order (this machine reaches no CDN)."""
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    return urls


def shot(page: Page, tmp_path: Path, name: str) -> Path:
    target = tmp_path / f"{name}.png"
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 0
    return target


def test_docs_page_lists_the_endpoints(browser: Browser, system: System, tmp_path: Path) -> None:
    page = browser.new_page()
    requests = record_requests(page)
    try:
        response = page.goto(f"{system.api_url}/docs")
        assert response is not None
        assert response.status == 200
        # Swagger UI renders the operations from /openapi.json with its JavaScript
        # (served by the API itself: no CDN is reachable here)
        paths = page.locator(".opblock-summary-path")
        paths.first.wait_for(timeout=PAGE_TIMEOUT_MS)
        shown = set(paths.all_inner_texts())
        shot(page, tmp_path, "docs")
    finally:
        page.close()
    assert {"/v1/jobs", "/v1/jobs/{job_id}", "/v1/batches", "/readyz"} <= {
        path.replace("\u200b", "") for path in shown
    }, shown
    # the UI's script, its styles and the spec all come from the API itself
    assert f"{system.api_url}/openapi.json" in requests
    assert [url for url in requests if not url.startswith(f"{system.api_url}/")] == []


def test_flower_dashboard_shows_the_running_worker(
    browser: Browser, flower: str, tmp_path: Path
) -> None:
    context = browser.new_context(
        http_credentials={"username": FLOWER_USER, "password": FLOWER_PASSWORD}
    )
    page = context.new_page()
    requests = record_requests(page)
    try:
        response = page.goto(f"{flower}/workers")
        assert response is not None
        assert response.status == 200
        row = page.locator("#workers-table tbody tr", has_text=PIPELINE_WORKER)
        row.first.wait_for(timeout=PAGE_TIMEOUT_MS)
        page.locator("#workers-table", has_text="Online").wait_for(timeout=PAGE_TIMEOUT_MS)
        cells = row.first.inner_text()
        shot(page, tmp_path, "flower-workers")
    finally:
        context.close()
    assert PIPELINE_WORKER in cells
    assert "Online" in cells, cells
    assert [url for url in requests if not url.startswith(f"{flower}/")] == []


def test_flower_refuses_requests_without_the_password(flower: str) -> None:
    missing = httpx.get(f"{flower}/workers", timeout=10)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Basic")
    wrong = httpx.get(f"{flower}/api/workers", auth=(FLOWER_USER, "wrong"), timeout=10)
    assert wrong.status_code == 401
    right = httpx.get(f"{flower}/api/workers", auth=(FLOWER_USER, FLOWER_PASSWORD), timeout=10)
    assert right.status_code == 200


def test_flower_metrics_answer_without_the_password(flower: str) -> None:
    """Flower does not guard /metrics: docs/operations.md says to keep it private."""

    def online() -> str | None:
        body = httpx.get(f"{flower}/metrics", timeout=10).raise_for_status().text
        return body if PIPELINE_WORKER in body else None

    body = wait_for("the worker in flower's metrics", online, timeout_s=30)
    assert "flower_worker_online" in body
