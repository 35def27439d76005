"""``/v1/jobs``: create, read, list, cancel, revise, and the event log."""

from __future__ import annotations

from typing import Any

from flask import Response, request, send_file
from flask.views import MethodView
from sqlalchemy import and_, select

from api.blueprint import Blueprint
from api.context import celery_app, db, settings, tenant_id
from api.errors import ApiError, rule
from api.events import event_page, stream_events, wants_stream
from api.idempotency import run_once
from api.schemas import (
    EventListQuery,
    EventPageOut,
    IdempotencyHeaders,
    JobIn,
    JobListQuery,
    JobOut,
    JobPageOut,
    RevisionIn,
)
from api.views import job_to_dict, new_job_view
from models import Job, JobStatus
from models.ids import id_pattern
from models.jobs import finish_job, queue_jobs
from reelyard.storage import LocalStorage, video_key
from workers.app import (
    CANCEL_RENDER_TASK,
    enqueue_job,
    publish_after_commit,
    wake_webhooks_after_commit,
)

blp = Blueprint("jobs", __name__, url_prefix="/v1/jobs", description="Video jobs.")

JOB_ID = id_pattern("job")
#: schemas are built once: building one copies every field (marshmallow)
_JOB_OUT = JobOut()


def create_jobs(
    requests: list[dict[str, Any]],
    *,
    batch_id: str | None = None,
    parent: Job | None = None,
) -> list[dict[str, Any]]:
    """Queue jobs for the caller, enqueued once the transaction commits; their views."""
    session = db()
    rows = queue_jobs(session, tenant_id(), requests, batch_id=batch_id, parent=parent)
    celery = celery_app()
    for row in rows:
        enqueue_job(session, celery, row["id"])
    return [dump_view(new_job_view(row)) for row in rows]


def find_job(job_id: str, *, for_update: bool = False) -> Job:
    """The caller's job ``job_id``, or 404 (also when it is another tenant's)."""
    if not JOB_ID.match(job_id):
        raise ApiError(404, "not_found", f"No job {job_id}.")
    statement = select(Job).where(and_(Job.id == job_id, Job.tenant_id == tenant_id()))
    if for_update:
        statement = statement.with_for_update()
    job = db().scalar(statement)
    if job is None:
        raise ApiError(404, "not_found", f"No job {job_id}.")
    return job


