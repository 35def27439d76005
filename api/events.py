"""A job's event log as JSON pages and as a live Server-Sent-Events stream.

The stream polls the log table briefly (``REELYARD_EVENTS_POLL_S``, 1 s by default)
with a session opened for each look and closed before it sleeps, so an open stream
holds no database connection between looks. Why polling rather than LISTEN/NOTIFY
or Redis pub/sub:

- LISTEN needs a connection held open for as long as anyone listens (per process,
  with a dispatcher thread), and SQLite (the embedded mode) has no equivalent;
- Redis pub/sub loses whatever is published while a stream reconnects and needs
  every writer (the workers) to publish after its commit, a second path that can
  disagree with the log;
- a look is one indexed range scan (``job_id = ? AND id > ?`` on
  ``ix_job_events_job_id_id``) that returns nothing most of the time; progress
  changes every few seconds, so a second's latency is invisible, and the log
  itself is the source of truth, which also makes ``Last-Event-ID`` resumption
  exact.

A stream ends when the job is terminal and its log is delivered, or after
``REELYARD_EVENTS_STREAM_S`` (the client reconnects with ``Last-Event-ID``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from flask import Response, current_app, request
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.context import close_db, db, session_factory, settings
from api.schemas import EventOut
from api.views import event_to_dict
from models import Job, JobEvent, JobStatus

SSE = "text/event-stream"
#: a comment line this often keeps proxies from closing an idle stream
KEEPALIVE_S = 15.0
BATCH = 200
_EVENTS_OUT = EventOut(many=True)


def wants_stream() -> bool:
    best = request.accept_mimetypes.best_match(["application/json", SSE])
    return (
        best == SSE and request.accept_mimetypes[SSE] > request.accept_mimetypes["application/json"]
    )


def _events(session: Session, job_id: str, after: int, limit: int) -> list[JobEvent]:
    return list(
        session.scalars(
            select(JobEvent)
            .where(JobEvent.job_id == job_id, JobEvent.id > after)
            .order_by(JobEvent.id)
            .limit(limit)
        )
    )


def event_page(job: Job, after: int | None, limit: int) -> dict[str, Any]:
    events = _events(db(), job.id, after or 0, limit)
    return {
        "data": [event_to_dict(event) for event in events],
        "job_status": job.status.value,
        "next_after": events[-1].id if len(events) == limit else None,
    }


def _resume_point(last_event_id: str | None, after: int | None) -> int:
    if last_event_id is not None and last_event_id.strip().isdigit():
        return int(last_event_id.strip())
    return after or 0


def _look(
    factory: sessionmaker[Session], job_id: str, after: int
) -> tuple[list[dict[str, Any]], bool]:
    """The events after ``after`` and whether the job is terminal, with a short session."""
    with factory() as session:
        status = session.scalar(select(Job.status).where(Job.id == job_id))
        events = _events(session, job_id, after, BATCH)
        dumped: list[dict[str, Any]] = _EVENTS_OUT.dump([event_to_dict(event) for event in events])
    return dumped, status is None or JobStatus(status).terminal


def _frame(event: dict[str, Any]) -> str:
    data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    return f"id: {event['id']}\nevent: {event['type']}\ndata: {data}\n\n"


def stream_events(job_id: str, last_event_id: str | None, after: int | None) -> Response:
    factory = session_factory()
    config = settings()
    poll_s, lifetime_s = config.events_poll_s, config.events_stream_s
    cursor = _resume_point(last_event_id, after)
    close_db()  # the request's own connection goes back to the pool now

    def generate() -> Iterator[str]:
        nonlocal cursor
        started = last_sent = time.monotonic()
        yield f"retry: {int(poll_s * 1000)}\n\n"
        while True:
            events, terminal = _look(factory, job_id, cursor)
            for event in events:
                cursor = event["id"]
                yield _frame(event)
            now = time.monotonic()
            if events:
                last_sent = now
                if len(events) == BATCH:
                    continue
            if terminal or now - started >= lifetime_s:
                return
            if now - last_sent >= KEEPALIVE_S:
                last_sent = now
                yield ": keepalive\n\n"
            time.sleep(poll_s)

    response = current_app.response_class(generate(), mimetype=SSE)
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response
