"""The pipeline end to end in-process: a job from queued to a stored video."""

from __future__ import annotations

import av

from models.jobs import JobStatus
from reelyard.storage import video_key
from tests.workers.pipeline_fixtures import (
    deps,
    drive,
    events,
    photos,
    pipeline_studio,
    studio,
    submit,
)

__all__ = ["deps", "photos", "pipeline_studio", "studio"]


def test_a_job_goes_from_queued_to_a_stored_video(db_session, deps, photos, studio):
    job_id = submit(
        db_session,
        photos.urls,
        "turn these photos into a short vertical video with the title 'Summer Sale'",
        {"aspect_ratio": "9:16", "duration_s": 6, "title": "Summer Sale"},
    )
    job = drive(deps, job_id)
    assert job.status is JobStatus.SUCCEEDED, (job.error_code, job.error_message)
    stored = deps.storage.path(video_key(job_id))
    assert stored is not None
    with av.open(str(stored)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.height > stream.codec_context.width
    assert job.video_url == f"http://api.test/v1/jobs/{job_id}/video"
    assert job.progress == 100
    log = [(e.type.value, e.message) for e in events(deps, job_id)]
    assert log[0] == ("created", "Job queued.")
    assert log[-1] == ("succeeded", "The video is ready.")
    assert any(kind == "message" and "Summer Sale" in (text or "") for kind, text in log)
    assert job.timeline is not None
    assert "Summer Sale" in job.timeline["summary"]
    ledger = studio.ledger()
    assert len(ledger["sessions"]) == 1
    assert all(len(s["messages"]) == 1 for s in ledger["sessions"].values())
    assert all(r["submissions"] == 1 for r in ledger["renders"].values())
