"""The pipeline's engine: claim a job's stage, run it, checkpoint what it returns.

A task hands :func:`run_stage` a job id. The job's row says which stage is due;
the engine claims it (a lease, :mod:`workers.leases`), gets the upstream token
(:mod:`workers.upstream`), calls the stage's handler (:mod:`workers.stages`), and
writes the handler's :class:`Advance` or :class:`Finish` in one guarded statement
with its job event. Upstream errors become decisions (:mod:`workers.decisions`):
a retry is the same stage rescheduled, a repair a new token or a new session.

What the task publishes next is the returned :class:`Next`. A stage that is due at
once on the same queue runs in the same execution (``continue_stages``): each
checkpoint is still committed before the next outside action.

Crash safety: every write is guarded by the lease owner, and every outside action
that costs money is preceded by its committed checkpoint. A worker killed anywhere
leaves a job whose lease expires; the reconciler enqueues it again, and the stage
resumes from its checkpoints (see :mod:`workers.stages` for each stage's rule).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from models.base import utcnow
from models.jobs import EventType, Job, JobStatus, Stage, add_event, finish_job
from nemo import NemoClient, NemoError, Token
from reelyard.outbound import OutboundError, TooLarge
from reelyard.settings import Settings
from reelyard.storage import Storage
from workers import leases
from workers.decisions import (
    MESSAGES,
    Attempts,
    ErrorCode,
    Fail,
    Policy,
    ReadState,
    Repair,
    RepairKind,
    Retry,
    backoff_s,
    decide,
    stage_progress,
)
from workers.upstream import FixedTokenRefused, TokenPending, Upstream, current_token, invalidate

log = logging.getLogger(__name__)


class Queue(StrEnum):
    """The broker queues: short stages, and the long SSE edit on an I/O pool."""

    PIPELINE = "pipeline"
    EDIT = "edit"


def queue_for(stage: Stage) -> Queue:
    return Queue.EDIT if stage is Stage.EDIT else Queue.PIPELINE


#: the stages each queue runs
STAGES_ON: Mapping[Queue, frozenset[Stage]] = {
    queue: frozenset(stage for stage in Stage if queue_for(stage) is queue) for queue in Queue
}


class UploadMode(StrEnum):
    URL = "url"
    FILE = "file"


@dataclass(frozen=True)
class PipelineConfig:
    """The pipeline's knobs (``reelyard.settings``), in the engine's terms."""

    policy: Policy = field(default_factory=Policy)
    lease_s: float = 120.0
    render_poll_s: float = 30.0
    render_timeout_s: float = 900.0
    job_deadline_s: float = 3600.0
    upload_mode: UploadMode = UploadMode.URL
    max_corrections: int = 1
    credits_every_s: float = 60.0
    continue_stages: bool = True
    #: seconds between two "still working" events while the editor works
    still_working_every_s: float = 30.0
    allow_private_urls: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> PipelineConfig:
        return cls(
            policy=Policy(time_scale=settings.time_scale),
            lease_s=settings.lease_s,
            render_poll_s=settings.render_poll_s * settings.time_scale,
            render_timeout_s=settings.render_timeout_s,
            job_deadline_s=settings.job_deadline_s,
            upload_mode=UploadMode(settings.upload_mode),
            max_corrections=settings.max_corrections,
            credits_every_s=settings.credits_every_s,
            continue_stages=settings.continue_stages,
            allow_private_urls=settings.allow_private_urls,
        )


@dataclass
class Deps:
    """What a stage needs from the outside, made once per worker process."""

    sessions: sessionmaker[Session]
    upstream: Upstream
    storage: Storage
    config: PipelineConfig
    public_url: str = "http://127.0.0.1:8000"
    clock: Callable[[], datetime] = utcnow


# what a handler returns


@dataclass(frozen=True)
class Advance:
    """Move the job to ``to`` (or reschedule its stage), due ``after_s`` from now.

    ``values`` are checkpointed in the same statement; ``message`` becomes a job
    event of type ``event``. ``retry`` counts the reschedule against the stage's
    retries (waiting for a render does not).
    """

    to: Stage
    after_s: float = 0.0
    values: Mapping[str, Any] = field(default_factory=dict)
    message: str | None = None
    event: EventType = EventType.STAGE
    retry: bool = False
    data: dict[str, Any] | None = None


@dataclass(frozen=True)
class Finish:
    status: JobStatus
    message: str
    values: Mapping[str, Any] = field(default_factory=dict)


Outcome = Advance | Finish


@dataclass(frozen=True)
class Next:
    """The message to publish: run ``stage`` of ``job_id`` in ``after_s`` seconds."""

    job_id: str
    stage: Stage
    after_s: float = 0.0

    @property
    def queue(self) -> Queue:
        return queue_for(self.stage)


class LeaseLost(Exception):
    """The job is no longer ours (taken over, canceled or finished): stop quietly."""


class NoSession(Exception):
    """The job has no upstream session where its stage needs one: open one again."""


def fail(code: ErrorCode, message: str | None = None) -> Finish:
    text = message or MESSAGES[code]
    return Finish(JobStatus.FAILED, text, {"error_code": code.value, "error_message": text})


#: events that come closer together than this are written together: at the next
#: checkpoint, heartbeat or the stage's end (a turn that streams its words at once
#: costs one transaction, not one per word; a slow one shows each as it comes)
EVENT_BATCH_S = 1.0


@dataclass(frozen=True)
class _Event:
    type: EventType
    message: str
    stage: Stage
    data: dict[str, Any] | None


class StageRun:
    """One execution of one stage of one job, by the worker that holds its lease."""

    def __init__(self, deps: Deps, job: Job, owner: str) -> None:
        self.deps = deps
        self.job = job
        self.owner = owner
        self.token: Token | None = None
        self._renewed_at = deps.clock()
        #: events not yet written (see :data:`EVENT_BATCH_S`)
        self._pending: list[_Event] = []
        self.log = logging.LoggerAdapter(
            log, {"job_id": job.id, "stage": job.stage.value, "attempt": job.stage_attempts}
        )

    @property
    def config(self) -> PipelineConfig:
        return self.deps.config

    def now(self) -> datetime:
        return self.deps.clock()

    def client(self) -> NemoClient:
        return self.deps.upstream.client(self.token)

    def checkpoint(
        self,
        values: Mapping[str, Any],
        *,
        message: str | None = None,
        event: EventType = EventType.MESSAGE,
        data: dict[str, Any] | None = None,
    ) -> None:
        """Commit ``values`` on the job (and an event, after any pending ones) while we
        hold it; else LeaseLost."""
        now = self.now()
        if message is not None:
            self._pending.append(_Event(event, message, self.job.stage, data))
        with self.deps.sessions() as session:
            if not leases.checkpoint(
                session,
                self.job.id,
                owner=self.owner,
                stage=self.job.stage,
                values=values,
                now=now,
                lease_s=self.config.lease_s,
            ):
                session.rollback()
                raise LeaseLost
            self.write_events(session)
            session.commit()
        self._pending.clear()
        self._renewed_at = now
        for key, value in values.items():
            if hasattr(Job, key) and not callable(value):
                setattr(self.job, key, value)

    def event(self, type_: EventType, message: str, *, data: dict[str, Any] | None = None) -> None:
        """Record an event (and renew the lease with it); LeaseLost if the job is gone.

        Written at once, unless the last write was less than :data:`EVENT_BATCH_S` ago.
        """
        self._pending.append(_Event(type_, message, self.job.stage, data))
        self._flush(EVENT_BATCH_S)

    def keep_alive(self) -> None:
        """Write pending events, and renew the lease if a quarter of it has passed;
        LeaseLost if the job is not ours."""
        if self._pending:
            self._flush(EVENT_BATCH_S)
        else:
            self._flush(self.config.lease_s / 4)

    def write_events(self, session: Session) -> None:
        """Add the pending events to ``session``'s transaction (the caller commits and
        then the events are no longer pending)."""
        for pending in self._pending:
            add_event(
                session,
                self.job.id,
                pending.type,
                message=pending.message,
                stage=pending.stage,
                data=pending.data,
            )

    def _flush(self, after_s: float) -> None:
        if self.now() - self._renewed_at >= timedelta(seconds=after_s):
            self.checkpoint({})


Handler = Callable[[StageRun], Outcome]


def new_owner() -> str:
    """A lease owner unique to one task execution (host, process, random)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def run_stage(
    deps: Deps, job_id: str, *, queue: Queue, handlers: Mapping[Stage, Handler]
) -> Next | None:
    """Run the job's due stage(s) on ``queue``; the message to publish next, if any.

    With ``continue_stages``, a stage whose successor is due at once on the same queue
    keeps the lease for it (:func:`leases.advance_and_hold`, the checkpoint and the
    next claim in one statement) and runs it in the same execution.
    """
    owner = new_owner()
    job = _claim(deps, job_id, queue, owner)
    hold = queue if deps.config.continue_stages else None
    while job is not None:
        run = StageRun(deps, job, owner)
        if job.deadline_at is not None and job.deadline_at <= run.now():
            apply(run, fail(ErrorCode.DEADLINE_EXCEEDED))
            return None
        step = _execute(run, handlers, hold=hold)
        if not isinstance(step, Job):
            return step
        job = step
    return None


