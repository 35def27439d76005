"""Webhook endpoints, messages and attempts; fan-out from the outbox; secrets.

The outbox (``models.outbox``) holds *events*, written with the state change. Fan-out
(:func:`fan_out`) turns each event into one *message* per destination: every enabled
endpoint of the tenant that wants the event's type, and the job's own ``webhook_url``
for job events. A message's id (``msg_…``) is the ``webhook-id`` header on every
attempt and replay, and its payload is frozen at fan-out, so retries send the same
bytes. Delivery (the Celery task) claims due pending messages with a lease, writes an
attempt row per call, and moves the message to ``delivered`` or, after the last retry,
``failed`` (docs/webhooks.md).

Secrets are ``whsec_`` + base64 of 24 random bytes (Standard Webhooks). They are
stored as they are, not hashed: delivery needs them to sign. A rotation keeps the
previous secret for an overlap, during which both sign (:func:`signing_secrets`).

What delivery relies on (and keeps true):

- due work is ``status = 'pending' AND next_attempt_at <= now`` (the partial index
  ``ix_webhook_messages_due``) with no live lease; a message whose endpoint is
  disabled is left pending, not attempted; the messages in flight (pending, leased)
  are counted per endpoint at each claim (``ix_webhook_messages_leased``), and a
  message leaves ``pending`` with its lease cleared;
- an attempt's row is written before the call with ``trigger`` taken from the
  message's ``next_attempt_trigger``, which is then reset to ``scheduled``
  (a replay, :func:`replay_message`, sets it to ``replay``); ``attempt_count`` and
  ``last_attempt_at`` move with it;
- the body is ``reelyard.webhooks.body_of(payload)``, signed at each attempt with
  :func:`signing_secrets` (``reelyard.webhooks.headers_for``);
- checks hold: a pending message has ``next_attempt_at``, a delivered one
  ``delivered_at`` (the first delivery's, kept across replays); ``response_body``
  keeps at most :data:`RESPONSE_BODY_LIMIT` bytes; 410 calls :func:`disable_endpoint`.
"""

from __future__ import annotations

import base64
import enum
import secrets
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    String,
    Table,
    Text,
    and_,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.access import Tenant
from models.base import Base, BigID, utcnow, value_enum
from models.ids import MAX_ID_LENGTH, new_id
from models.jobs import Batch, Job
from models.outbox import OutboxEvent, OutboxType

SECRET_PREFIX = "whsec_"  # noqa: S105 (the scheme's prefix, not a secret)
#: bytes of randomness in a secret (Standard Webhooks recommends 24 to 64)
SECRET_BYTES = 24
#: endpoints a tenant may have: enough for every system they run, few enough that a
#: single event's fan-out stays one small INSERT
MAX_ENDPOINTS_PER_TENANT = 20
#: bytes of a receiver's answer kept in an attempt
RESPONSE_BODY_LIMIT = 1024
#: events an endpoint with an empty ``event_types`` receives: all but the chatty one
DEFAULT_EVENT_TYPES = frozenset(OutboxType) - {OutboxType.JOB_PROGRESS}
#: events a job's own ``webhook_url`` receives: how the job ended
JOB_URL_EVENT_TYPES = frozenset(
    {OutboxType.JOB_SUCCEEDED, OutboxType.JOB_FAILED, OutboxType.JOB_CANCELED}
)


class MessageStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class AttemptTrigger(enum.StrEnum):
    """Why an attempt was made: the retry schedule, or a caller's replay."""

    SCHEDULED = "scheduled"
    REPLAY = "replay"


