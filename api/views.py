"""How jobs, events and batches look in responses (plain dictionaries).

Webhook payloads (``reelyard.webhooks``) are built from the same functions, so that an
event's ``data`` is what the API shows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Batch, Job, JobEvent, JobStatus


def job_to_dict(job: Job) -> dict[str, Any]:
    result = None
    if job.video_url is not None:
        result = {
            "url": job.video_url,
            "width": job.video_width,
            "height": job.video_height,
            "duration_s": job.video_duration_s,
            "size_bytes": job.video_size_bytes,
            "sha256": job.video_sha256,
        }
    error = None
    if job.error_code is not None:
        error = {"code": job.error_code, "message": job.error_message}
    return {
        "id": job.id,
        "object": "job",
        "status": job.status.value,
        "stage": job.stage.value,
        "progress": job.progress,
        "images": job.image_urls,
        "prompt": job.prompt,
        "options": job.options,
        "metadata": job.caller_metadata,
        "webhook_url": job.webhook_url,
        "batch_id": job.batch_id,
        "parent_id": job.parent_id,
        "timeline": job.timeline,
        "result": result,
        "error": error,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
    }


def event_to_dict(event: JobEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "job_id": event.job_id,
        "type": event.type.value,
        "stage": event.stage.value if event.stage is not None else None,
        "progress": event.progress,
        "message": event.message,
        "data": event.data,
        "created_at": event.created_at,
    }


def new_job_view(row: dict[str, Any]) -> dict[str, Any]:
    """The view of a job just queued, from the values inserted (no read back)."""
    return {
        "id": row["id"],
        "object": "job",
        "status": row["status"].value,
        "stage": row["stage"].value,
        "progress": row["progress"],
        "images": row["image_urls"],
        "prompt": row["prompt"],
        "options": row["options"],
        "metadata": row["caller_metadata"],
        "webhook_url": row["webhook_url"],
        "batch_id": row["batch_id"],
        "parent_id": row["parent_id"],
        "timeline": None,
        "result": None,
        "error": None,
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "started_at": None,
        "finished_at": None,
    }


def batch_to_dict(session: Session, batch: Batch) -> dict[str, Any]:
    """A batch with how many of its jobs are in each status."""
    counts = {status.value: 0 for status in JobStatus}
    rows = session.execute(
        select(Job.status, func.count())
        .where(Job.batch_id == batch.id, Job.tenant_id == batch.tenant_id)
        .group_by(Job.status)
    )
    for status, count in rows:
        counts[status.value] = count
    return {
        "id": batch.id,
        "object": "batch",
        "job_count": batch.job_count,
        "counts": counts,
        "created_at": batch.created_at,
    }
