"""Delivery against a real receiver on loopback, inside a rolled-back transaction.

Every message is verified with the official ``standardwebhooks`` package. Time is the
delivery's clock (``deps.clock``), moved to a message's next attempt rather than
waited for; the schedule itself is the real one at ``time_scale`` 0.001.
"""

from __future__ import annotations

import socket
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from api.app import create_app
from models.access import Tenant
from models.base import utcnow
from models.webhooks import (
    AttemptTrigger,
    MessageStatus,
    WebhookAttempt,
    WebhookEndpoint,
    WebhookMessage,
    replay_message,
    rotate_endpoint_secret,
)
from reelyard.settings import Settings, SettingsError
from tests.api.conftest import make_caller, queued_tasks
from tests.reelyard.test_outbound import FakeDns
from tests.webhooks.conftest import (
    endpoint_with_message,
    finished_job,
    with_config,
)
from tests.webhooks.receiver import CLOSE, HANG, Receiver, Reply
from workers.pipeline import new_owner
from workers.webhooks import (
    INTERRUPTED_ERROR,
    DeliveryConfig,
    WebhookDeps,
    claim,
    deliver_due,
    deliver_next,
    dispatch,
)


class Clock:
    """The delivery's clock: real time, plus whatever the test skipped."""

    def __init__(self) -> None:
        self.skipped = timedelta(0)

    def __call__(self):
        return utcnow() + self.skipped

    def skip_to(self, when) -> None:
        ahead = when - self()
        if ahead > timedelta(0):
            self.skipped += ahead + timedelta(milliseconds=1)


@pytest.fixture
def clock(deps):
    return Clock()


@pytest.fixture
def timed(deps, clock) -> WebhookDeps:
    return replace(deps, clock=clock)


def message(deps, message_id) -> WebhookMessage:
    with deps.sessions() as session:
        found = session.get(WebhookMessage, message_id)
        assert found is not None
        session.expunge(found)
        return found


def attempts(deps, message_id) -> list[WebhookAttempt]:
    with deps.sessions() as session:
        rows = session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.message_id == message_id)
            .order_by(WebhookAttempt.id)
        ).all()
        for row in rows:
            session.expunge(row)
        return list(rows)


def endpoint(deps, endpoint_id) -> WebhookEndpoint:
    with deps.sessions() as session:
        found = session.get(WebhookEndpoint, endpoint_id)
        assert found is not None
        session.expunge(found)
        return found


def settle(deps, clock, message_id, *, rounds=20) -> WebhookMessage:
    """Deliver until the message is no longer pending, skipping to each retry."""
    for _ in range(rounds):
        deliver_due(deps, new_owner(), budget_s=5)
        current = message(deps, message_id)
        if current.status is not MessageStatus.PENDING:
            return current
        clock.skip_to(current.next_attempt_at)
    raise AssertionError(f"{message_id} still pending after {rounds} rounds")


def test_500_three_times_then_200_is_delivered_on_the_fourth_attempt(
    timed, clock, db_session, receiver
):
    receiver.script = [500, 500, 500, 200]
    hook, _job_id, (msg_id,) = endpoint_with_message(db_session, receiver.url)
    seen = []
    for _ in range(4):  # one attempt at a time, each when it is due
        assert deliver_next(timed, new_owner())
        current = message(timed, msg_id)
        seen.append((current.status, current.attempt_count, current.next_attempt_at))
        if current.status is MessageStatus.PENDING:
            clock.skip_to(current.next_attempt_at)

    assert [status for status, _, _ in seen] == [MessageStatus.PENDING] * 3 + [
        MessageStatus.DELIVERED
    ]
    logged = attempts(timed, msg_id)
    assert [a.status_code for a in logged] == [500, 500, 500, 200]
    assert all(a.duration_ms is not None and a.response_body == '{"ok":true}' for a in logged)
    assert all(a.trigger is AttemptTrigger.SCHEDULED for a in logged)
    # the schedule, scaled: 5 s, 5 min, 30 min at a thousandth, give or take a fifth
    # (from the attempt's start: its own duration, and recording it, come on top)
    for n, step in enumerate((5.0, 300.0, 1800.0)):
        gap = (seen[n][2] - logged[n].started_at).total_seconds()
        slack = logged[n].duration_ms / 1000 + 0.2
        assert 0.8 * step / 1000 <= gap <= 1.2 * step / 1000 + slack
    assert {r.webhook_id for r in receiver.received} == {msg_id}
    for request in receiver.received:
        request.verify(hook.secret)
    delivered = message(timed, msg_id)
    assert delivered.delivered_at is not None
    assert delivered.lease_owner is None