def _claim(deps: Deps, job_id: str, queue: Queue, owner: str) -> Job | None:
    """The job, claimed for its due stage on ``queue``; None if it is not ours to run.

    One statement in the usual case. A message for a stage on the other queue is stale
    (every message is sent to its stage's queue): the job has moved on, and whoever
    moved it published its message; forwarding this one would only double it (a lost
    one is the reconciler's). An early message is a duplicate: the one for the due
    time will come.
    """
    now = deps.clock()
    stages = STAGES_ON[queue]
    with deps.sessions() as session:
        job = leases.claim(
            session,
            job_id,
            stages,
            owner=owner,
            lease_s=deps.config.lease_s,
            now=now,
            deadline_s=deps.config.job_deadline_s,
        )
        if job is None:
            if leases.past_deadline(session, job_id, stages, now=now):
                _finish(session, job_id, fail(ErrorCode.DEADLINE_EXCEEDED))
            session.commit()
            return None
        session.commit()
    return job


def _execute(
    run: StageRun, handlers: Mapping[Stage, Handler], *, hold: Queue | None = None
) -> Next | Job | None:
    deps, stage = run.deps, run.job.stage
    run.log.info("running")
    try:
        run.token = current_token(deps.sessions, deps.upstream, owner=run.owner, clock=deps.clock)
        outcome = handlers[stage](run)
    except LeaseLost:
        run.log.info("lease lost; leaving the job to its new holder")
        return None
    except TokenPending:
        wait = 0.5 * max(deps.config.policy.time_scale, 0.02)
        outcome = Advance(stage, wait)
    except NoSession:
        outcome = Advance(
            Stage.OPEN_SESSION, values=SESSION_RESET, message="Opening a new editing session."
        )
    except NemoError as error:
        outcome = on_error(run, error)
    except OutboundError as error:  # file mode: a photo could not be fetched
        outcome = _unreachable(run, error)
    except SQLAlchemyError:
        raise  # the database is away: the lease expires and the reconciler brings it back
    except Exception as error:  # a bug or an unforeseen answer: retry, bounded, then fail
        run.log.exception("stage failed unexpectedly")
        outcome = _unexpected(run, error)
    return apply(run, outcome, hold=hold)


