"""Events of a stage: written together when they come close, at once when they don't,
and never for a job that is no longer ours."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from models.base import utcnow
from models.jobs import EventType, JobStatus, Stage, finish_job
from tests.workers.pipeline_fixtures import deps, events, photos, pipeline_studio, studio, submit
from workers import leases
from workers.pipeline import EVENT_BATCH_S, Deps, LeaseLost, StageRun

__all__ = ["deps", "photos", "pipeline_studio", "studio"]
OWNER = "test-owner"


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def run(db_session, deps: Deps, photos, clock: Clock) -> StageRun:
    job_id = submit(db_session, photos.urls)
    clock.now = utcnow()  # the job is due
    job = leases.claim(db_session, job_id, {Stage.AUTHORIZE}, owner=OWNER, lease_s=60, now=clock())
    assert job is not None
    db_session.commit()
    return StageRun(replace(deps, clock=clock), job, OWNER)


def messages(run: StageRun) -> list[str]:
    return [e.message or "" for e in events(run.deps, run.job.id) if e.type != EventType.CREATED]


def test_events_that_come_close_together_wait_for_the_next_write(run, clock):
    run.event(EventType.MESSAGE, "first")
    run.event(EventType.MESSAGE, "second")
    assert messages(run) == []
    clock.advance(EVENT_BATCH_S)
    run.keep_alive()  # a heartbeat writes what waits
    assert messages(run) == ["first", "second"]


def test_an_event_long_after_the_last_write_is_written_at_once(run, clock):
    clock.advance(EVENT_BATCH_S)
    run.event(EventType.MESSAGE, "at once")
    assert messages(run) == ["at once"]


def test_a_checkpoint_writes_the_waiting_events_before_its_own(run, clock):
    run.event(EventType.MESSAGE, "waiting")
    run.checkpoint({"edit_reads": 1}, message="checkpoint")
    assert messages(run) == ["waiting", "checkpoint"]


def test_events_of_a_job_that_is_no_longer_ours_are_not_written(run, clock, db_session):
    run.event(EventType.MESSAGE, "too late")
    finish_job(db_session, run.job.id, JobStatus.CANCELED, message="Canceled.")
    db_session.commit()
    clock.advance(EVENT_BATCH_S)
    with pytest.raises(LeaseLost):
        run.keep_alive()
    assert messages(run) == ["Canceled."]