def test_a_timeout_is_an_attempt_that_failed_and_is_retried(deps, db_session, receiver):
    receiver.default = HANG
    _hook, _job, (msg_id,) = endpoint_with_message(db_session, receiver.url)
    deliver_next(with_config(deps, timeout_s=0.3), new_owner())
    (logged,) = attempts(deps, msg_id)
    assert logged.error.startswith("timeout")
    assert logged.status_code is None
    assert 250 <= logged.duration_ms < 2000
    current = message(deps, msg_id)
    assert current.status is MessageStatus.PENDING
    assert current.attempt_count == 1
    assert current.lease_owner is None


def test_a_closed_connection_is_an_attempt_that_failed_and_is_retried(deps, db_session, receiver):
    receiver.script = [CLOSE]
    _hook, _job, (msg_id,) = endpoint_with_message(db_session, receiver.url)
    deliver_next(deps, new_owner())
    (logged,) = attempts(deps, msg_id)
    assert logged.error.startswith("connection closed")
    assert message(deps, msg_id).status is MessageStatus.PENDING


def test_410_disables_the_endpoint_and_stops_its_messages(deps, db_session, receiver):
    receiver.script = [410]
    hook, _job, (first,) = endpoint_with_message(db_session, receiver.url)
    finished_job(db_session, hook.tenant_id)
    (second,) = dispatch_now(deps, db_session)

    made, _more = deliver_due(deps, new_owner(), budget_s=5)

    assert made == 1
    assert receiver.count() == 1
    assert message(deps, first).status is MessageStatus.FAILED
    off = endpoint(deps, hook.id)
    assert (off.enabled, off.disabled_reason) == (False, "410 Gone")
    assert message(deps, second).status is MessageStatus.PENDING  # kept for a re-enable
    assert deliver_due(deps, new_owner(), budget_s=5) == (0, False)


def dispatch_now(deps, db_session) -> list[str]:
    before = set(db_session.scalars(select(WebhookMessage.id)))
    dispatch(deps, lambda count: None)
    db_session.expire_all()
    return sorted(set(db_session.scalars(select(WebhookMessage.id))) - before)


def test_a_redirect_is_not_followed_and_counts_as_a_failure(deps, db_session, receiver):
    elsewhere = Receiver()
    try:
        receiver.script = [Reply(302, {"Location": elsewhere.url})]
        _hook, _job, (msg_id,) = endpoint_with_message(db_session, receiver.url)
        deliver_next(deps, new_owner())
        (logged,) = attempts(deps, msg_id)
        assert (logged.status_code, logged.error) == (302, "redirect not followed (HTTP 302)")
        assert message(deps, msg_id).status is MessageStatus.PENDING
        assert elsewhere.count() == 0
    finally:
        elsewhere.close()


def test_429_with_retry_after_holds_the_message_and_the_endpoints_others(
    timed, clock, db_session, receiver
):
    receiver.script = [Reply(429, {"Retry-After": "3600"})]  # 3.6 s at this time scale
    hook, _job, (first,) = endpoint_with_message(db_session, receiver.url)
    finished_job(db_session, hook.tenant_id)
    (second,) = dispatch_now(timed, db_session)
    other_tenant_hook, _job, (unrelated,) = endpoint_with_message(db_session, receiver.url + "2")

    deliver_next(with_config(timed, endpoint_concurrency=1), new_owner())
    (logged,) = attempts(timed, first)
    held = message(timed, first).next_attempt_at
    assert held - logged.started_at >= timedelta(seconds=3.6)
    assert message(timed, second).next_attempt_at >= held - timedelta(milliseconds=1)
    # another endpoint is not held back
    deliver_due(timed, new_owner(), budget_s=5)
    assert message(timed, unrelated).status is MessageStatus.DELIVERED
    assert message(timed, second).status is MessageStatus.PENDING
    assert other_tenant_hook.id != hook.id
    clock.skip_to(held)
    settle(timed, clock, first)
    settle(timed, clock, second)


def api_client(session_factory, redis_url, *, allow_private_urls):
    settings = Settings(
        broker_url=redis_url,
        redis_url=redis_url,
        rate_limit="1000/second",
        auth_cache_s=0,
        allow_private_urls=allow_private_urls,
    )
    return create_app(settings, session_factory=session_factory).test_client()