class WebhookEndpoint(Base):
    """A URL a tenant registered to receive events, with its own signing secret."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(MAX_ID_LENGTH), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(String(500))
    #: the event types it wants (``OutboxType`` values); empty: every type but
    #: ``job.progress``
    event_types: Mapped[list[Any]]
    enabled: Mapped[bool] = mapped_column(default=True)
    secret: Mapped[str] = mapped_column(String(100))
    previous_secret: Mapped[str | None] = mapped_column(String(100))
    previous_secret_expires_at: Mapped[datetime | None]
    #: why delivery turned it off (``410 Gone``, ``failing since …``); None when enabled
    #: by hand or never disabled
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    #: the start of its current run of failed attempts (delivery keeps it)
    failing_since: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (Index("ix_webhook_endpoints_tenant_id_id", "tenant_id", "id"),)


class WebhookMessage(Base):
    """One event to one destination: what is signed, sent, retried and replayed."""

    __tablename__ = "webhook_messages"

    id: Mapped[str] = mapped_column(String(MAX_ID_LENGTH), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(ForeignKey("outbox_events.id", ondelete="CASCADE"))
    #: None for a job's own ``webhook_url`` (signed with the tenant's secret)
    endpoint_id: Mapped[str | None] = mapped_column(
        ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    #: the destination as it was at fan-out
    url: Mapped[str] = mapped_column(Text)
    event_type: Mapped[OutboxType] = mapped_column(
        value_enum(OutboxType, "webhook_message_event_type")
    )
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    #: ``{"type", "timestamp", "data"}``, frozen at fan-out
    payload: Mapped[dict[str, Any]]
    status: Mapped[MessageStatus] = mapped_column(
        value_enum(MessageStatus, "webhook_message_status"), default=MessageStatus.PENDING
    )
    attempt_count: Mapped[int] = mapped_column(default=0)
    #: when the next attempt is due (pending messages only)
    next_attempt_at: Mapped[datetime | None]
    #: what the next attempt's row records as its trigger (a replay sets ``replay``)
    next_attempt_trigger: Mapped[AttemptTrigger] = mapped_column(
        value_enum(AttemptTrigger, "webhook_next_attempt_trigger"),
        default=AttemptTrigger.SCHEDULED,
    )
    last_attempt_at: Mapped[datetime | None]
    #: the first successful delivery (kept when a replay follows)
    delivered_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        CheckConstraint("attempt_count >= 0", name="attempt_count_not_negative"),
        CheckConstraint(
            "status <> 'pending' OR next_attempt_at IS NOT NULL", name="pending_is_due"
        ),
        CheckConstraint(
            "status <> 'delivered' OR delivered_at IS NOT NULL", name="delivered_has_time"
        ),
        # what delivery claims: pending messages by due time (leases are checked on
        # the few rows this finds)
        Index(
            "ix_webhook_messages_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        # the messages in flight, counted per destination at every claim to hold each
        # endpoint to its concurrency limit (a handful of rows, however long the queue)
        Index(
            "ix_webhook_messages_leased",
            "lease_expires_at",
            postgresql_where=text("status = 'pending' AND lease_expires_at IS NOT NULL"),
            sqlite_where=text("status = 'pending' AND lease_expires_at IS NOT NULL"),
        ),
        # the list endpoint: a tenant's messages newest first, optionally by status or
        # type (ids sort by creation time)
        Index("ix_webhook_messages_tenant_id_id", "tenant_id", "id"),
        Index("ix_webhook_messages_tenant_id_status_id", "tenant_id", "status", "id"),
        Index("ix_webhook_messages_tenant_id_event_type_id", "tenant_id", "event_type", "id"),
        Index("ix_webhook_messages_job_id", "job_id"),
        # by endpoint, and the bulk replay of an endpoint's failed messages since a time
        Index(
            "ix_webhook_messages_endpoint_id_status_created_at",
            "endpoint_id",
            "status",
            "created_at",
        ),
        # one message per event and endpoint, whoever fans out; also the FK's index
        Index("uq_webhook_messages_event_id_endpoint_id", "event_id", "endpoint_id", unique=True),
    )


class WebhookAttempt(Base):
    """One call to a message's URL (written before the call, completed after it)."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("webhook_messages.id", ondelete="CASCADE"))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    duration_ms: Mapped[int | None]
    #: the receiver's HTTP status; None when no answer came
    status_code: Mapped[int | None]
    #: the start of the answer (at most :data:`RESPONSE_BODY_LIMIT` bytes, decoded)
    response_body: Mapped[str | None] = mapped_column(Text)
    #: why there is no usable answer: timeout, connection closed, refused URL,
    #: redirect not followed
    error: Mapped[str | None] = mapped_column(Text)
    trigger: Mapped[AttemptTrigger] = mapped_column(
        value_enum(AttemptTrigger, "webhook_attempt_trigger"), default=AttemptTrigger.SCHEDULED
    )

    __table_args__ = (Index("ix_webhook_attempts_message_id_id", "message_id", "id"),)


