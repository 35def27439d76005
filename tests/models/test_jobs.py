"""Jobs: terminal states are final, checks hold, events append, ids sort by time."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError

from models import Job, JobEvent, JobStatus, OutboxEvent, OutboxType
from models.ids import id_pattern, new_id
from models.jobs import EventType, add_event, finish_job


def test_a_new_job_is_queued_at_the_first_stage(db_session, job):
    db_session.refresh(job)
    assert job.status is JobStatus.QUEUED
    assert job.stage.value == "authorize"
    assert job.progress == 0
    assert job.created_at.tzinfo is not None


def test_status_is_stored_by_value(db_session, job):
    stored = db_session.execute(
        text("SELECT status FROM jobs WHERE id = :id"), {"id": job.id}
    ).scalar_one()
    assert stored == "queued"


def test_a_second_terminal_transition_changes_nothing(db_session, job):
    assert finish_job(db_session, job.id, JobStatus.CANCELED) is True
    won = finish_job(
        db_session,
        job.id,
        JobStatus.SUCCEEDED,
        values={"video_url": "https://videos.example/x.mp4"},
    )
    assert won is False
    db_session.refresh(job)
    assert job.status is JobStatus.CANCELED
    assert job.video_url is None
    types = db_session.scalars(select(JobEvent.type).where(JobEvent.job_id == job.id)).all()
    assert types == [EventType.CANCELED]


def test_the_terminal_transition_writes_one_outbox_row_with_it(db_session, job):
    assert finish_job(db_session, job.id, JobStatus.CANCELED) is True
    assert finish_job(db_session, job.id, JobStatus.CANCELED) is False
    rows = db_session.scalars(select(OutboxEvent).where(OutboxEvent.job_id == job.id)).all()
    assert [(row.type, row.tenant_id) for row in rows] == [(OutboxType.JOB_CANCELED, job.tenant_id)]
    assert id_pattern("evt").match(rows[0].id)


def test_a_worker_finishes_a_job_only_while_it_holds_the_lease(db_session, job):
    db_session.execute(update(Job).where(Job.id == job.id).values(lease_owner="w1"))
    assert finish_job(db_session, job.id, JobStatus.CANCELED, owner="w2") is False
    assert finish_job(db_session, job.id, JobStatus.CANCELED, owner="w1") is True


def test_finish_job_refuses_a_live_status(db_session, job):
    with pytest.raises(ValueError, match="not a terminal"):
        finish_job(db_session, job.id, JobStatus.RUNNING)


def test_a_failed_job_must_carry_an_error_code(db_session, job):
    with pytest.raises(IntegrityError), db_session.begin_nested():
        finish_job(db_session, job.id, JobStatus.FAILED)


def test_a_succeeded_job_must_carry_a_video(db_session, job):
    with pytest.raises(IntegrityError), db_session.begin_nested():
        finish_job(db_session, job.id, JobStatus.SUCCEEDED)


def test_finished_at_is_set_exactly_for_terminal_jobs(db_session, job):
    with pytest.raises(IntegrityError), db_session.begin_nested():
        db_session.execute(
            text("UPDATE jobs SET status = 'failed', error_code = 'x' WHERE id = :id"),
            {"id": job.id},
        )


def test_progress_stays_within_0_and_100(db_session, job):
    job.progress = 101
    with pytest.raises(IntegrityError), db_session.begin_nested():
        db_session.flush()


def test_unknown_status_values_are_refused_by_the_database(db_session, job):
    with pytest.raises(IntegrityError), db_session.begin_nested():
        db_session.execute(text("UPDATE jobs SET status = 'paused' WHERE id = :id"), {"id": job.id})


def test_events_come_back_in_the_order_they_were_added(db_session, job):
    add_event(db_session, job.id, EventType.STAGE, message="uploading")
    add_event(db_session, job.id, EventType.PROGRESS, progress=40)
    db_session.flush()
    events = db_session.scalars(
        select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.id)
    ).all()
    assert [event.type for event in events] == [EventType.STAGE, EventType.PROGRESS]
    assert events[0].id < events[1].id


def test_ids_sort_by_creation_time_and_match_their_pattern():
    earlier = new_id("job", now_ms=1_700_000_000_000)
    later = new_id("job", now_ms=1_700_000_000_001)
    assert earlier < later
    assert id_pattern("job").match(earlier)
    assert not id_pattern("bat").match(earlier)