def on_error(run: StageRun, error: NemoError) -> Outcome:
    """An upstream error during a stage, turned into the next step (decisions.decide)."""
    job = run.job
    attempts = Attempts(job.stage_attempts, job.token_repairs, job.session_repairs)
    decision = decide(error, attempts, run.config.policy)
    run.log.info("upstream error %s: %s", type(error).__name__, decision)
    data = {"error": type(error).__name__, "detail": str(error)[:500]}
    match decision:
        case Retry(after_s=after_s, reason=reason):
            return Advance(
                job.stage,
                after_s,
                message=f"The video service failed ({reason}); retrying in {after_s:.1f} s.",
                event=EventType.RETRY,
                retry=True,
                data=data,
            )
        case Repair(kind=RepairKind.NEW_TOKEN):
            return _new_token(run, data)
        case Repair(kind=RepairKind.NEW_SESSION):
            return Advance(
                Stage.OPEN_SESSION,
                values={**SESSION_RESET, "session_repairs": job.session_repairs + 1},
                message=(
                    "The video service lost the session; opening a new one and uploading "
                    "the photos again."
                ),
                event=EventType.REPAIR,
                data=data,
            )
        case ReadState(after_s=after_s):
            return Advance(
                Stage.EDIT,
                after_s,
                values={"edit_reads": 0},
                message=(
                    "The connection to the editor broke; the instruction is not sent again. "
                    f"Checking the result in {after_s:.0f} s."
                ),
                event=EventType.RETRY,
                data=data,
            )
        case Fail(code=code, message=message):
            detail = getattr(error, "detail", None) or str(error)
            return fail(code, f"{message} ({detail[:300]})")
    raise AssertionError(decision)  # pragma: no cover (the match is exhaustive)


