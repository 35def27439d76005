"""API tests: the app on the run's PostgreSQL database, each test rolled back.

Requests use sessions bound to the test's connection (``create_savepoint``), so a
view's ``commit()`` commits a savepoint and the whole test still rolls back. The
Celery app is real and publishes to the test's Redis database, where the tests can
see what was enqueued. Tests that need real concurrent transactions use
``committed_app`` instead (its rows stay until the run's database is dropped, under
tenants of their own, which scoping keeps out of every other test's sight).
"""

from __future__ import annotations

import base64
import dataclasses
import json

import pytest

from api.app import create_app
from models.access import create_tenant, issue_key
from models.db import make_session_factory
from reelyard.settings import Settings
from tests.models.db_fixtures import db_connection, db_session, engine, session_factory

__all__ = ["db_connection", "db_session", "engine", "session_factory"]

PHOTO = "https://photos.example.com/a.jpg"


def job_body(**changes):
    body = {"images": [PHOTO], "prompt": "A warm, slow slideshow of the beach house."}
    body.update(changes)
    return body


@pytest.fixture
def settings(database_url, redis_url):
    return Settings(
        database_url=database_url,
        broker_url=redis_url,
        redis_url=redis_url,
        rate_limit="1000/second",
        auth_cache_s=0,
        events_poll_s=0.02,
        events_stream_s=5.0,
    )


@pytest.fixture
def app(settings, session_factory, redis_client):
    return create_app(settings, session_factory=session_factory)


@pytest.fixture
def client(app):
    return app.test_client()


@dataclasses.dataclass
class Caller:
    tenant_id: str
    key: str
    prefix: str

    @property
    def headers(self):
        return {"Authorization": f"Bearer {self.key}"}


def make_caller(session, name="Acme", rate_limit=None):
    tenant = create_tenant(session, name, rate_limit=rate_limit)
    issued = issue_key(session, tenant.id)
    session.commit()
    return Caller(tenant.id, issued.key, issued.prefix)


@pytest.fixture
def alice(db_session):
    return make_caller(db_session, "Alice Corp")


@pytest.fixture
def bob(db_session):
    return make_caller(db_session, "Bob Ltd")


@pytest.fixture
def committed_app(settings, engine, redis_client):
    return create_app(settings, session_factory=make_session_factory(engine))


@pytest.fixture
def committed_caller(engine):
    factory = make_session_factory(engine)
    with factory() as session:
        return make_caller(session, "Committed")


def queued_tasks(redis_client, queue="pipeline"):
    """(task name, args) of every message waiting on ``queue`` (the default queue)."""
    tasks = []
    # kombu pushes on the left and workers pop on the right: oldest last
    for raw in reversed(redis_client.lrange(queue, 0, -1)):
        message = json.loads(raw)
        tasks.append((message["headers"]["task"], json.loads(_body(message))[0]))
    return tasks


def _body(message):
    return base64.b64decode(message["body"])
