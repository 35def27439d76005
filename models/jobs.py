"""Jobs, their event log, batches and revisions.

A job's row is both the request and the pipeline's checkpoint (design.md, "The job
and its pipeline"): each stage writes what it learned here before acting where
acting twice would cost money. Terminal states are final: every transition into one
is a guarded UPDATE (:func:`finish_job`) that matches only a job still ``queued`` or
``running``, so a second terminal transition updates no row; the table's checks keep
``finished_at`` and the result or error consistent with the status.
"""

from __future__ import annotations

import enum
import functools
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    String,
    Table,
    Text,
    and_,
    bindparam,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column
from sqlalchemy.sql.dml import Insert

from models.base import Base, BigID, utcnow, value_enum
from models.ids import MAX_ID_LENGTH, new_id
from models.outbox import OutboxType, add_outbox_event


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})
ACTIVE_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})


class Stage(enum.StrEnum):
    """The pipeline's stages, in order (design.md)."""

    AUTHORIZE = "authorize"
    OPEN_SESSION = "open_session"
    UPLOAD = "upload"
    EDIT = "edit"
    VERIFY = "verify"
    EXPORT = "export"
    POLL_RENDER = "poll_render"
    FINALIZE = "finalize"


class EventType(enum.StrEnum):
    CREATED = "created"
    STAGE = "stage"
    PROGRESS = "progress"
    MESSAGE = "message"
    RETRY = "retry"
    REPAIR = "repair"
    ERROR = "error"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


