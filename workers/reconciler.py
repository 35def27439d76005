"""The reconciler: what makes a lost message a delay and never a lost job.

Beat runs :func:`reconcile` every ``REELYARD_RECONCILE_EVERY_S`` seconds. It reads
the jobs' rows (the system of record) and, from them alone:

1. fails every live job past its deadline (``deadline_exceeded``);
2. enqueues the live jobs that are due and not leased, or whose lease expired (its
   worker died) — a duplicate message is harmless, the claim decides — but not more
   of a queue's merely-due jobs than the broker is missing messages for
   (:func:`to_enqueue`): behind a backlog of 10,000 queued jobs every one of them is
   "due", and each has its message waiting on the queue; sending them all again on
   every sweep multiplied the queue (6.5 duplicates per job draining 3,000 jobs);
3. asks for the upstream cancel of renders that belong to jobs that ended without
   them (canceled, or failed on their deadline), so nothing keeps rendering for no one.

Losing every message in the broker (a Redis restart, FLUSHALL) therefore delays
jobs by at most a sweep and a grace period.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, select, update
from sqlalchemy.orm import Session, sessionmaker

from models.jobs import TERMINAL_STATUSES, Job, JobStatus, Stage, finish_job
from workers import leases
from workers.decisions import MESSAGES, ErrorCode
from workers.leases import Due
from workers.pipeline import queue_for

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
#: messages waiting on each broker queue, by name; None when the broker cannot say
Waiting = Callable[[], Mapping[str, int] | None]


def to_enqueue(due: Mapping[str, Due], waiting: Mapping[str, int] | None) -> list[str]:
    """The due jobs (oldest first) that get a message now.

    A job whose worker died (``orphaned``) always does: its message went with the
    worker. Of a queue's merely-due jobs, only as many as it has more than messages
    waiting, the oldest first: the others' messages are, as far as anyone can tell,
    still on the queue (a message taken by a live worker leads to a lease, and a
    leased job is not due). A lost message is then found once the queue has drained
    to the jobs whose messages are gone, at the latest; every message lost at once
    (FLUSHALL, a restarted Redis) leaves an empty queue, so they are all sent again on
    the next sweep. When the broker cannot say (``waiting`` is None), every due job
    gets one, as before.
    """
    if waiting is None:
        return list(due)
    merely_due: dict[str, int] = {}
    for entry in due.values():
        if not entry.orphaned:
            queue = queue_for(entry.stage).value
            merely_due[queue] = merely_due.get(queue, 0) + 1
    room = {queue: count - waiting.get(queue, 0) for queue, count in merely_due.items()}
    chosen = []
    for job_id, entry in due.items():
        queue = queue_for(entry.stage).value
        if entry.orphaned:
            chosen.append(job_id)
        elif room[queue] > 0:
            room[queue] -= 1
            chosen.append(job_id)
    return chosen


def reconcile(
    sessions: sessionmaker[Session],
    *,
    now: datetime,
    grace_s: float,
    enqueue: Enqueue,
    cancel_render: CancelRender,
    waiting: Waiting = lambda: None,
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
    chosen = to_enqueue(due, waiting() if due else None)
    for job_id in chosen:
        enqueue(job_id, due[job_id].stage)
    for job_id in orphans:
        cancel_render(job_id)
    if chosen or failed or orphans:
        log.info(
            "reconciled: %d enqueued (of %d due), %d overdue, %d renders to cancel",
            len(chosen),
            len(due),
            failed,
            len(orphans),
        )
    return Sweep(len(chosen), failed, len(orphans))


def mark_render_canceled(sessions: sessionmaker[Session], job_id: str, status: str) -> None:
    """Record the upstream render's end for a job that is over (cancel done or moot)."""
    with sessions() as session:
        session.execute(
            update(Job)
            .where(and_(Job.id == job_id, Job.status.in_(TERMINAL_STATUSES)))
            .values(render_status=status)
        )
        session.commit()
