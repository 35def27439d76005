"""``Idempotency-Key``: replay, 422 for another request, 409 while the first runs."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

import api.jobs
from models import IdempotencyKey, Job
from tests.api.conftest import job_body, queued_tasks


def post(client, caller, body, key):
    return client.post("/v1/jobs", json=body, headers={**caller.headers, "Idempotency-Key": key})


def test_the_same_key_and_request_replay_the_first_response(client, alice, redis_client):
    first = post(client, alice, job_body(), "order-1")
    again = post(client, alice, job_body(), "order-1")
    assert first.status_code == again.status_code == 202
    assert again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(queued_tasks(redis_client)) == 1


def test_a_replay_creates_no_second_job(client, alice, db_session):
    post(client, alice, job_body(), "order-1")
    post(client, alice, job_body(), "order-1")
    count = db_session.scalar(
        select(func.count()).select_from(Job).where(Job.tenant_id == alice.tenant_id)
    )
    assert count == 1


def test_the_same_key_with_another_request_is_422(client, alice):
    post(client, alice, job_body(), "order-1")
    response = post(client, alice, job_body(prompt="something else"), "order-1")
    assert response.status_code == 422
    assert response.json["code"] == "idempotency_key_mismatch"


def test_keys_belong_to_one_tenant(client, alice, bob):
    mine = post(client, alice, job_body(), "order-1").json
    theirs = post(client, bob, job_body(), "order-1")
    assert theirs.status_code == 202
    assert theirs.json["id"] != mine["id"]


def test_batches_and_revisions_replay_too(client, alice):
    body = {"jobs": [job_body()]}
    headers = {**alice.headers, "Idempotency-Key": "batch-1"}
    first = client.post("/v1/batches", json=body, headers=headers)
    again = client.post("/v1/batches", json=body, headers=headers)
    assert again.status_code == 202
    assert again.json == first.json


def test_a_failed_request_frees_its_key(client, alice, db_session):
    job_id = post(client, alice, job_body(), "job-key").json["id"]
    response = client.post(
        f"/v1/jobs/{job_id}/revisions",
        json={"prompt": "again"},
        headers={**alice.headers, "Idempotency-Key": "rev-1"},
    )
    assert response.status_code == 409
    assert db_session.scalar(select(IdempotencyKey).where(IdempotencyKey.key == "rev-1")) is None


def test_a_second_request_while_the_first_runs_is_409(committed_app, committed_caller, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    real_create_jobs = api.jobs.create_jobs

    def slow_create_jobs(*args, **kwargs):
        entered.set()
        assert release.wait(10)
        return real_create_jobs(*args, **kwargs)

    monkeypatch.setattr(api.jobs, "create_jobs", slow_create_jobs)
    results = {}

    def first():
        results["first"] = post(committed_app.test_client(), committed_caller, job_body(), "k")

    def second():
        results["second"] = post(committed_app.test_client(), committed_caller, job_body(), "k")

    one = threading.Thread(target=first)
    one.start()
    assert entered.wait(10)
    two = threading.Thread(target=second)
    two.start()
    two.join(10)
    release.set()
    one.join(10)
    assert results["second"].status_code == 409
    assert results["second"].json["code"] == "idempotency_key_in_use"
    assert results["first"].status_code == 202
    replay = post(committed_app.test_client(), committed_caller, job_body(), "k")
    assert replay.json["id"] == results["first"].json["id"]


def test_racing_requests_with_one_key_create_one_job(committed_app, committed_caller, engine):
    barrier = threading.Barrier(4)
    responses = []

    def send():
        client = committed_app.test_client()
        barrier.wait(10)
        responses.append(post(client, committed_caller, job_body(), "race"))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert len(responses) == 4
    assert {r.status_code for r in responses} <= {202, 409}
    ids = {r.json["id"] for r in responses if r.status_code == 202}
    assert len(ids) == 1
    with engine.connect() as connection:
        count = connection.scalar(
            select(func.count()).select_from(Job).where(Job.tenant_id == committed_caller.tenant_id)
        )
    assert count == 1
