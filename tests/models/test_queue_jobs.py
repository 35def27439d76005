"""Job creation, the API's hot path: a job and its creation event in one statement."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from models import Base, Job, JobEvent
from models.access import create_tenant
from models.db import make_engine
from models.jobs import EventType, JobStatus, Stage, queue_jobs

REQUEST = {
    "images": ["https://photos.example.com/a.jpg"],
    "prompt": "A warm, slow slideshow of the beach house.",
    "options": {"aspect_ratio": "9:16"},
    "metadata": {"order": "42"},
    "webhook_url": None,
}


@contextmanager
def statements_run(session):
    """The (statement, executemany) pairs sent on ``session``'s connection meanwhile."""
    seen = []
    connection = session.connection()

    def record(_conn, _cursor, statement, _params, _context, executemany):
        seen.append((statement, executemany))

    event.listen(connection, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(connection, "before_cursor_execute", record)


def stored(session, job_id):
    job = session.get(Job, job_id)
    events = session.scalars(select(JobEvent).where(JobEvent.job_id == job_id)).all()
    return job, events


def test_a_job_and_its_creation_event_are_one_statement(db_session):
    tenant = create_tenant(db_session, "Acme")
    with statements_run(db_session) as seen:
        [row] = queue_jobs(db_session, tenant.id, [REQUEST])
    assert len(seen) == 1
    assert seen[0][1] is False
    job, events = stored(db_session, row["id"])
    assert job is not None
    assert (job.tenant_id, job.status, job.stage, job.prompt) == (
        tenant.id,
        JobStatus.QUEUED,
        Stage.AUTHORIZE,
        REQUEST["prompt"],
    )
    assert job.caller_metadata == {"order": "42"}
    [created] = events
    assert (created.type, created.stage, created.progress, created.message) == (
        EventType.CREATED,
        Stage.AUTHORIZE,
        0,
        "Job queued.",
    )
    assert created.created_at == job.created_at


def test_a_batch_is_one_executemany_with_an_event_for_each_job(db_session):
    tenant = create_tenant(db_session, "Acme")
    requests = [{**REQUEST, "prompt": f"Video {n}"} for n in range(3)]
    with statements_run(db_session) as seen:
        rows = queue_jobs(db_session, tenant.id, requests)
    assert [executemany for _statement, executemany in seen] == [True]
    for n, row in enumerate(rows):
        job, events = stored(db_session, row["id"])
        assert job is not None
        assert job.prompt == f"Video {n}"
        assert [(e.job_id, e.type) for e in events] == [(row["id"], EventType.CREATED)]


def test_no_requests_write_nothing(db_session):
    tenant = create_tenant(db_session, "Acme")
    with statements_run(db_session) as seen:
        assert queue_jobs(db_session, tenant.id, []) == []
    assert seen == []


@pytest.fixture
def sqlite_session():
    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    try:
        with Session(engine) as session:
            yield session
    finally:
        engine.dispose()


def test_on_sqlite_the_job_and_its_event_are_written_too(sqlite_session):
    tenant = create_tenant(sqlite_session, "Acme")
    [row] = queue_jobs(sqlite_session, tenant.id, [REQUEST])
    sqlite_session.commit()
    job, events = stored(sqlite_session, row["id"])
    assert job is not None
    assert job.status is JobStatus.QUEUED
    assert [(e.type, e.message) for e in events] == [(EventType.CREATED, "Job queued.")]
