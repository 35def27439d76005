"""Tenants and their API keys.

A key is ``ry_<prefix>_<secret>``: shown once when it is made, stored only as the
SHA-256 of the whole key beside its public ``prefix``, which is how a request's key
is found. The secret carries 256 random bits, so a fast hash is enough: nothing
short of the key itself hashes to the stored value.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from models.base import Base, utcnow
from models.ids import MAX_ID_LENGTH, new_id

KEY_SCHEME = "ry"
PREFIX_LENGTH = 12


def hash_key(key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(key.encode()).hexdigest()


def split_key(key: str) -> tuple[str, str] | None:
    """``(prefix, secret)`` of a well-formed key, or None."""
    scheme, _, rest = key.partition("_")
    prefix, _, secret = rest.partition("_")
    if scheme != KEY_SCHEME or len(prefix) != PREFIX_LENGTH or not secret:
        return None
    if not all(char in "0123456789abcdef" for char in prefix):
        return None
    return prefix, secret


class Tenant(Base):
    """A calling platform; every job, batch and key belongs to one."""

    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(MAX_ID_LENGTH), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    #: flask-limiter notation; None uses the service's ``REELYARD_RATE_LIMIT``
    rate_limit: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: signs what goes to a job's own ``webhook_url`` (``whsec_…``); made on first need
    #: (``models.webhooks.tenant_webhook_secret``), shown only by its rotation
    webhook_secret: Mapped[str | None] = mapped_column(String(100))
    webhook_secret_rotated_at: Mapped[datetime | None]
    #: the secret before the last rotation, which still signs until it expires
    webhook_previous_secret: Mapped[str | None] = mapped_column(String(100))
    webhook_previous_secret_expires_at: Mapped[datetime | None]

    keys: Mapped[list[ApiKey]] = relationship(back_populates="tenant")

    __table_args__ = (CheckConstraint("length(name) > 0", name="name_not_empty"),)


class ApiKey(Base):
    """One key of a tenant: its prefix and hash, never the key."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    prefix: Mapped[str] = mapped_column(String(PREFIX_LENGTH))
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]

    tenant: Mapped[Tenant] = relationship(back_populates="keys")

    __table_args__ = (
        Index("uq_api_keys_prefix", "prefix", unique=True),
        Index("ix_api_keys_tenant_id", "tenant_id"),
    )


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A key just made: ``key`` is shown to the operator once and never again."""

    key: str
    prefix: str
    tenant_id: str


def create_tenant(session: Session, name: str, *, rate_limit: str | None = None) -> Tenant:
    """Add a tenant (flushed, not committed)."""
    tenant = Tenant(id=new_id("ten"), name=name, rate_limit=rate_limit)
    session.add(tenant)
    session.flush()
    return tenant


def issue_key(session: Session, tenant_id: str) -> IssuedKey:
    """Make a key for ``tenant_id`` and store its hash (flushed, not committed)."""
    prefix = secrets.token_hex(PREFIX_LENGTH // 2)
    key = f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
    session.add(ApiKey(tenant_id=tenant_id, prefix=prefix, key_hash=hash_key(key)))
    session.flush()
    return IssuedKey(key=key, prefix=prefix, tenant_id=tenant_id)


def revoke_key(session: Session, prefix: str) -> bool:
    """Revoke the key with ``prefix``; False when there is no such live key."""
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None or key.revoked_at is not None:
        return False
    key.revoked_at = utcnow()
    session.flush()
    return True


def authenticate(session: Session, key: str) -> ApiKey | None:
    """The live key matching ``key`` (with its tenant loaded), or None."""
    parts = split_key(key)
    if parts is None:
        return None
    found = session.scalar(
        select(ApiKey).where(ApiKey.prefix == parts[0], ApiKey.revoked_at.is_(None))
    )
    if found is None or not hmac.compare_digest(found.key_hash, hash_key(key)):
        return None
    return found
