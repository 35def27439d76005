"""Credits, health, readiness, the OpenAPI document and the offline docs UI."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from api.app import create_app
from models import UpstreamCredentials


def test_healthz_needs_no_key(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json["status"] == "ok"


def test_readyz_checks_the_database_and_the_broker(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json["checks"] == {"database": "ok", "broker": "ok"}


def test_readyz_is_503_when_the_broker_is_down(settings, session_factory):
    dead = dataclasses.replace(settings, broker_url="redis://127.0.0.1:1/0")
    response = create_app(dead, session_factory=session_factory).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"] == {"database": "ok", "broker": "down"}


def test_readyz_is_503_when_the_database_is_down(settings, redis_client):
    dead = dataclasses.replace(settings, database_url="postgresql://postgres@127.0.0.1:1/x")
    response = create_app(dead).test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["database"] == "down"


def test_credits_are_null_until_the_pipeline_reads_them(client, alice):
    response = client.get("/v1/credits", headers=alice.headers)
    assert response.status_code == 200
    assert response.json == {"balance": None, "checked_at": None}


def test_credits_show_the_balance_the_pipeline_read(client, alice, db_session):
    checked = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    db_session.merge(UpstreamCredentials(id=1, credits_balance=420, credits_checked_at=checked))
    db_session.commit()
    response = client.get("/v1/credits", headers=alice.headers)
    assert response.json == {"balance": 420, "checked_at": "2026-01-02T03:04:05+00:00"}


def test_credits_need_a_key(client):
    assert client.get("/v1/credits").status_code == 401


def test_openapi_describes_every_endpoint_and_the_security_scheme(client):
    spec = client.get("/openapi.json").json
    assert set(spec["paths"]) == {
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/video",
        "/v1/jobs/{job_id}/cancel",
        "/v1/jobs/{job_id}/revisions",
        "/v1/jobs/{job_id}/events",
        "/v1/batches",
        "/v1/batches/{batch_id}",
        "/v1/webhook-endpoints",
        "/v1/webhook-endpoints/{endpoint_id}",
        "/v1/webhook-endpoints/{endpoint_id}/rotate",
        "/v1/webhook-endpoints/{endpoint_id}/replay-failed",
        "/v1/webhook-messages",
        "/v1/webhook-messages/{message_id}",
        "/v1/webhook-messages/{message_id}/replay",
        "/v1/webhook-secret",
        "/v1/webhook-secret/rotate",
        "/v1/credits",
        "/healthz",
        "/readyz",
    }
    assert spec["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert set(spec["components"]["schemas"]["ErrorOut"]["properties"]) == {
        "code",
        "status",
        "message",
        "errors",
    }
    events = spec["paths"]["/v1/jobs/{job_id}/events"]["get"]["responses"]["200"]["content"]
    assert set(events) == {"application/json", "text/event-stream"}


def test_the_docs_ui_is_served_from_the_package(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assert "/openapi.json" in page.get_data(as_text=True)
    assert "//" not in page.get_data(as_text=True).replace("http://", "").split("<script>")[0]
    script = client.get("/docs/assets/swagger-ui-bundle.js")
    assert script.status_code == 200
    assert len(script.data) > 100_000
    script.close()
