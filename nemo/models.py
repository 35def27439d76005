"""The typed values the client returns, each read from the ``data`` of an answer.

Every reader is lenient where the sources disagree (nemo-api.md lists several shapes)
and strict where a value is needed to go on: a missing session id or render status is a
:class:`~nemo.errors.ProtocolError`, not a None that fails three calls later.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

from nemo.config import Secret
from nemo.draft import Draft
from nemo.errors import ProtocolError

__all__ = [
    "CanvasConfig",
    "Credits",
    "DownloadedFile",
    "FileUpload",
    "RenderState",
    "RenderStatus",
    "Session",
    "SessionState",
    "Token",
    "Upload",
    "UploadedFile",
]


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ProtocolError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value


def _first(obj: Mapping[str, Any], keys: Sequence[str]) -> Any:
    """The value of the first key present (not None) — the sources disagree on names."""
    for key in keys:
        value = obj.get(key)
        if value is not None:
            return value
    return None


def _text(obj: Mapping[str, Any], *keys: str) -> str | None:
    value = _first(obj, keys)
    if value is None:
        return None
    if isinstance(value, str | int) and not isinstance(value, bool):
        return str(value)
    return None


def _required_text(obj: Mapping[str, Any], what: str, *keys: str) -> str:
    value = _text(obj, *keys)
    if not value:
        raise ProtocolError(f"{what}: the answer has no {keys[0]!r}")
    return value


def _number(obj: Mapping[str, Any], *keys: str) -> float | None:
    """A number, or a numeric string; anything else reads as absent."""
    value = _first(obj, keys)
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _integer(obj: Mapping[str, Any], *keys: str) -> int | None:
    value = _number(obj, *keys)
    return int(value) if value is not None else None


def _objects(value: Any) -> tuple[Mapping[str, Any], ...]:
    """The JSON objects in a list; a missing list is empty, non-objects are dropped."""
    if not isinstance(value, list):
        return ()
    return tuple(item for item in value if isinstance(item, Mapping))


@dataclass(frozen=True)
class Token:
    """A bearer token and what came with it; ``user_id`` goes into paths where known."""

    value: Secret
    user_id: str | None = None
    expires_at: str | None = None
    credits: float | None = None

    @classmethod
    def from_data(cls, data: Any) -> Token:
        obj = _object(data, "anonymous token")
        value = _text(obj, "token", "access_token")
        if not value:
            raise ProtocolError("anonymous token: the answer has no 'token'")
        return cls(
            value=Secret(value),
            user_id=_text(obj, "user_id", "userId"),
            expires_at=_text(obj, "expires_at", "expiresAt"),
            credits=_number(obj, "credits"),
        )


@dataclass(frozen=True)
class Session:
    """An upstream session (nemo-api.md #1); every later call names ``session_id``."""

    session_id: str
    task_id: str | None = None
    user_id: str | None = None

    @classmethod
    def from_data(cls, data: Any) -> Session:
        obj = _object(data, "session")
        return cls(
            session_id=_required_text(obj, "session", "session_id", "sessionId"),
            task_id=_text(obj, "task_id", "taskId"),
            user_id=_text(obj, "user_id", "userId"),
        )


@dataclass(frozen=True)
class FileUpload:
    """A file to upload: a name, and its bytes as a binary file object or an iterable.

    Neither is read whole: a file object is read in 64 KiB pieces by httpx's multipart
    encoder, an iterable of byte strings is passed through piece by piece.
    """

    filename: str
    content: IO[bytes] | Iterable[bytes]
    content_type: str | None = None


@dataclass(frozen=True)
class UploadedFile:
    """One uploaded medium as the backend describes it (nemo-api.md #3)."""

    filename: str
    file_type: str | None = None
    cdn_url: str | None = None
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    fps: float | None = None
    hash: str | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> UploadedFile:
        return cls(
            filename=_text(data, "filename", "file_name", "name") or "",
            file_type=_text(data, "file_type", "fileType", "type"),
            cdn_url=_text(data, "cdn_url", "cdnUrl", "url"),
            width=_integer(data, "width"),
            height=_integer(data, "height"),
            duration=_number(data, "duration"),
            fps=_number(data, "fps"),
            hash=_text(data, "hash"),
        )


@dataclass(frozen=True)
class Upload:
    """The answer to an upload: the files and whether the session state took them."""

    files: tuple[UploadedFile, ...]
    session_state_applied: bool | None = None

    @classmethod
    def from_data(cls, data: Any) -> Upload:
        obj = _object(data, "upload")
        files = obj.get("files")
        if not isinstance(files, list):
            raise ProtocolError("upload: the answer has no 'files' list")
        applied = obj.get("session_state_applied")
        return cls(
            files=tuple(UploadedFile.from_data(item) for item in _objects(files)),
            session_state_applied=applied if isinstance(applied, bool) else None,
        )


@dataclass(frozen=True)
class Credits:
    """The credit balance (nemo-api.md #4); ``frozen`` is held by operations in progress."""

    available: float
    frozen: float
    total: float

    @classmethod
    def from_data(cls, data: Any) -> Credits:
        obj = _object(data, "credits")
        available = _number(obj, "available")
        if available is None:
            raise ProtocolError("credits: the answer has no 'available'")
        frozen = _number(obj, "frozen") or 0
        total = _number(obj, "total")
        return cls(
            available=available,
            frozen=frozen,
            total=total if total is not None else available + frozen,
        )


@dataclass(frozen=True)
class CanvasConfig:
    """The session's canvas (``state.canvas_config``): size and aspect ratio."""

    width: int | None = None
    height: int | None = None
    aspect_ratio: str | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> CanvasConfig:
        return cls(
            width=_integer(data, "width", "w"),
            height=_integer(data, "height", "h"),
            aspect_ratio=_text(data, "aspect_ratio", "aspectRatio", "ratio"),
        )


@dataclass(frozen=True)
class SessionState:
    """The latest state of a session (nemo-api.md #5).

    ``draft`` is None while the session has none (before the first edit). ``raw`` is the
    whole ``state`` object as received, for fields this view does not name.
    """

    draft: Draft | None
    video_infos: tuple[Mapping[str, Any], ...] = ()
    canvas_config: CanvasConfig | None = None
    generated_media: tuple[Mapping[str, Any], ...] = ()
    video_analyses: tuple[Mapping[str, Any], ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_data(cls, data: Any) -> SessionState:
        obj = _object(data, "state")
        # data.state per nemo-api.md; a bare state object is accepted too
        state = _object(obj["state"], "state") if "state" in obj else obj
        draft = state.get("draft")
        if draft is not None and not isinstance(draft, Mapping):
            raise ProtocolError("state: 'draft' is not a JSON object")
        canvas = state.get("canvas_config")
        return cls(
            draft=Draft(draft) if draft else None,
            video_infos=_objects(state.get("video_infos")),
            canvas_config=CanvasConfig.from_data(canvas) if isinstance(canvas, Mapping) else None,
            generated_media=_objects(state.get("generated_media")),
            video_analyses=_objects(state.get("video_analyses")),
            raw=dict(state),
        )


class RenderState(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


# The contract names four states; these are the spellings a backend plausibly uses for
# them. A canceled render is over without a video, which is what FAILED means here.
_RENDER_STATES: dict[str, RenderState] = {
    "pending": RenderState.PENDING,
    "queued": RenderState.PENDING,
    "waiting": RenderState.PENDING,
    "accepted": RenderState.PENDING,
    "processing": RenderState.PROCESSING,
    "running": RenderState.PROCESSING,
    "rendering": RenderState.PROCESSING,
    "in_progress": RenderState.PROCESSING,
    "completed": RenderState.COMPLETED,
    "complete": RenderState.COMPLETED,
    "done": RenderState.COMPLETED,
    "succeeded": RenderState.COMPLETED,
    "success": RenderState.COMPLETED,
    "failed": RenderState.FAILED,
    "failure": RenderState.FAILED,
    "error": RenderState.FAILED,
    "canceled": RenderState.FAILED,
    "cancelled": RenderState.FAILED,
}


def _url_in(obj: Mapping[str, Any]) -> str | None:
    url = _text(obj, "outputUrl", "output_url", "downloadUrl", "download_url", "url")
    if url:
        return url
    output = obj.get("output")
    if isinstance(output, Mapping):
        return _text(output, "url", "outputUrl", "output_url", "downloadUrl")
    if isinstance(output, str) and output.startswith(("http://", "https://", "/")):
        return output
    return None


def _error_in(obj: Mapping[str, Any]) -> str | None:
    error = _first(obj, ("error", "errorMessage", "error_message"))
    if isinstance(error, Mapping):
        return _text(error, "message", "msg") or None
    return error if isinstance(error, str) and error else None


@dataclass(frozen=True)
class RenderStatus:
    """Where a render is (nemo-api.md #7). ``progress`` is a percentage, 0-100."""

    render_id: str
    status: RenderState
    progress: float | None = None
    output_url: str | None = None
    error: str | None = None
    created_at_ms: int | None = None
    completed_at_ms: int | None = None

    @property
    def is_final(self) -> bool:
        return self.status in (RenderState.COMPLETED, RenderState.FAILED)

    @classmethod
    def from_body(
        cls, render_id: str, body: Any, *, default: RenderState | None = None
    ) -> RenderStatus:
        """Read a status from a whole answer body, wherever the sources put it.

        ``data.status`` / ``data.outputUrl`` (the API reference) are looked at first,
        then top-level ``status`` / ``output.url`` (the skill text); ``default`` is the
        status of an answer that names none (an accepted export), which otherwise is a
        :class:`ProtocolError`.
        """
        obj = _object(body, "render status")
        data = obj.get("data")
        layers = [data, obj] if isinstance(data, Mapping) else [obj]
        raw_status = next(
            (status for layer in layers if (status := _text(layer, "status", "state"))), None
        )
        if raw_status is None:
            if default is None:
                raise ProtocolError("render status: the answer names no status")
            status = default
        else:
            try:
                status = _RENDER_STATES[raw_status.strip().lower()]
            except KeyError:
                raise ProtocolError(f"render status: unknown status {raw_status[:40]!r}") from None

        def pick(read: Any) -> Any:
            return next((value for layer in layers if (value := read(layer)) is not None), None)

        return cls(
            render_id=render_id,
            status=status,
            progress=pick(lambda layer: _number(layer, "progress")),
            output_url=pick(_url_in),
            error=pick(_error_in),
            created_at_ms=pick(lambda layer: _integer(layer, "createdAt", "created_at")),
            completed_at_ms=pick(lambda layer: _integer(layer, "completedAt", "completed_at")),
        )


@dataclass(frozen=True)
class DownloadedFile:
    """A finished download: where it is, its size, and whether the fallback served it."""

    path: Path
    size: int
    url: str
    via_proxy: bool
