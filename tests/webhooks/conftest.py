"""Webhook delivery tests: a database of their own, receivers on loopback.

The delivery loops claim *any* due message, so these tests run on a database of their
own (``reelyard_test_<run>_<worker>_webhooks``), where no other package's committed
rows wait. Most tests run inside a rolled-back transaction as elsewhere
(``session_factory``); the ones that need real concurrency (several delivery loops,
a worker process) commit under a tenant of their own and delete it afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from migrations import upgrade
from models.access import create_tenant
from models.base import utcnow
from models.jobs import JobStatus, finish_job, queue_jobs
from models.webhooks import WebhookEndpoint, create_endpoint
from reelyard.outbound import build_client
from reelyard.webhooks import fan_out_events
from tests.conftest import run_tag
from tests.e2e.system import create_database, drop_database
from tests.models.db_fixtures import db_connection, db_session, session_factory
from tests.webhooks.receiver import Receiver
from workers.webhooks import DeliveryConfig, WebhookDeps, make_delivery_engine

__all__ = ["db_connection", "db_session", "session_factory"]

#: the tests' delivery: the real schedule at a thousandth of its length (5 s is 5 ms,
#: 30 min is 1.8 s), loopback allowed, short timeouts
TEST_CONFIG = DeliveryConfig(
    time_scale=0.001,
    timeout_s=2.0,
    lease_s=10.0,
    endpoint_concurrency=2,
    allow_private_urls=True,
    parallel=4,
)


@pytest.fixture(scope="session")
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    workerinput = getattr(request.config, "workerinput", None)
    worker = str(workerinput["workerid"]) if workerinput else "gw0"
    name = f"reelyard_test_{run_tag()}_{worker}_webhooks"
    url = create_database(name)
    try:
        yield url
    finally:
        drop_database(name)


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    """The run's engine, built as delivery workers build theirs."""
    upgrade(database_url)
    engine = make_delivery_engine(database_url, pool_size=4)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def http_client():
    client = build_client()
    yield client
    client.close()


@pytest.fixture
def deps(session_factory, http_client) -> WebhookDeps:
    return WebhookDeps(sessions=session_factory, client=http_client, config=TEST_CONFIG)


def with_config(deps: WebhookDeps, **changes: Any) -> WebhookDeps:
    return replace(deps, config=replace(deps.config, **changes))


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def finished_job(
    session: Session,
    tenant_id: str,
    *,
    status: JobStatus = JobStatus.CANCELED,
    metadata: dict[str, Any] | None = None,
    webhook_url: str | None = None,
) -> str:
    """A job queued and ended, so its outbox row is written; its id (flushed)."""
    rows = queue_jobs(
        session,
        tenant_id,
        [
            {
                "images": ["https://photos.example.com/a.jpg"],
                "prompt": "a calm slideshow",
                "options": {},
                "metadata": metadata or {"order": "A-1"},
                "webhook_url": webhook_url,
            }
        ],
    )
    job_id = str(rows[0]["id"])
    assert finish_job(session, job_id, status)
    return job_id


def endpoint_with_message(
    session: Session, url: str, **job: Any
) -> tuple[WebhookEndpoint, str, list[str]]:
    """A tenant with one endpoint at ``url`` and one ended job, fanned out and committed:
    (the endpoint, the job's id, the new messages' ids)."""
    tenant = create_tenant(session, "Acme")
    endpoint = create_endpoint(session, tenant.id, url=url)
    job_id = finished_job(session, tenant.id, **job)
    ids = fan_out_events(session, utcnow(), limit=1000)
    session.commit()
    return endpoint, job_id, ids
