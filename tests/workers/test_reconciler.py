"""The reconciler: due and dead-leased jobs are enqueued, overdue ones fail, renders stop."""

from __future__ import annotations

from datetime import timedelta

from models.base import utcnow
from models.jobs import Job, JobStatus, Stage, finish_job
from workers.leases import claim
from workers.reconciler import reconcile


def sweep(session_factory, now, grace_s=0.0, *, only=None):
    """One sweep; what it enqueued and canceled (of job ``only``, if given: the database
    may hold other tests' committed jobs)."""
    enqueued, cancels = [], []
    result = reconcile(
        session_factory,
        now=now,
        grace_s=grace_s,
        enqueue=lambda job_id, stage: enqueued.append((job_id, stage)),
        cancel_render=cancels.append,
    )
    if only is not None:
        enqueued = [(job_id, stage) for job_id, stage in enqueued if job_id == only]
        cancels = [job_id for job_id in cancels if job_id == only]
    return result, enqueued, cancels


def test_a_due_job_is_enqueued_with_its_stage(session_factory, db_session, job):
    db_session.commit()
    _, enqueued, _ = sweep(session_factory, utcnow() + timedelta(seconds=1))
    assert (job.id, Stage.AUTHORIZE) in enqueued


def test_a_job_due_only_just_now_waits_for_the_grace_period(session_factory, db_session, job):
    job.next_run_at = utcnow()
    db_session.commit()
    _, enqueued, _ = sweep(session_factory, job.next_run_at + timedelta(seconds=1), 5, only=job.id)
    assert enqueued == []
    _, enqueued, _ = sweep(session_factory, job.next_run_at + timedelta(seconds=6), 5, only=job.id)
    assert [job_id for job_id, _ in enqueued] == [job.id]


def test_a_dead_workers_job_is_enqueued_once_its_lease_expires(session_factory, db_session, job):
    now = utcnow()
    assert claim(db_session, job.id, {Stage.AUTHORIZE}, owner="dead", lease_s=10, now=now)
    db_session.commit()
    _, enqueued, _ = sweep(session_factory, now + timedelta(seconds=5), 60, only=job.id)
    assert enqueued == []
    _, enqueued, _ = sweep(session_factory, now + timedelta(seconds=11), 60, only=job.id)
    assert [job_id for job_id, _ in enqueued] == [job.id]


def test_a_job_past_its_deadline_fails_with_deadline_exceeded(session_factory, db_session, job):
    now = utcnow()
    job.deadline_at = now - timedelta(seconds=1)
    db_session.commit()
    result, enqueued, _ = sweep(session_factory, now, only=job.id)
    db_session.refresh(job)
    assert result.overdue >= 1
    assert job.status is JobStatus.FAILED
    assert job.error_code == "deadline_exceeded"
    assert enqueued == []


def test_a_canceled_jobs_live_render_is_canceled_upstream(session_factory, db_session, job):
    job.render_id, job.render_status = "render_x_1", "processing"
    finish_job(db_session, job.id, JobStatus.CANCELED)
    db_session.commit()
    _, _, cancels = sweep(session_factory, utcnow(), only=job.id)
    assert cancels == [job.id]


def test_finished_renders_need_no_cancel(session_factory, db_session, job):
    job.render_id, job.render_status = "render_x_1", "completed"
    finish_job(db_session, job.id, JobStatus.CANCELED)
    db_session.commit()
    _, _, cancels = sweep(session_factory, utcnow(), only=job.id)
    assert cancels == []
    assert db_session.get(Job, job.id) is not None
