"""``reelyard standalone`` as a user runs it: one process tree on SQLite and files.

Each test starts the real command (in a session of its own, so that its process group
is the standalone's whole tree), and reads what a user would: its output, its
``client.json``, the API and the studio's ledger. PostgreSQL and Redis are never used:
the environment points them at a closed port.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.system import ROOT, Timeout, free_port, wait_for
from tests.workers.pipeline_fixtures import PhotoServer, serve_photos

#: nothing listens here: a standalone that reached for PostgreSQL or Redis would fail
CLOSED = "127.0.0.1:9"
PROMPT = "Turn these photos into a short square video with the title 'Summer Sale'."


@dataclass
class Standalone:
    data_dir: Path
    output: Path
    api_port: int
    studio_port: int
    process: subprocess.Popen[bytes] | None = None
    #: where this start's output begins in the log
    since: int = 0

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def studio_url(self) -> str:
        return f"http://127.0.0.1:{self.studio_port}"

    def start(self) -> None:
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "REELYARD_DATABASE_URL": f"postgresql+psycopg://postgres@{CLOSED}/nothing",
            "REELYARD_BROKER_URL": f"redis://{CLOSED}/0",
            "REELYARD_REDIS_URL": f"redis://{CLOSED}/0",
            "STUDIO_TIME_SCALE": "0.02",
            "STUDIO_RENDER_QUALITY": "draft",
        }
        self.since = self.output.stat().st_size if self.output.exists() else 0
        with self.output.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "reelyard.cli",
                    "standalone",
                    "--data-dir",
                    str(self.data_dir),
                    "--api-port",
                    str(self.api_port),
                    "--studio-port",
                    str(self.studio_port),
                    "--flower-port",
                    str(free_port()),
                ],
                env=env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for("standalone to be ready", self._ready, timeout_s=120, every_s=0.2)

    def _ready(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, f"standalone exited:\n{self.log()}"
        return "reelyard standalone ready" in self.log()

    def process_logs(self, tail: int = 3000) -> str:
        """The end of each child's log, for a failure's message."""
        return "\n".join(
            f"==== {path.name} ====\n{path.read_text(errors='replace')[-tail:]}"
            for path in sorted((self.data_dir / "logs").glob("*.log"))
        )

    def log(self) -> str:
        """This start's output (the end of it)."""
        with self.output.open("rb") as log:
            log.seek(self.since)
            return log.read().decode(errors="replace")[-6000:]

    @property
    def key(self) -> str:
        return str(json.loads((self.data_dir / "client.json").read_text())["api_key"])

    def api(self, method: str, path: str, **options: Any) -> Any:
        response = httpx.request(
            method,
            f"{self.api_url}{path}",
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=10,
            **options,
        )
        assert response.status_code < 300, response.text
        return response.json()

    def ledger(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(f"{self.studio_url}/_studio/ledger", timeout=10).json()
        return result

    def group_alive(self) -> bool:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def signal(self, signum: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signum)

    def wait_gone(self, timeout_s: float = 60) -> int:
        """Wait for the standalone and every process of its tree; its exit status."""
        assert self.process is not None
        code = self.process.wait(timeout=timeout_s)
        wait_for("no process left of the tree", lambda: not self.group_alive(), timeout_s=15)
        return code

    def kill_group(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        wait_for("the tree to be gone", lambda: not self.group_alive(), timeout_s=15)


@pytest.fixture
def standalone(tmp_path) -> Iterator[Standalone]:
    running = Standalone(tmp_path / "data", tmp_path / "standalone.log", free_port(), free_port())
    yield running
    if running.process is not None:
        if running.group_alive():
            os.killpg(running.process.pid, signal.SIGKILL)
        running.process.wait(timeout=30)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Iterator[PhotoServer]:
    with serve_photos(tmp_path_factory.mktemp("photos")) as server:
        yield server


def submit(standalone: Standalone, photos: PhotoServer) -> str:
    body = {
        "images": photos.urls,
        "prompt": PROMPT,
        "options": {"aspect_ratio": "1:1", "resolution": "720p", "duration_s": 4},
    }
    return str(standalone.api("POST", "/v1/jobs", json=body)["id"])


def job_status(standalone: Standalone, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = standalone.api("GET", f"/v1/jobs/{job_id}")
    return job


def wait_stage(standalone: Standalone, job_id: str, stages: set[str]) -> None:
    def reached() -> bool:
        job = job_status(standalone, job_id)
        assert job["status"] not in {"failed", "canceled"}, job
        return job["stage"] in stages or job["status"] == "succeeded"

    wait_for(f"{job_id} to reach {stages}", reached, timeout_s=120, every_s=0.3)


def wait_succeeded(standalone: Standalone, job_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = job_status(standalone, job_id)
        assert job["status"] not in {"failed", "canceled"}, (job, standalone.log())
        return job if job["status"] == "succeeded" else None

    try:
        return wait_for(f"{job_id} to succeed", done, timeout_s=240, every_s=0.5)
    except Timeout as exc:
        raise AssertionError(
            f"{exc}\n{job_status(standalone, job_id)}\n{standalone.process_logs()}"
        ) from None


def assert_ran_once(ledger: dict[str, Any]) -> None:
    """No instruction sent twice to a session, no render submitted twice."""
    for session_id, entry in ledger["sessions"].items():
        texts = Counter(message["text"] for message in entry["messages"])
        assert all(count == 1 for count in texts.values()), (session_id, entry["messages"])
    assert ledger["renders"], ledger
    for render_id, entry in ledger["renders"].items():
        assert entry["submissions"] == 1, (render_id, entry)


def test_a_job_runs_on_sqlite_and_files_and_ctrl_c_stops_every_process(standalone, photos):
    standalone.start()
    assert (standalone.data_dir / "reelyard.db").exists()
    output = standalone.log()
    assert f"API      {standalone.api_url}" in output
    assert standalone.key in output
    assert "/docs" in output
    job_id = submit(standalone, photos)
    job = wait_succeeded(standalone, job_id)
    assert job["result"]["duration_s"] == pytest.approx(4, abs=0.5)
    assert list((standalone.data_dir / "broker" / "processed").iterdir())  # the broker ran

    standalone.signal(signal.SIGINT)
    assert standalone.wait_gone() == 0
    assert "reelyard standalone stopped" in standalone.log()


@pytest.mark.parametrize("how", ["sigterm", "sigkill-group"])
def test_stopped_mid_job_it_carries_on_after_a_restart_and_nothing_runs_twice(
    standalone, photos, how
):
    standalone.start()
    first_key = standalone.key
    job_id = submit(standalone, photos)
    # SIGTERM lets the edit worker and the studio finish a turn in flight; SIGKILL of the
    # whole group, the studio with it, can cut the turn after the instruction was sent,
    # and then the designed outcome is edit_outcome_unknown (an instruction is never
    # sent twice): that case has its own tests, so the kill comes once the edit is done
    after_edit = {"verify", "export", "poll_render"}
    wait_stage(standalone, job_id, {"edit", *after_edit} if how == "sigterm" else after_edit)
    if how == "sigterm":
        standalone.signal(signal.SIGTERM)
        assert standalone.wait_gone() == 0
    else:
        standalone.kill_group()

    standalone.start()
    assert standalone.key == first_key  # the same tenant and key, from the data dir
    job = wait_succeeded(standalone, job_id)
    assert job["result"]["url"]
    assert_ran_once(standalone.ledger())
    standalone.signal(signal.SIGTERM)
    standalone.wait_gone()


def test_a_second_ctrl_c_forces_and_leaves_no_process(standalone):
    standalone.start()
    standalone.signal(signal.SIGINT)
    time.sleep(0.2)  # the first signal is being handled: the second one must force
    standalone.signal(signal.SIGINT)
    standalone.wait_gone(timeout_s=20)
    assert "stopping at once" in standalone.log()


def test_two_standalones_cannot_share_a_data_directory(standalone, tmp_path):
    standalone.start()
    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "reelyard.cli",
            "standalone",
            "--data-dir",
            str(standalone.data_dir),
            "--api-port",
            str(free_port()),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 1
    assert "another reelyard standalone is running" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    standalone.signal(signal.SIGTERM)
    standalone.wait_gone()


def test_a_data_directory_that_cannot_be_made_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    done = subprocess.run(
        [sys.executable, "-m", "reelyard.cli", "standalone", "--data-dir", str(blocker / "x")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("Error: cannot use ")
    assert len(done.stderr.strip().splitlines()) == 1
