"""Leases on real PostgreSQL: one claim wins, duplicates do nothing, dead workers' jobs return."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from models import Job
from models.base import utcnow
from models.jobs import JobStatus, Stage, finish_job
from workers.leases import advance, advance_and_hold, claim, due_jobs, past_deadline, renew


def row(db_session, job):
    return db_session.execute(
        select(Job.stage, Job.status, Job.lease_owner, Job.next_run_at).where(Job.id == job.id)
    ).one()


def test_the_first_claim_wins_and_a_duplicate_message_claims_nothing(db_session, job):
    now = utcnow()
    assert claim(db_session, job.id, {Stage.AUTHORIZE}, owner="w1", lease_s=60, now=now)
    assert not claim(db_session, job.id, {Stage.AUTHORIZE}, owner="w2", lease_s=60, now=now)
    stage, status, owner, _ = row(db_session, job)
    assert (stage, status, owner) == (Stage.AUTHORIZE, JobStatus.RUNNING, "w1")


def test_a_claim_returns_the_job_as_it_now_is(db_session, job):
    now = utcnow()
    claimed = claim(
        db_session, job.id, {Stage.AUTHORIZE}, owner="w1", lease_s=60, now=now, deadline_s=600
    )
    assert claimed is not None
    assert (claimed.id, claimed.status, claimed.lease_owner) == (job.id, JobStatus.RUNNING, "w1")
    assert claimed.total_attempts == 1
    assert claimed.started_at == now
    assert claimed.deadline_at == now + timedelta(seconds=600)


def test_a_job_past_its_deadline_is_not_claimed_but_told_apart(db_session, job):
    now = utcnow()
    claim(db_session, job.id, {Stage.AUTHORIZE}, owner="w1", lease_s=1, now=now, deadline_s=5)
    later = now + timedelta(seconds=6)
    assert not claim(db_session, job.id, {Stage.AUTHORIZE}, owner="w2", lease_s=1, now=later)
    assert past_deadline(db_session, job.id, {Stage.AUTHORIZE}, now=later)
    assert not past_deadline(db_session, job.id, {Stage.AUTHORIZE}, now=now)
    assert not past_deadline(db_session, job.id, {Stage.EDIT}, now=later)


def test_a_claim_takes_only_the_stages_it_is_given(db_session, job):
    now = utcnow()
    assert not claim(db_session, job.id, {Stage.EDIT}, owner="w1", lease_s=60, now=now)
    assert claim(db_session, job.id, {Stage.EDIT, Stage.AUTHORIZE}, owner="w1", lease_s=60, now=now)


def test_a_message_for_a_stage_already_past_claims_nothing(db_session, job):
    now = utcnow()
    assert not claim(db_session, job.id, {Stage.UPLOAD}, owner="w1", lease_s=60, now=now)


def test_an_expired_lease_can_be_taken_over(db_session, job):
    now = utcnow()
    assert claim(db_session, job.id, {Stage.AUTHORIZE}, owner="dead", lease_s=30, now=now)
    later = now + timedelta(seconds=31)
    assert claim(db_session, job.id, {Stage.AUTHORIZE}, owner="w2", lease_s=30, now=later)
    # the dead worker, if it wakes, can neither renew nor move the job
    assert not renew(db_session, job.id, owner="dead", lease_s=30, now=later)
    assert not advance(
        db_session, job.id, owner="dead", from_stage=Stage.AUTHORIZE,
        to_stage=Stage.OPEN_SESSION, run_at=later,
    )  # fmt: skip


def test_renewing_keeps_the_job_from_others(db_session, job):
    now = utcnow()
    assert claim(db_session, job.id, {Stage.AUTHORIZE}, owner="w1", lease_s=30, now=now)
    assert renew(db_session, job.id, owner="w1", lease_s=30, now=now + timedelta(seconds=25))
    at = now + timedelta(seconds=40)
    assert not claim(db_session, job.id, {Stage.AUTHORIZE}, owner="w2", lease_s=30, now=at)


def test_advance_checkpoints_the_next_stage_and_releases(db_session, job):
    now = utcnow()
    claim(db_session, job.id, {Stage.AUTHORIZE}, owner="w1", lease_s=30, now=now)
    assert advance(
        db_session, job.id, owner="w1", from_stage=Stage.AUTHORIZE,
        to_stage=Stage.OPEN_SESSION, run_at=now,
    )  # fmt: skip
    stage, status, owner, _ = row(db_session, job)
    assert (stage, status, owner) == (Stage.OPEN_SESSION, JobStatus.RUNNING, None)
    assert claim(db_session, job.id, {Stage.OPEN_SESSION}, owner="w2", lease_s=30, now=now)


def test_advance_and_hold_is_the_next_stages_claim(db_session, job):
    now = utcnow()
    claim(db_session, job.id, {Stage.AUTHORIZE}, owner="w1", lease_s=30, now=now)
    held = advance_and_hold(
        db_session, job.id, owner="w1", from_stage=Stage.AUTHORIZE,
        to_stage=Stage.OPEN_SESSION, now=now, lease_s=30, values={"progress": 5},
    )  # fmt: skip
    assert held is not None
    assert (held.stage, held.lease_owner, held.progress) == (Stage.OPEN_SESSION, "w1", 5)
    assert held.lease_expires_at == now + timedelta(seconds=30)
    assert held.total_attempts == 2  # the claim and the held stage
    # held, so nobody else claims it; the holder can move it on
    assert not claim(db_session, job.id, {Stage.OPEN_SESSION}, owner="w2", lease_s=30, now=now)
    assert advance(
        db_session, job.id, owner="w1", from_stage=Stage.OPEN_SESSION,
        to_stage=Stage.UPLOAD, run_at=now,
    )  # fmt: skip


def test_advance_and_hold_needs_the_lease(db_session, job):
    now = utcnow()
    claim(db_session, job.id, {Stage.AUTHORIZE}, owner="w1", lease_s=30, now=now)
    assert advance_and_hold(
        db_session, job.id, owner="w2", from_stage=Stage.AUTHORIZE,
        to_stage=Stage.OPEN_SESSION, now=now, lease_s=30,
    ) is None  # fmt: skip
    assert advance_and_hold(
        db_session, job.id, owner="w1", from_stage=Stage.UPLOAD,
        to_stage=Stage.EDIT, now=now, lease_s=30,
    ) is None  # fmt: skip


def test_a_held_retry_counts_an_attempt(db_session, job):
    now = utcnow()
    claim(db_session, job.id, {Stage.AUTHORIZE}, owner="w1", lease_s=30, now=now)
    held = advance_and_hold(
        db_session, job.id, owner="w1", from_stage=Stage.AUTHORIZE,
        to_stage=Stage.AUTHORIZE, now=now, lease_s=30, count_retry=True,
    )  # fmt: skip
    assert held is not None
    assert held.stage_attempts == 1


def test_a_rescheduled_stage_is_not_claimed_before_it_is_due(db_session, job):
    now = utcnow()
    claim(db_session, job.id, {Stage.AUTHORIZE}, owner="w1", lease_s=30, now=now)
    later = now + timedelta(seconds=30)
    advance(
        db_session, job.id, owner="w1", from_stage=Stage.AUTHORIZE,
        to_stage=Stage.AUTHORIZE, run_at=later,
    )  # fmt: skip
    assert not claim(db_session, job.id, {Stage.AUTHORIZE}, owner="w1", lease_s=30, now=now)
    assert job.id not in due_jobs(db_session, now=now)
    assert job.id in due_jobs(db_session, now=later)
    assert claim(db_session, job.id, {Stage.AUTHORIZE}, owner="w1", lease_s=30, now=later)


def test_the_reconciler_sees_due_jobs_and_dead_leases_but_not_live_ones(db_session, job):
    now = utcnow()
    assert job.id in due_jobs(db_session, now=now)
    claim(db_session, job.id, {Stage.AUTHORIZE}, owner="w1", lease_s=30, now=now)
    assert job.id not in due_jobs(db_session, now=now + timedelta(seconds=10))
    assert job.id in due_jobs(db_session, now=now + timedelta(seconds=31))


def test_a_finished_job_is_never_claimed_or_due(db_session, job):
    finish_job(db_session, job.id, JobStatus.CANCELED)
    now = utcnow()
    assert not claim(db_session, job.id, {Stage.AUTHORIZE}, owner="w1", lease_s=30, now=now)
    assert job.id not in due_jobs(db_session, now=now)
