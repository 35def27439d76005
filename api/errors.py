"""One error shape everywhere: ``{"code", "status", "message", "errors"}``.

``code`` is a stable machine-readable string, ``status`` the HTTP status, ``message``
a sentence for people and ``errors`` a list of ``{"field", "code", "message"}`` items
(for validation: one per broken rule, ``field`` a dotted path such as
``jobs.3.images.0``; in the body unless ``location`` says otherwise).

Top-level codes:

====================================  ======  ==========================================
code                                  status  when
====================================  ======  ==========================================
``invalid_json``                      400     the body is not JSON
``bad_request``                       400     any other malformed request
``unauthorized``                      401     no key, a wrong key, a revoked key
``not_found``                         404     no such resource *for this tenant*
``method_not_allowed``                405
``not_acceptable``                    406     an ``Accept`` the endpoint cannot serve
``job_terminal``                      409     cancel on a job that already finished
``parent_not_succeeded``              409     a revision of a job that did not succeed
``message_pending``                   409     replay of a webhook message still pending
``endpoint_disabled``                 409     replay to a disabled webhook endpoint
``endpoint_limit``                    409     a tenant's webhook endpoints are all used
``idempotency_key_in_use``            409     the first request with that key still runs
``payload_too_large``                 413     the body exceeds the limit
``unsupported_media_type``            415     a body that is not ``application/json``
``validation_failed``                 422     the request breaks a rule (see ``errors``)
``idempotency_key_mismatch``          422     the key was used for a different request
``rate_limited``                      429     the tenant's request rate; see Retry-After
``internal_error``                    500     a bug; never for bad input, never a trace
``not_ready``                         503     ``/readyz``: the database or broker is down
====================================  ======  ==========================================

Rule codes in ``errors[].code``: see :data:`RULES` plus the generic ``required``,
``unknown_field``, ``null``, ``invalid_type`` and ``invalid``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

from flask import Flask, Response, jsonify
from flask_limiter import Limiter
from flask_limiter.errors import RateLimitExceeded
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

#: where the app keeps its flask-limiter instance
LIMITER_EXTENSION = "reelyard.limiter"


class Rule(str):
    """A validation message that carries its stable code."""

    code: str

    def __new__(cls, code: str, message: str) -> Rule:
        rule = super().__new__(cls, message)
        rule.code = code
        return rule


#: every rule the schemas check, by code
RULES: dict[str, str] = {
    "images_count": "Between 1 and 50 image URLs.",
    "url_invalid": "Not a valid URL.",
    "url_scheme": "Only http and https URLs are accepted.",
    "url_credentials": "URLs must not carry a user name or password.",
    "url_too_long": "URLs are at most 2048 characters.",
    "prompt_length": "Between 1 and 2000 characters.",
    "aspect_ratio": "One of 16:9, 9:16, 1:1, 4:5.",
    "resolution": "One of 720p, 1080p.",
    "duration_range": "Between 3 and 600 seconds.",
    "music": "on, off, or an http(s) URL of a music track.",
    "title_length": "Between 1 and 200 characters.",
    "language": "A language tag such as en or pt-BR.",
    "metadata_too_large": "At most 4096 bytes once serialised as JSON.",
    "batch_size": "Between 1 and 100 jobs.",
    "limit_range": "Between 1 and 100.",
    "cursor_invalid": "Not a cursor this endpoint returned.",
    "id_invalid": "Not an id of this kind.",
    "idempotency_key": "1 to 255 printable ASCII characters.",
    "status": "One of queued, running, succeeded, failed, canceled.",
    "metadata_filter": "metadata_key and metadata_value go together.",
    "text_invalid": "Text must not contain NUL characters or unpaired surrogates.",
    "created_range": "created_after must be before created_before.",
    "event_type": "One of job.succeeded, job.failed, job.canceled, job.progress, batch.completed.",
    "description_length": "At most 500 characters.",
    "url_refused": "The URL must reach a public address.",
    "message_status": "One of pending, delivered, failed.",
}

_GENERIC_CODES = {
    "Missing data for required field.": "required",
    "Unknown field.": "unknown_field",
    "Field may not be null.": "null",
    "Invalid JSON body.": "invalid_json",
    "Not a valid datetime.": "invalid_datetime",
}


def rule(code: str) -> Rule:
    """The message of rule ``code``."""
    return Rule(code, RULES[code])


def _code_of(message: str) -> str:
    if isinstance(message, Rule):
        return message.code
    if message in _GENERIC_CODES:
        return _GENERIC_CODES[message]
    if message.startswith(("Not a valid", "Invalid input type", "Invalid value")):
        return "invalid_type"
    return "invalid"


def _walk(messages: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            yield from _walk(value, (*path, str(key)))
    elif isinstance(messages, list | tuple):
        for value in messages:
            yield from _walk(value, path)
    else:
        yield path, str(messages) if not isinstance(messages, Rule) else messages


def flatten(messages: Any) -> list[dict[str, Any]]:
    """webargs' ``{"json": {"images": {"0": [...]}}}`` as a list of error items."""
    items: list[dict[str, Any]] = []
    for path, message in _walk(messages, ()):
        location, *field = path or ("json",)
        # marshmallow reports schema-level messages under "_schema"
        field = [part for part in field if part != "_schema"]
        item: dict[str, Any] = {
            "field": ".".join(field) or None,
            "code": _code_of(message),
            "message": str(message),
        }
        if location != "json":
            item["location"] = location
        items.append(item)
    return items