class Batch(Base):
    """Jobs submitted together in one request."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(MAX_ID_LENGTH), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    job_count: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: when the last of its jobs ended (set once, with the ``batch.completed`` event)
    completed_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_batches_tenant_id_id", "tenant_id", "id"),
        CheckConstraint("job_count BETWEEN 1 AND 100", name="job_count_range"),
    )


_TERMINAL_SQL = "('succeeded', 'failed', 'canceled')"
_ACTIVE_SQL = "('queued', 'running')"


class Job(Base):
    """One video to make: the request, the pipeline's checkpoints and the outcome."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(MAX_ID_LENGTH), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id", ondelete="SET NULL"))
    #: the job this one revises (same tenant, same upstream session, a new instruction)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))

    status: Mapped[JobStatus] = mapped_column(
        value_enum(JobStatus, "job_status"), default=JobStatus.QUEUED
    )
    stage: Mapped[Stage] = mapped_column(value_enum(Stage, "job_stage"), default=Stage.AUTHORIZE)
    progress: Mapped[int] = mapped_column(default=0)

    # the request, as accepted
    image_urls: Mapped[list[Any]]
    prompt: Mapped[str] = mapped_column(Text)
    options: Mapped[dict[str, Any]]
    #: the caller's own key/values, echoed back everywhere (``metadata`` is taken by
    #: SQLAlchemy's declarative base, hence the attribute's name)
    caller_metadata: Mapped[dict[str, Any]] = mapped_column("metadata")
    webhook_url: Mapped[str | None] = mapped_column(Text)

    # the pipeline's checkpoints
    upstream_session_id: Mapped[str | None] = mapped_column(String(200))
    #: ``[{"url": ..., "media_id": ...}]`` for each image the upstream holds
    uploaded_media: Mapped[list[Any] | None]
    draft_before: Mapped[dict[str, Any] | None]
    draft_after: Mapped[dict[str, Any] | None]
    #: the instruction of the current edit (the composed prompt, or a correction)
    instruction: Mapped[str | None] = mapped_column(Text)
    #: set before the instruction goes out; a resumed job with it set never re-sends
    edit_sent_at: Mapped[datetime | None]
    #: instructions sent upstream (each one is charged): the first, corrections, and
    #: re-sends to a new session after a lost one
    edits_sent: Mapped[int] = mapped_column(default=0)
    #: corrective instructions sent after a draft failed verification
    corrections: Mapped[int] = mapped_column(default=0)
    #: reads of the state that found the draft unchanged after a broken stream
    edit_reads: Mapped[int] = mapped_column(default=0)
    #: repairs spent: new tokens and new sessions
    token_repairs: Mapped[int] = mapped_column(default=0)
    session_repairs: Mapped[int] = mapped_column(default=0)
    #: what the video will contain, from the final draft (``nemo.Draft.summary()``)
    timeline: Mapped[dict[str, Any] | None]
    #: derived from the job and ``render_attempt``, stored before the export POST
    render_id: Mapped[str | None] = mapped_column(String(200))
    render_attempt: Mapped[int] = mapped_column(default=0)
    #: the render's last known upstream status, and when it was submitted
    render_status: Mapped[str | None] = mapped_column(String(20))
    render_started_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]
    next_run_at: Mapped[datetime | None] = mapped_column(default=utcnow)
    deadline_at: Mapped[datetime | None]
    #: attempts of the current stage (reset when the stage changes) and of the job
    stage_attempts: Mapped[int] = mapped_column(default=0)
    total_attempts: Mapped[int] = mapped_column(default=0)

    # the outcome
    video_url: Mapped[str | None] = mapped_column(Text)
    video_width: Mapped[int | None]
    video_height: Mapped[int | None]
    video_duration_s: Mapped[float | None] = mapped_column(Float)
    video_size_bytes: Mapped[int | None] = mapped_column(BigID)
    video_sha256: Mapped[str | None] = mapped_column(String(64))
    error_code: Mapped[str | None] = mapped_column(String(100))
    error_message: Mapped[str | None] = mapped_column(Text)

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("progress BETWEEN 0 AND 100", name="progress_range"),
        CheckConstraint(
            f"(status IN {_TERMINAL_SQL}) = (finished_at IS NOT NULL)",
            name="finished_iff_terminal",
        ),
        CheckConstraint(
            "status <> 'succeeded' OR video_url IS NOT NULL", name="succeeded_has_video"
        ),
        CheckConstraint("status <> 'failed' OR error_code IS NOT NULL", name="failed_has_error"),
        CheckConstraint(
            "render_attempt >= 0 AND stage_attempts >= 0 AND total_attempts >= 0"
            " AND edits_sent >= 0 AND corrections >= 0 AND edit_reads >= 0"
            " AND token_repairs >= 0 AND session_repairs >= 0",
            name="attempts_not_negative",
        ),
        # a tenant's jobs, newest first, optionally by status (the list endpoint)
        Index("ix_jobs_tenant_id_id", "tenant_id", "id"),
        Index("ix_jobs_tenant_id_status_id", "tenant_id", "status", "id"),
        Index("ix_jobs_batch_id", "batch_id"),
        Index("ix_jobs_parent_id", "parent_id"),
        # what the reconciler sweeps: live jobs that are due or whose lease ran out
        Index(
            "ix_jobs_due",
            "next_run_at",
            postgresql_where=text(f"status IN {_ACTIVE_SQL}"),
            sqlite_where=text(f"status IN {_ACTIVE_SQL}"),
        ),
    )