@pytest.fixture
def api(session_factory, redis_url, redis_client):
    """The API, which lets endpoints on loopback be registered (the receiver's)."""
    return api_client(session_factory, redis_url, allow_private_urls=True)


@pytest.fixture
def strict_api(session_factory, redis_url, redis_client):
    """The API as in production: only public addresses are registered."""
    return api_client(session_factory, redis_url, allow_private_urls=False)


def test_a_message_is_signed_once_per_id_and_carries_the_job_as_get_job_shows_it(
    timed, db_session, receiver, api, redis_client
):
    client, clock = api, timed.clock
    caller = make_caller(db_session)
    created = client.post(
        "/v1/webhook-endpoints", json={"url": receiver.url}, headers=caller.headers
    )
    assert created.status_code == 201, created.json
    metadata = {"campaign": "spring", "order": "A-1", "nested": {"n": [1, 2.5, "é"]}}
    job = client.post(
        "/v1/jobs",
        json={"images": ["https://photos.example.com/a.jpg"], "prompt": "p", "metadata": metadata},
        headers=caller.headers,
    ).json
    canceled = client.post(f"/v1/jobs/{job['id']}/cancel", headers=caller.headers)
    assert canceled.status_code == 200
    assert ("reelyard.webhooks.dispatch", []) in queued_tasks(redis_client, "webhooks")
    receiver.script = [500]

    started = []
    assert dispatch(timed, started.append) == 1
    assert started == [1]
    deliver_due(timed, new_owner(), budget_s=5)
    msg_id = receiver.received[0].webhook_id
    settle(timed, clock, msg_id)  # the retry, when it comes due
    db_session.expire_all()
    replay_message(db_session, db_session.get(WebhookMessage, msg_id), utcnow())
    db_session.commit()
    deliver_due(timed, new_owner(), budget_s=5)

    assert receiver.count() == 3
    assert {r.webhook_id for r in receiver.received} == {msg_id}
    view = client.get(f"/v1/jobs/{job['id']}", headers=caller.headers).json
    for request in receiver.received:
        payload = request.verify(created.json["secret"])
        assert payload["type"] == "job.canceled"
        assert payload["data"] == view
        assert payload["data"]["metadata"] == metadata
    assert [a.trigger for a in attempts(timed, msg_id)] == [
        AttemptTrigger.SCHEDULED,
        AttemptTrigger.SCHEDULED,
        AttemptTrigger.REPLAY,
    ]


def test_during_a_rotation_both_secrets_verify(deps, db_session, receiver):
    hook, _job, (msg_id,) = endpoint_with_message(db_session, receiver.url)
    old = hook.secret
    new = rotate_endpoint_secret(db_session, hook, now=utcnow(), overlap_s=3600)
    db_session.commit()
    deliver_next(deps, new_owner())
    (request,) = receiver.received
    assert len(request.headers["webhook-signature"].split()) == 2
    assert request.verify(old) == request.verify(new)
    assert message(deps, msg_id).status is MessageStatus.DELIVERED


def test_a_jobs_own_url_is_signed_with_the_tenants_secret(deps, db_session, receiver):
    tenant = db_session.get(Tenant, make_caller(db_session).tenant_id)
    finished_job(db_session, tenant.id, webhook_url=receiver.url)
    (msg_id,) = dispatch_now(deps, db_session)
    deliver_next(deps, new_owner())
    db_session.expire_all()
    secret = db_session.get(Tenant, tenant.id).webhook_secret
    (request,) = receiver.received
    assert request.verify(secret)["data"]["webhook_url"] == receiver.url
    assert message(deps, msg_id).status is MessageStatus.DELIVERED


def test_an_endpoint_failing_for_days_is_disabled_with_the_reason(deps, db_session, receiver):
    receiver.default = 500
    hook, _job, (msg_id,) = endpoint_with_message(db_session, receiver.url)
    # five days at a thousandth are 432 s: this endpoint has failed for longer
    hook.failing_since = utcnow() - timedelta(seconds=500)
    db_session.commit()
    deliver_next(deps, new_owner())
    off = endpoint(deps, hook.id)
    assert off.enabled is False
    assert off.disabled_reason.startswith("every attempt failed since")
    assert message(deps, msg_id).status is MessageStatus.PENDING


