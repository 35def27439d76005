"""Engines and sessions.

One session per request or task; the caller owns commit and rollback, helpers only
``flush()`` (style.md). :func:`make_engine` is the one place a database URL becomes
an engine, so that ``postgresql://`` URLs use psycopg 3 everywhere.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker


def normalize_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` as psycopg 3 URLs; anything else unchanged."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1))
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


#: how long a writer waits for SQLite's single write lock before it fails
SQLITE_BUSY_TIMEOUT_MS = 30_000


def make_engine(url: str, *, pool_size: int = 10, **options: Any) -> Engine:
    """An engine for ``url``; on SQLite, foreign keys are enforced as on PostgreSQL."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, **options)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if "poolclass" not in options:
        options.setdefault("pool_size", pool_size)
        options.setdefault("max_overflow", pool_size)
    # no pre-ping: it costs a round trip per request; a connection found dead fails
    # one request and the pool is then invalidated and refilled
    options.setdefault("pool_recycle", 1800)
    return create_engine(url, **options)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Foreign keys enforced; for a file shared by several processes (standalone): WAL,
    so readers never wait on the writer; writers wait their turn (``busy_timeout``)
    instead of failing; commits durable against a crash of the process, not of the
    machine (``synchronous=NORMAL``, WAL's usual setting)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to ``engine``; objects stay readable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)