class JobEvent(Base):
    """One entry of a job's append-only log; its id orders the log and resumes streams."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    type: Mapped[EventType] = mapped_column(value_enum(EventType, "job_event_type"))
    stage: Mapped[Stage | None] = mapped_column(value_enum(Stage, "job_event_stage"))
    progress: Mapped[int | None]
    #: in plain words: what happened, or what the editor said
    message: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_job_events_job_id_id", "job_id", "id"),)


def new_job_id() -> str:
    return new_id("job")


def new_batch_id() -> str:
    return new_id("bat")


def queue_jobs(
    session: Session,
    tenant_id: str,
    requests: list[dict[str, Any]],
    *,
    batch_id: str | None = None,
    parent: Job | None = None,
) -> list[dict[str, Any]]:
    """Insert queued jobs and their creation events; the rows inserted, by attribute.

    ``requests`` hold ``images``, ``prompt``, ``options``, ``metadata`` and
    ``webhook_url``. Core rather than the unit of work: job creation is the API's hot
    path. On PostgreSQL the jobs and their events go in one statement (one round
    trip, :func:`_insert_job_with_event`); elsewhere in two INSERTs. A revision
    (``parent``) starts on the parent's upstream session and from its final draft.
    """
    now = utcnow()
    jobs: list[dict[str, Any]] = [
        {
            "id": new_job_id(),
            "tenant_id": tenant_id,
            "batch_id": batch_id,
            "parent_id": parent.id if parent is not None else None,
            "status": JobStatus.QUEUED,
            "stage": Stage.AUTHORIZE,
            "progress": 0,
            "image_urls": request["images"],
            "prompt": request["prompt"],
            "options": request["options"],
            "caller_metadata": request["metadata"],
            "webhook_url": request["webhook_url"],
            "upstream_session_id": parent.upstream_session_id if parent is not None else None,
            "draft_before": parent.draft_after if parent is not None else None,
            "render_attempt": 0,
            "stage_attempts": 0,
            "total_attempts": 0,
            "next_run_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for request in requests
    ]
    if not jobs:
        return jobs
    event = {
        "type": EventType.CREATED,
        "stage": Stage.AUTHORIZE,
        "progress": 0,
        "message": "Revision queued." if parent is not None else "Job queued.",
        "created_at": now,
    }
    rows = [{_JOB_COLUMN_NAMES.get(k, k): v for k, v in job.items()} for job in jobs]
    if session.get_bind().dialect.name == "postgresql":
        created = {f"event_{name}": value for name, value in event.items()}
        params = [
            {**created, **{f"job_{name}": value for name, value in row.items()}} for row in rows
        ]
        # one job: one round trip; a batch: an executemany that psycopg pipelines
        session.execute(_insert_job_with_event(tuple(rows[0])), params)
    else:
        session.execute(insert(cast(Table, Job.__table__)), rows)
        session.execute(
            insert(cast(Table, JobEvent.__table__)),
            [{"job_id": job["id"], **event} for job in jobs],
        )
    return jobs


#: attribute names whose column is named otherwise
_JOB_COLUMN_NAMES = {"caller_metadata": "metadata"}
#: a creation event's columns besides ``job_id``
_CREATED_EVENT_COLUMNS = ("type", "stage", "progress", "message", "created_at")


@functools.cache
def _insert_job_with_event(columns: tuple[str, ...]) -> Insert:
    """One statement for a job and its creation event (PostgreSQL): one round trip.

    A data-modifying CTE: the job's INSERT returns its id, and the event is selected
    from it. Values are bound by name (``job_<column>``, ``event_<column>``). Built
    once (a single-row VALUES, which SQLAlchemy caches compiled, where a multi-row
    one it would compile every time), so psycopg also prepares it on the server.
    """
    jobs = cast(Table, Job.__table__)
    events = cast(Table, JobEvent.__table__)
    created = (
        insert(jobs)
        .values({name: bindparam(f"job_{name}", type_=jobs.c[name].type) for name in columns})
        .returning(jobs.c.id)
        .cte("created_job")
    )
    return insert(events).from_select(
        ["job_id", *_CREATED_EVENT_COLUMNS],
        select(
            created.c.id,
            *(
                bindparam(f"event_{name}", type_=events.c[name].type)
                for name in _CREATED_EVENT_COLUMNS
            ),
        ),
    )


def add_event(
    session: Session,
    job_id: str,
    type_: EventType,
    *,
    message: str | None = None,
    stage: Stage | None = None,
    progress: int | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Append an event to a job's log, in the caller's transaction (one INSERT, sent
    now, built once: cheaper than the unit of work for a row nothing reads back)."""
    session.execute(
        _event_insert(),
        {
            "job_id": job_id,
            "type": type_,
            "message": message,
            "stage": stage,
            "progress": progress,
            "data": data,
        },
    )


@functools.cache
def _event_insert() -> Insert:
    events = cast(Table, JobEvent.__table__)
    names = ("job_id", "type", "message", "stage", "progress", "data")
    return insert(events).values(
        {name: bindparam(name, type_=events.c[name].type) for name in names}
    )


