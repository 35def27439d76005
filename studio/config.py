"""The studio's settings: read once from the environment into one frozen object.

Every knob has a default that behaves like the real service at real speed; tests
pass their own object (``StudioConfig(time_scale=0.01, ...)``).

Variables (default in brackets):

- ``STUDIO_HOST``, ``STUDIO_PORT``: where it listens [127.0.0.1, 8600]
- ``STUDIO_PUBLIC_URL``: base of the URLs it hands out for media and renders
  [http://HOST:PORT]
- ``STUDIO_DATA_DIR``: uploads and renders [./.reelyard/studio]
- ``STUDIO_PERSIST``: keep tokens, credits, sessions, renders and the ledger in a file
  (see :mod:`studio.persist`), so that a restarted studio (even one killed with
  SIGKILL) carries on where it was and resumes unfinished renders; faults are not kept
  [0: in memory only]
- ``STUDIO_STATE_FILE``: that file; setting it turns ``STUDIO_PERSIST`` on
  [DATA_DIR/state.sqlite3]. A file the studio cannot read is refused at start, never
  dropped
- ``STUDIO_TIME_SCALE``: multiplies every simulated duration; 0.01 in tests [1.0]
- ``STUDIO_FAULTS``: faults from the start, JSON (see :mod:`studio.faults`) [none]
- ``STUDIO_SEED``: seed of its random choices, for repeatable runs [random]
- ``STUDIO_SILENT_CLOSE_RATIO``: share of turns that close with no text [0.3]
- ``STUDIO_TURN_S``: every chat turn lasts this many seconds of wall time, whatever
  ``STUDIO_TIME_SCALE`` (which then paces the rest, renders included), for load tests
  that need a known turn length [drawn per turn, then scaled: answers 5-15 s, edits
  10-30 s, generations 30-90 s]
- ``STUDIO_EVENT_SHAPE``: ``type`` or ``adk`` SSE events [type]
- ``STUDIO_STATUS_SHAPE``: render status under ``data`` or at the ``top`` [data]
- ``STUDIO_ERROR_STATUS``: ``http``, errors carry their HTTP status; ``ok``, HTTP 200
  with the code in the body only, on every Nemo API call (the files the studio serves
  and ``/_studio`` keep their real statuses) [http]
- ``STUDIO_TOKEN_TTL_S``: anonymous token lifetime [7 days]
- ``STUDIO_TOKEN_WINDOW_S``, ``STUDIO_TOKENS_PER_IP``: one live token per client id,
  and so many per address, per window [7 days, 10]
- ``STUDIO_SESSION_TTL_S``: session lifetime [1 day]
- ``STUDIO_FREE_CREDITS``: credits of a new anonymous token [100]
- ``STUDIO_COST_GENERATE``, ``_EDIT``, ``_ANSWER``, ``_EXPORT``: credits per turn kind
  and per export (charged when the export is accepted; 2001 if they are not there)
  [100, 50, 0, 0]
- ``STUDIO_PAID_TOKENS``: static paid tokens, ``token:credits,token:credits`` [none]
- ``STUDIO_ANONYMOUS_EXPORT``: may anonymous tokens export; 0 answers 402 [1]
- ``STUDIO_MAX_UPLOAD_MB``: the largest file accepted [200]
- ``STUDIO_ALLOW_PRIVATE_URLS``: URL uploads may reach private and loopback
  addresses (tests and the standalone demo) [0]
- ``STUDIO_RENDER_WORKERS``: renders at once [1: on 2 cores, one render on both
  cores and two at once finish as many videos an hour, and one at a time hands each
  video over sooner (``make bench-studio-render``, docs/renderer.md)]
- ``STUDIO_RENDER_MODE``: ``ffmpeg`` renders for real; ``none`` finishes every export
  with a small pre-made file, for load tests of the orchestration [ffmpeg]
- ``STUDIO_RENDER_QUALITY``: ``high`` or ``draft`` [high]
- ``STUDIO_ADMIN_TOKEN``: lets ``/_studio/*`` answer beyond loopback, given in the
  ``X-Studio-Admin`` header [none]
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

DAY_S = 24 * 3600.0
E = TypeVar("E", bound=StrEnum)


class EventShape(StrEnum):
    TYPE = "type"
    ADK = "adk"


class StatusShape(StrEnum):
    DATA = "data"  # data.status / data.outputUrl
    TOP = "top"  # status / output.url at the top level


class ErrorStatus(StrEnum):
    HTTP = "http"
    OK = "ok"


class RenderMode(StrEnum):
    FFMPEG = "ffmpeg"
    NONE = "none"


class ConfigError(ValueError):
    """A setting has a value the studio cannot use."""


@dataclass(frozen=True)
class StudioConfig:
    host: str = "127.0.0.1"
    port: int = 8600
    public_url: str | None = None
    data_dir: Path = Path(".reelyard/studio")
    #: where the state is kept across restarts; None keeps it in memory only
    state_file: Path | None = None
    time_scale: float = 1.0
    faults: str = ""
    seed: int | None = None
    silent_close_ratio: float = 0.3
    #: a fixed turn length (wall seconds, not scaled), instead of one drawn per turn
    turn_s: float | None = None
    event_shape: EventShape = EventShape.TYPE
    status_shape: StatusShape = StatusShape.DATA
    error_status: ErrorStatus = ErrorStatus.HTTP
    token_ttl_s: float = 7 * DAY_S
    token_window_s: float = 7 * DAY_S
    tokens_per_ip: int = 10
    session_ttl_s: float = DAY_S
    free_credits: int = 100
    cost_generate: int = 100
    cost_edit: int = 50
    cost_answer: int = 0
    cost_export: int = 0
    paid_tokens: Mapping[str, int] = field(default_factory=dict)
    anonymous_export: bool = True
    max_upload_bytes: int = 200 * 1024 * 1024
    allow_private_urls: bool = False
    url_fetch_timeout_s: float = 30.0
    render_workers: int = 1
    render_mode: RenderMode = RenderMode.FFMPEG
    render_quality: str = "high"
    admin_token: str | None = None
    #: seconds between heartbeats in a turn, before scaling
    heartbeat_s: float = 5.0

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StudioConfig:
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        data_dir = Path(reader.text("STUDIO_DATA_DIR", ".reelyard/studio"))
        state_file = reader.state_file(data_dir)
        if state_file is not None:
            # refused here, before the server starts, with one line naming the file
            from studio.persist import check_state_file  # noqa: PLC0415 (it imports this module)

            check_state_file(state_file)
        return cls(
            host=reader.text("STUDIO_HOST", "127.0.0.1"),
            port=reader.integer("STUDIO_PORT", 8600, low=1, high=65535),
            public_url=env.get("STUDIO_PUBLIC_URL") or None,
            data_dir=data_dir,
            state_file=state_file,
            time_scale=reader.number("STUDIO_TIME_SCALE", 1.0, low=0.0),
            faults=env.get("STUDIO_FAULTS", ""),
            seed=reader.optional_integer("STUDIO_SEED"),
            silent_close_ratio=reader.number("STUDIO_SILENT_CLOSE_RATIO", 0.3, low=0.0, high=1.0),
            turn_s=reader.optional_number("STUDIO_TURN_S", low=0.0, high=3600.0),
            event_shape=reader.choice("STUDIO_EVENT_SHAPE", EventShape.TYPE),
            status_shape=reader.choice("STUDIO_STATUS_SHAPE", StatusShape.DATA),
            error_status=reader.choice("STUDIO_ERROR_STATUS", ErrorStatus.HTTP),
            token_ttl_s=reader.number("STUDIO_TOKEN_TTL_S", 7 * DAY_S, low=1.0),
            token_window_s=reader.number("STUDIO_TOKEN_WINDOW_S", 7 * DAY_S, low=0.0),
            tokens_per_ip=reader.integer("STUDIO_TOKENS_PER_IP", 10, low=1),
            session_ttl_s=reader.number("STUDIO_SESSION_TTL_S", DAY_S, low=1.0),
            free_credits=reader.integer("STUDIO_FREE_CREDITS", 100, low=0),
            cost_generate=reader.integer("STUDIO_COST_GENERATE", 100, low=0),
            cost_edit=reader.integer("STUDIO_COST_EDIT", 50, low=0),
            cost_answer=reader.integer("STUDIO_COST_ANSWER", 0, low=0),
            cost_export=reader.integer("STUDIO_COST_EXPORT", 0, low=0),
            paid_tokens=reader.paid_tokens("STUDIO_PAID_TOKENS"),
            anonymous_export=reader.flag("STUDIO_ANONYMOUS_EXPORT", default=True),
            max_upload_bytes=reader.integer("STUDIO_MAX_UPLOAD_MB", 200, low=1) * 1024 * 1024,
            allow_private_urls=reader.flag("STUDIO_ALLOW_PRIVATE_URLS", default=False),
            render_workers=reader.integer("STUDIO_RENDER_WORKERS", 1, low=1, high=16),
            render_mode=reader.choice("STUDIO_RENDER_MODE", RenderMode.FFMPEG),
            render_quality=reader.text("STUDIO_RENDER_QUALITY", "high", options=("high", "draft")),
            admin_token=env.get("STUDIO_ADMIN_TOKEN") or None,
        )


class _Reader:
    """Reads typed values, naming the variable in every complaint."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def text(self, name: str, default: str, options: tuple[str, ...] = ()) -> str:
        value = self.env.get(name, "").strip() or default
        if options and value not in options:
            raise ConfigError(f"{name} is one of {', '.join(options)}, not {value!r}")
        return value

    def number(
        self, name: str, default: float, *, low: float | None = None, high: float | None = None
    ) -> float:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} is a number, not {raw!r}") from None
        if not math.isfinite(value):
            raise ConfigError(f"{name} is a finite number, not {raw!r}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError(f"{name} is from {low} to {high}, not {raw}")
        return value

    def optional_number(
        self, name: str, *, low: float | None = None, high: float | None = None
    ) -> float | None:
        if not self.env.get(name, "").strip():
            return None
        return self.number(name, 0.0, low=low, high=high)

    def optional_integer(self, name: str) -> int | None:
        return self.integer(name, 0) if self.env.get(name, "").strip() else None

    def integer(
        self, name: str, default: int, *, low: int | None = None, high: int | None = None
    ) -> int:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} is a whole number, not {raw!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise ConfigError(f"{name} is from {low} to {high}, not {raw}")
        return value

    def flag(self, name: str, *, default: bool) -> bool:
        raw = self.env.get(name, "").strip().lower()
        if not raw:
            return default
        if raw in {"1", "true", "yes", "on"}:
            return True
        if raw in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{name} is 1 or 0, not {raw!r}")

    def choice(self, name: str, default: E) -> E:
        raw = self.env.get(name, "").strip()
        if not raw:
            return default
        try:
            return type(default)(raw)
        except ValueError:
            options = ", ".join(e.value for e in type(default))
            raise ConfigError(f"{name} is one of {options}, not {raw!r}") from None

    def state_file(self, data_dir: Path) -> Path | None:
        """``STUDIO_STATE_FILE``, or the data directory's when only ``STUDIO_PERSIST``
        is on; None when neither asks for persistence."""
        path = self.env.get("STUDIO_STATE_FILE", "").strip()
        persist = self.flag("STUDIO_PERSIST", default=bool(path))
        if path and not persist:
            raise ConfigError("STUDIO_STATE_FILE is set but STUDIO_PERSIST is 0: unset one")
        if not persist:
            return None
        return Path(path) if path else data_dir / "state.sqlite3"

    def paid_tokens(self, name: str) -> dict[str, int]:
        raw = self.env.get(name, "").strip()
        tokens: dict[str, int] = {}
        for item in filter(None, (part.strip() for part in raw.split(","))):
            token, _, credits = item.rpartition(":")
            if not token or not credits.isdigit():
                raise ConfigError(f"{name} is a list of token:credits, not {item!r}")
            tokens[token] = int(credits)
        return tokens