# --- secrets ------------------------------------------------------------------------


def new_secret() -> str:
    """A new signing secret: ``whsec_`` + base64 of :data:`SECRET_BYTES` random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def live_secrets(
    secret: str | None, previous: str | None, previous_expires_at: datetime | None, now: datetime
) -> list[str]:
    """The secrets that sign now: the current one, then the previous one until it expires."""
    found = [secret] if secret else []
    if previous and previous_expires_at is not None and previous_expires_at > now:
        found.append(previous)
    return found


def lock_tenant(session: Session, tenant_id: str) -> Tenant:
    """The tenant row, locked and read afresh (``FOR NO KEY UPDATE`` on PostgreSQL).

    Serialises changes to a tenant's webhook settings (its secret, its number of
    endpoints) without blocking the inserts that reference the tenant (jobs, outbox
    rows), which take only a key-share lock on it.
    """
    return session.execute(
        select(Tenant)
        .where(Tenant.id == tenant_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).scalar_one()


def tenant_webhook_secret(session: Session, tenant_id: str) -> str:
    """The tenant's default secret (for jobs' own ``webhook_url``), made on first need.

    The tenant row is locked while a missing secret is made, so two fan-outs cannot
    each make one and leave messages signed with a secret that was overwritten.
    """
    tenant = lock_tenant(session, tenant_id)
    if tenant.webhook_secret is None:
        tenant.webhook_secret = new_secret()
        tenant.webhook_secret_rotated_at = utcnow()
        session.flush()
    return tenant.webhook_secret


def rotate_tenant_secret(
    session: Session, tenant_id: str, *, now: datetime, overlap_s: float
) -> str:
    """Give the tenant a new default secret; the old one keeps signing for ``overlap_s``."""
    tenant = lock_tenant(session, tenant_id)
    if tenant.webhook_secret is not None:
        tenant.webhook_previous_secret = tenant.webhook_secret
        tenant.webhook_previous_secret_expires_at = now + timedelta(seconds=overlap_s)
    tenant.webhook_secret = new_secret()
    tenant.webhook_secret_rotated_at = now
    session.flush()
    return tenant.webhook_secret


def rotate_endpoint_secret(
    session: Session, endpoint: WebhookEndpoint, *, now: datetime, overlap_s: float
) -> str:
    """Give the endpoint a new secret; the old one keeps signing for ``overlap_s``.

    Rotating twice within an overlap drops the oldest secret: only the one being
    replaced is kept, as every provider does.
    """
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + timedelta(seconds=overlap_s)
    endpoint.secret = new_secret()
    endpoint.updated_at = now
    session.flush()
    return endpoint.secret


def signing_secrets(session: Session, message: WebhookMessage, now: datetime) -> list[str]:
    """The secrets that sign ``message`` now (at each attempt, not at fan-out).

    An endpoint's message is signed with the endpoint's secrets, a job's own
    ``webhook_url`` message with the tenant's; during a rotation's overlap, both the
    new and the previous secret (one signature each in ``webhook-signature``).
    """
    if message.endpoint_id is not None:
        endpoint = session.get(WebhookEndpoint, message.endpoint_id)
        if endpoint is None:
            return []
        return live_secrets(
            endpoint.secret, endpoint.previous_secret, endpoint.previous_secret_expires_at, now
        )
    tenant = session.get(Tenant, message.tenant_id)
    if tenant is None:
        return []
    if tenant.webhook_secret is None:
        return [tenant_webhook_secret(session, tenant.id)]
    return live_secrets(
        tenant.webhook_secret,
        tenant.webhook_previous_secret,
        tenant.webhook_previous_secret_expires_at,
        now,
    )


# --- endpoints ----------------------------------------------------------------------


def wants(event_types: Iterable[str], event_type: OutboxType) -> bool:
    """Whether an endpoint subscribed to ``event_types`` receives ``event_type``."""
    listed = set(event_types)
    if not listed:
        return event_type in DEFAULT_EVENT_TYPES
    return event_type.value in listed


def create_endpoint(
    session: Session,
    tenant_id: str,
    *,
    url: str,
    event_types: Sequence[str] = (),
    description: str | None = None,
    enabled: bool = True,
    now: datetime | None = None,
) -> WebhookEndpoint:
    """Add an endpoint with a new secret (flushed, not committed). The URL is checked by
    the caller (the API, with ``reelyard.outbound.check_url``)."""
    now = now or utcnow()
    endpoint = WebhookEndpoint(
        id=new_id("we"),
        tenant_id=tenant_id,
        url=url,
        description=description,
        event_types=list(dict.fromkeys(event_types)),
        enabled=enabled,
        secret=new_secret(),
        created_at=now,
        updated_at=now,
    )
    session.add(endpoint)
    session.flush()
    return endpoint


def set_enabled(endpoint: WebhookEndpoint, enabled: bool) -> None:
    """Enable or disable by hand; enabling forgets why delivery had disabled it."""
    endpoint.enabled = enabled
    if enabled:
        endpoint.disabled_reason = None
        endpoint.failing_since = None


def disable_endpoint(session: Session, endpoint_id: str, reason: str) -> bool:
    """Turn an endpoint off from delivery (410 Gone, failing for days); False if it was
    already off. Its pending messages stay pending: delivery skips a disabled endpoint's
    messages, and they go out if it is enabled again."""
    result = session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.enabled.is_(True))
        .values(enabled=False, disabled_reason=reason, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(cast(Any, result).rowcount)


def count_endpoints(session: Session, tenant_id: str) -> int:
    """How many endpoints the tenant has, enabled or not."""
    return (
        session.scalar(
            select(func.count())
            .select_from(WebhookEndpoint)
            .where(WebhookEndpoint.tenant_id == tenant_id)
        )
        or 0
    )


# --- fan-out ------------------------------------------------------------------------


class PayloadViews(Protocol):
    """How the API shows what an event is about; ``data`` of a payload is exactly that.

    Implemented by ``reelyard.webhooks.API_VIEWS`` from the API's own views and output
    schemas, so that a payload's ``data`` is what ``GET /v1/jobs/{id}`` (or
    ``GET /v1/batches/{id}``) answers. Both return JSON-ready dictionaries.
    """

    def job(self, job: Job) -> dict[str, Any]: ...

    def batch(self, session: Session, batch: Batch) -> dict[str, Any]: ...


def payload_of(event: OutboxEvent, data: dict[str, Any]) -> dict[str, Any]:
    """The message body's document: ``{"type", "timestamp", "data"}``.

    ``timestamp`` is when the event happened (the state change), in ISO 8601; the
    ``webhook-timestamp`` header is when an attempt is made.
    """
    return {"type": event.type.value, "timestamp": event.created_at.isoformat(), "data": data}


def fan_out(session: Session, now: datetime, *, views: PayloadViews, limit: int = 100) -> list[str]:
    """Turn up to ``limit`` undispatched events into messages; the new messages' ids.

    In the caller's transaction (the caller commits, then wakes delivery for the ids
    returned): the events are taken with ``FOR UPDATE SKIP LOCKED``, so concurrent
    fan-outs share the work and never take an event twice, and each is marked
    dispatched in the same transaction as its messages, so a crash leaves either both
    or neither. An event whose tenant has no destination for it is marked dispatched
    with no message. Payloads are built now, from the job or batch as it is now.
    """
    events = session.scalars(
        select(OutboxEvent)
        .where(OutboxEvent.dispatched_at.is_(None))
        .order_by(OutboxEvent.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not events:
        return []
    tenant_ids = {event.tenant_id for event in events}
    job_ids = {event.job_id for event in events if event.job_id is not None}
    batch_ids = {event.batch_id for event in events if event.batch_id is not None}
    endpoints = session.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.tenant_id.in_(tenant_ids), WebhookEndpoint.enabled.is_(True))
        .order_by(WebhookEndpoint.id)
    ).all()
    jobs = (
        {job.id: job for job in session.scalars(select(Job).where(Job.id.in_(job_ids)))}
        if job_ids
        else {}
    )
    batches = (
        {b.id: b for b in session.scalars(select(Batch).where(Batch.id.in_(batch_ids)))}
        if batch_ids
        else {}
    )

    rows: list[dict[str, Any]] = []
    with_secret: set[str] = set()
    for event in events:
        destinations: list[tuple[str | None, str]] = [
            (endpoint.id, endpoint.url)
            for endpoint in endpoints
            if endpoint.tenant_id == event.tenant_id and wants(endpoint.event_types, event.type)
        ]
        job = jobs.get(event.job_id) if event.job_id is not None else None
        if job is not None and job.webhook_url and event.type in JOB_URL_EVENT_TYPES:
            if event.tenant_id not in with_secret:  # exists before the first send
                tenant_webhook_secret(session, event.tenant_id)
                with_secret.add(event.tenant_id)
            destinations.append((None, job.webhook_url))
        if not destinations:
            continue
        if job is not None:
            data = views.job(job)
        elif event.batch_id is not None and event.batch_id in batches:
            data = views.batch(session, batches[event.batch_id])
        else:
            continue  # what it was about is gone (deleted with its tenant's data)
        payload = payload_of(event, data)
        rows.extend(
            {
                "id": new_id("msg"),
                "tenant_id": event.tenant_id,
                "event_id": event.id,
                "endpoint_id": endpoint_id,
                "url": url,
                "event_type": event.type,
                "job_id": event.job_id,
                "batch_id": event.batch_id,
                "payload": payload,
                "status": MessageStatus.PENDING,
                "attempt_count": 0,
                "next_attempt_at": now,
                "next_attempt_trigger": AttemptTrigger.SCHEDULED,
                "created_at": now,
            }
            for endpoint_id, url in destinations
        )
    if rows:
        session.execute(insert(cast(Table, WebhookMessage.__table__)), rows)
    session.execute(
        update(OutboxEvent)
        .where(OutboxEvent.id.in_([event.id for event in events]))
        .values(dispatched_at=now)
        .execution_options(synchronize_session=False)
    )
    return [row["id"] for row in rows]


# --- replay -------------------------------------------------------------------------


def replay_message(session: Session, message: WebhookMessage, now: datetime) -> None:
    """Make a delivered or failed message due now, its next attempt a ``replay``.

    The same message (same id, same payload): a receiver that deduplicates on
    ``webhook-id`` sees it as the message it may already have. A replay is one more
    attempt: if it fails, the message is ``failed`` again (delivery decides).
    """
    if message.status is MessageStatus.PENDING:
        raise ValueError(f"message {message.id} is already pending")
    message.status = MessageStatus.PENDING
    message.next_attempt_at = now
    message.next_attempt_trigger = AttemptTrigger.REPLAY
    message.lease_owner = None
    message.lease_expires_at = None
    session.flush()


def replay_failed(
    session: Session, endpoint_id: str, *, since: datetime, now: datetime
) -> list[str]:
    """Replay every failed message of an endpoint created at or after ``since``; their ids.

    One UPDATE (guarded on ``failed``, so a message replayed twice is one replay).
    """
    replayed = session.execute(
        update(WebhookMessage)
        .where(
            and_(
                WebhookMessage.endpoint_id == endpoint_id,
                WebhookMessage.status == MessageStatus.FAILED,
                WebhookMessage.created_at >= since,
            )
        )
        .values(
            status=MessageStatus.PENDING,
            next_attempt_at=now,
            next_attempt_trigger=AttemptTrigger.REPLAY,
            lease_owner=None,
            lease_expires_at=None,
        )
        .returning(WebhookMessage.id)
        .execution_options(synchronize_session=False)
    )
    return list(replayed.scalars())