_CODES_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "rate_limited",
    500: "internal_error",
    503: "not_ready",
}

_MESSAGES_BY_STATUS = {
    400: "The request is malformed.",
    401: "A valid API key is required: Authorization: Bearer <key>.",
    404: "Not found.",
    405: "This method is not allowed on this resource.",
    406: "This resource cannot answer in a format the Accept header allows.",
    413: "The request body is too large.",
    415: "The body must be JSON (Content-Type: application/json).",
    422: "The request is not valid; see errors.",
    429: "Too many requests; retry after the number of seconds in Retry-After.",
    500: "Something went wrong on our side; it has been logged.",
}


class ApiError(HTTPException):
    """An error the API answers on purpose, with its code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(description=message)
        self.code = status
        self.error_code = code
        self.errors = errors or []
        self.extra_headers = headers or {}


def error_response(
    status: int,
    code: str,
    message: str,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    response = jsonify({"code": code, "status": status, "message": message, "errors": errors or []})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _retry_after(limiter: Limiter | None) -> str:
    try:
        current = limiter.current_limit if limiter is not None else None
        if current is not None:
            return str(max(1, int(current.reset_at - time.time())))
    except Exception:  # the limiter's storage may be away; a default beats a 500
        log.warning("could not read the rate limit's reset time", exc_info=True)
    return "1"


def handle_http_exception(error: HTTPException) -> Response:
    """Every HTTP error, raised by us, by werkzeug or by webargs, in the one shape."""
    status = error.code or 500
    if isinstance(error, ApiError):
        return error_response(
            status, error.error_code, error.description or "", error.errors, error.extra_headers
        )
    if isinstance(error, RateLimitExceeded):
        from flask import current_app  # noqa: PLC0415 (the app of this request)

        return error_response(
            429,
            "rate_limited",
            f"Rate limit exceeded ({error.description}).",
            headers={"Retry-After": _retry_after(current_app.extensions.get(LIMITER_EXTENSION))},
        )
    data = getattr(error, "data", None) or {}
    messages = data.get("messages")
    errors = flatten(messages) if messages else []
    code = _CODES_BY_STATUS.get(status, "error")
    if status == 400 and any(item["code"] == "invalid_json" for item in errors):
        code = "invalid_json"
    message = _MESSAGES_BY_STATUS.get(status, error.description or error.name)
    headers: dict[str, str] = {}
    if status == 405 and error.get_headers():
        headers = {k: v for k, v in error.get_headers() if k == "Allow"}
    if status >= 500:
        original = getattr(error, "original_exception", None)
        if original is not None:
            log.error("unhandled error", exc_info=original)
    return error_response(status, code, message, errors, headers)


def register(app: Flask) -> None:
    """Answer every error in the one shape (flask-smorest's handler is replaced)."""
    app.register_error_handler(HTTPException, handle_http_exception)
