"""``/v1/batches``: many jobs in one request, all created or none."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView
from sqlalchemy import select

from api.blueprint import Blueprint
from api.context import db, tenant_id
from api.errors import ApiError
from api.idempotency import run_once
from api.jobs import create_jobs
from api.schemas import STATUSES, BatchIn, BatchOut, IdempotencyHeaders
from api.views import batch_to_dict
from models import Batch
from models.base import utcnow
from models.ids import id_pattern
from models.jobs import new_batch_id

blp = Blueprint("batches", __name__, url_prefix="/v1/batches", description="Batches of jobs.")

BATCH_ID = id_pattern("bat")
_BATCH_OUT = BatchOut()


@blp.route("")
class Batches(MethodView):
    @blp.arguments(IdempotencyHeaders(), location="headers", as_kwargs=True)
    @blp.arguments(BatchIn())
    @blp.response(202, BatchOut())
    @blp.alt_response(409, schema=Blueprint.error_schema(), description="Idempotency-Key in use")
    def post(self, data: dict[str, Any], idempotency_key: str | None = None) -> Response:
        """Create a batch of jobs

        Up to 100 jobs, each validated like ``POST /v1/jobs``; if any is invalid,
        none is created and ``errors`` names each broken rule as ``jobs.<i>.<field>``.
        """

        def create() -> tuple[int, dict[str, Any]]:
            tenant = tenant_id()
            session = db()
            batch = Batch(
                id=new_batch_id(),
                tenant_id=tenant,
                job_count=len(data["jobs"]),
                created_at=utcnow(),
            )
            session.add(batch)
            session.flush()
            jobs = create_jobs(data["jobs"], batch_id=batch.id)
            body: dict[str, Any] = _BATCH_OUT.dump(
                {
                    "id": batch.id,
                    "object": "batch",
                    "job_count": batch.job_count,
                    "counts": {**dict.fromkeys(STATUSES, 0), "queued": len(jobs)},
                    "created_at": batch.created_at,
                    "jobs": [],
                }
            )
            body["jobs"] = jobs
            return 202, body

        return run_once(idempotency_key, create)


@blp.route("/<batch_id>")
class BatchResource(MethodView):
    @blp.response(200, BatchOut())
    def get(self, batch_id: str) -> dict[str, Any]:
        """Read a batch: its size and how many of its jobs are in each status"""
        batch = None
        if BATCH_ID.match(batch_id):
            batch = db().scalar(
                select(Batch).where(Batch.id == batch_id, Batch.tenant_id == tenant_id())
            )
        if batch is None:
            raise ApiError(404, "not_found", f"No batch {batch_id}.")
        return batch_to_dict(db(), batch)
