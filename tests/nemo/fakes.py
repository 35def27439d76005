"""Fakes for the Nemo client's tests: a client on a fake transport, a fake clock.

Every upstream answer here is hand-written from nemo-api.md and served through
``httpx.MockTransport`` (or, where the request body must stay unread, a transport that
hands the request over as it is).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from nemo import NemoClient, NemoConfig, Secret, Token

BASE_URL = "http://nemo.test"
#: the token every test client holds; no test may find it anywhere it does not belong
TOKEN = "nmv_usr_5ecret-Tok3n-never-shown"  # noqa: S105 - a fake token to hunt for
USER_ID = "anon_42"

Handler = Callable[[httpx.Request], httpx.Response]


class FakeClock:
    """A monotonic clock that moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class UnreadTransport(httpx.BaseTransport):
    """Like ``httpx.MockTransport`` but without reading the request body first
    (MockTransport calls ``request.read()``, which would defeat a streaming test)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self.handler(request)


@dataclass
class Recorder:
    """A handler that answers with ``responses`` in turn and keeps every request."""

    responses: list[httpx.Response | Handler]
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.responses:
            pytest.fail(f"unexpected request {request.method} {request.url}")
        answer = self.responses.pop(0)
        return answer(request) if callable(answer) else answer

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def config(**overrides: Any) -> NemoConfig:
    settings: dict[str, Any] = {"base_url": BASE_URL, "skill_platform": "pytest"}
    settings.update(overrides)
    return NemoConfig(**settings)


def make_client(
    handler: Handler,
    *,
    token: Token | None = None,
    clock: Callable[[], float] | None = None,
    transport: type[httpx.BaseTransport] = httpx.MockTransport,
    **overrides: Any,
) -> NemoClient:
    http = httpx.Client(transport=transport(handler))
    kwargs: dict[str, Any] = {"token": token or Token(Secret(TOKEN), user_id=USER_ID)}
    if clock is not None:
        kwargs["clock"] = clock
    return NemoClient(http, config(**overrides), **kwargs)


def envelope(data: Any, code: int = 0, message: str = "ok") -> dict[str, Any]:
    return {"code": code, "message": message, "data": data}


def json_response(body: Any, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def sse_response(chunks: Iterable[bytes], status: int = 200) -> httpx.Response:
    return httpx.Response(
        status, headers={"content-type": "text/event-stream"}, content=iter(chunks)
    )


def sse(payload: Any, event: str | None = None) -> bytes:
    """One complete SSE event whose data is ``payload`` (JSON-encoded unless a str)."""
    data = payload if isinstance(payload, str) else json.dumps(payload)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data}\n\n".encode()


def body_json(request: httpx.Request) -> Any:
    return json.loads(request.content)


def chunks_then(chunks: Iterable[bytes], error: Exception) -> Iterator[bytes]:
    """The chunks, then ``error`` raised as the transport would."""
    yield from chunks
    raise error
