"""The chaos run's fault schedule: what breaks, when, drawn from a seed.

A schedule is a list of :class:`Fault` sorted by time, drawn by :func:`draw` from a
seed that the run prints, so a failing run can be replayed exactly. Every kind the
issue names is in :data:`KINDS`; :func:`draw` places at least ``per_kind`` of each,
then fills up to ``total`` with kinds drawn at random, and keeps the faults that take a
shared server away (restarts, refusals) from overlapping one another, so that each
recovery is a recovery from one thing at a time (faults of other kinds run during
them; that is the point).
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

#: the studio's faults the run turns on for a while, with the spec it sends
#: (``POST /_studio/faults``; studio/faults.py)
STUDIO_FAULTS: Final[dict[str, dict[str, Any]]] = {
    "studio.rate_limit": {"rate_limit": {"count": 5}, "retry_after_s": 1},
    "studio.token_expiry": {"token_expiry": {"count": 1}},
    "studio.session_loss": {"session_loss": {"count": 1}},
    "studio.silent_close": {"silent_close": {"count": 2}},
    "studio.stream_cut": {"stream_cut": {"count": 1}},
    "studio.server_error": {"server_error": {"count": 3}},
    "studio.render_failure": {"render_failure": {"count": 1}},
    "studio.render_stuck": {"render_stuck": {"count": 1}},
    "studio.latency": {"latency_ms": 300},
}
#: processes the run may kill with SIGKILL
WORKERS: Final = ("pipeline", "edit", "webhooks", "beat", "api")
#: the pipeline's named crash points (a test-only setting makes the process exit there)
CRASH_POINTS: Final = (
    "edit_marked_sent",
    "edit_request_sent",
    "render_posted",
    "video_stored",
    "webhook_mid_delivery",
)
#: faults that take a shared server away for a while: never two at once
OUTAGES: Final = frozenset(
    {"redis.restart", "redis.flushall", "postgres.restart", "postgres.refuse"}
)
#: the receiver's misbehaviours
RECEIVER: Final = ("receiver.fail", "receiver.timeout", "receiver.down")
KINDS: Final = (
    "worker.kill",
    "worker.crash_point",
    *sorted(OUTAGES),
    *STUDIO_FAULTS,
    *RECEIVER,
)
#: how long an outage lasts, at most (seconds); the next one waits for it to end
OUTAGE_S: Final = 5.0


@dataclass(frozen=True)
class Fault:
    """One fault: its kind, when (seconds from the start), for how long, and details."""

    at_s: float
    kind: str
    duration_s: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def ends_s(self) -> float:
        return self.at_s + self.duration_s


def draw(seed: int, *, duration_s: float, per_kind: int = 1, total: int = 50) -> list[Fault]:
    """A schedule of at least ``total`` faults over ``duration_s``, ``per_kind`` of each
    kind at least; the same seed gives the same schedule."""
    if duration_s <= 0:
        raise ValueError("a schedule needs a positive duration")
    rng = random.Random(seed)
    kinds = [kind for kind in KINDS for _ in range(per_kind)]
    kinds += [rng.choice(KINDS) for _ in range(max(0, total - len(kinds)))]
    rng.shuffle(kinds)
    outages = [kind for kind in kinds if kind in OUTAGES]
    others = [kind for kind in kinds if kind not in OUTAGES]
    faults = [_fault(rng, kind, rng.uniform(0, duration_s)) for kind in others]
    faults += _outages(rng, outages, duration_s)
    return sorted(faults, key=lambda fault: (fault.at_s, fault.kind))


def _outages(rng: random.Random, kinds: list[str], duration_s: float) -> list[Fault]:
    """Outages one after the other: evenly spread slots, each at a random point of its
    slot, lasting at most until the slot ends (and at most :data:`OUTAGE_S`)."""
    if not kinds:
        return []
    slot = duration_s / len(kinds)
    placed = []
    for index, kind in enumerate(kinds):
        start = index * slot + rng.uniform(0, slot / 2)
        length = min(OUTAGE_S, slot / 2) * rng.uniform(0.4, 1.0)
        if kind == "redis.flushall":
            length = 0.0
        placed.append(_fault(rng, kind, start, length))
    return placed


def _fault(rng: random.Random, kind: str, at_s: float, length_s: float | None = None) -> Fault:
    params: dict[str, Any] = {}
    duration = length_s if length_s is not None else 0.0
    if kind == "worker.kill":
        params = {"process": rng.choice(WORKERS)}
    elif kind == "worker.crash_point":
        params = {"point": rng.choice(CRASH_POINTS)}
    elif kind in STUDIO_FAULTS:
        params = _studio_params(rng, kind)
        duration = rng.uniform(2.0, 6.0)
    elif kind in RECEIVER:
        duration = rng.uniform(1.0, 5.0)
    return Fault(at_s=round(at_s, 3), kind=kind, duration_s=round(duration, 3), params=params)


def _studio_params(rng: random.Random, kind: str) -> dict[str, Any]:
    """The spec to send (its counts, and a random rate for the fault's duration) and
    the spec that turns it off again. Token expiries are counts only: the run must
    know how many fired, since each one costs a token."""
    spec = {
        name: dict(value) if isinstance(value, dict) else value
        for name, value in STUDIO_FAULTS[kind].items()
    }
    if kind == "studio.latency":
        return {"spec": {"latency_ms": rng.choice([100, 200, 400, 800])}, "off": {"latency_ms": 0}}
    if kind == "studio.token_expiry":
        return {"spec": spec}
    name = kind.removeprefix("studio.")
    spec[name]["p"] = round(rng.uniform(0.05, 0.3), 2)
    return {"spec": spec, "off": {name: {"p": 0, "count": 0}}}


def counts(schedule: list[Fault]) -> Counter[str]:
    """Faults by kind, for the run's table."""
    return Counter(fault.kind for fault in schedule)


def overlapping_outages(schedule: list[Fault]) -> list[tuple[Fault, Fault]]:
    """Pairs of outages that overlap (a schedule from :func:`draw` has none)."""
    outages = [fault for fault in schedule if fault.kind in OUTAGES]
    return [
        (first, second)
        for first, second in itertools.pairwise(outages)
        if second.at_s < first.ends_s
    ]
