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
Sends go through a :class:`TaskPublisher` kept per process and thread (Celery's own
messages, without ``send_task``'s per-call set-up): the API's hot path.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from celery import Celery
from kombu import Connection, Producer
from kombu.transport.redis import Channel as RedisChannel
from kombu.transport.redis import Transport as RedisTransport
from kombu.utils.uuid import uuid
from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from reelyard.settings import Settings
from workers.filesystem_broker import STAGING_OPTION

log = logging.getLogger(__name__)

#: the pipeline's entry task: runs the job's current stage
RUN_STAGE_TASK = "reelyard.pipeline.run_stage"
#: seconds a reserved, unacknowledged message stays invisible; every countdown the
#: pipeline uses must stay below it
VISIBILITY_TIMEOUT_S = 3600
#: how often a consumer of the filesystem broker (standalone) looks for messages
FILESYSTEM_POLL_S = 0.1
#: the filesystem broker's transport (the standalone mode's)
FILESYSTEM_TRANSPORT = "workers.filesystem_broker:Transport"
#: seconds to wait for the broker when publishing, so a dead broker costs little
PUBLISH_TIMEOUT_S = 1.0

_PENDING = "reelyard.pending_tasks"
_HOOKED = "reelyard.publisher_hooked"


#: the edit stage's task, on its own queue served by an I/O pool
RUN_EDIT_TASK = "reelyard.pipeline.run_edit"
RECONCILE_TASK = "reelyard.pipeline.reconcile"
CANCEL_RENDER_TASK = "reelyard.pipeline.cancel_render"
#: webhooks: fan out the outbox and start delivery loops (woken after a job ends, and
#: by beat); a delivery loop (workers/webhooks.py)
WEBHOOKS_DISPATCH_TASK = "reelyard.webhooks.dispatch"
WEBHOOKS_DELIVER_TASK = "reelyard.webhooks.deliver"
#: queue names (also ``workers.pipeline.Queue``)
PIPELINE_QUEUE = "pipeline"
EDIT_QUEUE = "edit"
#: webhook delivery, on an I/O pool of its own: a slow receiver holds a thread, never
#: a pipeline worker
WEBHOOKS_QUEUE = "webhooks"
#: seconds a short stage may run before Celery interrupts it (prefork pool only: the
#: threads pool has no time limits, so every stage also has its own deadlines —
#: httpx timeouts, the SSE heartbeat and turn limits, the job's deadline)
SHORT_SOFT_LIMIT_S = 300
SHORT_HARD_LIMIT_S = 360


def transport_options(broker_url: str) -> dict[str, Any]:
    """The broker's transport options (see :func:`create_celery`).

    ``filesystem://<dir>`` (the standalone mode's broker, kombu's filesystem
    transport as :mod:`workers.filesystem_broker` amends it): a message is written in
    ``<dir>/staging`` and renamed into ``<dir>/queue`` when whole; a consumer takes one
    by renaming it into ``<dir>/processed`` (on the same file system, so exactly one
    consumer gets it), and the fan-out tables (worker events, remote control) are in
    ``<dir>/control``. Polled every :data:`FILESYSTEM_POLL_S`.
    """
    if not is_filesystem(broker_url):
        return {
            "visibility_timeout": VISIBILITY_TIMEOUT_S,
            "socket_connect_timeout": PUBLISH_TIMEOUT_S,
            "socket_timeout": PUBLISH_TIMEOUT_S,
        }
    root = Path(broker_url.removeprefix("filesystem://") or "broker")
    folders = {name: root / name for name in ("queue", "processed", "control", "staging")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(folders["queue"]),
        "data_folder_out": str(folders["queue"]),
        "store_processed": True,
        "processed_folder": str(folders["processed"]),
        "control_folder": str(folders["control"]),
        STAGING_OPTION: str(folders["staging"]),
        "polling_interval": FILESYSTEM_POLL_S,
    }


def is_filesystem(broker_url: str) -> bool:
    return broker_url.startswith("filesystem://")


def create_celery(settings: Settings) -> Celery:
    """The Celery app for ``settings`` (broker from ``REELYARD_BROKER_URL``).

    Every setting that bears on delivery, with its reason:

    - JSON only, no result backend: results live in PostgreSQL, the system of record.
    - ``task_acks_late``: a message is acknowledged after its task ran, so a worker
      killed mid-task leaves it to be delivered again (stages are idempotent).
    - ``task_reject_on_worker_lost``: when the pool's child dies (kill -9, OOM) the
      message is requeued at once instead of being acknowledged as failed.
    - ``task_acks_on_failure_or_timeout`` stays on: a task that raised is not
      redelivered in a loop; the job's lease and the reconciler bring it back.
    - ``worker_prefetch_multiplier = 1``: a prefork child reserves one message at a
      time, so a long task never sits on messages other children could run. The edit
      queue's threads pool reserves one per thread, which is what holding 1,000
      streams needs.
    - ``visibility_timeout`` (Redis): an unacknowledged message comes back after
      :data:`VISIBILITY_TIMEOUT_S`, longer than any countdown the pipeline uses
      (render polls 30 s, state reads 60 s, backoff capped at 300 s) so a scheduled
      message is never delivered twice for waiting. A killed worker's message would
      also come back only then: prompt recovery is the reconciler's work (leases in
      PostgreSQL), and the late redelivery is a no-op (the claim fails).
    - ``task_publish_retry`` off and short broker timeouts: a publish that fails is
      logged, and the reconciler re-enqueues every due job; nothing waits on Redis.
    - Soft/hard time limits on the short stages (prefork). The edit's I/O pools
      cannot enforce them: the threads pool implements neither, and gevent has no
      soft limit and cannot stop a call that blocks; so the edit keeps its own: the
      client's SSE limits (heartbeat gap, turn length), httpx timeouts, and its lease
      in the row, which it must renew while the stream lives.
    - ``worker_disable_prefetch`` (Redis, Celery 5.6+) is not set: with a multiplier
      of 1 a prefork child holds at most the message it runs, and on the edit queue
      each idle thread is meant to hold one, so that 1,000 turns run at once.
    - ``worker_cancel_long_running_tasks_on_connection_loss`` off: when Redis
      restarts, running tasks (open edit streams) finish their work; their messages
      may come back, and the lease makes the second delivery a no-op.
    - ``worker_soft_shutdown_timeout``: on a warm shutdown (SIGTERM), running edits
      get this long to finish before the worker exits and their messages return.
    """
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
        broker_transport_options=transport_options(settings.broker_url),
        # the URL's scheme names kombu's own transport; this one writes messages whole
        broker_transport=(FILESYSTEM_TRANSPORT if is_filesystem(settings.broker_url) else None),
        broker_connection_timeout=PUBLISH_TIMEOUT_S,
        broker_connection_retry_on_startup=True,
        # a publish that fails is not retried here: the reconciler is the retry
        task_publish_retry=False,
        task_default_queue=PIPELINE_QUEUE,
        task_routes={
            RUN_STAGE_TASK: {"queue": PIPELINE_QUEUE},
            RECONCILE_TASK: {"queue": PIPELINE_QUEUE},
            CANCEL_RENDER_TASK: {"queue": PIPELINE_QUEUE},
            RUN_EDIT_TASK: {"queue": EDIT_QUEUE},
            WEBHOOKS_DISPATCH_TASK: {"queue": WEBHOOKS_QUEUE},
            WEBHOOKS_DELIVER_TASK: {"queue": WEBHOOKS_QUEUE},
        },
        task_soft_time_limit=SHORT_SOFT_LIMIT_S,
        task_time_limit=SHORT_HARD_LIMIT_S,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_soft_shutdown_timeout=30.0,
        worker_enable_soft_shutdown_on_idle=False,
        worker_hijack_root_logger=False,
        beat_schedule={
            "reconcile": {"task": RECONCILE_TASK, "schedule": settings.reconcile_every_s},
            # lost wake-ups, retries that came due, expired leases of killed workers
            "webhooks-sweep": {
                "task": WEBHOOKS_DISPATCH_TASK,
                "schedule": settings.webhook_sweep_every_s,
            },
        },
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
        _publisher(app).publish(name, args)
    except Exception:  # kombu raises transport-specific errors; any of them means "not sent"
        log.warning("could not publish %s%r; the reconciler will", name, args, exc_info=True)
        return False
    return True


class TaskPublisher:
    """Sends task messages for ``app`` over a broker connection kept per thread.

    The messages are Celery's own (``create_task_message``, routed by the app's
    router and sent by ``send_task_message``, as ``app.send_task`` does), so any
    Celery worker consumes them. What is saved is the rest of ``send_task``'s work
    per call, a producer taken from and returned to the pool, and, on Redis, the new
    redis client that kombu builds for every message (redis-py fills ~170 response
    callbacks in each one): about half the CPU of a publish, on the API's hot path.

    Kombu's channels are not thread-safe, hence one connection and producer per
    thread; a process that forks starts afresh, and a failed publish drops the
    thread's connection, so the next one reconnects.
    """

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._local = threading.local()

    def publish(self, name: str, args: tuple[Any, ...]) -> None:
        """Send task ``name`` with ``args``; raises whatever the broker raised."""
        app = self.app
        amqp = app.amqp
        route = amqp.router.route({}, name, args, {})
        root_id = parent_id = None
        parent = app.current_worker_task
        if parent is not None:  # from inside a task: link it, as send_task does
            root_id = parent.request.root_id or parent.request.id
            parent_id = parent.request.id
        argsrepr = repr(list(args))
        message = amqp.create_task_message(
            uuid(),
            name,
            list(args),
            {},
            root_id=root_id,
            parent_id=parent_id,
            # Celery's saferepr walks the arguments to bound the repr's size; ids are short
            argsrepr=argsrepr if len(argsrepr) <= _ARGSREPR_MAX else None,
            kwargsrepr="{}",
        )
        state = self._state()
        queue = route.get("queue")
        # send_task declares the queue on every call (kombu then copies it to bind it
        # to the channel before finding it in its cache); once per connection is enough
        declare: list[Any] | None = (
            None if queue is None or queue.name not in state.declared else []
        )
        try:
            amqp.send_task_message(
                state.producer, name, message, retry=False, declare=declare, **route
            )
        except BaseException:
            self._drop()
            raise
        if queue is not None:
            state.declared.add(queue.name)

    def close(self) -> None:
        """Close this thread's connection (other threads' close with their thread)."""
        self._drop()

    def _state(self) -> _PublishingState:
        state: _PublishingState | None = getattr(self._local, "state", None)
        if state is None or state.pid != os.getpid():
            url = self.app.conf.broker_write_url or self.app.conf.broker_url
            transport = _KeptClientTransport if _is_redis(url) else None
            connection = self.app.connection_for_write(transport=transport)
            producer = self.app.amqp.Producer(connection, auto_declare=False)
            state = self._local.state = _PublishingState(connection, producer, os.getpid())
        return state

    def _drop(self) -> None:
        state: _PublishingState | None = getattr(self._local, "state", None)
        self._local.state = None
        if state is not None and state.pid == os.getpid():
            with contextlib.suppress(Exception):  # a broken connection may fail to close
                state.connection.release()


@dataclass(slots=True)
class _PublishingState:
    """One thread's producer (on its own connection) and the queues it declared."""

    connection: Connection
    producer: Producer
    pid: int
    declared: set[str] = field(default_factory=set)


#: the longest ``argsrepr`` Celery would keep (``AMQP.argsrepr_maxsize``)
_ARGSREPR_MAX = 1024


class _KeptClientChannel(RedisChannel):
    """Kombu's Redis channel, sending every command through one redis client.

    Kombu builds a new client (on the channel's connection pool) for each message;
    a redis client is thread-safe and cheap to keep.
    """

    @contextlib.contextmanager
    def conn_or_acquire(self, client: Any | None = None) -> Iterator[Any]:
        yield client if client is not None else self._kept_client

    @functools.cached_property
    def _kept_client(self) -> Any:
        return self._create_client()  # type: ignore[attr-defined]


class _KeptClientTransport(RedisTransport):
    Channel = _KeptClientChannel


def _is_redis(url: str | None) -> bool:
    return url is not None and url.split("://", 1)[0] in {"redis", "rediss"}


_publishers: weakref.WeakKeyDictionary[Celery, TaskPublisher] = weakref.WeakKeyDictionary()
_publishers_lock = threading.Lock()


def _publisher(app: Celery) -> TaskPublisher:
    """``app``'s publisher, made on first use."""
    publisher = _publishers.get(app)
    if publisher is None:
        with _publishers_lock:
            publisher = _publishers.get(app)
            if publisher is None:
                publisher = _publishers[app] = TaskPublisher(app)
    return publisher


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


def wake_webhooks_after_commit(session: Session, app: Celery) -> None:
    """Fan out and deliver the webhooks of what ``session`` commits (a job that ended);
    a lost wake-up waits for the beat's sweep."""
    publish_after_commit(session, app, WEBHOOKS_DISPATCH_TASK)


def enqueue_job(session: Session, app: Celery, job_id: str) -> None:
    """Hand ``job_id`` to the pipeline once the transaction that created it commits."""
    publish_after_commit(session, app, RUN_STAGE_TASK, job_id)
