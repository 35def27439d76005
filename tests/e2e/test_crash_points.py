"""The named crash points (reelyard/crash.py) against a real system: the process dies
exactly there, the job still ends exactly once, nothing is sent or rendered twice, and
a webhook cut mid-delivery arrives again with the same ``webhook-id``.

A crash after the edit is marked sent and before the request is the one case that
cannot end well: the upstream keeps no history to ask, so reelyard cannot tell an
instruction that never left from one that changed nothing, and it never sends one
twice: the job fails ``edit_outcome_unknown`` once its reads of the state run out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reelyard.crash import EXIT_CODE
from tests.conftest import _worker_index
from tests.e2e.system import System, run_system, wait_for
from tests.webhooks.receiver import Receiver
from tests.workers.pipeline_fixtures import PhotoServer, serve_photos

PROMPT = "turn these photos into a short square video"
#: which process reaches each point (the pipeline's prefork children, or a threads pool)
WORKER = {
    "edit_marked_sent": "edit",
    "edit_request_sent": "edit",
    "render_posted": "pipeline",
    "video_stored": "pipeline",
    "webhook_mid_delivery": "webhooks",
}


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest):
    yield from run_system(
        tmp_path_factory.mktemp("crash-points"), "redis", _worker_index(request), name="crash"
    )


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PhotoServer]:
    with serve_photos(tmp_path_factory.mktemp("photos")) as server:
        yield server


def arm(system: System, point: str, marks: Path) -> None:
    """Restart the process that reaches ``point`` with the point armed."""
    name = WORKER[point]
    system.procs[name].stop()
    env = {"REELYARD_CRASH_POINTS": point, "REELYARD_CRASH_DIR": str(marks)}
    if name == "webhooks":  # the lease a crashed delivery leaves: seconds, not a minute
        env |= {"REELYARD_WEBHOOK_TIMEOUT_S": "2", "REELYARD_WEBHOOK_LEASE_S": "4"}
    system.start_worker(name, env)


def assert_ran_once(before: dict[str, Any], after: dict[str, Any]) -> None:
    for session_id, entry in after["sessions"].items():
        if session_id in before["sessions"]:
            continue
        texts = Counter(message["text"] for message in entry["messages"])
        assert all(count == 1 for count in texts.values()), (session_id, entry["messages"])
    for render_id, entry in after["renders"].items():
        assert entry["submissions"] == 1, (render_id, entry)


@pytest.mark.parametrize("point", sorted(WORKER))
def test_a_crash_at_each_point_loses_nothing_and_repeats_nothing(
    system: System, photos: PhotoServer, tmp_path: Path, point: str
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    receiver = Receiver()
    try:
        arm(system, point, marks)
        before = system.ledger()
        body = {
            "images": photos.urls,
            "prompt": f"{PROMPT} ({point})",
            "options": {"aspect_ratio": "1:1", "duration_s": 4},
            "webhook_url": receiver.url,
        }
        job_id = str(system.post("/v1/jobs", body)["id"])
        wait_for(f"the crash at {point}", (marks / point).exists, timeout_s=90)
        proc = system.procs[WORKER[point]]
        if WORKER[point] != "pipeline":
            # a threads pool: the whole worker exits; start it again, as a supervisor would
            assert proc.process.wait(timeout=30) == EXIT_CODE
            system.start_worker(WORKER[point])
        # (a prefork child exits alone; its master starts another and the message returns)
        job = system.wait_job(job_id, ("succeeded", "failed"), timeout_s=120)
        after = system.ledger()
        assert_ran_once(before, after)
        sent = [
            message["text"]
            for entry in after["sessions"].values()
            for message in entry["messages"]
            if point in message["text"]
        ]
        if point == "edit_marked_sent":
            # marked sent, never sent: the upstream cannot say whether it got it (no
            # history), so the instruction is not sent again and the job fails, once
            assert sent == []
            assert (job["status"], job["error"]["code"]) == ("failed", "edit_outcome_unknown")
            event = "job.failed"
        else:
            assert len(sent) == 1
            assert job["status"] == "succeeded", job
            assert job["result"]["sha256"]
            event = "job.succeeded"

        def delivered() -> list[Any]:
            return [r for r in receiver.received if r.payload["data"]["id"] == job_id]

        # cut mid-delivery, the message was received once already: it comes again
        wanted = 2 if point == "webhook_mid_delivery" else 1
        received = wait_for(
            "the job's webhook", lambda: len(delivered()) >= wanted and delivered(), timeout_s=60
        )
        assert {r.webhook_id for r in received} == {received[0].webhook_id}
        assert {r.payload["type"] for r in received} == {event}
    finally:
        receiver.close()