def finish_job(
    session: Session,
    job_id: str,
    status: JobStatus,
    *,
    values: dict[str, Any] | None = None,
    message: str | None = None,
    owner: str | None = None,
) -> bool:
    """Move a live job into terminal ``status``; False when it had already finished
    (or, given ``owner``, when that worker no longer holds its lease).

    The winner also writes the job's webhook outbox row (``job.succeeded``, …) in the
    same transaction and, when the job was the last live one of its batch, the batch's
    ``batch.completed`` row (:func:`complete_batch_if_done`).

    One guarded UPDATE: it matches only a job that is still ``queued`` or ``running``,
    so two racing transitions (a cancel and a success) leave exactly one winner. The
    caller commits; the matching event is added only for the winner.
    """
    if not status.terminal:
        raise ValueError(f"{status} is not a terminal status")
    now = utcnow()
    changes: dict[str, Any] = {
        "status": status,
        "finished_at": now,
        "updated_at": now,
        "lease_owner": None,
        "lease_expires_at": None,
        "next_run_at": None,
        **(values or {}),
    }
    if status is JobStatus.SUCCEEDED:
        changes["progress"] = 100
    finished = session.execute(
        update(Job)
        .where(
            and_(
                Job.id == job_id,
                Job.status.in_(ACTIVE_STATUSES),
                *([Job.lease_owner == owner] if owner is not None else []),
            )
        )
        .values(**changes)
        .returning(Job.tenant_id, Job.batch_id)
        .execution_options(synchronize_session="fetch")
    ).first()
    if finished is None:
        return False
    add_event(session, job_id, EventType(status.value), message=message)
    add_outbox_event(session, finished.tenant_id, _OUTBOX_TYPES[status], job_id=job_id)
    if finished.batch_id is not None:
        complete_batch_if_done(session, finished.batch_id, now=now)
    return True


def complete_batch_if_done(session: Session, batch_id: str, *, now: datetime) -> bool:
    """Mark the batch completed and write its ``batch.completed`` outbox row if none of
    its jobs is live any more; True when this call did it.

    Called in the transaction of a job's terminal transition, after that job's UPDATE.
    Exactly once per batch, even when its last two jobs end in concurrent transactions:
    the batch row is locked first, so the finishers pass one at a time, and the check
    that no live job remains is a later statement, which (under PostgreSQL's READ
    COMMITTED) sees every finisher that held the lock before. Whoever takes the lock
    last therefore sees all the others' jobs ended; ``completed_at IS NULL`` keeps a
    second completion out. Jobs lock before their batch everywhere, so no deadlock.
    On SQLite the database's single writer gives the same order (``FOR UPDATE`` is not
    rendered there).
    """
    # FOR NO KEY UPDATE: a finisher already holds KEY SHARE on the batch row (the
    # foreign-key check of its job's second UPDATE in the transaction); FOR UPDATE
    # would conflict with the other finishers' KEY SHARE and deadlock
    locked = session.execute(
        select(Batch.id)
        .where(Batch.id == batch_id, Batch.completed_at.is_(None))
        .with_for_update(key_share=True)
    ).first()
    if locked is None:
        return False
    live = select(Job.id).where(Job.batch_id == batch_id, Job.status.in_(ACTIVE_STATUSES))
    completed = session.execute(
        update(Batch)
        .where(Batch.id == batch_id, Batch.completed_at.is_(None), ~live.exists())
        .values(completed_at=now)
        .returning(Batch.tenant_id)
        .execution_options(synchronize_session=False)
    ).first()
    if completed is None:
        return False
    add_outbox_event(session, completed.tenant_id, OutboxType.BATCH_COMPLETED, batch_id=batch_id)
    return True


_OUTBOX_TYPES = {
    JobStatus.SUCCEEDED: OutboxType.JOB_SUCCEEDED,
    JobStatus.FAILED: OutboxType.JOB_FAILED,
    JobStatus.CANCELED: OutboxType.JOB_CANCELED,
}