def _new_token(run: StageRun, data: dict[str, Any]) -> Outcome:
    """The token was refused (1001): forget it and run the stage again."""
    job = run.job
    if run.token is not None:
        try:
            expired = invalidate(run.deps.sessions, run.deps.upstream, run.token)
        except FixedTokenRefused:  # NEMO_TOKEN: nothing can replace it
            return fail(ErrorCode.UPSTREAM_AUTH)
        if not expired:  # another worker had replaced it already: not a repair
            return Advance(
                job.stage,
                message="The video service's token had just been replaced; retrying.",
                event=EventType.RETRY,
                data=data,
            )
    return Advance(
        job.stage,
        values={"token_repairs": job.token_repairs + 1},
        message="The video service's token expired; getting a new one and retrying.",
        event=EventType.REPAIR,
        data=data,
    )


#: what a new upstream session invalidates
SESSION_RESET: Mapping[str, Any] = {
    "upstream_session_id": None,
    "uploaded_media": None,
    "instruction": None,
    "edit_sent_at": None,
    "edit_reads": 0,
    "draft_before": None,
    "draft_after": None,
    "render_id": None,
    "render_status": None,
    "render_started_at": None,
}


def _unreachable(run: StageRun, error: OutboundError) -> Outcome:
    """A photo reelyard fetches itself (file mode): retried while it may come back."""
    job = run.job
    if isinstance(error, TooLarge):
        return fail(ErrorCode.MEDIA_TOO_LARGE, f"{MESSAGES[ErrorCode.MEDIA_TOO_LARGE]} ({error})")
    if error.retryable and job.stage_attempts < run.config.policy.max_retries:
        wait = backoff_s(job.stage_attempts, run.config.policy)
        return Advance(
            job.stage,
            wait,
            message=f"A photo could not be fetched ({error}); retrying in {wait:.1f} s.",
            event=EventType.RETRY,
            retry=True,
        )
    return fail(ErrorCode.IMAGE_UNREACHABLE, f"A photo could not be fetched: {error}")


def _unexpected(run: StageRun, error: Exception) -> Outcome:
    job = run.job
    policy = run.config.policy
    if job.stage_attempts >= policy.max_retries:
        return fail(ErrorCode.INTERNAL_ERROR, f"{MESSAGES[ErrorCode.INTERNAL_ERROR]}")
    wait = backoff_s(job.stage_attempts, policy)
    return Advance(
        job.stage,
        wait,
        message=f"An internal error occurred; retrying in {wait:.1f} s.",
        event=EventType.RETRY,
        retry=True,
        data={"error": type(error).__name__},
    )


def apply(run: StageRun, outcome: Outcome, *, hold: Queue | None = None) -> Next | Job | None:
    """Write ``outcome`` for the job we hold; what to publish next, or, when the next
    stage is due at once on ``hold``'s queue, the job, still held, to run it now."""
    job = run.job
    deps = run.deps
    now = deps.clock()
    with deps.sessions() as session:
        if isinstance(outcome, Finish):
            run.write_events(session)
            # only while ours (a canceled or taken-over job is not finished by us)
            if not _finish(session, job.id, outcome, owner=run.owner):
                session.rollback()
                return None
            session.commit()
            run.log.info("finished %s", outcome.status.value)
            return None
        values = dict(outcome.values)
        progress = values.pop("progress", None)
        if progress is None:
            progress = stage_progress(outcome.to.value)
        values["progress"] = max(job.progress, progress)
        held: Job | None = None
        if hold is not None and outcome.after_s <= 0 and queue_for(outcome.to) is hold:
            held = leases.advance_and_hold(
                session,
                job.id,
                owner=run.owner,
                from_stage=job.stage,
                to_stage=outcome.to,
                now=now,
                lease_s=deps.config.lease_s,
                values=values,
                count_retry=outcome.retry,
            )
            moved = held is not None
        else:
            moved = leases.advance(
                session,
                job.id,
                owner=run.owner,
                from_stage=job.stage,
                to_stage=outcome.to,
                run_at=now + timedelta(seconds=outcome.after_s),
                values=values,
                count_retry=outcome.retry,
            )
        if not moved:
            session.rollback()
            return None
        run.write_events(session)
        if outcome.message is not None:
            add_event(
                session,
                job.id,
                outcome.event,
                message=outcome.message,
                stage=outcome.to,
                progress=values["progress"],
                data=outcome.data,
            )
        session.commit()
        if held is not None:
            return held
    return Next(job.id, outcome.to, outcome.after_s)


def _finish(session: Session, job_id: str, outcome: Finish, owner: str | None = None) -> bool:
    return finish_job(
        session,
        job_id,
        outcome.status,
        values=dict(outcome.values),
        message=outcome.message,
        owner=owner,
    )
