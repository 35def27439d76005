"""``/v1/webhook-messages``: the log of what was sent, its attempts, replays."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from models import AttemptTrigger, MessageStatus, WebhookAttempt, WebhookEndpoint, WebhookMessage
from models.base import utcnow
from reelyard.webhooks import fan_out_events
from tests.api.conftest import job_body
from tests.api.webhook_fixtures import create_endpoint, dns

__all__ = ["dns"]

pytestmark = pytest.mark.usefixtures("dns")


def cancel_a_job(client, caller, **changes):
    job = client.post("/v1/jobs", json=job_body(**changes), headers=caller.headers).json
    response = client.post(f"/v1/jobs/{job['id']}/cancel", headers=caller.headers)
    assert response.status_code == 200
    return job["id"]


def fan_out(db_session):
    fan_out_events(db_session, utcnow(), limit=10_000)
    db_session.commit()


def messages(client, caller, query=""):
    response = client.get(f"/v1/webhook-messages{query}", headers=caller.headers)
    assert response.status_code == 200, response.json
    return response.json


def set_status(db_session, message_id, status, **values):
    message = db_session.get(WebhookMessage, message_id)
    message.status = status
    message.next_attempt_at = None
    if status is MessageStatus.DELIVERED:
        message.delivered_at = utcnow()
    for name, value in values.items():
        setattr(message, name, value)
    db_session.commit()


def test_a_message_carries_the_job_exactly_as_get_job_shows_it(client, alice, db_session):
    endpoint = create_endpoint(client, alice)
    job_id = cancel_a_job(client, alice, metadata={"campaign": "spring", "n": [1, {"x": None}]})
    fan_out(db_session)

    (message,) = messages(client, alice)["data"]

    assert message["id"].startswith("msg_")
    assert message["type"] == "job.canceled"
    assert message["endpoint_id"] == endpoint["id"]
    assert message["job_id"] == job_id
    assert message["status"] == "pending"
    assert message["payload"]["type"] == "job.canceled"
    job = client.get(f"/v1/jobs/{job_id}", headers=alice.headers).json
    assert message["payload"]["data"] == job
    assert message["payload"]["data"]["metadata"] == {"campaign": "spring", "n": [1, {"x": None}]}


def test_a_jobs_own_webhook_url_has_a_message_without_an_endpoint(client, alice, db_session):
    cancel_a_job(client, alice, webhook_url="https://hooks.example.com/job")
    fan_out(db_session)
    (message,) = messages(client, alice)["data"]
    assert message["endpoint_id"] is None
    assert message["url"] == "https://hooks.example.com/job"
    assert client.get("/v1/webhook-secret", headers=alice.headers).json["exists"] is True


def test_messages_are_filtered_by_job_endpoint_status_and_type(client, alice, db_session):
    first = create_endpoint(client, alice)
    second = create_endpoint(client, alice, url="https://hooks.example.com/two")
    one = cancel_a_job(client, alice)
    two = cancel_a_job(client, alice)
    fan_out(db_session)
    everything = messages(client, alice)["data"]
    assert len(everything) == 4
    delivered = next(m["id"] for m in everything if m["job_id"] == one)
    set_status(db_session, delivered, MessageStatus.DELIVERED)

    assert {m["job_id"] for m in messages(client, alice, f"?job_id={two}")["data"]} == {two}
    by_endpoint = messages(client, alice, f"?endpoint_id={second['id']}")["data"]
    assert {m["endpoint_id"] for m in by_endpoint} == {second["id"]}
    assert [m["id"] for m in messages(client, alice, "?status=delivered")["data"]] == [delivered]
    assert len(messages(client, alice, "?type=job.canceled")["data"]) == 4
    assert messages(client, alice, "?type=job.succeeded")["data"] == []
    assert first["id"] != second["id"]


def test_the_list_is_newest_first_with_a_cursor(client, alice, db_session):
    create_endpoint(client, alice)
    for _ in range(3):
        cancel_a_job(client, alice)
    fan_out(db_session)
    ids = sorted(m["id"] for m in messages(client, alice)["data"])
    page = messages(client, alice, "?limit=2")
    assert [m["id"] for m in page["data"]] == ids[::-1][:2]
    rest = messages(client, alice, f"?limit=2&cursor={page['next_cursor']}")
    assert [m["id"] for m in rest["data"]] == [ids[0]]
    assert rest["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "field", "code"),
    [
        ("?status=lost", "status", "message_status"),
        ("?type=job.exploded", "type", "event_type"),
        ("?cursor=we_1", "cursor", "cursor_invalid"),
        ("?limit=0", "limit", "limit_range"),
        ("?colour=red", "colour", "unknown_field"),
    ],
)
def test_invalid_filters_are_refused_by_rule(client, alice, query, field, code):
    response = client.get(f"/v1/webhook-messages{query}", headers=alice.headers)
    assert response.status_code == 422
    assert [(e["field"], e["code"]) for e in response.json["errors"]] == [(field, code)]


def test_a_message_shows_its_attempts_newest_first(client, alice, db_session):
    create_endpoint(client, alice)
    cancel_a_job(client, alice)
    fan_out(db_session)
    (listed,) = messages(client, alice)["data"]
    started = utcnow()
    for offset, (status, error) in enumerate([(500, None), (None, "timeout")]):
        db_session.add(
            WebhookAttempt(
                message_id=listed["id"],
                started_at=started + timedelta(seconds=offset),
                duration_ms=15,
                status_code=status,
                response_body="oops" if status else None,
                error=error,
            )
        )
    db_session.commit()

    response = client.get(f"/v1/webhook-messages/{listed['id']}", headers=alice.headers)

    assert response.status_code == 200
    attempts = response.json["attempts"]
    assert [(a["status_code"], a["error"], a["trigger"]) for a in attempts] == [
        (None, "timeout", "scheduled"),
        (500, None, "scheduled"),
    ]
    assert attempts[1]["response_body"] == "oops"


def test_a_failed_message_is_replayed_with_the_same_id(client, alice, db_session):
    create_endpoint(client, alice)
    cancel_a_job(client, alice)
    fan_out(db_session)
    (listed,) = messages(client, alice)["data"]
    set_status(db_session, listed["id"], MessageStatus.FAILED, attempt_count=10)

    response = client.post(f"/v1/webhook-messages/{listed['id']}/replay", headers=alice.headers)

    assert response.status_code == 202, response.json
    assert response.json["id"] == listed["id"]
    assert response.json["status"] == "pending"
    assert response.json["payload"] == listed["payload"]
    db_session.expire_all()
    stored = db_session.get(WebhookMessage, listed["id"])
    assert stored.next_attempt_trigger is AttemptTrigger.REPLAY
    assert stored.next_attempt_at <= utcnow()


def test_a_delivered_message_can_be_replayed(client, alice, db_session):
    create_endpoint(client, alice)
    cancel_a_job(client, alice)
    fan_out(db_session)
    (listed,) = messages(client, alice)["data"]
    set_status(db_session, listed["id"], MessageStatus.DELIVERED)
    response = client.post(f"/v1/webhook-messages/{listed['id']}/replay", headers=alice.headers)
    assert response.status_code == 202
    assert response.json["delivered_at"] is not None


def test_a_pending_message_cannot_be_replayed(client, alice, db_session):
    create_endpoint(client, alice)
    cancel_a_job(client, alice)
    fan_out(db_session)
    (listed,) = messages(client, alice)["data"]
    response = client.post(f"/v1/webhook-messages/{listed['id']}/replay", headers=alice.headers)
    assert response.status_code == 409
    assert response.json["code"] == "message_pending"


def test_a_message_to_a_disabled_endpoint_is_not_replayed(client, alice, db_session):
    endpoint = create_endpoint(client, alice)
    cancel_a_job(client, alice)
    fan_out(db_session)
    (listed,) = messages(client, alice)["data"]
    set_status(db_session, listed["id"], MessageStatus.FAILED)
    db_session.get(WebhookEndpoint, endpoint["id"]).enabled = False
    db_session.commit()
    response = client.post(f"/v1/webhook-messages/{listed['id']}/replay", headers=alice.headers)
    assert response.status_code == 409
    assert response.json["code"] == "endpoint_disabled"


def test_replay_failed_replays_the_endpoints_failed_messages_since(client, alice, db_session):
    endpoint = create_endpoint(client, alice)
    for _ in range(3):
        cancel_a_job(client, alice)
    fan_out(db_session)
    old, recent, delivered = sorted(m["id"] for m in messages(client, alice)["data"])
    set_status(db_session, old, MessageStatus.FAILED, created_at=utcnow() - timedelta(days=3))
    set_status(db_session, recent, MessageStatus.FAILED)
    set_status(db_session, delivered, MessageStatus.DELIVERED)
    since = (utcnow() - timedelta(days=1)).isoformat()

    response = client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/replay-failed",
        json={"since": since},
        headers=alice.headers,
    )

    assert response.status_code == 202, response.json
    assert response.json == {"replayed": 1}
    statuses = dict(
        db_session.execute(
            select(WebhookMessage.id, WebhookMessage.status).where(
                WebhookMessage.tenant_id == alice.tenant_id
            )
        ).all()
    )
    assert statuses == {
        old: MessageStatus.FAILED,
        recent: MessageStatus.PENDING,
        delivered: MessageStatus.DELIVERED,
    }


def test_replay_failed_needs_an_aware_since(client, alice):
    endpoint = create_endpoint(client, alice)
    response = client.post(
        f"/v1/webhook-endpoints/{endpoint['id']}/replay-failed",
        json={"since": "2026-11-24T10:00:00"},
        headers=alice.headers,
    )
    assert response.status_code == 422
    assert response.json["errors"][0]["field"] == "since"


def test_another_tenants_messages_are_invisible(client, alice, bob, db_session):
    create_endpoint(client, alice)
    cancel_a_job(client, alice)
    fan_out(db_session)
    (listed,) = messages(client, alice)["data"]

    assert messages(client, bob)["data"] == []
    for call, path in (
        (client.get, f"/v1/webhook-messages/{listed['id']}"),
        (client.post, f"/v1/webhook-messages/{listed['id']}/replay"),
    ):
        response = call(path, headers=bob.headers)
        assert response.status_code == 404
        assert response.json["code"] == "not_found"


def test_an_id_that_is_not_a_message_id_is_not_found(client, alice):
    assert client.get("/v1/webhook-messages/job_1", headers=alice.headers).status_code == 404


def test_a_batch_completed_message_carries_the_batch_as_get_batch_shows_it(
    client, alice, db_session
):
    create_endpoint(client, alice, event_types=["batch.completed"])
    batch = client.post(
        "/v1/batches", json={"jobs": [job_body(), job_body()]}, headers=alice.headers
    ).json
    for job in batch["jobs"]:
        client.post(f"/v1/jobs/{job['id']}/cancel", headers=alice.headers)
    fan_out(db_session)

    (message,) = messages(client, alice)["data"]

    assert message["type"] == "batch.completed"
    assert message["batch_id"] == batch["id"]
    shown = client.get(f"/v1/batches/{batch['id']}", headers=alice.headers).json
    assert message["payload"]["data"] == shown
    assert shown["counts"]["canceled"] == 2
