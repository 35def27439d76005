"""``/v1/batches``: up to 100 jobs, all or none, counts per status."""

from __future__ import annotations

from sqlalchemy import func, select

from models import Job
from tests.api.conftest import job_body, queued_tasks


def test_a_batch_creates_every_job_and_enqueues_each(client, alice, redis_client):
    response = client.post(
        "/v1/batches", json={"jobs": [job_body(), job_body(prompt="two")]}, headers=alice.headers
    )
    assert response.status_code == 202, response.json
    body = response.json
    assert body["job_count"] == 2
    assert body["counts"]["queued"] == 2
    assert [job["batch_id"] for job in body["jobs"]] == [body["id"]] * 2
    assert {args[0] for _name, args in queued_tasks(redis_client)} == {
        job["id"] for job in body["jobs"]
    }


def test_one_invalid_job_creates_none_and_names_each_error(client, alice, db_session):
    before = db_session.scalar(select(func.count()).select_from(Job))
    jobs = [job_body(), job_body(images=["ftp://x.example.com/a.jpg"]), job_body(prompt="")]
    response = client.post("/v1/batches", json={"jobs": jobs}, headers=alice.headers)
    assert response.status_code == 422
    assert {(e["field"], e["code"]) for e in response.json["errors"]} == {
        ("jobs.1.images.0", "url_scheme"),
        ("jobs.2.prompt", "prompt_length"),
    }
    assert db_session.scalar(select(func.count()).select_from(Job)) == before


def test_a_batch_holds_1_to_100_jobs(client, alice):
    for jobs in ([], [job_body()] * 101):
        response = client.post("/v1/batches", json={"jobs": jobs}, headers=alice.headers)
        assert response.status_code == 422
        assert response.json["errors"][0]["code"] == "batch_size"
    response = client.post("/v1/batches", json={"jobs": [job_body()] * 100}, headers=alice.headers)
    assert response.status_code == 202


def test_get_counts_jobs_per_status(client, alice):
    batch = client.post(
        "/v1/batches", json={"jobs": [job_body(), job_body()]}, headers=alice.headers
    ).json
    client.post(f"/v1/jobs/{batch['jobs'][0]['id']}/cancel", headers=alice.headers)
    response = client.get(f"/v1/batches/{batch['id']}", headers=alice.headers)
    assert response.status_code == 200
    assert response.json["counts"] == {
        "queued": 1,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "canceled": 1,
    }


def test_an_unknown_batch_is_404(client, alice):
    for batch_id in ["bat_01JD3Q8X6R9V2M4K7T0B5N8C1W", "junk"]:
        response = client.get(f"/v1/batches/{batch_id}", headers=alice.headers)
        assert response.status_code == 404
        assert response.json["code"] == "not_found"
