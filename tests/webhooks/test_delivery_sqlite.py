"""Delivery on SQLite, the standalone mode's database: the same loops, claims and
records (workers/webhooks_sqlite.py), against a real receiver on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from migrations import upgrade
from models.access import create_tenant
from models.base import utcnow
from models.db import make_session_factory
from models.webhooks import MessageStatus, WebhookAttempt, WebhookMessage, create_endpoint
from reelyard.outbound import build_client
from reelyard.webhooks import fan_out_events
from tests.e2e.system import wait_for
from tests.webhooks.conftest import TEST_CONFIG, finished_job
from tests.webhooks.receiver import Receiver
from workers.pipeline import new_owner
from workers.webhooks import WebhookDeps, claim, count_due, deliver_due, make_delivery_engine


@pytest.fixture
def sessions(tmp_path) -> Iterator[sessionmaker[Session]]:
    url = f"sqlite:///{tmp_path / 'reelyard.db'}"
    upgrade(url)
    engine = make_delivery_engine(url, pool_size=4)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


@pytest.fixture
def deps(sessions) -> Iterator[WebhookDeps]:
    client = build_client()
    try:
        yield WebhookDeps(sessions=sessions, client=client, config=TEST_CONFIG)
    finally:
        client.close()


def messages_to(sessions, url: str, jobs: int, **job) -> tuple[str, list[str]]:
    with sessions() as session:
        tenant = create_tenant(session, "Local")
        endpoint = create_endpoint(session, tenant.id, url=url)
        for _ in range(jobs):
            finished_job(session, tenant.id, **job)
        ids = fan_out_events(session, utcnow(), limit=1000)
        session.commit()
        return endpoint.secret, ids


def rows(sessions, message_id: str) -> tuple[WebhookMessage, list[WebhookAttempt]]:
    with sessions() as session:
        message = session.get_one(WebhookMessage, message_id)
        attempts = session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.message_id == message_id)
            .order_by(WebhookAttempt.id)
        ).all()
        session.expunge_all()
        return message, list(attempts)


def test_messages_are_delivered_signed_and_recorded_on_sqlite(deps):
    receiver = Receiver()
    try:
        secret, ids = messages_to(deps.sessions, receiver.url, 3)
        assert deliver_due(deps, new_owner(), budget_s=10) == (3, False)
        assert sorted(r.webhook_id for r in receiver.received) == sorted(ids)
        for request in receiver.received:
            assert request.verify(secret)["type"] == "job.canceled"
        for message_id in ids:
            message, (attempt,) = rows(deps.sessions, message_id)
            assert message.status is MessageStatus.DELIVERED
            assert message.delivered_at is not None
            assert message.lease_owner is None
            assert attempt.status_code == 200
            assert attempt.duration_ms is not None
    finally:
        receiver.close()


def test_a_failure_is_retried_and_a_jobs_own_url_is_served_on_sqlite(deps):
    receiver = Receiver(script=[500])
    try:
        _secret, (endpoint_message, job_message) = messages_to(
            deps.sessions, receiver.url, 1, webhook_url=receiver.url + "/job"
        )
        ours = (endpoint_message, job_message)

        def settled() -> bool:  # the retry is due 5 ms after the failure (time scale)
            deliver_due(deps, new_owner(), budget_s=10)
            statuses = {rows(deps.sessions, m)[0].status for m in ours}
            return statuses == {MessageStatus.DELIVERED}

        wait_for("both messages delivered", settled, timeout_s=10, every_s=0.01)
        codes = sorted(
            attempt.status_code
            for message_id in ours
            for attempt in rows(deps.sessions, message_id)[1]
        )
        assert codes == [200, 200, 500]
    finally:
        receiver.close()


def test_one_destination_gets_at_most_its_share_of_leases_on_sqlite(deps):
    receiver = Receiver()
    try:
        messages_to(deps.sessions, receiver.url, 4)
        owner = new_owner()
        with deps.sessions() as session:
            taken = [
                claim(session, owner=owner, now=utcnow(), config=deps.config) for _ in range(4)
            ]
            session.commit()
            waiting = count_due(session, now=utcnow(), config=deps.config, limit=10)
        # TEST_CONFIG allows two at once per endpoint
        assert [len(batch) for batch in taken] == [1, 1, 0, 0]
        assert waiting == 0
    finally:
        receiver.close()


def test_concurrent_loops_deliver_each_message_once_on_sqlite(deps):
    receiver = Receiver()
    try:
        _secret, ids = messages_to(deps.sessions, receiver.url, 12)
        wide = replace(deps, config=replace(deps.config, endpoint_concurrency=4))
        loops = [
            threading.Thread(target=deliver_due, args=(wide, new_owner()), kwargs={"budget_s": 20})
            for _ in range(4)
        ]
        for loop in loops:
            loop.start()
        for loop in loops:
            loop.join(30)
        assert sorted(r.webhook_id for r in receiver.received) == sorted(ids)
        assert receiver.max_open <= 4
    finally:
        receiver.close()