def dump_view(view: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = _JOB_OUT.dump(view)
    return result


@blp.route("")
class Jobs(MethodView):
    @blp.arguments(IdempotencyHeaders(), location="headers", as_kwargs=True)
    @blp.arguments(JobIn())
    @blp.response(202, JobOut())
    @blp.alt_response(409, schema=Blueprint.error_schema(), description="Idempotency-Key in use")
    def post(self, data: dict[str, Any], idempotency_key: str | None = None) -> Response:
        """Create a job

        The job is stored, then handed to the pipeline once the transaction commits.
        """

        def create() -> tuple[int, dict[str, Any]]:
            return 202, create_jobs([data])[0]

        return run_once(idempotency_key, create)

    @blp.arguments(JobListQuery(), location="query")
    @blp.response(200, JobPageOut())
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List jobs, newest first

        Cursor pagination: pass ``next_cursor`` back as ``cursor``.
        """
        conditions = [Job.tenant_id == tenant_id()]
        cursor = query.get("cursor")
        if cursor is not None:
            if not JOB_ID.match(cursor):
                raise ApiError(
                    422,
                    "validation_failed",
                    "The request is not valid; see errors.",
                    [
                        {
                            "field": "cursor",
                            "code": "cursor_invalid",
                            "message": rule("cursor_invalid"),
                            "location": "query",
                        }
                    ],
                )
            conditions.append(Job.id < cursor)
        if query.get("status"):
            conditions.append(Job.status.in_([JobStatus(value) for value in query["status"]]))
        if "created_after" in query:
            conditions.append(Job.created_at > query["created_after"])
        if "created_before" in query:
            conditions.append(Job.created_at < query["created_before"])
        if "batch_id" in query:
            conditions.append(Job.batch_id == query["batch_id"])
        if "metadata_key" in query:
            conditions.append(
                Job.caller_metadata[query["metadata_key"]].as_string() == query["metadata_value"]
            )
        limit: int = query["limit"]
        jobs = (
            db()
            .scalars(select(Job).where(*conditions).order_by(Job.id.desc()).limit(limit + 1))
            .all()
        )
        page = jobs[:limit]
        return {
            "data": [job_to_dict(job) for job in page],
            "next_cursor": page[-1].id if len(jobs) > limit else None,
        }


@blp.route("/<job_id>")
class JobResource(MethodView):
    @blp.response(200, JobOut())
    def get(self, job_id: str) -> dict[str, Any]:
        """Read a job"""
        return job_to_dict(find_job(job_id))


@blp.route("/<job_id>/cancel")
class JobCancel(MethodView):
    @blp.response(200, JobOut())
    @blp.alt_response(409, schema=Blueprint.error_schema(), description="The job already finished")
    def post(self, job_id: str) -> dict[str, Any]:
        """Cancel a job

        Idempotent: canceling a canceled job answers the job again. A job that
        succeeded or failed answers 409 ``job_terminal`` with its status.
        """
        job = find_job(job_id)
        session = db()
        if job.status is not JobStatus.CANCELED:
            if finish_job(
                session, job.id, JobStatus.CANCELED, message="Canceled at the caller's request."
            ):
                if job.render_id is not None:  # stop the render upstream, after commit
                    publish_after_commit(session, celery_app(), CANCEL_RENDER_TASK, job.id)
                wake_webhooks_after_commit(session, celery_app())  # job.canceled
            else:
                session.rollback()
                job = find_job(job_id)
        session.commit()
        session.refresh(job)
        if job.status is not JobStatus.CANCELED:
            raise ApiError(
                409,
                "job_terminal",
                f"Job {job.id} already {job.status.value}; it cannot be canceled.",
                [{"field": "status", "code": "job_terminal", "message": job.status.value}],
            )
        return job_to_dict(job)


@blp.route("/<job_id>/video")
class JobVideo(MethodView):
    @blp.doc(
        responses={
            "200": {
                "description": "The video (MP4, H.264/AAC); byte ranges are served (206).",
                "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}},
            },
            "206": {
                "description": "The requested byte range of the video.",
                "content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}},
            },
        }
    )
    @blp.alt_response(409, schema=Blueprint.error_schema(), description="The job has not succeeded")
    @blp.alt_response(
        410, schema=Blueprint.error_schema(), description="The video is no longer stored"
    )
    def get(self, job_id: str) -> Response:
        """Download a job's video

        Served from reelyard's own storage, with ``ETag`` (the video's SHA-256) and
        byte ranges, so players can seek. 409 ``video_not_ready`` until the job
        succeeded.
        """
        job = find_job(job_id)
        if job.status is not JobStatus.SUCCEEDED:
            raise ApiError(
                409,
                "video_not_ready",
                f"Job {job.id} is {job.status.value}; its video exists once it succeeded.",
            )
        path = LocalStorage(settings().storage_dir).path(video_key(job.id))
        if path is None:
            raise ApiError(410, "video_gone", f"The video of job {job.id} is no longer stored.")
        response = send_file(
            path,
            mimetype="video/mp4",
            conditional=True,
            etag=job.video_sha256 or True,
            download_name=f"{job.id}.mp4",
            max_age=3600,
        )
        response.headers["Cache-Control"] = "private, max-age=3600"
        return response


@blp.route("/<job_id>/revisions")
class JobRevisions(MethodView):
    @blp.arguments(IdempotencyHeaders(), location="headers", as_kwargs=True)
    @blp.arguments(RevisionIn())
    @blp.response(202, JobOut())
    @blp.alt_response(
        409, schema=Blueprint.error_schema(), description="The parent did not succeed"
    )
    def post(
        self, data: dict[str, Any], job_id: str, idempotency_key: str | None = None
    ) -> Response:
        """Revise a finished job

        A new job on the parent's upstream session with a new instruction and a new
        render. 409 ``parent_not_succeeded`` unless the parent succeeded.
        """
        parent = find_job(job_id)

        def create() -> tuple[int, dict[str, Any]]:
            if parent.status is not JobStatus.SUCCEEDED:
                raise ApiError(
                    409,
                    "parent_not_succeeded",
                    f"Job {parent.id} is {parent.status.value}; only a succeeded job can be revised.",  # noqa: E501
                    [
                        {
                            "field": "status",
                            "code": "parent_not_succeeded",
                            "message": parent.status.value,
                        }
                    ],
                )
            values = {
                "images": parent.image_urls,
                "prompt": data["prompt"],
                "options": {**parent.options, **data.get("options", {})},
                "metadata": data.get("metadata", parent.caller_metadata),
                "webhook_url": data.get("webhook_url", parent.webhook_url),
            }
            return 202, create_jobs([values], parent=parent)[0]

        return run_once(idempotency_key, create)


@blp.route("/<job_id>/events")
class JobEvents(MethodView):
    @blp.arguments(EventListQuery(), location="query")
    @blp.response(200, EventPageOut())
    @blp.doc(
        responses={
            "200": {
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/EventPageOut"}},
                    "text/event-stream": {
                        "schema": {"type": "string"},
                        "example": 'id: 7\nevent: progress\ndata: {"id": 7, ...}\n\n',
                    },
                }
            }
        }
    )
    def get(self, query: dict[str, Any], job_id: str) -> Any:
        """A job's event log

        JSON by default. With ``Accept: text/event-stream``, a live Server-Sent-Events
        stream: one SSE event per log entry (``id`` = the entry's id), resumable with
        ``Last-Event-ID``, ending once the job is terminal and its log is delivered.
        """
        job = find_job(job_id)
        if wants_stream():
            return stream_events(job.id, request.headers.get("Last-Event-ID"), query.get("after"))
        return event_page(job, query.get("after"), query["limit"])
