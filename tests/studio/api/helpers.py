"""Speaking to a studio over raw HTTP: exact statuses, bodies and stream bytes."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.studio.api import samples

ATTRIBUTION = {"X-Skill-Source": "reelyard-tests", "X-Skill-Version": "0", "X-Skill-Platform": "ci"}
APP = "nemo_agent"
GENERATE = "a 3-second square 720p video with crossfades and music, titled 'Hello'"


@dataclass
class Event:
    """One ``data:`` message of a stream: its payload (None for an empty ``data:`` line)
    and when it arrived, in seconds after the request was sent."""

    at: float
    payload: dict[str, Any] | None

    @property
    def type(self) -> str | None:
        return self.payload.get("type") if self.payload else None


@dataclass
class Stream:
    status: int
    headers: httpx.Headers
    events: list[Event] = field(default_factory=list)
    body: bytes = b""

    def of_type(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.type == kind]

    @property
    def texts(self) -> list[str]:
        return [e.payload["content"] for e in self.of_type("text") if e.payload]

    @property
    def kinds(self) -> list[str | None]:
        """Event types in order, heartbeats left out."""
        return [e.type for e in self.events if e.type != "heartbeat"]


def read_stream(response: httpx.Response, started: float) -> Stream:
    stream = Stream(response.status_code, response.headers)
    if not response.headers.get("content-type", "").startswith("text/event-stream"):
        stream.body = response.read()
        return stream
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        payload = json.loads(data) if data else None
        stream.events.append(Event(time.monotonic() - started, payload))
    return stream


def chat_body(session_id: str, text: str, user: str = "me") -> dict[str, Any]:
    return {
        "app_name": APP,
        "user_id": user,
        "session_id": session_id,
        "new_message": {"parts": [{"text": text}]},
    }


@dataclass
class User:
    """A token holder: every request carries its bearer token and the attribution headers."""

    http: httpx.Client
    token: str
    user_id: str
    client_id: str | None = None

    @classmethod
    def anonymous(cls, http: httpx.Client, client_id: str | None = None) -> User:
        client_id = client_id or str(uuid.uuid4())
        response = http.post("/api/auth/anonymous-token", headers={"X-Client-Id": client_id})
        response.raise_for_status()
        data = response.json()["data"]
        return cls(http, data["token"], data["user_id"], client_id)

    @classmethod
    def paid(cls, http: httpx.Client, token: str) -> User:
        user = cls(http, token, "")
        user.user_id = user.create_session_data()["user_id"]
        return user

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **ATTRIBUTION}

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, headers=self.headers | kwargs.pop("headers", {}), **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.post(path, headers=self.headers | kwargs.pop("headers", {}), **kwargs)

    def create_session_data(self) -> dict[str, Any]:
        response = self.post(
            "/api/tasks/me/with-session/nemo_agent", json={"task_name": "project", "language": "en"}
        )
        response.raise_for_status()
        data: dict[str, Any] = response.json()["data"]
        return data

    def session(self, *photos: bytes, empty: bool = False) -> str:
        """A new session, with ``photos`` uploaded (two small ones unless given or
        ``empty``)."""
        session_id: str = self.create_session_data()["session_id"]
        if not photos and not empty:
            photos = (
                samples.image_bytes(160, 120, (200, 60, 40)),
                samples.image_bytes(160, 120, (40, 60, 200), fmt="JPEG"),
            )
        if photos:
            files = [("files", (f"photo{i}.png", data)) for i, data in enumerate(photos)]
            self.upload(session_id, files=files).raise_for_status()
        return session_id

    def upload(self, session_id: str, *, user: str = "me", **kwargs: Any) -> httpx.Response:
        return self.post(f"/api/upload-video/{APP}/{user}/{session_id}", **kwargs)

    def state_response(self, session_id: str, user: str = "me") -> httpx.Response:
        return self.get(f"/api/state/{APP}/{user}/{session_id}/latest")

    def state(self, session_id: str) -> dict[str, Any]:
        response = self.state_response(session_id)
        response.raise_for_status()
        state: dict[str, Any] = response.json()["data"]["state"]
        return state

    def draft(self, session_id: str) -> dict[str, Any]:
        draft: dict[str, Any] = self.state(session_id)["draft"]
        return draft

    def balance(self) -> dict[str, int]:
        response = self.get("/api/credits/balance/simple")
        response.raise_for_status()
        balance: dict[str, int] = response.json()["data"]
        return balance

    def chat(self, session_id: str, text: str, *, user: str = "me", **body: Any) -> Stream:
        started = time.monotonic()
        with self.http.stream(
            "POST",
            "/run_sse",
            json=chat_body(session_id, text, user) | body,
            headers=self.headers | {"Accept": "text/event-stream"},
        ) as response:
            return read_stream(response, started)

    def start_render(
        self,
        session_id: str,
        draft: Any,
        render_id: str | None = None,
        *,
        changes: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """Export ``draft``; ``changes`` replace fields of the request body."""
        body = {
            "id": render_id or f"render_{uuid.uuid4().hex}",
            "sessionId": session_id,
            "draft": draft,
        }
        return self.post("/api/render/proxy/lambda", json=body | (changes or {}))

    def render_status(self, render_id: str) -> httpx.Response:
        return self.get(f"/api/render/proxy/lambda/{render_id}")

    def wait_render(
        self, render_id: str, *, timeout_s: float = 60.0, seen: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """The render's status (data shape) once it is completed or failed."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            view: dict[str, Any] = self.render_status(render_id).json()["data"]
            if seen is not None:
                seen.append(view)
            if view["status"] in ("completed", "failed"):
                return view
            time.sleep(0.02)
        raise AssertionError(f"render {render_id} did not finish in {timeout_s} s")


def wait_for(condition: Any, *, timeout_s: float = 10.0, what: str = "the condition") -> Any:
    """Poll ``condition()`` until it returns something true; return that."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what} did not happen within {timeout_s} s")
