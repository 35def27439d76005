"""``/v1/webhook-endpoints`` and ``/v1/webhook-secret``: registration, SSRF refusals,
updates, rotation, tenant scoping."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest

from api.app import create_app
from models import WebhookEndpoint, WebhookMessage
from models.base import utcnow
from models.webhooks import MAX_ENDPOINTS_PER_TENANT, signing_secrets
from tests.api.webhook_fixtures import HOOK, create_endpoint, dns

__all__ = ["dns"]

pytestmark = pytest.mark.usefixtures("dns")


def test_create_answers_201_with_the_secret_shown_once(client, alice):
    body = create_endpoint(
        client, alice, description="CRM", event_types=["job.succeeded", "job.progress"]
    )
    assert body["id"].startswith("we_")
    assert body["object"] == "webhook_endpoint"
    assert body["secret"].startswith("whsec_")
    assert body["url"] == HOOK
    assert body["description"] == "CRM"
    assert body["event_types"] == ["job.succeeded", "job.progress"]
    assert body["enabled"] is True
    assert body["disabled_reason"] is None

    shown = client.get(f"/v1/webhook-endpoints/{body['id']}", headers=alice.headers)
    assert shown.status_code == 200
    assert "secret" not in shown.json
    listed = client.get("/v1/webhook-endpoints", headers=alice.headers).json["data"]
    assert [item["id"] for item in listed] == [body["id"]]
    assert "secret" not in listed[0]


def test_an_endpoint_defaults_to_every_event_but_progress(client, alice):
    assert create_endpoint(client, alice)["event_types"] == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost/hook",
        "http://10.0.0.1/hook",
        "http://172.16.5.4/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://100.64.0.1/hook",
        "http://224.0.0.1/hook",
        "http://0.0.0.0/hook",
        "http://[::1]/hook",
        "http://[::]/hook",
        "http://[fc00::1]/hook",
        "http://[fe80::1]/hook",
        "http://[ff02::1]/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://2130706433/hook",
        "http://0x7f.1/hook",
        "http://017700000001/hook",
        "https://internal.example.com/hook",
    ],
)
def test_a_url_that_does_not_reach_a_public_address_is_refused(client, alice, url):
    response = client.post("/v1/webhook-endpoints", json={"url": url}, headers=alice.headers)
    assert response.status_code == 422, response.json
    assert response.json["code"] == "validation_failed"
    (error,) = response.json["errors"]
    assert (error["field"], error["code"]) == ("url", "url_refused")
    assert "public" in error["message"]


def test_a_name_that_does_not_resolve_is_refused_with_the_reason(client, alice):
    response = client.post(
        "/v1/webhook-endpoints",
        json={"url": "https://nowhere.invalid/hook"},
        headers=alice.headers,
    )
    assert response.status_code == 422
    assert response.json["errors"][0]["code"] == "url_refused"
    assert "cannot resolve" in response.json["errors"][0]["message"]


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://hooks.example.com/x", "url_scheme"),
        ("https://user:pw@hooks.example.com/x", "url_credentials"),
        ("https://hooks.example.com/" + "x" * 2048, "url_too_long"),
        ("not a url", "url_invalid"),
    ],
)
def test_a_malformed_url_is_refused_by_rule(client, alice, url, code):
    response = client.post("/v1/webhook-endpoints", json={"url": url}, headers=alice.headers)
    assert response.status_code == 422
    assert [(e["field"], e["code"]) for e in response.json["errors"]] == [("url", code)]


def test_private_addresses_are_accepted_when_the_setting_allows_them(
    settings, session_factory, redis_client, alice
):
    allowing = dataclasses.replace(settings, allow_private_urls=True)
    client = create_app(allowing, session_factory=session_factory).test_client()
    response = client.post(
        "/v1/webhook-endpoints", json={"url": "http://127.0.0.1:8080/hook"}, headers=alice.headers
    )
    assert response.status_code == 201, response.json


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"event_types": ["job.exploded"]}, "event_types.0", "event_type"),
        ({"description": "x" * 501}, "description", "description_length"),
        ({"secret": "whsec_mine"}, "secret", "unknown_field"),
        ({"enabled": "maybe"}, "enabled", "invalid_type"),
    ],
)
def test_invalid_fields_are_refused_by_rule(client, alice, changes, field, code):
    response = client.post(
        "/v1/webhook-endpoints", json={"url": HOOK, **changes}, headers=alice.headers
    )
    assert response.status_code == 422
    assert [(e["field"], e["code"]) for e in response.json["errors"]] == [(field, code)]


def test_a_tenant_has_at_most_the_limit_of_endpoints(client, alice):
    for _ in range(MAX_ENDPOINTS_PER_TENANT):
        create_endpoint(client, alice)
    response = client.post("/v1/webhook-endpoints", json={"url": HOOK}, headers=alice.headers)
    assert response.status_code == 409
    assert response.json["code"] == "endpoint_limit"


def test_the_list_is_newest_first_with_a_cursor(client, alice):
    ids = [create_endpoint(client, alice)["id"] for _ in range(3)]
    first = client.get("/v1/webhook-endpoints?limit=2", headers=alice.headers).json
    assert [item["id"] for item in first["data"]] == ids[::-1][:2]
    second = client.get(
        f"/v1/webhook-endpoints?limit=2&cursor={first['next_cursor']}", headers=alice.headers
    ).json
    assert [item["id"] for item in second["data"]] == [ids[0]]
    assert second["next_cursor"] is None


def test_a_cursor_that_is_not_an_endpoint_id_is_refused(client, alice):
    response = client.get("/v1/webhook-endpoints?cursor=job_1", headers=alice.headers)
    assert response.status_code == 422
    assert response.json["errors"][0]["code"] == "cursor_invalid"


def test_patch_changes_the_fields_given(client, alice):
    endpoint = create_endpoint(client, alice)
    response = client.patch(
        f"/v1/webhook-endpoints/{endpoint['id']}",
        json={
            "url": "https://hooks.example.com/v2",
            "description": None,
            "event_types": ["job.failed"],
        },
        headers=alice.headers,
    )
    assert response.status_code == 200, response.json
    assert response.json["url"] == "https://hooks.example.com/v2"
    assert response.json["event_types"] == ["job.failed"]
    assert response.json["enabled"] is True


def test_patch_checks_a_new_url_like_registration(client, alice):
    endpoint = create_endpoint(client, alice)
    response = client.patch(
        f"/v1/webhook-endpoints/{endpoint['id']}",
        json={"url": "http://[::ffff:127.0.0.1]/"},
        headers=alice.headers,
    )
    assert response.status_code == 422
    assert response.json["errors"][0]["code"] == "url_refused"


def test_enabling_again_clears_why_delivery_disabled_it(client, alice, db_session):
    endpoint = create_endpoint(client, alice)
    row = db_session.get(WebhookEndpoint, endpoint["id"])
    row.enabled = False
    row.disabled_reason = "410 Gone"
    row.failing_since = utcnow()
    db_session.commit()
    shown = client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=alice.headers).json
    assert (shown["enabled"], shown["disabled_reason"]) == (False, "410 Gone")

    response = client.patch(
        f"/v1/webhook-endpoints/{endpoint['id']}", json={"enabled": True}, headers=alice.headers
    )
    assert response.status_code == 200
    assert response.json["enabled"] is True
    assert response.json["disabled_reason"] is None
    assert response.json["failing_since"] is None


def test_delete_answers_204_and_the_endpoint_is_gone(client, alice):
    endpoint = create_endpoint(client, alice)
    path = f"/v1/webhook-endpoints/{endpoint['id']}"
    assert client.delete(path, headers=alice.headers).status_code == 204
    assert client.get(path, headers=alice.headers).status_code == 404


def test_rotate_shows_a_new_secret_and_both_sign_during_the_overlap(client, alice, db_session):
    endpoint = create_endpoint(client, alice)
    before = utcnow()
    response = client.post(f"/v1/webhook-endpoints/{endpoint['id']}/rotate", headers=alice.headers)
    assert response.status_code == 200
    rotated = response.json
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != endpoint["secret"]
    expires = datetime.fromisoformat(rotated["previous_secret_expires_at"])
    assert before + timedelta(hours=24) <= expires <= utcnow() + timedelta(hours=24)
    message = WebhookMessage(endpoint_id=endpoint["id"], tenant_id=alice.tenant_id)
    assert signing_secrets(db_session, message, utcnow()) == [
        rotated["secret"],
        endpoint["secret"],
    ]


@pytest.mark.parametrize(
    "request_",
    [
        ("get", "", None),
        ("patch", "", {"enabled": False}),
        ("delete", "", None),
        ("post", "/rotate", None),
        ("post", "/replay-failed", {"since": "2026-01-01T00:00:00Z"}),
    ],
)
def test_another_tenants_endpoint_is_not_found(client, alice, bob, request_):
    method, suffix, body = request_
    endpoint = create_endpoint(client, alice)
    call = getattr(client, method)
    kwargs = {"json": body} if body is not None else {}
    response = call(
        f"/v1/webhook-endpoints/{endpoint['id']}{suffix}", headers=bob.headers, **kwargs
    )
    assert response.status_code == 404
    assert response.json["code"] == "not_found"
    assert client.get(f"/v1/webhook-endpoints/{endpoint['id']}", headers=alice.headers).json[
        "enabled"
    ]


def test_an_id_that_is_not_an_endpoint_id_is_not_found(client, alice):
    response = client.get("/v1/webhook-endpoints/nope", headers=alice.headers)
    assert response.status_code == 404


def test_the_tenant_secret_is_made_and_shown_by_its_rotation(client, alice):
    before = client.get("/v1/webhook-secret", headers=alice.headers)
    assert before.status_code == 200
    assert before.json == {"exists": False, "rotated_at": None, "previous_secret_expires_at": None}

    first = client.post("/v1/webhook-secret/rotate", headers=alice.headers)
    assert first.status_code == 200
    assert first.json["secret"].startswith("whsec_")
    assert first.json["previous_secret_expires_at"] is None

    shown = client.get("/v1/webhook-secret", headers=alice.headers).json
    assert shown["exists"] is True
    assert "secret" not in shown

    second = client.post("/v1/webhook-secret/rotate", headers=alice.headers).json
    assert second["secret"] != first.json["secret"]
    assert second["previous_secret_expires_at"] is not None


def test_a_creation_retried_with_its_idempotency_key_makes_one_endpoint(client, alice):
    headers = {**alice.headers, "Idempotency-Key": "endpoint-1"}
    first = client.post("/v1/webhook-endpoints", json={"url": HOOK}, headers=headers)
    again = client.post("/v1/webhook-endpoints", json={"url": HOOK}, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json == first.json
    listed = client.get("/v1/webhook-endpoints", headers=alice.headers).json["data"]
    assert [item["id"] for item in listed] == [first.json["id"]]
