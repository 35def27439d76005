"""``GET /v1/jobs/{id}/video``: the stored video, with ranges; and cancel stopping renders."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from api.app import create_app
from models import Job, JobStatus
from models.jobs import finish_job
from reelyard.storage import LocalStorage, video_key
from tests.api.conftest import queued_tasks
from tests.api.test_jobs import create
from workers.app import CANCEL_RENDER_TASK

VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40


@pytest.fixture
def app(settings, session_factory, redis_client, tmp_path):
    settings = dataclasses.replace(settings, storage_dir=tmp_path / "videos")
    return create_app(settings, session_factory=session_factory)


@pytest.fixture
def storage(app):
    return LocalStorage(app.extensions["reelyard.settings"].storage_dir)


@pytest.fixture
def succeed(db_session, storage, tmp_path):
    return lambda job_id, *, store=True: _succeed(db_session, storage, tmp_path, job_id, store)


def _succeed(db_session, storage, tmp_path, job_id, store):
    if store:
        source = tmp_path / "video.mp4"
        source.write_bytes(VIDEO)
        storage.put(video_key(job_id), source)
    finish_job(
        db_session,
        job_id,
        JobStatus.SUCCEEDED,
        values={
            "video_url": f"http://api.test/v1/jobs/{job_id}/video",
            "video_sha256": hashlib.sha256(VIDEO).hexdigest(),
            "video_size_bytes": len(VIDEO),
        },
    )
    db_session.commit()


def test_the_video_of_a_succeeded_job_is_served_whole(client, alice, succeed):
    job_id = create(client, alice)["id"]
    succeed(job_id)
    response = client.get(f"/v1/jobs/{job_id}/video", headers=alice.headers)
    assert response.status_code == 200
    assert response.mimetype == "video/mp4"
    assert response.data == VIDEO
    assert response.headers["ETag"].strip('"') == hashlib.sha256(VIDEO).hexdigest()
    assert response.headers["Accept-Ranges"] == "bytes"
    response.close()


def test_a_byte_range_is_served_as_206(client, alice, succeed):
    job_id = create(client, alice)["id"]
    succeed(job_id)
    response = client.get(
        f"/v1/jobs/{job_id}/video", headers={**alice.headers, "Range": "bytes=100-199"}
    )
    assert response.status_code == 206
    assert response.data == VIDEO[100:200]
    assert response.headers["Content-Range"] == f"bytes 100-199/{len(VIDEO)}"
    response.close()


def test_a_job_that_has_not_succeeded_has_no_video_yet(client, alice):
    job_id = create(client, alice)["id"]
    response = client.get(f"/v1/jobs/{job_id}/video", headers=alice.headers)
    assert response.status_code == 409
    assert response.json["code"] == "video_not_ready"


def test_a_video_missing_from_storage_is_410(client, alice, succeed):
    job_id = create(client, alice)["id"]
    succeed(job_id, store=False)
    response = client.get(f"/v1/jobs/{job_id}/video", headers=alice.headers)
    assert response.status_code == 410
    assert response.json["code"] == "video_gone"


def test_another_tenants_video_is_404(client, alice, bob, succeed):
    job_id = create(client, alice)["id"]
    succeed(job_id)
    response = client.get(f"/v1/jobs/{job_id}/video", headers=bob.headers)
    assert response.status_code == 404
    assert response.json["code"] == "not_found"


def test_the_job_shows_what_the_video_will_contain(client, alice, db_session):
    job_id = create(client, alice)["id"]
    job = db_session.get(Job, job_id)
    job.timeline = {"summary": "Timeline (1 track): 1. Video: 3 clips (0-6s)", "duration_s": 6}
    db_session.commit()
    body = client.get(f"/v1/jobs/{job_id}", headers=alice.headers).json
    assert body["timeline"] == job.timeline


def test_canceling_a_job_with_a_render_asks_for_its_cancel_upstream(
    client, alice, db_session, redis_client
):
    job_id = create(client, alice)["id"]
    job = db_session.get(Job, job_id)
    job.render_id, job.render_status = f"render_{job_id}_1", "processing"
    db_session.commit()
    redis_client.delete("pipeline")
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=alice.headers).status_code == 200
    assert queued_tasks(redis_client) == [(CANCEL_RENDER_TASK, [job_id])]


def test_canceling_a_job_without_a_render_asks_nothing_upstream(client, alice, redis_client):
    job_id = create(client, alice)["id"]
    redis_client.delete("pipeline")
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=alice.headers).status_code == 200
    assert queued_tasks(redis_client) == []
