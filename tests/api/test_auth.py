"""API keys and tenant isolation: another tenant's resources do not exist for you."""

from __future__ import annotations

import dataclasses
import time

import pytest
from sqlalchemy import select

from api.app import create_app
from models import ApiKey, Job, JobStatus
from models.access import revoke_key
from models.jobs import finish_job
from tests.api.conftest import job_body, make_caller


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Basic dXNlcjpwdw==",
        "Bearer ry_0123456789ab_notthesecret",
        "Bearer not-a-key",
    ],
)
def test_a_missing_or_wrong_key_is_401(client, alice, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.get("/v1/jobs", headers=headers)
    assert response.status_code == 401
    assert response.json["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_key_with_the_right_prefix_and_a_wrong_secret_is_401(client, alice):
    forged = alice.key[:-4] + ("AAAA" if not alice.key.endswith("AAAA") else "BBBB")
    response = client.get("/v1/jobs", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


def test_a_revoked_key_is_401(client, alice, db_session):
    assert client.get("/v1/jobs", headers=alice.headers).status_code == 200
    revoke_key(db_session, alice.prefix)
    db_session.commit()
    assert client.get("/v1/jobs", headers=alice.headers).status_code == 401


def test_the_key_itself_is_never_stored(client, alice, db_session):
    row = db_session.scalar(select(ApiKey).where(ApiKey.prefix == alice.prefix))
    assert alice.key not in {str(value) for value in vars(row).values()}
    assert len(row.key_hash) == 64


def test_using_a_key_records_when(client, alice, db_session):
    client.get("/v1/jobs", headers=alice.headers)
    row = db_session.scalar(select(ApiKey).where(ApiKey.prefix == alice.prefix))
    db_session.refresh(row)
    assert row.last_used_at is not None


@pytest.fixture
def alices_things(client, alice, db_session):
    job = client.post("/v1/jobs", json=job_body(), headers=alice.headers).json
    done = client.post("/v1/jobs", json=job_body(), headers=alice.headers).json
    finish_job(
        db_session, done["id"], JobStatus.SUCCEEDED, values={"video_url": "https://v.example/x"}
    )
    db_session.commit()
    batch = client.post("/v1/batches", json={"jobs": [job_body()]}, headers=alice.headers).json
    return {"job": job["id"], "done": done["id"], "batch": batch["id"]}


@pytest.mark.parametrize(
    "request_",
    [
        ("get", "/v1/jobs/{job}", None),
        ("post", "/v1/jobs/{job}/cancel", None),
        ("get", "/v1/jobs/{job}/events", None),
        ("post", "/v1/jobs/{done}/revisions", {"prompt": "mine now"}),
        ("get", "/v1/batches/{batch}", None),
    ],
)
def test_another_tenants_resource_is_404(client, bob, alices_things, request_):
    method, path, body = request_
    response = getattr(client, method)(path.format(**alices_things), json=body, headers=bob.headers)
    assert response.status_code == 404
    assert response.json["code"] == "not_found"


def test_another_tenants_cancel_changes_nothing(client, alice, bob, alices_things, db_session):
    client.post(f"/v1/jobs/{alices_things['job']}/cancel", headers=bob.headers)
    assert db_session.get(Job, alices_things["job"]).status is JobStatus.QUEUED


def test_lists_show_only_your_own_jobs(client, alice, bob, alices_things):
    mine = client.post("/v1/jobs", json=job_body(), headers=bob.headers).json["id"]
    page = client.get("/v1/jobs?limit=100", headers=bob.headers).json
    assert [job["id"] for job in page["data"]] == [mine]
    by_batch = client.get(
        "/v1/jobs", query_string={"batch_id": alices_things["batch"]}, headers=bob.headers
    ).json
    assert by_batch["data"] == []


def test_the_same_metadata_in_two_tenants_stays_apart(client, alice, bob):
    client.post("/v1/jobs", json=job_body(metadata={"o": "1"}), headers=alice.headers)
    page = client.get(
        "/v1/jobs",
        query_string={"metadata_key": "o", "metadata_value": "1"},
        headers=bob.headers,
    ).json
    assert page["data"] == []


def test_a_cached_key_stops_working_when_its_cache_entry_expires(
    settings, session_factory, db_session, monkeypatch
):
    caller = make_caller(db_session, "Cached")
    cached = create_app(
        dataclasses.replace(settings, auth_cache_s=30), session_factory=session_factory
    )
    client = cached.test_client()
    assert client.get("/v1/jobs", headers=caller.headers).status_code == 200
    revoke_key(db_session, caller.prefix)
    db_session.commit()
    # within the cache's lifetime the process still trusts the key it verified...
    assert client.get("/v1/jobs", headers=caller.headers).status_code == 200
    # ...and asks the database again once the entry is older than that
    real_monotonic = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real_monotonic() + 31)
    assert client.get("/v1/jobs", headers=caller.headers).status_code == 401


def test_a_wrong_key_is_never_cached(settings, session_factory, alice):
    cached = create_app(
        dataclasses.replace(settings, auth_cache_s=30), session_factory=session_factory
    )
    client = cached.test_client()
    wrong = {"Authorization": f"Bearer {alice.key[:-1]}x"}
    assert client.get("/v1/jobs", headers=wrong).status_code == 401
    assert client.get("/v1/jobs", headers=wrong).status_code == 401
