"""A real studio process on a loopback port, and clients that speak to it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.studio.api.helpers import ATTRIBUTION, User

READY = "studio listening on "
__all__ = ["ATTRIBUTION", "StudioProcess", "start_studio"]


@dataclass
class StudioProcess:
    url: str
    process: subprocess.Popen[str]
    data_dir: Path
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    def admin(self, method: str, path: str, json: Any = None) -> Any:
        response = httpx.request(method, f"{self.url}/_studio/{path}", json=json, timeout=10)
        response.raise_for_status()
        return response.json()

    def faults(self, **settings: Any) -> Any:
        return self.admin("POST", "faults", settings)

    def ledger(self) -> Any:
        return self.admin("GET", "ledger")

    def reset(self) -> None:
        self.admin("POST", "reset")

    def stop(self) -> int:
        self.process.terminate()
        try:
            code = self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        if self.reader is not None:
            self.reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code


def start_studio(data_dir: Path, **env: str) -> StudioProcess:
    """``reelyard studio`` on an ephemeral port, fast clock, loopback URLs allowed."""
    environment = {
        **os.environ,
        "STUDIO_DATA_DIR": str(data_dir),
        "STUDIO_TIME_SCALE": "0.005",
        "STUDIO_ALLOW_PRIVATE_URLS": "1",
        "STUDIO_SEED": "1234",
        "STUDIO_RENDER_QUALITY": "draft",
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "reelyard.cli", "studio", "--port", "0"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output: list[str] = []
    for line in process.stdout:
        output.append(line)
        if line.startswith(READY):
            url = line[len(READY) :].strip()
            break
    else:
        process.wait()
        raise RuntimeError(f"the studio did not start:\n{''.join(output)}")
    # keep reading its output so it never blocks on a full pipe
    reader = threading.Thread(target=lambda: output.extend(process.stdout or []), daemon=True)
    reader.start()
    return StudioProcess(url=url, process=process, data_dir=data_dir, output=output, reader=reader)


def assert_no_traceback(server: StudioProcess) -> None:
    """A studio that logged a traceback failed somewhere, whatever its answers said."""
    output = "".join(server.output)
    assert "Traceback" not in output, output[-5000:]


@pytest.fixture(scope="module")
def studio_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StudioProcess]:
    """One studio for the module, with the module's ``STUDIO_ENV`` settings if it has any."""
    server = start_studio(
        tmp_path_factory.mktemp("studio"), **getattr(request.module, "STUDIO_ENV", {})
    )
    yield server
    server.stop()
    assert_no_traceback(server)


@pytest.fixture
def studio(studio_server: StudioProcess) -> StudioProcess:
    """The module's studio, reset: no tokens, sessions, renders or faults."""
    studio_server.reset()
    return studio_server


@pytest.fixture
def client(studio: StudioProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=studio.url, timeout=30) as http:
        yield http


@pytest.fixture
def paid(client: httpx.Client, request: pytest.FixtureRequest) -> User:
    """A user holding the module's paid token (``PAID``, configured in its ``STUDIO_ENV``)."""
    return User.paid(client, request.module.PAID)


@pytest.fixture
def chatty(studio: StudioProcess) -> StudioProcess:
    """Every turn speaks (no silent closes), unless a test asks for them."""
    studio.faults(silent_close=0)
    return studio


@pytest.fixture
def user(client: httpx.Client) -> User:
    """A fresh anonymous user (100 credits) of the module's studio."""
    return User.anonymous(client)
