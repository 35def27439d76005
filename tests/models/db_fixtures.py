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
from models.db import make_engine


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
