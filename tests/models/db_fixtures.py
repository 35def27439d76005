"""Database fixtures shared by the model and API tests (imported by their conftests).

The run's PostgreSQL database (``database_url``) is migrated once per worker; each
test then runs inside a transaction that is rolled back, and sessions commit only
savepoints (``join_transaction_mode="create_savepoint"``), as warehouse does.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from migrations import upgrade
from models import Job
from models.access import create_tenant
from models.db import make_engine
from models.jobs import new_job_id


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    upgrade(database_url)
    engine = make_engine(database_url, pool_size=4)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def db_connection(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as connection:
        transaction = connection.begin()
        try:
            yield connection
        finally:
            transaction.rollback()


@pytest.fixture
def session_factory(db_connection: Connection) -> sessionmaker[Session]:
    return sessionmaker(
        bind=db_connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


@pytest.fixture
def db_session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as session:
        yield session


@pytest.fixture
def job(db_session: Session) -> Job:
    """A queued job of a fresh tenant, flushed (not committed)."""
    tenant = create_tenant(db_session, "Acme")
    queued = Job(
        id=new_job_id(),
        tenant_id=tenant.id,
        image_urls=["https://example.com/a.jpg"],
        prompt="a calm slideshow",
        options={"aspect_ratio": "16:9"},
        caller_metadata={"order": "42"},
    )
    db_session.add(queued)
    db_session.flush()
    return queued
