"""The shapes of the studio's answers, as nemo-api.md gives them.

Most endpoints answer ``{"code": 0, "message": "…", "data": {…}}``; the render
endpoints answer ``{"success": true, "data": {…}}`` and ``{"success": false,
"error": "…"}``. A failure is raised as :class:`NemoFailure` anywhere in a view and
turned into the right shape, with the HTTP status that goes with its code (or HTTP 200
with the code alone in the body, when the studio is told so: clients must read the
body's code first). The render endpoints' failure body carries the ``code`` as well.
"""

from __future__ import annotations

from typing import Any

# code -> (HTTP status, message)
CODES: dict[int, tuple[int, str]] = {
    400: (400, "bad request"),
    402: (402, "export is not available on this plan"),
    429: (429, "rate limited, try again later"),
    1001: (401, "token expired or invalid"),
    1002: (404, "session not found"),
    2001: (402, "out of credits"),
    4001: (415, "unsupported file type"),
    4002: (413, "file too large"),
    4004: (404, "not found"),
    4009: (409, "conflict"),
    5000: (500, "internal error"),
    5003: (503, "service unavailable"),
}


class NemoFailure(Exception):
    """An error answer: a Nemo code, its HTTP status and a message for the caller."""

    def __init__(
        self, code: int, message: str | None = None, *, retry_after_s: float | None = None
    ) -> None:
        status, default = CODES[code]
        self.code = code
        self.http_status = status
        self.message = message or default
        self.retry_after_s = retry_after_s
        super().__init__(f"{code}: {self.message}")


def ok(data: Any, message: str = "success") -> dict[str, Any]:
    return {"code": 0, "message": message, "data": data}


def failure_body(failure: NemoFailure) -> dict[str, Any]:
    return {"code": failure.code, "message": failure.message, "data": None}


def render_ok(data: Any) -> dict[str, Any]:
    return {"success": True, "data": data}


def render_failure_body(failure: NemoFailure) -> dict[str, Any]:
    # the contract's shape, plus the code (a client reads the code first, the status second)
    return {"success": False, "error": failure.message, "code": failure.code}
