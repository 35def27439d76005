"""Delivery with real concurrency: several loops at once, and a worker process killed.

These tests commit (on the webhooks tests' own database) under a tenant of their own,
deleted afterwards, and leave nothing due behind.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from models.access import Tenant, create_tenant
from models.base import utcnow
from models.db import make_session_factory
from models.webhooks import MessageStatus, WebhookAttempt, WebhookMessage, create_endpoint
from reelyard.outbound import build_client
from reelyard.webhooks import fan_out_events
from tests.e2e.system import Proc, spawn_cli, wait_for
from tests.webhooks.conftest import TEST_CONFIG, finished_job
from tests.webhooks.receiver import HANG, Receiver
from workers.pipeline import new_owner
from workers.webhooks import INTERRUPTED_ERROR, WebhookDeps, deliver_due

pytestmark = pytest.mark.slow


@pytest.fixture
def committed(engine) -> Iterator[sessionmaker[Session]]:
    """Sessions that commit; every tenant made through them is deleted at the end."""
    factory = make_session_factory(engine)
    yield factory
    with factory() as session:
        session.execute(delete(Tenant).where(Tenant.name.like("webhooks-live-%")))
        session.commit()


def statuses(sessions, endpoint_id) -> list[MessageStatus]:
    with sessions() as session:
        return list(
            session.scalars(
                select(WebhookMessage.status).where(WebhookMessage.endpoint_id == endpoint_id)
            )
        )


def test_a_blackholed_endpoint_does_not_delay_a_healthy_one(committed):
    blackhole, healthy = Receiver(default=HANG), Receiver()
    client = build_client()
    try:
        with committed() as session:
            tenant = create_tenant(session, "webhooks-live-isolation")
            down = create_endpoint(session, tenant.id, url=blackhole.url)
            up = create_endpoint(session, tenant.id, url=healthy.url)
            for _ in range(10):
                finished_job(session, tenant.id)
            assert len(fan_out_events(session, utcnow(), limit=1000)) == 20
            session.commit()
        # four loops; at most two may serve one endpoint; a blackholed call takes 3 s
        deps = WebhookDeps(
            sessions=committed,
            client=client,
            config=replace(TEST_CONFIG, timeout_s=3.0, endpoint_concurrency=2),
        )
        started = time.monotonic()
        loops = [
            threading.Thread(target=deliver_due, args=(deps, new_owner()), kwargs={"budget_s": 4})
            for _ in range(4)
        ]
        for loop in loops:
            loop.start()
        wait_for("the healthy endpoint's ten messages", lambda: healthy.count() >= 10, timeout_s=10)
        healthy_done_s = time.monotonic() - started
        blackholed_calls = blackhole.count()

        # the healthy endpoint was served while the blackhole held its two loops: all
        # ten arrived before the first blackholed call could even time out
        assert healthy_done_s < 2.5, healthy_done_s
        assert blackholed_calls <= 2
        assert blackhole.max_open <= 2
        received = healthy.received
        intervals = [b.at - a.at for a, b in itertools.pairwise(received)]
        assert max(intervals, default=0) < 1.0
        wait_for(
            "the healthy endpoint's messages recorded",
            lambda: statuses(committed, up.id).count(MessageStatus.DELIVERED) == 10,
            timeout_s=5,
        )
        assert MessageStatus.DELIVERED not in statuses(committed, down.id)
    finally:
        blackhole.close()  # the blackholed calls end; the loops record and stop
        for loop in loops:
            loop.join(timeout=15)
        healthy.close()
        client.close()


@pytest.fixture
def worker_env(database_url, redis_url, redis_client, tmp_path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "REELYARD_DATABASE_URL": database_url,
        "REELYARD_BROKER_URL": redis_url,
        "REELYARD_REDIS_URL": redis_url,
        "REELYARD_DATA_DIR": str(tmp_path / "data"),
        "REELYARD_ALLOW_PRIVATE_URLS": "1",
        "REELYARD_TIME_SCALE": "0.001",
        "REELYARD_WEBHOOK_TIMEOUT_S": "5",
        "REELYARD_WEBHOOK_LEASE_S": "6",
        "REELYARD_WEBHOOK_SWEEP_EVERY_S": "0.5",
        "REELYARD_RECONCILE_EVERY_S": "3600",
    }


def spawn(name: str, args: list[str], env: dict[str, str], logs: Path) -> Proc:
    proc = spawn_cli(name, args, env, logs / f"{name}-{time.monotonic_ns()}.log")
    marker = "beat: Starting" if name == "beat" else "ready."
    wait_for(
        f"{name} to start",
        lambda: (proc.alive or pytest.fail(proc.output()[-3000:])) and marker in proc.output(),
        timeout_s=60,
    )
    return proc


def test_a_message_whose_worker_is_killed_mid_delivery_is_delivered_after_restart(
    committed, worker_env, tmp_path
):
    receiver = Receiver([HANG])  # the first call never gets an answer
    procs: list[Proc] = []
    try:
        with committed() as session:
            tenant = create_tenant(session, "webhooks-live-kill")
            endpoint = create_endpoint(session, tenant.id, url=receiver.url)
            finished_job(session, tenant.id)
            session.commit()  # the event waits in the outbox for the sweep
        worker_args = ["worker", "-Q", "webhooks", "-c", "4"]
        procs.append(spawn("worker", worker_args, worker_env, tmp_path))
        procs.append(
            spawn("beat", ["beat", "--schedule", str(tmp_path / "beat")], worker_env, tmp_path)
        )

        wait_for("the first call", lambda: receiver.count() == 1, timeout_s=20)
        procs[0].kill()  # kill -9, mid-call
        with committed() as session:
            (held,) = session.scalars(
                select(WebhookMessage).where(WebhookMessage.endpoint_id == endpoint.id)
            ).all()
            assert held.status is MessageStatus.PENDING
            assert held.lease_owner is not None
        procs.append(spawn("worker", worker_args, worker_env, tmp_path))

        def delivered() -> bool:
            with committed() as session:
                return session.get(WebhookMessage, held.id).status is MessageStatus.DELIVERED

        wait_for("delivery after the restart", delivered, timeout_s=30, every_s=0.2)
        first, second = receiver.received
        assert first.webhook_id == second.webhook_id == held.id
        first.verify(endpoint.secret)
        second.verify(endpoint.secret)
        with committed() as session:
            logged = session.scalars(
                select(WebhookAttempt)
                .where(WebhookAttempt.message_id == held.id)
                .order_by(WebhookAttempt.id)
            ).all()
        assert [(a.status_code, a.error) for a in logged] == [
            (None, INTERRUPTED_ERROR),
            (200, None),
        ]
    finally:
        for proc in reversed(procs):
            with contextlib.suppress(Exception):
                proc.stop(grace_s=5)
        receiver.close()
