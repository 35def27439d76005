"""End to end: real processes (studio, API, workers, beat) on loopback (issue 7, must-show 3-4).

Every test drives the system through its public API only, on PostgreSQL + Redis and on
PostgreSQL + RabbitMQ; the crash tests (kill -9 of a worker, a flushed broker) run on
Redis, whose unacknowledged messages come back only after the visibility timeout, so
that prompt recovery is the reconciler's doing.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest

from tests.conftest import _worker_index
from tests.e2e.system import System, run_system, wait_for
from tests.workers.pipeline_fixtures import PhotoServer, serve_photos

pytestmark = pytest.mark.slow

PROMPT = "turn these photos into a short video with smooth transitions"
RATIOS = {"1:1": Fraction(1, 1), "16:9": Fraction(16, 9), "9:16": Fraction(9, 16)}


@pytest.fixture(scope="module")
def photo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PhotoServer]:
    """Three generated photos served over HTTP on loopback."""
    with serve_photos(tmp_path_factory.mktemp("photos")) as server:
        yield server


@pytest.fixture(scope="module", params=["redis", "amqp"])
def broker(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def system(
    broker: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    yield from run_system(tmp_path_factory.mktemp(f"e2e-{broker}"), broker, _worker_index(request))


@pytest.fixture
def fresh(system: System) -> Iterator[System]:
    """The system with no faults in force, every process up; faults cleared after."""
    for name in ("pipeline", "edit", "beat"):
        if not system.procs[name].alive:
            system.start_worker(name)
    system.clear_faults()
    yield system
    system.clear_faults()


def submit(system: System, photos: PhotoServer, **options: Any) -> str:
    body = {"images": photos.urls, "prompt": PROMPT, "options": options}
    job = system.post("/v1/jobs", body)
    return str(job["id"])


def probe_video(path: Path) -> tuple[int, int, float]:
    """Width, height and duration (s) of the video, as PyAV reads them."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        if container.duration is not None:
            duration = container.duration / av.time_base
        else:
            assert stream.duration is not None
            assert stream.time_base is not None
            duration = float(stream.duration * stream.time_base)
    return width, height, duration


def assert_video(system: System, job_id: str, path: Path, ratio: str, duration_s: float) -> None:
    width, height, duration = probe_video(system.video(job_id, path))
    assert abs(width / height - float(RATIOS[ratio])) < 0.02, (width, height, ratio)
    assert abs(duration - duration_s) <= 0.5, (duration, duration_s)


def new_entries(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in after.items() if key not in before}


def assert_no_duplicates(system: System, before: dict[str, Any]) -> dict[str, Any]:
    """No message sent twice to a session, no render id submitted twice, since ``before``."""
    after = system.ledger()
    sessions = new_entries(before["sessions"], after["sessions"])
    for session_id, entry in sessions.items():
        texts = Counter(message["text"] for message in entry["messages"])
        assert all(count == 1 for count in texts.values()), (session_id, entry["messages"])
    for render_id, entry in after["renders"].items():
        assert entry["submissions"] == 1, (render_id, entry)
    return after


