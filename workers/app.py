"""The Celery application, and how the API hands a job to the pipeline.

:func:`create_celery` builds the app from the settings (no import-time app, no
import-time configuration). The tasks arrive with the pipeline; the API knows them
only by name, so it never imports them.

Durability (design.md): JSON only, no result backend (results live in PostgreSQL),
``acks_late`` with reject-on-worker-lost so a killed worker's task is delivered
again, and a visibility timeout longer than any countdown the pipeline uses.

:func:`publish_after_commit` queues a task on a SQLAlchemy session; it is sent only
when that session's transaction commits, and dropped if it rolls back. A failed send
(broker down) is logged and swallowed: the job is already committed, and the
reconciler re-enqueues every due job, so the caller never fails because of it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from celery import Celery
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from reelyard.settings import Settings

log = logging.getLogger(__name__)

#: the pipeline's entry task: runs the job's current stage
RUN_STAGE_TASK = "reelyard.pipeline.run_stage"
#: seconds a reserved, unacknowledged message stays invisible; every countdown the
#: pipeline uses must stay below it
VISIBILITY_TIMEOUT_S = 3600
#: seconds to wait for the broker when publishing, so a dead broker costs little
PUBLISH_TIMEOUT_S = 1.0

_PENDING = "reelyard.pending_tasks"
_HOOKED = "reelyard.publisher_hooked"


def create_celery(settings: Settings) -> Celery:
    """The Celery app for ``settings`` (broker from ``REELYARD_BROKER_URL``)."""
    app = Celery("reelyard", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        result_backend=None,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={
            "visibility_timeout": VISIBILITY_TIMEOUT_S,
            "socket_connect_timeout": PUBLISH_TIMEOUT_S,
            "socket_timeout": PUBLISH_TIMEOUT_S,
        },
        broker_connection_timeout=PUBLISH_TIMEOUT_S,
        broker_connection_retry_on_startup=True,
        # a publish that fails is not retried here: the reconciler is the retry
        task_publish_retry=False,
        timezone="UTC",
        enable_utc=True,
    )
    return app


@dataclass(frozen=True, slots=True)
class PendingTask:
    name: str
    args: tuple[Any, ...]


def send_now(app: Celery, name: str, args: tuple[Any, ...]) -> bool:
    """Publish task ``name``; False (logged) when the broker cannot take it."""
    try:
        app.send_task(name, args=list(args), retry=False)
    except Exception:  # kombu raises transport-specific errors; any of them means "not sent"
        log.warning("could not publish %s%r; the reconciler will", name, args, exc_info=True)
        return False
    return True


def publish_after_commit(session: Session, app: Celery, name: str, *args: Any) -> None:
    """Send task ``name`` with ``args`` once ``session``'s transaction commits."""
    if not session.in_transaction():
        session.begin()  # the task belongs to this transaction: a rollback drops it
    pending: list[PendingTask] = session.info.setdefault(_PENDING, [])
    pending.append(PendingTask(name, args))
    if session.info.get(_HOOKED):
        return
    session.info[_HOOKED] = True

    def after_commit(committed: Session) -> None:
        tasks = committed.info.pop(_PENDING, [])
        for task in tasks:
            send_now(app, task.name, task.args)

    def after_soft_rollback(rolled_back: Session, previous: SessionTransaction) -> None:
        if not previous.nested:  # a savepoint's rollback leaves the transaction alive
            rolled_back.info.pop(_PENDING, None)

    event.listen(session, "after_commit", after_commit)
    event.listen(session, "after_soft_rollback", after_soft_rollback)


def enqueue_job(session: Session, app: Celery, job_id: str) -> None:
    """Hand ``job_id`` to the pipeline once the transaction that created it commits."""
    publish_after_commit(session, app, RUN_STAGE_TASK, job_id)
