"""One error shape for everything; 413, 415, 405, 429, 500; a dead broker is not an error."""

from __future__ import annotations

import dataclasses
import time

import pytest

import api.jobs
from api.app import MAX_BODY_BYTES, create_app
from models import Job
from tests.api.conftest import job_body, make_caller

SHAPE = {"code", "status", "message", "errors"}


def test_an_unknown_path_is_404_in_the_shape(client):
    response = client.get("/v2/nothing")
    assert response.status_code == 404
    assert set(response.json) == SHAPE
    assert response.json["code"] == "not_found"


def test_a_wrong_method_is_405_with_allow(client, alice):
    response = client.delete("/v1/jobs", headers=alice.headers)
    assert response.status_code == 405
    assert response.json["code"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


def test_an_oversized_body_is_413(client, alice):
    body = b'{"prompt": "' + b"x" * MAX_BODY_BYTES + b'"}'
    response = client.post(
        "/v1/jobs", data=body, headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json["code"] == "payload_too_large"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_body_that_is_not_json_is_415(client, alice, content_type):
    response = client.post(
        "/v1/jobs", data="images=a", headers={**alice.headers, "Content-Type": content_type}
    )
    assert response.status_code == 415
    assert response.json["code"] == "unsupported_media_type"


def test_exceeding_the_tenants_rate_is_429_with_retry_after(app, client, db_session):
    caller = make_caller(db_session, "Chatty", rate_limit="2/minute")
    statuses = [client.get("/v1/jobs", headers=caller.headers).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    response = client.get("/v1/jobs", headers=caller.headers)
    assert response.json["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= 60


def test_rate_limits_count_per_tenant(app, client, db_session, alice):
    caller = make_caller(db_session, "Chatty", rate_limit="1/minute")
    client.get("/v1/jobs", headers=caller.headers)
    assert client.get("/v1/jobs", headers=caller.headers).status_code == 429
    assert client.get("/v1/jobs", headers=alice.headers).status_code == 200


def test_a_bug_is_a_500_in_the_shape_without_a_trace(client, alice, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(api.jobs, "create_jobs", broken)
    response = client.post("/v1/jobs", json=job_body(), headers=alice.headers)
    assert response.status_code == 500
    assert response.json["code"] == "internal_error"
    assert "secret internals" not in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)


def test_a_dead_broker_still_gives_202_and_the_row(settings, session_factory, db_session, alice):
    dead = dataclasses.replace(settings, broker_url="redis://127.0.0.1:1/0")
    client = create_app(dead, session_factory=session_factory).test_client()
    started = time.monotonic()
    response = client.post("/v1/jobs", json=job_body(), headers=alice.headers)
    assert response.status_code == 202
    assert time.monotonic() - started < 5
    assert db_session.get(Job, response.json["id"]) is not None


def test_a_dead_rate_limit_store_does_not_fail_requests(settings, session_factory, alice):
    dead = dataclasses.replace(settings, redis_url="redis://127.0.0.1:1/0")
    client = create_app(dead, session_factory=session_factory).test_client()
    assert client.get("/v1/jobs", headers=alice.headers).status_code == 200
