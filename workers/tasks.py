"""The Celery tasks: thin wrappers that take ids and call the plain functions.

- ``reelyard.pipeline.run_stage`` (queue ``pipeline``) and ``reelyard.pipeline.run_edit``
  (queue ``edit``, an I/O pool): run the job's due stage(s) with
  :func:`workers.pipeline.run_stage`, then publish what it says comes next, with a
  countdown when it is due later (nothing sleeps in a task).
- ``reelyard.pipeline.reconcile`` (beat): :func:`workers.reconciler.reconcile`.
- ``reelyard.pipeline.cancel_render``: the upstream cancel of a render whose job ended.
- ``reelyard.webhooks.dispatch`` (queue ``webhooks``; woken after a job's terminal
  transition or a cancel commits, and by beat every ``REELYARD_WEBHOOK_SWEEP_EVERY_S``):
  :func:`workers.webhooks.dispatch` fans the outbox out, then one
  ``reelyard.webhooks.deliver`` is published per due message, up to the pool's size.
- ``reelyard.webhooks.deliver``: :func:`workers.webhooks.deliver_due`, a loop that
  claims, sends and records until nothing is due; it hands over to a new message of
  its own when its time budget runs out with work left.

:func:`create_worker_app` builds the app the ``worker`` and ``beat`` commands run.
What the tasks need (engine, HTTP client, storage) is made once per worker process,
on first use, so a prefork child never inherits its parent's connections.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Celery

from models.db import make_engine, make_session_factory
from models.jobs import Job, Stage
from nemo import ApiError, NemoConfig, NemoError
from reelyard.outbound import Connections
from reelyard.settings import Settings
from reelyard.storage import LocalStorage
from workers import reconciler, webhooks
from workers.app import (
    CANCEL_RENDER_TASK,
    RECONCILE_TASK,
    RUN_EDIT_TASK,
    RUN_STAGE_TASK,
    WEBHOOKS_DELIVER_TASK,
    WEBHOOKS_DISPATCH_TASK,
    create_celery,
    send_now,
)
from workers.pipeline import Deps, Next, PipelineConfig, Queue, new_owner, queue_for, run_stage
from workers.queues import waiting_messages
from workers.stages import HANDLERS
from workers.upstream import TokenPending, Upstream, current_token

log = logging.getLogger(__name__)

T = TypeVar("T")

#: the edit's limits, should it run on a pool that enforces them: above the stream's
#: own 15-minute turn limit (nemo-api.md), which is what bounds it on the threads pool
EDIT_SOFT_LIMIT_S = 16 * 60
EDIT_HARD_LIMIT_S = 17 * 60
#: a job id is short; anything else in a message is not one of ours
_MAX_ID = 64


def stage_task(stage: Stage) -> str:
    """The task that runs ``stage`` (each queue has its own)."""
    return RUN_EDIT_TASK if queue_for(stage) is Queue.EDIT else RUN_STAGE_TASK


class Lazy:
    """A value made on first use, once per process, thread-safely."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make: Callable[[], Any] = make
        self._value: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._make()
        return self._value


def build_deps(settings: Settings, nemo_config: NemoConfig) -> Deps:
    engine = make_engine(settings.database_url, pool_size=settings.database_pool_size)
    return Deps(
        sessions=make_session_factory(engine),
        upstream=Upstream.connect(nemo_config),
        storage=LocalStorage(settings.storage_dir),
        config=PipelineConfig.from_settings(settings),
        public_url=settings.public_url,
    )


def build_webhook_deps(settings: Settings) -> webhooks.WebhookDeps:
    config = webhooks.DeliveryConfig.from_settings(settings)
    # a connection per delivery loop, held only while it claims or records
    engine = webhooks.make_delivery_engine(
        settings.database_url, pool_size=max(settings.database_pool_size, config.parallel)
    )
    # connections kept alive per receiver (host name and checked address), as many
    # as may be in flight to one endpoint
    connections = Connections(per_host=config.endpoint_concurrency)
    return webhooks.WebhookDeps(
        sessions=make_session_factory(engine), client=connections, config=config
    )


def publish(app: Celery, step: Next) -> bool:
    """Send the task for ``step``; False (logged) if the broker cannot take it now."""
    options: dict[str, Any] = {}
    if step.after_s > 0:
        options["countdown"] = step.after_s
    try:
        app.send_task(stage_task(step.stage), args=[step.job_id], retry=False, **options)
    except Exception:  # any transport error: the reconciler will enqueue the job
        log.warning("could not publish %s; the reconciler will", step, exc_info=True)
        return False
    return True