def test_a_success_ends_an_endpoints_run_of_failures(deps, db_session, receiver):
    receiver.script = [500, 200]
    hook, _job, (msg_id,) = endpoint_with_message(db_session, receiver.url)
    deliver_next(deps, new_owner())
    assert endpoint(deps, hook.id).failing_since is not None
    settle(with_config(deps, time_scale=0.0), Clock(), msg_id)
    assert endpoint(deps, hook.id).failing_since is None


def test_a_lost_lease_is_taken_over_with_the_same_id_and_the_lost_attempt_marked(
    timed, clock, db_session, receiver
):
    hook, _job, (msg_id,) = endpoint_with_message(db_session, receiver.url)
    with timed.sessions() as session:  # a worker claims, then dies before calling
        assert claim(session, owner="dead", now=clock(), config=timed.config)
        session.commit()
    assert deliver_due(timed, new_owner(), budget_s=5) == (0, False)  # leased
    clock.skip_to(message(timed, msg_id).lease_expires_at)
    deliver_due(timed, new_owner(), budget_s=5)

    first, second = attempts(timed, msg_id)
    assert first.error == INTERRUPTED_ERROR
    assert second.status_code == 200
    (request,) = receiver.received
    assert request.webhook_id == msg_id
    request.verify(hook.secret)
    assert message(timed, msg_id).status is MessageStatus.DELIVERED


def test_at_most_n_messages_of_one_endpoint_are_leased_at_once(deps, db_session, receiver):
    hook, _job, _ids = endpoint_with_message(db_session, receiver.url)
    for _ in range(3):
        finished_job(db_session, hook.tenant_id)
    dispatch_now(deps, db_session)
    _other, _job, (elsewhere,) = endpoint_with_message(db_session, receiver.url + "x")
    config = replace(deps.config, endpoint_concurrency=2)
    now = utcnow()
    claimed = []
    with deps.sessions() as session:
        for _ in range(4):
            claimed += [
                found.destination for found in claim(session, owner="w", now=now, config=config)
            ]
            session.commit()
    assert sorted(claimed) == sorted([hook.id, hook.id, _other.id])
    assert elsewhere


STUB_NAMES = {
    "loopback.example.com": "127.0.0.1",
    "private.example.com": "10.1.2.3",
    "metadata.example.com": "169.254.169.254",
    "cgnat.example.com": "100.64.0.1",
    "v6loopback.example.com": "::1",
    "ula.example.com": "fd00::1",
    "mapped.example.com": "::ffff:10.0.0.1",
}


@pytest.fixture
def dns(monkeypatch):
    fake = FakeDns(socket.getaddrinfo)
    for name, address in STUB_NAMES.items():
        fake.answer(name, [address])
    # public when it is registered, loopback when delivery looks again (rebinding)
    fake.answer("rebind.example.com", ["93.184.215.14"], ["127.0.0.1"])
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


@pytest.mark.parametrize(
    "url",
    [
        *(f"http://{name}:{{port}}/hook" for name in STUB_NAMES),
        "http://2130706433:{port}/hook",
        "http://0x7f.1:{port}/hook",
        "http://[::ffff:127.0.0.1]:{port}/hook",
        "http://127.0.0.1:{port}/hook",
        "http://[::1]:{port}/hook",
    ],
)
def test_a_url_that_is_not_public_at_delivery_fails_without_a_connection(
    deps, db_session, receiver, dns, url
):
    port = receiver.server.server_address[1]
    _hook, _job, (msg_id,) = endpoint_with_message(db_session, url.format(port=port))
    deliver_next(with_config(deps, allow_private_urls=False), new_owner())
    (logged,) = attempts(deps, msg_id)
    assert logged.error.startswith("refused URL")
    assert message(deps, msg_id).status is MessageStatus.FAILED
    assert receiver.count() == 0


def test_a_name_that_rebinds_to_loopback_after_registration_is_refused_at_delivery(
    deps, db_session, receiver, dns, strict_api
):
    client = strict_api
    caller = make_caller(db_session)
    port = receiver.server.server_address[1]
    created = client.post(
        "/v1/webhook-endpoints",
        json={"url": f"http://rebind.example.com:{port}/hook"},
        headers=caller.headers,
    )
    assert created.status_code == 201, created.json  # public when registered
    finished_job(db_session, caller.tenant_id)
    (msg_id,) = dispatch_now(deps, db_session)
    deliver_next(with_config(deps, allow_private_urls=False), new_owner())
    assert attempts(deps, msg_id)[0].error.startswith("refused URL")
    assert message(deps, msg_id).status is MessageStatus.FAILED
    assert receiver.count() == 0
    assert dns.asked.count("rebind.example.com") == 2


