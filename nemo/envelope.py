"""Reading an answer: which envelope it wears, whether it is an error, and which one.

nemo-api.md lists three envelopes — ``{code, message, data}`` (most endpoints),
``{success, data, error}`` (the render endpoints) and bare objects — and says to read the
body's ``code`` first and the HTTP status second, ``code: 0`` meaning success. That
rule lives here, in :func:`read_answer` and :func:`error_for`, and nowhere else.

These are plain functions of (status, headers, body) so that every shape can be tested
without a client.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

from nemo.config import Secret, scrub
from nemo.errors import (
    DEFAULT_RETRY_AFTER,
    ApiError,
    DuplicateRenderId,
    ExportBlocked,
    MediaTooLarge,
    MissingClientId,
    OutOfCredits,
    ProtocolError,
    RateLimited,
    ServerError,
    SessionNotFound,
    TokenInvalid,
    UnsupportedMedia,
)

__all__ = ["Answer", "Call", "error_for", "parse_retry_after", "read_answer"]

_MAX_MESSAGE_CHARS = 300
_DUPLICATE = re.compile(r"already (exists|in use|used|taken)|duplicate", re.IGNORECASE)
_CLIENT_ID = re.compile(r"client[ _-]?id", re.IGNORECASE)
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")


class Call(StrEnum):
    """The calls of nemo-api.md; a few codes mean different things on different calls."""

    ANONYMOUS_TOKEN = "anonymous_token"  # noqa: S105 - the name of a call, not a password
    CREATE_SESSION = "create_session"
    CHAT = "chat"
    UPLOAD = "upload"
    CREDITS = "credits"
    STATE = "state"
    START_RENDER = "start_render"
    RENDER_STATUS = "render_status"
    CANCEL_RENDER = "cancel_render"
    DOWNLOAD = "download"


_BY_CODE: dict[int, type[ApiError]] = {
    1001: TokenInvalid,
    1010: TokenInvalid,
    1011: TokenInvalid,
    401: TokenInvalid,
    1002: SessionNotFound,
    2001: OutOfCredits,
    4001: UnsupportedMedia,
    4002: MediaTooLarge,
    400: MissingClientId,
    402: ExportBlocked,
    429: RateLimited,
}
_BY_STATUS: dict[int, type[ApiError]] = {
    400: MissingClientId,
    401: TokenInvalid,
    402: ExportBlocked,
    429: RateLimited,
}


@dataclass(frozen=True)
class Answer:
    """A successful answer: the whole parsed ``body`` and its ``data`` (the body itself
    when it wears no envelope, or an envelope without ``data``)."""

    body: Any
    data: Any


def parse_code(value: Any) -> int | None:
    """A body's ``code`` as an int (``"1001"`` too); anything else is no code."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date); 30 s
    when there is none or it does not parse (nemo-api.md's advice)."""
    if value is None or not value.strip():
        return DEFAULT_RETRY_AFTER
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


def error_for(
    code: int | None,
    http_status: int | None,
    message: str,
    *,
    call: Call | None = None,
    retry_after: float = DEFAULT_RETRY_AFTER,
) -> ApiError:
    """The error for a failed answer: by the body's ``code`` first, the HTTP status second.

    Two codes depend on the call: 400 means a missing ``X-Client-Id`` only on the
    anonymous-token call (or when the message says so); elsewhere it is a plain bad
    request. On the export call, 409 or a message saying the id is taken means
    :class:`DuplicateRenderId` — the contract says reuse is "answered with an error"
    without naming it.
    """
    cls: type[ApiError] | None = None
    if code is not None:
        cls = _BY_CODE.get(code) or (ServerError if 500 <= code <= 599 else None)
    if cls is None and http_status is not None:
        cls = _BY_STATUS.get(http_status) or (ServerError if http_status >= 500 else None)
    if (
        cls is MissingClientId
        and call is not Call.ANONYMOUS_TOKEN
        and not _CLIENT_ID.search(message)
    ):
        cls = None
    if (
        call is Call.START_RENDER
        and cls in (None, ServerError)
        and (409 in (code, http_status) or _DUPLICATE.search(message))
    ):
        cls = DuplicateRenderId
    if cls is RateLimited:
        return RateLimited(code, http_status, message, retry_after=retry_after)
    return (cls or ApiError)(code, http_status, message)


def _message(body: Any) -> str | None:
    if not isinstance(body, Mapping):
        return None
    for key in ("message", "msg", "error", "detail", "errorMessage", "error_message"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, Mapping):
            nested = _message(value)
            if nested:
                return nested
    return None


def _snippet(body: bytes) -> str:
    """A short, single-line excerpt of a non-JSON body: an HTML page's title, else text."""
    text = body[:4096].decode("utf-8", errors="replace")
    title = _TITLE.search(text)
    if title:
        text = title.group(1)
    text = " ".join(_TAG.sub(" ", text).split())
    return text[:_MAX_MESSAGE_CHARS] or "empty body"


def _parse_json(body: bytes) -> tuple[bool, Any]:
    if not body.strip():
        return False, None
    try:
        return True, json.loads(body)
    except (ValueError, RecursionError):
        return False, None


def read_answer(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    call: Call,
    secrets: Iterable[Secret | None] = (),
) -> Answer:
    """The answer's data, or the :class:`~nemo.errors.NemoError` it amounts to.

    Messages put into errors are scrubbed of ``secrets`` and of anything token-shaped.
    """
    secrets = tuple(secrets)
    retry_after = parse_retry_after(headers.get("retry-after"))
    parsed_ok, parsed = _parse_json(body)

    if isinstance(parsed, Mapping):
        error = parsed.get("error")
        code = parse_code(parsed.get("code"))
        if code is None and isinstance(error, Mapping):
            code = parse_code(error.get("code"))
        success = parsed.get("success")
        if code is not None:
            failed = code != 0 or success is False
        elif success is not None:
            failed = success is not True
        else:
            failed = status >= 400
        if failed:
            message = scrub((_message(parsed) or f"HTTP {status}")[:_MAX_MESSAGE_CHARS], secrets)
            raise error_for(code or None, status, message, call=call, retry_after=retry_after)
        enveloped = "code" in parsed or "success" in parsed
        data = parsed.get("data", parsed) if enveloped else parsed
        return Answer(parsed, data)

    if status >= 400:
        detail = _message(parsed) if parsed_ok else None
        message = scrub(detail or f"HTTP {status}: {_snippet(body)}", secrets)
        raise error_for(None, status, message, call=call, retry_after=retry_after)
    if 300 <= status < 400:
        raise ProtocolError(f"{call.value}: unexpected redirect (HTTP {status})")
    if parsed_ok:
        return Answer(parsed, parsed)
    if not body.strip():
        return Answer(None, None)
    content_type = headers.get("content-type", "no content type")
    raise ProtocolError(
        scrub(
            f"{call.value}: HTTP {status} answer is not JSON ({content_type}): {_snippet(body)}",
            secrets,
        )
    )
