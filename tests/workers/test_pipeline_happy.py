"""The pipeline end to end in-process: a job from queued to a stored video."""

from __future__ import annotations

from datetime import timedelta

import av

from models.base import utcnow
from models.jobs import JobStatus
from models.upstream import CREDENTIALS_ROW, UpstreamCredentials
from nemo import Credits
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
from workers.upstream import credits_due, record_credits

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


def test_the_credit_balance_is_read_once_per_period_in_a_process(deps):
    now = utcnow()
    with deps.sessions() as session:
        session.merge(
            UpstreamCredentials(id=CREDENTIALS_ROW, client_id="c", credits_checked_at=None)
        )
        session.commit()
    assert credits_due(deps.sessions, deps.upstream, 3600, now)  # never read: due
    record_credits(
        deps.sessions, deps.upstream, Credits(available=420, frozen=0, total=420), now=now
    )

    def no_database() -> None:
        raise AssertionError("the row was read again")

    later = now + timedelta(minutes=59)
    assert not credits_due(no_database, deps.upstream, 3600, later)  # type: ignore[arg-type]
    assert credits_due(deps.sessions, deps.upstream, 3600, now + timedelta(hours=1))
    with deps.sessions() as session:
        row = session.get(UpstreamCredentials, CREDENTIALS_ROW)
        assert row is not None
        assert (row.credits_balance, row.credits_checked_at) == (420, now)
