"""The edit queue's gevent pool: patched before anything loads, in a real worker.

``reelyard worker --pool gevent`` must patch the standard library before it imports
anything (reelyard/green.py), and psycopg must then wait cooperatively; the real test
starts the system's processes (tests/e2e/system.py) with the edit worker on gevent and
checks that its turns were all in flight at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from reelyard.cli import main
from reelyard.green import asks_for_gevent
from tests.conftest import REDIS_TEST_URL, _worker_index, run_tag
from tests.e2e.system import (
    E2E_REDIS_FIRST_DB,
    Broker,
    System,
    create_database,
    drop_database,
    wait_for,
)
from tests.workers.pipeline_fixtures import serve_photos

JOBS = 8
#: seconds every turn lasts (wall time, whatever the studio's time scale)
TURN_S = 2
PROMPT = "turn these photos into a short video with smooth transitions"


def test_only_a_worker_asking_for_gevent_is_patched() -> None:
    assert asks_for_gevent(["reelyard", "worker", "-Q", "edit", "--pool", "gevent"])
    assert asks_for_gevent(["/x/reelyard/cli.py", "worker", "--pool=gevent", "-c", "9"])
    assert not asks_for_gevent(["reelyard", "worker", "-Q", "edit", "--pool", "threads"])
    assert not asks_for_gevent(["reelyard", "worker", "--pool"])
    assert not asks_for_gevent(["reelyard", "api", "--pool", "gevent"])
    assert not asks_for_gevent(["pytest", "-k", "gevent", "--pool", "gevent"])


def test_an_unpatched_process_refuses_the_gevent_pool() -> None:
    result = CliRunner().invoke(main, ["worker", "-Q", "edit", "--pool", "gevent"])
    assert result.exit_code == 1
    assert "needs the standard library patched" in result.output


@pytest.fixture
def gevent_system(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[System]:
    index = _worker_index(request)
    name = f"reelyard_pools_{run_tag()}_{index}"
    url = f"{REDIS_TEST_URL}/{E2E_REDIS_FIRST_DB - 2 - index}"  # between e2e's Redis and amqp's
    broker = Broker("redis", url, url)
    broker.flush()
    system = System(
        tmp_path,
        broker,
        create_database(name),
        studio_env={
            "STUDIO_TURN_S": str(TURN_S),
            "STUDIO_SILENT_CLOSE_RATIO": "0",
            "STUDIO_RENDER_MODE": "none",
        },
        commands={
            "pipeline": ["worker", "-Q", "pipeline", "-c", "2"],
            "edit": ["worker", "-Q", "edit", "--pool", "gevent", "-c", "20"],
            "beat": ["beat"],
        },
    )
    try:
        system.start()
        yield system
    finally:
        system.stop()
        broker.flush()
        drop_database(name)


@pytest.mark.slow
def test_a_gevent_edit_worker_holds_every_turn_at_once(gevent_system: System) -> None:
    system = gevent_system
    edit_log = system.procs["edit"].output()
    patched = [line for line in edit_log.splitlines() if "gevent pool: standard library" in line]
    assert patched, edit_log[-3000:]
    assert "wait_c" not in patched[0]  # psycopg's C wait would block every greenlet
    with serve_photos(system.root / "photos") as photos:
        spec = {"images": photos.urls, "prompt": PROMPT, "options": {"duration_s": 3}}
        batch = system.post("/v1/batches", {"jobs": [spec] * JOBS})
        ids = [str(job["id"]) for job in batch["jobs"]]

        def all_ended() -> list[str] | None:
            statuses = [system.job(job_id)["status"] for job_id in ids]
            ended = all(s in ("succeeded", "failed", "canceled") for s in statuses)
            return statuses if ended else None

        statuses = wait_for("every job to end", all_ended, timeout_s=60, every_s=0.25)
    assert statuses == ["succeeded"] * JOBS, system.logs()
    # every turn was sent before the first one finished: all were in flight at once
    with psycopg.connect(system.database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT max(created_at) FILTER (WHERE message LIKE 'Sent the instruction%%'),"
            " min(created_at) FILTER (WHERE message LIKE 'The editor finished%%'),"
            " count(*) FILTER (WHERE message LIKE 'The editor finished%%')"
            " FROM job_events"
        ).fetchone()
    assert row is not None
    last_sent, first_finished, finished = row
    assert finished == JOBS
    assert last_sent < first_finished, (last_sent, first_finished)
