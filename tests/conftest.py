"""Test infrastructure shared by every package's tests.

Real servers, dedicated to the test run:
- PostgreSQL: a database ``reelyard_test_<run>_<worker>`` created on the local server
  for the session and dropped afterwards; nothing else on the server is touched, and
  two test runs at once (two checkouts) do not share or drop each other's databases.
- Redis: a logical database of its own per xdist worker, flushed before each test.

A server that is down fails the tests that need it, with the command that starts
it; nothing is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest
import redis
from psycopg import sql

ADMIN_DATABASE_URL = os.environ.get(
    "REELYARD_TEST_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_TEST_URL = os.environ.get("REELYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379")
#: logical Redis databases the tests may use, one per xdist worker, counted down from 15
REDIS_FIRST_DB = 15

START_POSTGRES = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
START_REDIS = (
    'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" '
    "--appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log"
)


def run_tag() -> str:
    """A short tag of this test run, the same in every xdist worker of the run."""
    return os.environ.get("PYTEST_XDIST_TESTRUNUID", "")[:8] or f"p{os.getpid()}"


def _worker_index(request: pytest.FixtureRequest) -> int:
    """0 for xdist's ``gw0`` or a run without xdist, 1 for ``gw1``…"""
    workerinput = getattr(request.config, "workerinput", None)
    worker_id = str(workerinput["workerid"]) if workerinput else "master"
    return int(worker_id.removeprefix("gw")) if worker_id.startswith("gw") else 0


@pytest.fixture(scope="session")
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL database of this test run's own, as a SQLAlchemy-style URL."""
    name = f"reelyard_test_{run_tag()}_{_worker_index(request)}"
    try:
        admin = psycopg.connect(ADMIN_DATABASE_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {ADMIN_DATABASE_URL} ({exc}). "
            f"Start it with: {START_POSTGRES} (see DEVELOPERS.md)",
            pytrace=False,
        )
    with admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = ADMIN_DATABASE_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(ADMIN_DATABASE_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    """The URL of this worker's own logical Redis database."""
    url = f"{REDIS_TEST_URL}/{REDIS_FIRST_DB - _worker_index(request)}"
    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.fail(
            f"Redis is not reachable at {REDIS_TEST_URL} ({exc}). "
            f"Start it with: {START_REDIS} (see DEVELOPERS.md)",
            pytrace=False,
        )
    finally:
        client.close()
    return url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client of this worker's Redis database, empty at the start of each test."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    try:
        yield client
    finally:
        client.close()
