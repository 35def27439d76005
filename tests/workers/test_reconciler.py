"""The reconciler: due and dead-leased jobs are enqueued, overdue ones fail, renders stop."""

from __future__ import annotations

from datetime import timedelta

from models.base import utcnow
from models.jobs import Job, JobStatus, Stage, finish_job, new_job_id
from workers.leases import Due, claim
from workers.queues import waiting_messages
from workers.reconciler import reconcile, to_enqueue


def sweep(session_factory, now, grace_s=0.0, *, only=None, waiting=lambda: None):
    """One sweep; what it enqueued and canceled (of job ``only``, if given: the database
    may hold other tests' committed jobs)."""
    enqueued, cancels = [], []
    result = reconcile(
        session_factory,
        now=now,
        grace_s=grace_s,
        enqueue=lambda job_id, stage: enqueued.append((job_id, stage)),
        cancel_render=cancels.append,
        waiting=waiting,
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


# --- a backlog is not a loss (to_enqueue) ---------------------------------------------

DUE = {
    "job_a": Due(Stage.AUTHORIZE),
    "job_b": Due(Stage.UPLOAD),
    "job_c": Due(Stage.EDIT),
    "job_d": Due(Stage.EXPORT),
    "job_e": Due(Stage.EDIT, orphaned=True),
}


def test_jobs_whose_messages_wait_on_the_queue_get_none_more():
    assert to_enqueue(DUE, {"pipeline": 3, "edit": 1}) == ["job_e"]
    assert to_enqueue(DUE, {"pipeline": 10_000, "edit": 5_000}) == ["job_e"]


def test_a_queue_short_of_messages_gets_its_oldest_due_jobs_sent_again():
    assert to_enqueue(DUE, {"pipeline": 1, "edit": 1}) == ["job_a", "job_b", "job_e"]
    assert to_enqueue(DUE, {"pipeline": 3, "edit": 0}) == ["job_c", "job_e"]


def test_an_empty_broker_or_one_that_cannot_say_gets_every_due_job():
    assert to_enqueue(DUE, {}) == list(DUE)  # FLUSHALL: every message gone
    assert to_enqueue(DUE, {"pipeline": 0, "edit": 0}) == list(DUE)
    assert to_enqueue(DUE, None) == list(DUE)


def test_a_dead_workers_job_is_sent_again_whatever_waits():
    assert to_enqueue({"job_e": DUE["job_e"]}, {"edit": 1_000}) == ["job_e"]


def test_a_sweep_behind_a_real_backlog_sends_only_what_the_broker_lacks(
    session_factory, db_session, job, redis_client, redis_url
):
    """Regression: draining 3,000 queued jobs, each sweep re-sent every due job whose
    message was still on the queue (19,451 duplicate messages, 6.5 per job)."""
    now = utcnow()
    jobs = [job]
    for index in range(3):
        other = Job(
            id=new_job_id(),
            tenant_id=job.tenant_id,
            image_urls=job.image_urls,
            prompt=f"a calm slideshow {index}",
            options=job.options,
            caller_metadata={},
        )
        db_session.add(other)
        jobs.append(other)
    db_session.flush()
    # due a day ago, in this order: older than any other test's job, so a sweep limited
    # to four sees exactly these (the database is shared with the other tests)
    for offset, queued in enumerate(jobs):
        queued.next_run_at = now - timedelta(days=1, seconds=60 - offset)
    db_session.commit()

    def sweep_mine() -> list[str]:
        enqueued: list[str] = []
        reconcile(
            session_factory,
            now=now,
            grace_s=0,
            enqueue=lambda job_id, _stage: enqueued.append(job_id),
            cancel_render=lambda _job_id: None,
            waiting=lambda: waiting_messages(redis_url),
            limit=len(jobs),
        )
        return enqueued

    redis_client.lpush("pipeline", *[f"m{index}" for index in range(len(jobs))])
    assert sweep_mine() == []  # a backlog: every message is there
    redis_client.ltrim("pipeline", 0, 1)  # two messages lost
    assert sweep_mine() == [jobs[0].id, jobs[1].id]  # the oldest two
    redis_client.flushdb()  # everything lost
    assert sweep_mine() == [queued.id for queued in jobs]
