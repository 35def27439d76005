"""Fault injection: the ways the real service misbehaves, on command.

Each fault is a probability ``p`` (0-1, drawn per eligible event) and/or a ``count``
(the next ``count`` eligible events, for sure, before ``p`` applies). They are set at
start from ``STUDIO_FAULTS`` (JSON) and at run time with ``POST /_studio/faults``, and
read with ``GET /_studio/faults``. A POST merges: the faults it names are replaced,
the others kept; ``{"clear": true}`` first turns every fault off.

::

    {"rate_limit": {"p": 0.1, "count": 3}, "retry_after_s": 2, "stream_cut": {"count": 1}}

| fault | eligible event | effect |
|---|---|---|
| ``rate_limit`` | any Nemo API call | 429 with ``Retry-After: retry_after_s`` |
| ``server_error`` | any Nemo API call | a 5xx answer (503, an HTML page) |
| ``latency_ms`` | any Nemo API call | a number, not a fault spec: added delay |
| ``token_expiry_after`` | an authenticated call | a number N: a token dies after N calls (1001) |
| ``token_expiry`` | an authenticated call | the token dies now (1001) |
| ``session_loss`` | a call naming a session | the session is gone (1002) |
| ``out_of_credits`` | a turn | refused with 2001, as if the balance were empty |
| ``stream_cut`` | a turn | the connection drops mid-turn (the edit still happens) |
| ``render_failure`` | a render | it ends ``failed`` |
| ``render_stuck`` | a render | it stays ``processing`` for ever |
| ``status_shape`` | a render status | ``"data"`` or ``"top"``: where the status is |

The share of turns that close without text (``silent_close``) is the service's normal
behaviour, not a fault: it is a fault spec too, so tests can force it (count) or
change its ratio (p), defaulting to ``STUDIO_SILENT_CLOSE_RATIO``. It is drawn for
turns that call a tool (generations and edits); an answer is nothing but its text.

``GET /_studio/faults`` also answers ``fired``: how many times each fault struck since
the studio started (kept through ``clear``; a test that injects counts while the
service runs reads what really happened there, as the chaos run does for token
expiries, each of which costs a new token).

``POST /_studio/reset`` restores the faults set at start and restarts the random draws
from ``STUDIO_SEED``, so a reset studio replays the same run.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from studio.config import StatusShape

SPEC_FAULTS = (
    "rate_limit",
    "server_error",
    "token_expiry",
    "session_loss",
    "out_of_credits",
    "stream_cut",
    "silent_close",
    "render_failure",
    "render_stuck",
)
NUMBER_FAULTS = ("latency_ms", "token_expiry_after", "retry_after_s")
DEFAULT_RETRY_AFTER_S = 30.0


class FaultConfigError(ValueError):
    """A fault setting that cannot be understood."""


@dataclass
class FaultSpec:
    p: float = 0.0
    count: int = 0

    def as_json(self) -> dict[str, float | int]:
        return {"p": self.p, "count": self.count}


class Faults:
    """The faults in force; thread-safe; one random generator, seeded for replays."""

    def __init__(self, *, seed: int | None = None, silent_close_ratio: float = 0.3) -> None:
        self._lock = threading.Lock()
        self._seed = seed
        self._random = random.Random(seed)  # noqa: S311 (fault draws, not secrets)
        self._default_silent = silent_close_ratio
        self._specs: dict[str, FaultSpec] = {}
        self._numbers: dict[str, float] = {}
        self._status_shape: StatusShape | None = None
        self._fired: Counter[str] = Counter()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._specs = {name: FaultSpec() for name in SPEC_FAULTS}
            self._specs["silent_close"] = FaultSpec(p=self._default_silent)
            self._numbers = {"retry_after_s": DEFAULT_RETRY_AFTER_S}
            self._status_shape = None

    def reseed(self) -> None:
        """Start the draws over from the seed: a reset studio replays the same run."""
        with self._lock:
            self._random.seed(self._seed)

    def fires(self, name: str) -> bool:
        """Whether fault ``name`` strikes this eligible event (consumes a count)."""
        with self._lock:
            spec = self._specs[name]
            if spec.count > 0:
                spec.count -= 1
                struck = True
            else:
                struck = spec.p > 0 and self._random.random() < spec.p
            if struck:
                self._fired[name] += 1
            return struck

    def number(self, name: str) -> float | None:
        with self._lock:
            return self._numbers.get(name)

    def uniform(self, low: float, high: float) -> float:
        with self._lock:
            return self._random.uniform(low, high)

    def chance(self, p: float) -> bool:
        with self._lock:
            return self._random.random() < p

    @property
    def status_shape(self) -> StatusShape | None:
        with self._lock:
            return self._status_shape

    def update(self, settings: Any) -> None:
        """Merge settings (a JSON object); raise :class:`FaultConfigError` naming the bad key."""
        if not isinstance(settings, dict):
            raise FaultConfigError("faults are a JSON object")
        specs = {k: _spec(k, v) for k, v in settings.items() if k in SPEC_FAULTS}
        numbers = {k: _number(k, v) for k, v in settings.items() if k in NUMBER_FAULTS}
        # null: the configured shape again (what GET answers when none was set)
        shape = (
            _shape(settings["status_shape"]) if settings.get("status_shape") is not None else None
        )
        # ``fired`` is read-only: what GET answered may be POSTed back as it is
        unknown = set(settings) - {*SPEC_FAULTS, *NUMBER_FAULTS, "status_shape", "clear", "fired"}
        if unknown:
            options = ", ".join((*SPEC_FAULTS, *NUMBER_FAULTS, "status_shape", "clear"))
            raise FaultConfigError(f"unknown fault {sorted(unknown)[0]!r}; known: {options}")
        clear = settings.get("clear", False)
        if not isinstance(clear, bool):
            raise FaultConfigError("clear is true or false")
        if clear:
            self.clear()
        with self._lock:
            self._specs.update(specs)
            for key, number in numbers.items():
                if number is None:
                    self._numbers.pop(key, None)
                else:
                    self._numbers[key] = number
            if "status_shape" in settings:
                self._status_shape = shape

    def update_from_text(self, text: str) -> None:
        if not text.strip():
            return
        try:
            settings = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FaultConfigError(f"STUDIO_FAULTS is not JSON: {exc}") from None
        self.update(settings)

    def as_json(self) -> dict[str, Any]:
        with self._lock:
            state: dict[str, Any] = {name: spec.as_json() for name, spec in self._specs.items()}
            state.update(self._numbers)
            state["status_shape"] = self._status_shape.value if self._status_shape else None
            state["fired"] = dict(sorted(self._fired.items()))
            return state


def _number(key: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise FaultConfigError(f"{key} is a number of at least 0, or null")
    return float(value)


def _shape(value: Any) -> StatusShape:
    try:
        return StatusShape(value)
    except ValueError:
        raise FaultConfigError("status_shape is 'data' or 'top'") from None


def _spec(key: str, value: Any) -> FaultSpec:
    if isinstance(value, bool | int | float):
        # a bare number is a probability
        value = {"p": value}
    if not isinstance(value, dict) or set(value) - {"p", "count"}:
        raise FaultConfigError(f"{key} is {{'p': 0-1, 'count': n}} or a probability")
    p, count = value.get("p", 0.0), value.get("count", 0)
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p <= 1.0:
        raise FaultConfigError(f"{key}.p is a probability from 0 to 1")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise FaultConfigError(f"{key}.count is a whole number of at least 0")
    return FaultSpec(p=float(p), count=count)
