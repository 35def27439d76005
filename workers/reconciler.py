"""The reconciler: what makes a lost message a delay and never a lost job.

Beat runs :func:`reconcile` every ``REELYARD_RECONCILE_EVERY_S`` seconds. It reads
the jobs' rows (the system of record) and, from them alone:

1. fails every live job past its deadline (``deadline_exceeded``);
2. enqueues every live job that is due and not leased, or whose lease expired (its
   worker died) — a duplicate message is harmless, the claim decides;
3. asks for the upstream cancel of renders that belong to jobs that ended without
   them (canceled, or failed on their deadline), so nothing keeps rendering for no one.

Losing every message in the broker (a Redis restart, FLUSHALL) therefore delays
jobs by at most a sweep and a grace period.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session, sessionmaker

from models.jobs import TERMINAL_STATUSES, Job, JobStatus, Stage, finish_job
from workers import leases
from workers.decisions import MESSAGES, ErrorCode

log = logging.getLogger(__name__)

#: render statuses that mean "still rendering" upstream
LIVE_RENDER_STATUSES = ("pending", "processing")
#: how far back the reconciler looks for renders to cancel
CANCEL_WINDOW = timedelta(days=1)


@dataclass(frozen=True)
class Sweep:
    """What one sweep did."""

    enqueued: int
    overdue: int
    cancels: int


Enqueue = Callable[[str, Stage], None]
CancelRender = Callable[[str], None]


def reconcile(
    sessions: sessionmaker[Session],
    *,
    now: datetime,
    grace_s: float,
    enqueue: Enqueue,
    cancel_render: CancelRender,
    limit: int = 1000,
) -> Sweep:
    with sessions() as session:
        overdue = leases.overdue_jobs(session, now=now, limit=limit)
        session.rollback()
    failed = 0
    for job_id in overdue:
        with sessions() as session:
            code = ErrorCode.DEADLINE_EXCEEDED
            if finish_job(
                session,
                job_id,
                JobStatus.FAILED,
                values={"error_code": code.value, "error_message": MESSAGES[code]},
                message=MESSAGES[code],
            ):
                failed += 1
            session.commit()
    with sessions() as session:
        due = leases.due_jobs(session, now=now, grace_s=grace_s, limit=limit)
        orphans = session.scalars(
            select(Job.id)
            .where(
                and_(
                    Job.status.in_(TERMINAL_STATUSES),
                    Job.render_id.is_not(None),
                    Job.render_status.in_(LIVE_RENDER_STATUSES),
                    Job.finished_at >= now - CANCEL_WINDOW,
                )
            )
            .limit(limit)
        ).all()
        session.rollback()
    for job_id, stage in due.items():
        enqueue(job_id, stage)
    for job_id in orphans:
        cancel_render(job_id)
    if due or failed or orphans:
        log.info(
            "reconciled: %d enqueued, %d overdue, %d renders to cancel",
            len(due),
            failed,
            len(orphans),
        )
    return Sweep(len(due), failed, len(orphans))


def mark_render_canceled(sessions: sessionmaker[Session], job_id: str, status: str) -> None:
    """Record the upstream render's end for a job that is over (cancel done or moot)."""
    with sessions() as session:
        session.execute(
            update(Job)
            .where(and_(Job.id == job_id, Job.status.in_(TERMINAL_STATUSES)))
            .values(render_status=status)
        )
        session.commit()
