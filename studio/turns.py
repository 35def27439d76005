"""A chat turn (``/run_sse``): the agent's work, unfolding over time as SSE events.

The agent runs in a thread of its own and changes the session's draft whatever
happens to the connection, as the real service does: a client whose stream breaks
must learn what happened by reading the state. The response only relays the agent's
events; closing it ends nothing but the relay.

The script of a turn (:func:`script`) is a plain function of the plan and a few
random draws, so its order and timing can be tested without a server:

- generate: ``tool_call generate_timeline`` … ``tool_result`` (the raw timeline is in
  the state) … ``tool_call post_production`` … ``tool_result`` (music, title and
  effects) … ``text``
- edit: ``tool_call edit_timeline`` … ``tool_result`` … ``text``
- answer: … ``text``

with heartbeats through every wait, no text at all when the turn closes silently,
and, when the stream is cut, the connection dropped mid-turn (no clean end).
"""

from __future__ import annotations

import contextlib
import json
import math
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from studio.config import EventShape
from studio.planner import Plan, TurnKind

#: how long each kind of turn takes at time scale 1, in seconds (low, high)
DURATIONS: dict[TurnKind, tuple[float, float]] = {
    TurnKind.ANSWER: (5.0, 15.0),
    TurnKind.EDIT: (10.0, 30.0),
    TurnKind.GENERATE: (30.0, 90.0),
}

#: what the backend, written for a GUI, tells a user who has no GUI
GUI_HINTS = (
    "Click Export to download your video.",
    "Open the music panel to change the track.",
    "Drag the clips in the timeline to reorder them.",
    "Preview it in the timeline before you export.",
)


class Step(StrEnum):
    EVENT = "event"
    APPLY = "apply"  # put a draft into the session's state
    CUT = "cut"  # drop the connection (the agent goes on)


@dataclass(frozen=True)
class Action:
    at_s: float  # seconds after the turn starts
    step: Step
    event: dict[str, Any] | None = None
    draft: dict[str, Any] | None = None


@dataclass(frozen=True)
class Draws:
    """The random choices of one turn, drawn up front."""

    duration_s: float
    silent: bool
    cut: bool
    hint: str | None


def script(plan: Plan, draws: Draws, *, heartbeat_s: float) -> list[Action]:
    """Every action of a turn, in time order."""
    total = draws.duration_s
    actions: list[Action] = []

    def event(at: float, **payload: Any) -> None:
        actions.append(Action(at, Step.EVENT, event=payload))

    if plan.kind is TurnKind.GENERATE:
        event(0.05 * total, type="tool_call", name="generate_timeline", args={"stage": "raw"})
        event(
            0.45 * total,
            type="tool_result",
            name="generate_timeline",
            result=_outline(plan.raw_draft),
        )
        actions.append(Action(0.45 * total, Step.APPLY, draft=plan.raw_draft))
        event(
            0.5 * total,
            type="tool_call",
            name="post_production",
            args={"stage": "music_title_effects"},
        )
        event(0.9 * total, type="tool_result", name="post_production", result=_outline(plan.draft))
        actions.append(Action(0.9 * total, Step.APPLY, draft=plan.draft))
    elif plan.kind is TurnKind.EDIT:
        event(
            0.1 * total,
            type="tool_call",
            name="edit_timeline",
            args={"changes": list(plan.changes)},
        )
        event(0.85 * total, type="tool_result", name="edit_timeline", result=_outline(plan.draft))
        actions.append(Action(0.85 * total, Step.APPLY, draft=plan.draft))
    if not draws.silent:
        reply = plan.reply if draws.hint is None else f"{plan.reply} {draws.hint}"
        if plan.kind is TurnKind.GENERATE:
            event(0.1 * total, type="text", content="Creating your video from the photos…")
        event(total, type="text", content=reply)
    if draws.cut:
        # after the work has started, before it is all reported: the outcome is unknown
        applies = [a.at_s for a in actions if a.step is Step.APPLY]
        actions.append(
            Action((0.1 * total + applies[-1]) / 2 if applies else 0.5 * total, Step.CUT)
        )
    # through every wait, never after the last word
    beats = (
        [
            Action(n * heartbeat_s, Step.EVENT, event={"type": "heartbeat"})
            for n in range(1, math.ceil(total / heartbeat_s))
        ]
        if heartbeat_s > 0
        else []
    )
    return sorted([*actions, *beats], key=lambda a: (a.at_s, a.step != Step.APPLY))


def _outline(draft: dict[str, Any] | None) -> dict[str, Any]:
    if not draft:
        return {"tracks": 0}
    tracks = draft.get("t", [])
    return {"tracks": len(tracks), "duration_ms": draft.get("d")}


def encode(event: dict[str, Any] | None, shape: EventShape) -> str:
    """One SSE message (``data: …`` and a blank line) in the configured event shape."""
    if event is None or (shape is EventShape.ADK and event["type"] == "heartbeat"):
        return "data: \n\n"  # an empty data line: still working
    payload = event if shape is EventShape.TYPE else _adk(event)
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _adk(event: dict[str, Any]) -> dict[str, Any]:
    """The same event as a Google ADK ``Event`` object."""
    kind = event["type"]
    part: dict[str, Any]
    if kind == "text":
        part = {"text": event["content"]}
    elif kind == "tool_call":
        part = {
            "functionCall": {
                "id": f"call_{uuid.uuid4().hex[:8]}",
                "name": event["name"],
                "args": event["args"],
            }
        }
    else:
        part = {"functionResponse": {"name": event["name"], "response": event["result"]}}
    return {
        "id": uuid.uuid4().hex,
        "author": "nemo_agent",
        "content": {"role": "model", "parts": [part]},
        "partial": False,
        "timestamp": time.time(),
    }


_END = object()
_CUT = object()


@dataclass
class Turn:
    """One running turn: the agent thread and the queue its relay reads."""

    actions: list[Action]
    time_scale: float
    apply: Callable[[dict[str, Any]], None]
    finish: Callable[[], None]
    shape: EventShape
    _queue: queue.Queue[object] = field(default_factory=queue.Queue)

    def start(self) -> None:
        threading.Thread(target=self._run, name="studio-turn", daemon=True).start()

    def _run(self) -> None:
        started = time.monotonic()
        try:
            for action in self.actions:
                delay = started + action.at_s * self.time_scale - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                if action.step is Step.APPLY and action.draft is not None:
                    self.apply(action.draft)
                elif action.step is Step.CUT:
                    self._queue.put(_CUT)
                elif action.event is not None:
                    self._queue.put(action.event)
        finally:
            self.finish()
            self._queue.put(_END)

    def relay(self, connection: socket.socket | None) -> Iterator[str]:
        """The response body: events as they come, then a clean end or a dropped connection."""
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if item is _CUT:
                if connection is not None:
                    with contextlib.suppress(OSError):  # already gone
                        connection.shutdown(socket.SHUT_RDWR)
                return
            yield encode(item if isinstance(item, dict) else None, self.shape)
