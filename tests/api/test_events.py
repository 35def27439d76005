"""A job's event log: JSON pages and a resumable Server-Sent-Events stream."""

from __future__ import annotations

import dataclasses
import json

import pytest

from api.app import create_app
from models import JobStatus
from models.jobs import EventType, add_event, finish_job
from tests.api.conftest import job_body

SSE = {"Accept": "text/event-stream"}


@pytest.fixture
def job_id(client, alice, db_session):
    job_id = client.post("/v1/jobs", json=job_body(), headers=alice.headers).json["id"]
    add_event(db_session, job_id, EventType.STAGE, message="Uploading 1 photo.")
    add_event(db_session, job_id, EventType.PROGRESS, progress=30)
    add_event(db_session, job_id, EventType.MESSAGE, message="I slowed the transitions down.")
    db_session.commit()
    return job_id


def parse(stream_text):
    events = []
    for block in stream_text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "data" in fields:
            events.append((int(fields["id"]), fields["event"], json.loads(fields["data"])))
    return events


def test_the_log_as_json_in_order(client, alice, job_id):
    response = client.get(f"/v1/jobs/{job_id}/events", headers=alice.headers)
    assert response.status_code == 200
    body = response.json
    assert [event["type"] for event in body["data"]] == ["created", "stage", "progress", "message"]
    assert body["data"][3]["message"] == "I slowed the transitions down."
    assert body["job_status"] == "queued"
    assert body["next_after"] is None


def test_json_pages_continue_after_an_id(client, alice, job_id):
    first = client.get(f"/v1/jobs/{job_id}/events?limit=2", headers=alice.headers).json
    assert len(first["data"]) == 2
    rest = client.get(
        f"/v1/jobs/{job_id}/events?after={first['next_after']}", headers=alice.headers
    ).json
    assert [event["type"] for event in rest["data"]] == ["progress", "message"]


def test_the_stream_sends_the_log_and_ends_when_the_job_is_terminal(
    client, alice, job_id, db_session
):
    finish_job(db_session, job_id, JobStatus.CANCELED)
    db_session.commit()
    response = client.get(f"/v1/jobs/{job_id}/events", headers={**alice.headers, **SSE})
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    events = parse(response.get_data(as_text=True))
    assert [kind for _id, kind, _data in events] == [
        "created",
        "stage",
        "progress",
        "message",
        "canceled",
    ]
    assert [event_id for event_id, _kind, _data in events] == sorted(e[0] for e in events)


def test_the_stream_resumes_after_last_event_id(client, alice, job_id, db_session):
    finish_job(db_session, job_id, JobStatus.CANCELED)
    db_session.commit()
    everything = parse(
        client.get(f"/v1/jobs/{job_id}/events", headers={**alice.headers, **SSE}).get_data(
            as_text=True
        )
    )
    resumed = parse(
        client.get(
            f"/v1/jobs/{job_id}/events",
            headers={**alice.headers, **SSE, "Last-Event-ID": str(everything[2][0])},
        ).get_data(as_text=True)
    )
    assert resumed == everything[3:]


def test_the_stream_delivers_events_written_while_it_is_open(client, alice, job_id, db_session):
    response = client.get(
        f"/v1/jobs/{job_id}/events", headers={**alice.headers, **SSE}, buffered=False
    )
    chunks = response.response
    seen = []
    for chunk in chunks:
        text = chunk.decode() if isinstance(chunk, bytes) else chunk
        seen += parse(text)
        if len(seen) == 4:
            add_event(db_session, job_id, EventType.PROGRESS, progress=80)
            finish_job(db_session, job_id, JobStatus.CANCELED)
            db_session.commit()
    response.close()
    assert [kind for _id, kind, _data in seen][-2:] == ["progress", "canceled"]


def test_the_stream_ends_after_its_lifetime_on_a_live_job(settings, session_factory, alice, job_id):
    short = dataclasses.replace(settings, events_stream_s=0.1)
    client = create_app(short, session_factory=session_factory).test_client()
    response = client.get(f"/v1/jobs/{job_id}/events", headers={**alice.headers, **SSE})
    assert len(parse(response.get_data(as_text=True))) == 4
