"""The webhook outbox: one row per event a caller is to hear about (``evt_…``).

A row is written in the same transaction as the state change that causes it
(design.md, "Webhooks"), so an event exists if and only if the change committed.
Fan-out (:func:`models.webhooks.fan_out`) reads undispatched rows later, turns each
into one message per destination (``webhook_messages``, ``msg_…``: the id a caller
sees in ``webhook-id``) with the payload frozen then, and sets ``dispatched_at``.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, utcnow, value_enum
from models.ids import MAX_ID_LENGTH, new_id


class OutboxType(enum.StrEnum):
    JOB_SUCCEEDED = "job.succeeded"
    JOB_FAILED = "job.failed"
    JOB_CANCELED = "job.canceled"
    JOB_PROGRESS = "job.progress"
    BATCH_COMPLETED = "batch.completed"


class OutboxEvent(Base):
    """An event waiting to be (or already) handed to webhook delivery."""

    __tablename__ = "outbox_events"

    id: Mapped[str] = mapped_column(String(MAX_ID_LENGTH), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    type: Mapped[OutboxType] = mapped_column(value_enum(OutboxType, "outbox_type"))
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: when delivery took the event over (fanned it out to the endpoints)
    dispatched_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_outbox_events_job_id", "job_id"),
        Index("ix_outbox_events_dispatched_at_created_at", "dispatched_at", "created_at"),
    )


def add_outbox_event(
    session: Session,
    tenant_id: str,
    type_: OutboxType,
    *,
    job_id: str | None = None,
    batch_id: str | None = None,
) -> str:
    """Write an outbox row in the caller's transaction (one INSERT, sent now); its id."""
    event_id = new_id("evt")
    session.execute(
        insert(OutboxEvent).values(
            id=event_id, tenant_id=tenant_id, type=type_, job_id=job_id, batch_id=batch_id
        )
    )
    return event_id