def test_a_lease_must_outlast_an_attempt():
    with pytest.raises(SettingsError, match="REELYARD_WEBHOOK_LEASE_S"):
        Settings.from_env({"REELYARD_WEBHOOK_TIMEOUT_S": "30", "REELYARD_WEBHOOK_LEASE_S": "20"})


def test_delivery_reads_its_settings():
    config = DeliveryConfig.from_settings(
        Settings.from_env(
            {
                "REELYARD_WEBHOOK_TIMEOUT_S": "3",
                "REELYARD_WEBHOOK_ENDPOINT_CONCURRENCY": "4",
                "REELYARD_WEBHOOK_DISABLE_AFTER_S": "60",
                "REELYARD_TIME_SCALE": "0.5",
                "REELYARD_ALLOW_PRIVATE_URLS": "on",
            }
        )
    )
    assert (config.timeout_s, config.endpoint_concurrency, config.disable_after_s) == (3, 4, 60)
    assert (config.time_scale, config.allow_private_urls) == (0.5, True)
    assert DeliveryConfig.from_settings(Settings()).timeout_s == 15.0


def more_messages(deps, db_session, hook, count: int) -> list[str]:
    for _ in range(count):
        finished_job(db_session, hook.tenant_id)
    return dispatch_now(deps, db_session)


def test_a_batch_takes_up_to_half_an_endpoints_room_and_sends_each(deps, db_session, receiver):
    hook, _job, first = endpoint_with_message(db_session, receiver.url)
    later = more_messages(deps, db_session, hook, 5)
    # room 4: a batch of 2; then room 4 again (nothing left leased): 2, then 2
    narrow = with_config(deps, endpoint_concurrency=4, batch=5)
    assert [deliver_next(narrow, new_owner()) for _ in range(4)] == [2, 2, 2, 0]
    assert sorted(r.webhook_id for r in receiver.received) == sorted(first + later)
    for message_id in first + later:
        assert message(deps, message_id).status is MessageStatus.DELIVERED
        (only,) = attempts(deps, message_id)
        assert only.status_code == 200
        receiver_copy = next(r for r in receiver.received if r.webhook_id == message_id)
        receiver_copy.verify(hook.secret)


def test_a_failed_attempt_ends_the_batch_and_hands_the_rest_back_as_found(
    deps, db_session, receiver
):
    receiver.script = [500]
    hook, _job, (oldest,) = endpoint_with_message(db_session, receiver.url)
    later = more_messages(deps, db_session, hook, 2)
    # a replay's trigger is kept when it is handed back
    db_session.execute(
        update(WebhookMessage)
        .where(WebhookMessage.id == later[0])
        .values(next_attempt_trigger=AttemptTrigger.REPLAY)
    )
    db_session.commit()
    wide = with_config(deps, endpoint_concurrency=10)

    assert deliver_next(wide, new_owner()) == 1
    assert [r.webhook_id for r in receiver.received] == [oldest]
    assert message(deps, oldest).attempt_count == 1
    for message_id in later:
        handed_back = message(deps, message_id)
        assert handed_back.status is MessageStatus.PENDING
        assert handed_back.attempt_count == 0
        assert handed_back.lease_owner is None
        assert handed_back.lease_expires_at is None
        assert handed_back.last_attempt_at is None
        assert attempts(deps, message_id) == []
    assert message(deps, later[0]).next_attempt_trigger is AttemptTrigger.REPLAY

    deliver_due(wide, new_owner(), budget_s=5)
    assert [a.trigger for a in attempts(deps, later[0])] == [AttemptTrigger.REPLAY]
    assert all(message(deps, m).status is MessageStatus.DELIVERED for m in later)


def test_a_slow_answer_ends_the_batch(deps, db_session, receiver):
    hook, _job, _first = endpoint_with_message(db_session, receiver.url)
    more_messages(deps, db_session, hook, 2)
    slow = with_config(deps, endpoint_concurrency=10, batch_slow_s=0.0)
    assert [deliver_next(slow, new_owner()) for _ in range(4)] == [1, 1, 1, 0]


def test_a_batch_ends_when_its_lease_could_not_cover_another_call(deps, db_session, receiver):
    hook, _job, _first = endpoint_with_message(db_session, receiver.url)
    more_messages(deps, db_session, hook, 2)
    short = with_config(deps, endpoint_concurrency=10, lease_s=2.5, timeout_s=2.0)
    assert deliver_next(short, new_owner()) == 1
