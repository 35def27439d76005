"""The ``Idempotency-Key`` header for the endpoints that create things.

Same key, same request: the first response is replayed (same body, same status,
``Idempotent-Replayed: true``). Same key, another request: 422
``idempotency_key_mismatch``. Same key while the first request still runs: 409
``idempotency_key_in_use``. The protocol is in ``models.idempotency``: the claim is
committed before the work, the response with it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from flask import Response, jsonify, request

from api.context import db, tenant_id
from api.errors import ApiError
from models.idempotency import ClaimOutcome, claim, complete, release

REPLAYED_HEADER = "Idempotent-Replayed"


def fingerprint() -> str:
    """SHA-256 of the method, the path and the body as canonical JSON."""
    body = request.get_json(silent=True)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{request.method} {request.path}\n{canonical}".encode()).hexdigest()


def _json(status: int, body: dict[str, Any], *, replayed: bool = False) -> Response:
    response = jsonify(body)
    response.status_code = status
    if replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return response


def run_once(key: str | None, create: Callable[[], tuple[int, dict[str, Any]]]) -> Response:
    """Run ``create`` (which flushes, never commits) once per key; commit its work."""
    session = db()
    if key is None:
        status, body = create()
        session.commit()
        return _json(status, body)
    tenant = tenant_id()
    outcome = claim(session, tenant, key, fingerprint())
    if outcome.outcome is ClaimOutcome.REPLAY and outcome.record is not None:
        session.rollback()
        return _json(
            outcome.record.response_status or 200,
            outcome.record.response_body or {},
            replayed=True,
        )
    if outcome.outcome is ClaimOutcome.MISMATCH:
        session.rollback()
        raise ApiError(
            422,
            "idempotency_key_mismatch",
            "This Idempotency-Key was used with a different request.",
        )
    if outcome.outcome is not ClaimOutcome.CLAIMED or outcome.record is None:
        session.rollback()
        raise ApiError(
            409,
            "idempotency_key_in_use",
            "A request with this Idempotency-Key is still being processed; retry later.",
            headers={"Retry-After": "1"},
        )
    record = outcome.record
    session.commit()  # others see the key as in progress from now on
    try:
        status, body = create()
        complete(session, record, status, body)
        session.commit()
    except BaseException:
        session.rollback()
        release(session, tenant, key)
        session.commit()
        raise
    return _json(status, body)