def _job_id(value: Any) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= _MAX_ID:
        return value
    log.error("ignoring a message with no usable job id: %r", value)
    return None


def create_worker_app(settings: Settings, nemo_config: NemoConfig) -> Celery:
    """The Celery app with the pipeline's tasks registered."""
    app = create_celery(settings)
    deps = Lazy(lambda: build_deps(settings, nemo_config))
    webhook_deps = Lazy(lambda: build_webhook_deps(settings))

    def run(job_id: Any, queue: Queue) -> None:
        checked = _job_id(job_id)
        if checked is None:
            return
        step = run_stage(deps.get(), checked, queue=queue, handlers=HANDLERS)
        if step is not None:
            publish(app, step)
        else:
            # Nothing comes next: the job ended (its outbox row is committed), or the
            # message was a duplicate or lost its lease. A wake-up too many costs one
            # empty fan-out; the sweep would find the event anyway, later.
            send_now(app, WEBHOOKS_DISPATCH_TASK, ())

    @app.task(name=RUN_STAGE_TASK, shared=False)
    def run_stage_task(job_id: Any) -> None:
        run(job_id, Queue.PIPELINE)

    @app.task(
        name=RUN_EDIT_TASK,
        shared=False,
        soft_time_limit=EDIT_SOFT_LIMIT_S,
        time_limit=EDIT_HARD_LIMIT_S,
    )
    def run_edit_task(job_id: Any) -> None:
        run(job_id, Queue.EDIT)

    def enqueue(job_id: str, stage: Stage) -> None:
        publish(app, Next(job_id, stage))

    def ask_cancel(job_id: str) -> None:
        _send(app, CANCEL_RENDER_TASK, job_id)

    @app.task(name=RECONCILE_TASK, shared=False)
    def reconcile_task() -> None:
        current: Deps = deps.get()
        reconciler.reconcile(
            current.sessions,
            now=current.clock(),
            grace_s=2 * settings.reconcile_every_s,
            enqueue=enqueue,
            cancel_render=ask_cancel,
            waiting=lambda: waiting_messages(settings.broker_url),
        )

    @app.task(name=CANCEL_RENDER_TASK, shared=False)
    def cancel_render_task(job_id: Any) -> None:
        checked = _job_id(job_id)
        if checked is not None:
            cancel_render(deps.get(), checked)

    @app.task(name=WEBHOOKS_DISPATCH_TASK, shared=False)
    def webhooks_dispatch_task() -> None:
        def start_loops(count: int) -> None:
            for _ in range(count):
                send_now(app, WEBHOOKS_DELIVER_TASK, ())

        webhooks.dispatch(webhook_deps.get(), start_loops)

    @app.task(name=WEBHOOKS_DELIVER_TASK, shared=False)
    def webhooks_deliver_task() -> None:
        _made, more = webhooks.deliver_due(webhook_deps.get(), new_owner())
        if more:  # the budget ran out with work left: let the queue's others go first
            send_now(app, WEBHOOKS_DELIVER_TASK, ())

    del run_stage_task, run_edit_task, reconcile_task, cancel_render_task
    del webhooks_dispatch_task, webhooks_deliver_task
    return app


def _send(app: Celery, name: str, job_id: str) -> None:
    try:
        app.send_task(name, args=[job_id], retry=False)
    except Exception:  # the next sweep asks again
        log.warning("could not publish %s(%s)", name, job_id, exc_info=True)


def cancel_render(deps: Deps, job_id: str) -> None:
    """Cancel the upstream render of a job that ended without it; record that it is over."""
    with deps.sessions() as session:
        job = session.get(Job, job_id)
        render_id = job.render_id if job is not None and job.status.terminal else None
        session.rollback()
    if render_id is None:
        return
    try:
        token = current_token(deps.sessions, deps.upstream, owner=new_owner())
        deps.upstream.client(token).cancel_render(render_id)
    except TokenPending:
        return  # the next sweep asks again
    except ApiError as error:
        if error.http_status not in (404, 409) and error.code not in (4004, 4009):
            log.warning("render %s: cancel failed (%s); the next sweep retries", render_id, error)
            return
        # unknown, or already over: nothing is rendering for this job
    except NemoError as error:
        log.warning("render %s: cancel failed (%s); the next sweep retries", render_id, error)
        return
    reconciler.mark_render_canceled(deps.sessions, job_id, "canceled")
    log.info("render %s of job %s canceled upstream", render_id, job_id)