@pytest.fixture(scope="module")
def finished_job(
    system: System, photo_server: PhotoServer, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A square 5-second job, from POST to ``succeeded``; its id."""
    system.clear_faults()
    job_id = submit(system, photo_server, aspect_ratio="1:1", duration_s=5)
    job = system.wait_job(job_id, "succeeded")
    assert job["result"] is not None, job
    path = tmp_path_factory.mktemp("video") / "job.mp4"
    assert_video(system, job_id, path, "1:1", 5.0)
    return job_id


def test_job_succeeds_with_the_requested_video(fresh: System, finished_job: str) -> None:
    job = fresh.job(finished_job)
    assert job["status"] == "succeeded"
    assert job["options"]["aspect_ratio"] == "1:1"
    assert job["timeline"] is not None, job
    assert job["timeline"]["summary"], job


def test_revision_succeeds(fresh: System, finished_job: str, tmp_path: Path) -> None:
    revision = fresh.post(
        f"/v1/jobs/{finished_job}/revisions",
        {
            "prompt": "make it widescreen and add the title Summer Sale",
            "options": {"aspect_ratio": "16:9", "title": "Summer Sale"},
        },
    )
    assert revision["parent_id"] == finished_job
    job = fresh.wait_job(revision["id"], "succeeded")
    assert job["options"]["title"] == "Summer Sale"
    assert "Summer Sale" in job["timeline"]["summary"], job["timeline"]
    assert_video(fresh, revision["id"], tmp_path / "revision.mp4", "16:9", 5.0)


def test_cancel_during_the_edit(fresh: System, photo_server: PhotoServer) -> None:
    fresh.faults(latency_ms=1500)
    job_id = submit(fresh, photo_server, aspect_ratio="1:1", duration_s=5)
    fresh.wait_stage(job_id, ("edit",), timeout_s=30)
    fresh.post(f"/v1/jobs/{job_id}/cancel", {})
    job = fresh.wait_job(job_id, "canceled", timeout_s=30)
    assert job["result"] is None


def test_cancel_during_the_render(fresh: System, photo_server: PhotoServer) -> None:
    before = fresh.ledger()
    fresh.faults(render_stuck={"count": 1})
    job_id = submit(fresh, photo_server, aspect_ratio="1:1", duration_s=5)
    fresh.wait_stage(job_id, ("poll_render",), timeout_s=30)
    fresh.post(f"/v1/jobs/{job_id}/cancel", {})
    fresh.wait_job(job_id, "canceled", timeout_s=30)

    renders = new_entries(before["renders"], fresh.ledger()["renders"])
    assert len(renders) == 1, renders

    # the studio ends a cancelled render "failed" ("the render was cancelled"); a stuck
    # render ends no other way
    def canceled_upstream() -> bool:
        entries = new_entries(before["renders"], fresh.ledger()["renders"])
        return all(entry["status"] == "failed" for entry in entries.values())

    try:
        wait_for("the render canceled upstream", canceled_upstream, timeout_s=10, every_s=0.2)
    except AssertionError:
        pytest.fail(f"render not canceled upstream: {fresh.ledger()['renders']}\n{fresh.logs()}")


def test_batch_of_twenty(fresh: System, photo_server: PhotoServer) -> None:
    spec = {
        "images": photo_server.urls,
        "prompt": PROMPT,
        "options": {"aspect_ratio": "16:9", "resolution": "720p", "duration_s": 3},
    }
    batch = fresh.post("/v1/batches", {"jobs": [spec] * 20})
    assert batch["job_count"] == 20
    path = f"/v1/batches/{batch['id']}"

    def done() -> dict[str, Any] | None:
        counts: dict[str, Any] = fresh.get(path)["counts"]
        return counts if counts["queued"] + counts["running"] == 0 else None

    try:
        counts = wait_for("the batch", done, timeout_s=120, every_s=0.5)
    except AssertionError:
        pytest.fail(f"batch unfinished: {fresh.get(path)}\n{fresh.logs()}")
    assert counts["succeeded"] == 20, f"{counts}\n{fresh.logs()}"


# -- crashes (Redis: a killed worker's messages come back only after an hour) ----------

crash = pytest.mark.parametrize("broker", ["redis"], indirect=True)


@crash
def test_edit_worker_killed_mid_stream(fresh: System, photo_server: PhotoServer) -> None:
    before = fresh.ledger()
    job_id = submit(fresh, photo_server, aspect_ratio="1:1", duration_s=5)

    def turn_started() -> bool:
        # the studio records the message when the turn starts: the stream is open
        sessions = new_entries(before["sessions"], fresh.ledger()["sessions"])
        return any(entry["messages"] for entry in sessions.values())

    wait_for("the edit's stream to open", turn_started, timeout_s=30, every_s=0.02)
    fresh.kill("edit")
    job = fresh.job(job_id)
    assert (job["status"], job["stage"]) == ("running", "edit"), job  # killed mid-turn
    fresh.restart("edit")
    fresh.wait_job(job_id, "succeeded", timeout_s=60)

    after = assert_no_duplicates(fresh, before)
    sessions = new_entries(before["sessions"], after["sessions"])
    assert len(sessions) == 1, sessions
    (entry,) = sessions.values()
    assert len(entry["messages"]) == 1, entry["messages"]


@crash
def test_pipeline_worker_killed_while_polling_the_render(
    fresh: System, photo_server: PhotoServer
) -> None:
    before = fresh.ledger()
    job_id = submit(fresh, photo_server, aspect_ratio="1:1", duration_s=5)
    fresh.wait_stage(job_id, ("poll_render",), timeout_s=30)
    fresh.faults(latency_ms=1500)  # every look at the render now hangs for 1.5 s
    time.sleep(0.5)
    fresh.kill("pipeline")
    job = fresh.job(job_id)
    assert (job["status"], job["stage"]) == ("running", "poll_render"), job  # killed mid-poll
    fresh.clear_faults()
    fresh.restart("pipeline")
    fresh.wait_job(job_id, "succeeded", timeout_s=60)

    after = assert_no_duplicates(fresh, before)
    assert len(new_entries(before["renders"], after["renders"])) == 1, after["renders"]


@crash
def test_flushed_broker_is_recovered_by_the_reconciler(
    fresh: System, photo_server: PhotoServer
) -> None:
    for name in ("pipeline", "edit"):
        fresh.procs[name].stop()
    job_id = submit(fresh, photo_server, aspect_ratio="1:1", duration_s=5)
    fresh.broker.flush()
    for name in ("pipeline", "edit"):
        fresh.start_worker(name)
    fresh.wait_job(job_id, "succeeded", timeout_s=60)
