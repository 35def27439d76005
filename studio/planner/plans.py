"""What the planner takes (the session's media) and what it gives back (a plan)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal


@dataclass(frozen=True)
class MediaItem:
    """One uploaded file of the session, as the planner needs it."""

    ref: str  # what goes into a segment's "src" (the file's URL in the studio)
    name: str  # the original file name, for labels
    kind: Literal["image", "video", "audio"]
    width: int | None = None
    height: int | None = None
    duration_ms: int | None = None


class TurnKind(StrEnum):
    GENERATE = "generate"  # the session's first timeline, in two stages
    EDIT = "edit"  # the current draft, changed
    ANSWER = "answer"  # text only; the draft stays as it is


@dataclass(frozen=True)
class Plan:
    """The outcome of one chat turn."""

    kind: TurnKind
    raw_draft: dict[str, Any] | None  # GENERATE only: stage one, the video track alone
    draft: dict[str, Any] | None  # the new draft; None for ANSWER
    reply: str  # what was made or changed, and what was assumed, in plain words
    changes: tuple[str, ...]  # one short phrase per change ("aspect ratio 16:9 → 1:1")
    assumptions: tuple[str, ...]  # where the prompt was silent or not understood
