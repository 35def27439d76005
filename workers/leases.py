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
The statements are built once (per set of columns written) with bound parameters:
building and keying a statement anew costs more CPU than PostgreSQL spends running it,
and these run several times for every job.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, cast

from sqlalchemy import (
    Row,
    Table,
    Update,
    and_,
    bindparam,
    func,
    inspect,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from models.jobs import ACTIVE_STATUSES, Job, JobStatus, Stage

JOBS = cast(Table, Job.__table__)
#: each attribute of a job and its column
_FIELDS = [(attribute.key, attribute.columns[0]) for attribute in inspect(Job).column_attrs]
_COLUMNS = dict(_FIELDS)


def job_from_row(row: Row[Any]) -> Job:
    """A (detached) job from a row of every column, as ``RETURNING`` gives it."""
    mapping = row._mapping
    return Job(**{key: mapping[column] for key, column in _FIELDS})


def _param(key: str) -> Any:
    return bindparam(f"v_{key}", type_=_COLUMNS[key].type)


def _values(values: Mapping[str, Any]) -> dict[str, Any]:
    return {f"v_{key}": value for key, value in values.items()}


_OWNED = and_(
    JOBS.c.id == bindparam("job_id"),
    JOBS.c.lease_owner == bindparam("owner"),
    JOBS.c.stage == bindparam("from_stage", type_=JOBS.c.stage.type),
    JOBS.c.status.in_(ACTIVE_STATUSES),
)


def _now_param() -> Any:
    return bindparam("now", type_=JOBS.c.lease_expires_at.type)


_CLAIM = (
    update(JOBS)
    .where(
        and_(
            JOBS.c.id == bindparam("job_id"),
            JOBS.c.stage.in_(bindparam("stages", expanding=True, type_=JOBS.c.stage.type)),
            JOBS.c.status.in_(ACTIVE_STATUSES),
            or_(JOBS.c.next_run_at.is_(None), JOBS.c.next_run_at <= _now_param()),
            or_(JOBS.c.deadline_at.is_(None), JOBS.c.deadline_at > _now_param()),
            or_(
                JOBS.c.lease_owner.is_(None),
                JOBS.c.lease_expires_at.is_(None),
                JOBS.c.lease_expires_at <= _now_param(),
                JOBS.c.lease_owner == bindparam("owner"),
            ),
        )
    )
    .values(
        lease_owner=bindparam("owner"),
        lease_expires_at=bindparam("lease_until", type_=JOBS.c.lease_expires_at.type),
        status=JobStatus.RUNNING,
        total_attempts=JOBS.c.total_attempts + 1,
        started_at=func.coalesce(JOBS.c.started_at, _now_param()),
        deadline_at=func.coalesce(
            JOBS.c.deadline_at, bindparam("deadline", type_=JOBS.c.deadline_at.type)
        ),
    )
    .returning(*JOBS.c)
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
    row = session.execute(
        _CLAIM,
        {
            "job_id": job_id,
            "stages": sorted(stages),
            "owner": owner,
            "now": now,
            "lease_until": now + timedelta(seconds=lease_s),
            "deadline": None if deadline_s is None else now + timedelta(seconds=deadline_s),
        },
    ).first()
    return None if row is None else job_from_row(row)


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


_RENEW = (
    update(JOBS)
    .where(
        and_(
            JOBS.c.id == bindparam("job_id"),
            JOBS.c.lease_owner == bindparam("owner"),
            JOBS.c.status.in_(ACTIVE_STATUSES),
        )
    )
    .values(lease_expires_at=bindparam("lease_until", type_=JOBS.c.lease_expires_at.type))
    .returning(JOBS.c.id)
)


def renew(session: Session, job_id: str, *, owner: str, lease_s: float, now: datetime) -> bool:
    """Extend our lease; False when it is no longer ours (stop working on the job)."""
    renewed = session.execute(
        _RENEW,
        {"job_id": job_id, "owner": owner, "lease_until": now + timedelta(seconds=lease_s)},
    ).first()
    return renewed is not None


def checkpoint(
    session: Session,
    job_id: str,
    *,
    owner: str,
    stage: Stage,
    values: Mapping[str, Any],
    now: datetime,
    lease_s: float,
) -> bool:
    """Write ``values`` on the job we hold at ``stage``, renewing the lease with them;
    False when it is no longer ours."""
    changed = session.execute(
        _checkpoint_statement(frozenset(values)),
        {
            **_values(values),
            "job_id": job_id,
            "owner": owner,
            "from_stage": stage,
            "now": now,
            "lease_until": now + timedelta(seconds=lease_s),
        },
    ).first()
    return changed is not None


@functools.cache
def _checkpoint_statement(keys: frozenset[str]) -> Update:
    return (
        update(JOBS)
        .where(_OWNED)
        .values(
            {_COLUMNS[key]: _param(key) for key in keys}
            | {
                JOBS.c.updated_at: _now_param(),
                JOBS.c.lease_expires_at: bindparam(
                    "lease_until", type_=JOBS.c.lease_expires_at.type
                ),
            }
        )
        .returning(JOBS.c.id)
    )


class _Attempts(Enum):
    RESET = "reset"  # a new stage
    COUNT = "count"  # a retry
    KEEP = "keep"  # a wait that is no failure


def _attempts(from_stage: Stage, to_stage: Stage, count_retry: bool) -> _Attempts:
    if to_stage != from_stage:
        return _Attempts.RESET
    return _Attempts.COUNT if count_retry else _Attempts.KEEP


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
    statement, params = _advance(
        job_id,
        owner,
        from_stage=from_stage,
        to_stage=to_stage,
        values=values,
        count_retry=count_retry,
        hold=False,
    )
    return session.execute(statement, params | {"run_at": run_at}).first() is not None


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
    statement, params = _advance(
        job_id,
        owner,
        from_stage=from_stage,
        to_stage=to_stage,
        values=values,
        count_retry=count_retry,
        hold=True,
    )
    row = session.execute(
        statement, params | {"run_at": now, "lease_until": now + timedelta(seconds=lease_s)}
    ).first()
    return None if row is None else job_from_row(row)


def _advance(
    job_id: str,
    owner: str,
    *,
    from_stage: Stage,
    to_stage: Stage,
    values: Mapping[str, Any] | None,
    count_retry: bool,
    hold: bool,
) -> tuple[Update, dict[str, Any]]:
    """The statement and the parameters :func:`advance` and :func:`advance_and_hold`
    share (each adds when the next stage is due, and the hold its lease)."""
    values = values or {}
    statement = _advance_statement(
        frozenset(values), _attempts(from_stage, to_stage, count_retry), hold=hold
    )
    params = {
        **_values(values),
        "job_id": job_id,
        "owner": owner,
        "from_stage": from_stage,
        "to_stage": to_stage,
    }
    return statement, params


@functools.cache
def _advance_statement(keys: frozenset[str], attempts: _Attempts, *, hold: bool) -> Update:
    sets: dict[Any, Any] = {_COLUMNS[key]: _param(key) for key in keys}
    sets[JOBS.c.stage] = bindparam("to_stage", type_=JOBS.c.stage.type)
    sets[JOBS.c.next_run_at] = bindparam("run_at", type_=JOBS.c.next_run_at.type)
    sets[JOBS.c.stage_attempts] = {
        _Attempts.RESET: 0,
        _Attempts.COUNT: JOBS.c.stage_attempts + 1,
        _Attempts.KEEP: JOBS.c.stage_attempts,
    }[attempts]
    if hold:
        sets[JOBS.c.lease_expires_at] = bindparam("lease_until", type_=JOBS.c.lease_expires_at.type)
        sets[JOBS.c.total_attempts] = JOBS.c.total_attempts + 1
        return update(JOBS).where(_OWNED).values(sets).returning(*JOBS.c)
    sets[JOBS.c.lease_owner] = None
    sets[JOBS.c.lease_expires_at] = None
    return update(JOBS).where(_OWNED).values(sets).returning(JOBS.c.id)


@dataclass(frozen=True)
class Due:
    """A job the reconciler may enqueue: its stage, and whether a worker had it."""

    stage: Stage
    #: its lease expired: the worker that took its message died with it
    orphaned: bool = False


def due_jobs(
    session: Session, *, now: datetime, grace_s: float = 0.0, limit: int = 500
) -> dict[str, Due]:
    """Live jobs that are due and free, oldest due first: the reconciler decides which
    to enqueue (``workers.reconciler.to_enqueue``; claims decide the rest).

    A job whose lease expired (its worker died) is due at once; one that is merely
    due must have been due for ``grace_s`` seconds, so the message already on its way
    to it is not doubled on every sweep.
    """
    due_before = now - timedelta(seconds=grace_s)
    rows = session.execute(
        select(Job.id, Job.stage, Job.lease_expires_at.is_not(None))
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
    return {row[0]: Due(row[1], bool(row[2])) for row in rows}


def overdue_jobs(session: Session, *, now: datetime, limit: int = 500) -> list[str]:
    """Live jobs past their deadline: the reconciler fails each."""
    rows = session.execute(
        select(Job.id)
        .where(and_(Job.status.in_(ACTIVE_STATUSES), Job.deadline_at <= now))
        .limit(limit)
    )
    return [job_id for (job_id,) in rows]
