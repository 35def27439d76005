"""Leases: a stage runs only while its worker holds the job, claimed in one statement.

Messages may be lost or delivered twice, and a worker may die at any line; the job's
row decides who works on it (procrastinate's model, design.md "Durability"):

- :func:`claim` — one conditional UPDATE that returns the job: it is at a stage of
  the message's queue, still live, due, within its deadline, and nobody else holds
  an unexpired lease. A duplicate message, or one for a stage already past, claims
  nothing and does nothing.
- :func:`renew` — a long stage (the SSE edit) extends its lease while it is alive; a
  worker that lost its lease learns it here and stops.
- :func:`advance` — checkpoint the next stage and let go, in the same statement,
  guarded by the owner, so a worker whose lease was taken over cannot move the job;
  :func:`advance_and_hold` keeps it instead, as the claim of the next stage, for a
  worker that runs that stage at once.
- :func:`due_jobs` — what the reconciler re-enqueues: live jobs that are due and not
  leased, or whose lease expired (a dead worker's).

Every function takes the caller's session and only executes; the caller commits.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Update, and_, func, or_, select, update
from sqlalchemy.orm import Session

from models.jobs import ACTIVE_STATUSES, Job, JobStatus, Stage


def _free_or_mine(owner: str, now: datetime) -> ColumnElement[bool]:
    return or_(
        Job.lease_owner.is_(None),
        Job.lease_expires_at.is_(None),
        Job.lease_expires_at <= now,
        Job.lease_owner == owner,
    )


def claim(
    session: Session,
    job_id: str,
    stages: Collection[Stage],
    *,
    owner: str,
    lease_s: float,
    now: datetime,
    deadline_s: float | None = None,
) -> Job | None:
    """Take the job for its stage, if that is one of ``stages``, until ``now + lease_s``.

    The claimed job as it is now, in the same statement (``UPDATE … RETURNING``); None
    if it is not ours to run: finished, at another stage, not yet due, held by
    another worker, or past its deadline (which :func:`past_deadline` tells apart).
    The first claim starts the job's clock: ``started_at``, and its deadline
    ``deadline_s`` later (unless the job already has one).
    """
    deadline = None if deadline_s is None else now + timedelta(seconds=deadline_s)
    return session.scalars(
        update(Job)
        .where(
            and_(
                Job.id == job_id,
                Job.stage.in_(stages),
                Job.status.in_(ACTIVE_STATUSES),
                or_(Job.next_run_at.is_(None), Job.next_run_at <= now),
                or_(Job.deadline_at.is_(None), Job.deadline_at > now),
                _free_or_mine(owner, now),
            )
        )
        .values(
            lease_owner=owner,
            lease_expires_at=now + timedelta(seconds=lease_s),
            status=JobStatus.RUNNING,
            total_attempts=Job.total_attempts + 1,
            started_at=func.coalesce(Job.started_at, now),
            deadline_at=func.coalesce(Job.deadline_at, deadline),
        )
        .returning(Job)
        .execution_options(synchronize_session=False, populate_existing=True)
    ).first()


def past_deadline(
    session: Session, job_id: str, stages: Collection[Stage], *, now: datetime
) -> bool:
    """Whether the job is live at one of ``stages`` but past its deadline (a claim
    refused it; the caller fails it)."""
    found = session.execute(
        select(Job.id).where(
            and_(
                Job.id == job_id,
                Job.stage.in_(stages),
                Job.status.in_(ACTIVE_STATUSES),
                Job.deadline_at <= now,
            )
        )
    ).first()
    return found is not None


def renew(session: Session, job_id: str, *, owner: str, lease_s: float, now: datetime) -> bool:
    """Extend our lease; False when it is no longer ours (stop working on the job)."""
    renewed = session.execute(
        update(Job)
        .where(
            and_(
                Job.id == job_id,
                Job.lease_owner == owner,
                Job.status.in_(ACTIVE_STATUSES),
            )
        )
        .values(lease_expires_at=now + timedelta(seconds=lease_s))
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    ).first()
    return renewed is not None


def advance(
    session: Session,
    job_id: str,
    *,
    owner: str,
    from_stage: Stage,
    to_stage: Stage,
    run_at: datetime,
    values: Mapping[str, Any] | None = None,
    count_retry: bool = True,
) -> bool:
    """Move the job from ``from_stage`` to ``to_stage``, due at ``run_at``, and release it.

    Also the way to reschedule a stage (``to_stage == from_stage`` with a later
    ``run_at``): nothing sleeps in a worker. ``values`` are checkpointed in the same
    statement. A new stage starts with no attempts; a rescheduled one counts one more
    unless ``count_retry`` is false (a wait that is no failure, such as polling).
    """
    moved = session.execute(
        _advance(job_id, owner, from_stage, to_stage, count_retry)
        .values(next_run_at=run_at, lease_owner=None, lease_expires_at=None, **(values or {}))
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    ).first()
    return moved is not None


def advance_and_hold(
    session: Session,
    job_id: str,
    *,
    owner: str,
    from_stage: Stage,
    to_stage: Stage,
    now: datetime,
    lease_s: float,
    values: Mapping[str, Any] | None = None,
    count_retry: bool = True,
) -> Job | None:
    """Move the job to ``to_stage``, due now, and keep it: the same statement is the
    next stage's claim (for a worker that runs the next stage at once). The job as it
    now is; None if it was not ours."""
    return session.scalars(
        _advance(job_id, owner, from_stage, to_stage, count_retry)
        .values(
            next_run_at=now,
            lease_expires_at=now + timedelta(seconds=lease_s),
            total_attempts=Job.total_attempts + 1,
            **(values or {}),
        )
        .returning(Job)
        .execution_options(synchronize_session=False, populate_existing=True)
    ).first()


def _advance(
    job_id: str, owner: str, from_stage: Stage, to_stage: Stage, count_retry: bool
) -> Update:
    if to_stage != from_stage:
        attempts: Any = 0
    else:
        attempts = Job.stage_attempts + 1 if count_retry else Job.stage_attempts
    return (
        update(Job)
        .where(
            and_(
                Job.id == job_id,
                Job.lease_owner == owner,
                Job.stage == from_stage,
                Job.status.in_(ACTIVE_STATUSES),
            )
        )
        .values(stage=to_stage, stage_attempts=attempts)
    )


def due_jobs(
    session: Session, *, now: datetime, grace_s: float = 0.0, limit: int = 500
) -> dict[str, Stage]:
    """Live jobs that are due and free, with their stage: the reconciler enqueues each
    (claims decide).

    A job whose lease expired (its worker died) is due at once; one that is merely
    due must have been due for ``grace_s`` seconds, so the message already on its way
    to it is not doubled on every sweep.
    """
    due_before = now - timedelta(seconds=grace_s)
    rows = session.execute(
        select(Job.id, Job.stage)
        .where(
            and_(
                Job.status.in_(ACTIVE_STATUSES),
                or_(Job.lease_expires_at.is_(None), Job.lease_expires_at <= now),
                or_(
                    Job.lease_expires_at.is_not(None),
                    Job.next_run_at.is_(None),
                    Job.next_run_at <= due_before,
                ),
                or_(Job.next_run_at.is_(None), Job.next_run_at <= now),
            )
        )
        .order_by(Job.next_run_at)
        .limit(limit)
    )
    return {row[0]: row[1] for row in rows}


def overdue_jobs(session: Session, *, now: datetime, limit: int = 500) -> list[str]:
    """Live jobs past their deadline: the reconciler fails each."""
    rows = session.execute(
        select(Job.id)
        .where(and_(Job.status.in_(ACTIVE_STATUSES), Job.deadline_at <= now))
        .limit(limit)
    )
    return [job_id for (job_id,) in rows]
