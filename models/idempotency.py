"""Idempotency keys: per tenant, a key, the request's fingerprint, the response.

The protocol (the API's side is ``api/idempotency.py``):
1. :func:`claim` inserts the key as *in progress* and the caller commits at once, so a
   second request with the same key sees it while the first is being processed.
2. The first request does its work, then :func:`complete` stores the response in the
   same transaction as the work, so the work and its replayable answer commit
   together.
3. A key that stays in progress past ``locked_until`` (a crashed process) can be
   claimed again; a key is forgotten ``TTL`` after it was made.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ForeignKey, Index, String, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, utcnow

TTL = timedelta(hours=24)
#: how long a request may hold a key before another may take it over
LOCK_TIMEOUT = timedelta(seconds=60)
MAX_KEY_LENGTH = 255


class IdempotencyKey(Base):
    """A key a tenant sent, and what was answered to it."""

    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH))
    #: SHA-256 of the method, path and canonical request body
    fingerprint: Mapped[str] = mapped_column(String(64))
    locked_until: Mapped[datetime | None]
    response_status: Mapped[int | None]
    response_body: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]

    __table_args__ = (
        Index("uq_idempotency_keys_tenant_id_key", "tenant_id", "key", unique=True),
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )


class ClaimOutcome(enum.Enum):
    CLAIMED = "claimed"
    REPLAY = "replay"
    IN_PROGRESS = "in_progress"
    MISMATCH = "mismatch"


@dataclass(frozen=True, slots=True)
class Claim:
    outcome: ClaimOutcome
    record: IdempotencyKey | None = None


def claim(session: Session, tenant_id: str, key: str, fingerprint: str) -> Claim:
    """Claim ``key`` for a request with ``fingerprint``; the caller commits right after."""
    now = utcnow()
    for _ in range(3):
        existing = session.scalar(
            select(IdempotencyKey).where(
                IdempotencyKey.tenant_id == tenant_id, IdempotencyKey.key == key
            )
        )
        if existing is not None and existing.expires_at <= now:
            session.delete(existing)
            session.flush()
            existing = None
        if existing is None:
            record = IdempotencyKey(
                tenant_id=tenant_id,
                key=key,
                fingerprint=fingerprint,
                locked_until=now + LOCK_TIMEOUT,
                expires_at=now + TTL,
            )
            try:
                with session.begin_nested():
                    session.add(record)
            except IntegrityError:
                continue  # another request inserted it first: look again
            return Claim(ClaimOutcome.CLAIMED, record)
        if existing.fingerprint != fingerprint:
            return Claim(ClaimOutcome.MISMATCH, existing)
        if existing.response_status is not None:
            return Claim(ClaimOutcome.REPLAY, existing)
        if existing.locked_until is not None and existing.locked_until > now:
            return Claim(ClaimOutcome.IN_PROGRESS, existing)
        existing.locked_until = now + LOCK_TIMEOUT  # its holder died: take it over
        session.flush()
        return Claim(ClaimOutcome.CLAIMED, existing)
    return Claim(ClaimOutcome.IN_PROGRESS)


def complete(session: Session, record: IdempotencyKey, status: int, body: dict[str, Any]) -> None:
    """Store the response to replay (in the caller's transaction)."""
    record.response_status = status
    record.response_body = body
    record.locked_until = None
    session.flush()


def release(session: Session, tenant_id: str, key: str) -> None:
    """Forget a claimed key whose request failed, so that it can be retried."""
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.tenant_id == tenant_id,
            IdempotencyKey.key == key,
            IdempotencyKey.response_status.is_(None),
        )
    )


def purge_expired(session: Session, now: datetime | None = None) -> int:
    """Delete expired keys; the number deleted."""
    result = session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.expires_at <= (now or utcnow()))
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
