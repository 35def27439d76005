"""Per-request state: the database session and the caller's tenant.

One session per request, opened on first use and closed at teardown; views own
commit. Authentication reads ``Authorization: Bearer <key>`` once per request and
leaves the tenant in :data:`flask.g`; every query a view makes is filtered by
:func:`tenant_id`, so another tenant's resource is simply not found.
"""

from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from celery import Celery
from flask import current_app, g, request
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from api.errors import ApiError
from models.access import ApiKey, Tenant, hash_key, split_key
from models.base import utcnow
from reelyard.settings import Settings

SESSION_FACTORY = "reelyard.session_factory"
AUTH_CACHE = "reelyard.auth_cache"
CELERY = "reelyard.celery"
SETTINGS = "reelyard.settings"
#: ``last_used_at`` is written at most this often per key (a write per request would
#: cost more than the request)
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Caller:
    tenant_id: str
    key_prefix: str
    rate_limit: str | None


class AuthCache:
    """Keys this process verified recently, by hash: saves a query per request.

    A key revoked in the database stops working here within ``ttl_s``.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, Caller]] = {}
        self._lock = threading.Lock()

    def get(self, key_hash: str) -> Caller | None:
        if self.ttl_s <= 0:
            return None
        entry = self._entries.get(key_hash)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, key_hash: str, caller: Caller) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[key_hash] = (time.monotonic() + self.ttl_s, caller)


def settings() -> Settings:
    value: Settings = current_app.extensions[SETTINGS]
    return value


def session_factory() -> sessionmaker[Session]:
    value: sessionmaker[Session] = current_app.extensions[SESSION_FACTORY]
    return value


def celery_app() -> Celery:
    value: Celery = current_app.extensions[CELERY]
    return value


def db() -> Session:
    """This request's session."""
    session: Session | None = g.get("db_session")
    if session is None:
        session = session_factory()()
        g.db_session = session
    return session


def close_db(_exc: BaseException | None = None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.close()


def _unauthorized() -> ApiError:
    return ApiError(
        401,
        "unauthorized",
        "A valid API key is required: Authorization: Bearer <key>.",
        headers={"WWW-Authenticate": 'Bearer realm="reelyard"'},
    )


def authenticate() -> Caller:
    """The caller of this request, or a 401 :class:`ApiError`."""
    caller: Caller | None = g.get("caller")
    if caller is not None:
        return caller
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    key = key.strip()
    parts = split_key(key) if scheme.lower() == "bearer" else None
    if parts is None:
        raise _unauthorized()
    key_hash = hash_key(key)
    cache: AuthCache = current_app.extensions[AUTH_CACHE]
    caller = cache.get(key_hash)
    if caller is not None:
        g.caller = caller
        return caller
    session = db()
    row = session.execute(
        select(ApiKey.id, ApiKey.key_hash, ApiKey.last_used_at, Tenant.id, Tenant.rate_limit)
        .join(Tenant, Tenant.id == ApiKey.tenant_id)
        .where(ApiKey.prefix == parts[0], ApiKey.revoked_at.is_(None))
    ).one_or_none()
    if row is None or not hmac.compare_digest(row[1], key_hash):
        raise _unauthorized()
    now = utcnow()
    if row[2] is None or now - row[2] > LAST_USED_RESOLUTION:
        session.execute(update(ApiKey).where(ApiKey.id == row[0]).values(last_used_at=now))
        session.commit()
    caller = Caller(tenant_id=row[3], key_prefix=parts[0], rate_limit=row[4])
    cache.put(key_hash, caller)
    g.caller = caller
    return caller


def tenant_id() -> str:
    return authenticate().tenant_id
