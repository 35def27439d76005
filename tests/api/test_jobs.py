"""``/v1/jobs``: create, read, list with filters and cursors, cancel, revise."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from models import Job, JobEvent, JobStatus
from models.base import utcnow
from models.jobs import finish_job
from tests.api.conftest import job_body, queued_tasks


def create(client, caller, **changes):
    response = client.post("/v1/jobs", json=job_body(**changes), headers=caller.headers)
    assert response.status_code == 202, response.json
    return response.json


def test_create_answers_202_with_the_queued_job(client, alice):
    body = create(
        client,
        alice,
        metadata={"order": "A-1"},
        webhook_url="https://hooks.example.com/r",
        options={"aspect_ratio": "9:16", "music": "off", "duration_s": 30, "title": "Summer"},
    )
    assert body["id"].startswith("job_")
    assert body["status"] == "queued"
    assert body["stage"] == "authorize"
    assert body["progress"] == 0
    assert body["metadata"] == {"order": "A-1"}
    assert body["options"] == {
        "aspect_ratio": "9:16",
        "resolution": "1080p",
        "music": "off",
        "duration_s": 30.0,
        "title": "Summer",
    }
    assert body["webhook_url"] == "https://hooks.example.com/r"
    assert body["result"] is None
    assert body["error"] is None


def test_create_stores_the_row_and_a_creation_event(client, alice, db_session):
    body = create(client, alice)
    job = db_session.get(Job, body["id"])
    assert job.tenant_id == alice.tenant_id
    assert job.image_urls == job_body()["images"]
    events = db_session.scalars(select(JobEvent).where(JobEvent.job_id == job.id)).all()
    assert [event.type.value for event in events] == ["created"]


def test_create_enqueues_the_first_stage_after_commit(client, alice, redis_client):
    body = create(client, alice)
    assert queued_tasks(redis_client) == [("reelyard.pipeline.run_stage", [body["id"]])]


def test_get_returns_the_job_with_its_metadata(client, alice):
    body = create(client, alice, metadata={"campaign": "spring"})
    response = client.get(f"/v1/jobs/{body['id']}", headers=alice.headers)
    assert response.status_code == 200
    assert response.json == body


@pytest.mark.parametrize("job_id", ["job_01JD3Q8X6R9V2M4K7T0B5N8C1W", "nope", "job_" + "x" * 300])
def test_an_unknown_or_malformed_id_is_404(client, alice, job_id):
    response = client.get(f"/v1/jobs/{job_id}", headers=alice.headers)
    assert response.status_code == 404
    assert response.json["code"] == "not_found"


def test_list_pages_through_every_job_newest_first(client, alice):
    ids = [create(client, alice)["id"] for _ in range(5)]
    seen, cursor = [], None
    while True:
        query = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/jobs", query_string=query, headers=alice.headers).json
        seen += [job["id"] for job in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(page["data"]) == 2
    assert seen == sorted(ids, reverse=True)


def test_list_rejects_a_cursor_it_did_not_issue(client, alice):
    response = client.get("/v1/jobs?cursor=zzz", headers=alice.headers)
    assert response.status_code == 422
    assert response.json["errors"][0]["code"] == "cursor_invalid"


def test_list_filters_by_status(client, alice, db_session):
    done = create(client, alice)["id"]
    live = create(client, alice)["id"]
    finish_job(db_session, done, JobStatus.CANCELED)
    db_session.commit()
    page = client.get("/v1/jobs?status=canceled", headers=alice.headers).json
    assert [job["id"] for job in page["data"]] == [done]
    page = client.get("/v1/jobs?status=queued&status=canceled", headers=alice.headers).json
    assert {job["id"] for job in page["data"]} == {done, live}


def test_list_filters_by_creation_time(client, alice, db_session):
    old = create(client, alice)["id"]
    new = create(client, alice)["id"]
    db_session.get(Job, old).created_at = utcnow() - timedelta(days=2)
    db_session.commit()
    since = (utcnow() - timedelta(days=1)).isoformat()
    page = client.get("/v1/jobs", query_string={"created_after": since}, headers=alice.headers)
    assert [job["id"] for job in page.json["data"]] == [new]
    page = client.get("/v1/jobs", query_string={"created_before": since}, headers=alice.headers)
    assert [job["id"] for job in page.json["data"]] == [old]


def test_list_refuses_an_empty_creation_range(client, alice):
    now = utcnow().isoformat()
    response = client.get(
        "/v1/jobs",
        query_string={"created_after": now, "created_before": now},
        headers=alice.headers,
    )
    assert response.status_code == 422
    assert response.json["errors"][0]["code"] == "created_range"


def test_list_filters_by_a_metadata_key_and_value(client, alice):
    wanted = create(client, alice, metadata={"customer": "c-7"})["id"]
    create(client, alice, metadata={"customer": "c-8"})
    create(client, alice)
    page = client.get(
        "/v1/jobs",
        query_string={"metadata_key": "customer", "metadata_value": "c-7"},
        headers=alice.headers,
    ).json
    assert [job["id"] for job in page["data"]] == [wanted]


def test_list_filters_by_batch(client, alice):
    create(client, alice)
    batch = client.post(
        "/v1/batches", json={"jobs": [job_body(), job_body()]}, headers=alice.headers
    ).json
    page = client.get("/v1/jobs", query_string={"batch_id": batch["id"]}, headers=alice.headers)
    assert {job["id"] for job in page.json["data"]} == {job["id"] for job in batch["jobs"]}


def test_cancel_moves_a_live_job_to_canceled(client, alice):
    job_id = create(client, alice)["id"]
    response = client.post(f"/v1/jobs/{job_id}/cancel", headers=alice.headers)
    assert response.status_code == 200
    assert response.json["status"] == "canceled"
    assert response.json["finished_at"] is not None


def test_cancel_is_idempotent(client, alice):
    job_id = create(client, alice)["id"]
    first = client.post(f"/v1/jobs/{job_id}/cancel", headers=alice.headers)
    again = client.post(f"/v1/jobs/{job_id}/cancel", headers=alice.headers)
    assert again.status_code == 200
    assert again.json == first.json


def test_cancel_on_a_finished_job_is_409_with_its_state(client, alice, db_session):
    job_id = create(client, alice)["id"]
    finish_job(db_session, job_id, JobStatus.FAILED, values={"error_code": "out_of_credits"})
    db_session.commit()
    response = client.post(f"/v1/jobs/{job_id}/cancel", headers=alice.headers)
    assert response.status_code == 409
    assert response.json["code"] == "job_terminal"
    assert response.json["errors"] == [
        {"field": "status", "code": "job_terminal", "message": "failed"}
    ]


def _succeed(db_session, job_id):
    job = db_session.get(Job, job_id)
    job.upstream_session_id = "sess-1"
    job.draft_after = {"t": []}
    finish_job(
        db_session,
        job_id,
        JobStatus.SUCCEEDED,
        values={"video_url": "https://videos.example.com/v.mp4", "video_width": 1920},
    )
    db_session.commit()


def test_a_succeeded_job_shows_its_video(client, alice, db_session):
    job_id = create(client, alice)["id"]
    _succeed(db_session, job_id)
    body = client.get(f"/v1/jobs/{job_id}", headers=alice.headers).json
    assert body["status"] == "succeeded"
    assert body["progress"] == 100
    assert body["result"]["url"] == "https://videos.example.com/v.mp4"
    assert body["result"]["width"] == 1920


def test_a_revision_of_a_succeeded_job_links_its_parent(client, alice, db_session):
    parent = create(client, alice, metadata={"order": "9"}, options={"aspect_ratio": "1:1"})
    _succeed(db_session, parent["id"])
    response = client.post(
        f"/v1/jobs/{parent['id']}/revisions",
        json={"prompt": "Make the title bigger.", "options": {"music": "off"}},
        headers=alice.headers,
    )
    assert response.status_code == 202, response.json
    revision = response.json
    assert revision["parent_id"] == parent["id"]
    assert revision["status"] == "queued"
    assert revision["prompt"] == "Make the title bigger."
    assert revision["images"] == parent["images"]
    assert revision["metadata"] == {"order": "9"}
    assert revision["options"]["aspect_ratio"] == "1:1"
    assert revision["options"]["music"] == "off"
    row = db_session.get(Job, revision["id"])
    assert row.upstream_session_id == "sess-1"
    assert row.draft_before == {"t": []}


@pytest.mark.parametrize("status", ["queued", "canceled"])
def test_a_revision_of_a_job_that_did_not_succeed_is_409(client, alice, status):
    job_id = create(client, alice)["id"]
    if status == "canceled":
        client.post(f"/v1/jobs/{job_id}/cancel", headers=alice.headers)
    response = client.post(
        f"/v1/jobs/{job_id}/revisions", json={"prompt": "again"}, headers=alice.headers
    )
    assert response.status_code == 409
    assert response.json["code"] == "parent_not_succeeded"


def test_a_revision_validates_its_prompt(client, alice):
    job_id = create(client, alice)["id"]
    response = client.post(
        f"/v1/jobs/{job_id}/revisions", json={"prompt": ""}, headers=alice.headers
    )
    assert response.status_code == 422
    assert response.json["errors"][0]["code"] == "prompt_length"
