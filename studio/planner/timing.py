"""Laying photos out in time: segment lengths that add up to the asked length.

The renderer plays video segments back to back, and a transition overlaps two
segments by its length rounded to whole frames. So a video lasts
``sum(d) - sum(overlaps)``, and every segment must last longer than the
transitions into and out of it together. Planning in those terms, with each
overlap taken at the length the renderer will really use, is what lets a draft
say "15 s" and play for 15 s, and lets each declared ``s`` match the start the
renderer computes.

A photo's *solo* time is its time on screen outside any transition. Photos keep
their relative solo times when the video is made longer or shorter, and none
gets less than :data:`MIN_SOLO_MS`: when the asked length is too short for the
transitions, the transitions are shortened first, and only then is the length
raised (the caller says so in its assumptions).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: the least time a photo is on screen on its own, outside transitions
MIN_SOLO_MS = 500
#: the longest video the planner makes (ten minutes)
MAX_TOTAL_MS = 600_000


@dataclass(frozen=True)
class Layout:
    """Segment lengths and starts, in whole milliseconds, and the video's length."""

    durations: tuple[int, ...]
    starts: tuple[int, ...]
    transitions_ms: tuple[int, ...]  # one per joint; shorter than asked if they had to be
    total_ms: int


def overlap_ms(transition_ms: float, fps: int) -> float:
    """How long a transition really overlaps two segments: its length in whole frames."""
    return round(transition_ms * fps / 1000) * 1000 / fps


def min_solo_ms(fps: int) -> float:
    """:data:`MIN_SOLO_MS`, or three frames where a frame is long (very low fps)."""
    return max(float(MIN_SOLO_MS), 3 * 1000 / fps)


def shortest_total_ms(photos: int, fps: int) -> int:
    """The shortest video that shows each of ``photos`` photos for its minimum time."""
    return math.ceil(photos * min_solo_ms(fps))


def video_length_ms(durations: Sequence[float], transitions_ms: Sequence[float], fps: int) -> int:
    """A video's length as the renderer computes it: segments minus their overlaps."""
    overlaps = sum(overlap_ms(t, fps) for t in transitions_ms[: max(len(durations) - 1, 0)])
    return round(sum(durations) - overlaps)


def lay_out(
    weights: Sequence[float], transitions_ms: Sequence[float], total_ms: int, fps: int
) -> Layout:
    """Segments whose video lasts ``total_ms``, solo times in proportion to ``weights``.

    ``transitions_ms`` has one entry per joint (``len(weights) - 1``); 0 is a cut.
    ``total_ms`` is raised to :func:`shortest_total_ms` if it is below it.
    """
    count = len(weights)
    solo_min = min_solo_ms(fps)
    total_ms = max(total_ms, shortest_total_ms(count, fps))
    joints = [float(t) for t in transitions_ms[: count - 1]]
    joints += [0.0] * (count - 1 - len(joints))
    overlaps = [overlap_ms(t, fps) for t in joints]
    room = total_ms - count * solo_min  # what the transitions may take together
    if sum(overlaps) > room:
        scale = max(room, 0.0) / sum(overlaps)
        joints = [float(_whole_frames_down(t * scale, fps)) for t in joints]
        overlaps = [overlap_ms(t, fps) for t in joints]

    available = total_ms - sum(overlaps)
    share = sum(w for w in weights if w > 0)
    solos = [available * max(w, 0.0) / share for w in weights] if share > 0 else []
    if not solos or min(solos) < solo_min:
        solos = [available / count] * count
    exact = [
        solo + (overlaps[i - 1] if i else 0.0) + (overlaps[i] if i < count - 1 else 0.0)
        for i, solo in enumerate(solos)
    ]
    durations: list[int] = []
    running, edge = 0.0, 0
    for d in exact:  # rounding the running sum keeps the total exact to the millisecond
        running += d
        durations.append(round(running) - edge)
        edge = round(running)
    starts: list[int] = []
    start = 0.0
    for i, d in enumerate(durations):
        starts.append(round(start))
        start += d - (overlaps[i] if i < count - 1 else 0.0)
    return Layout(
        durations=tuple(durations),
        starts=tuple(starts),
        transitions_ms=tuple(round(t) for t in joints),
        total_ms=round(start),
    )


def _whole_frames_down(ms: float, fps: int) -> int:
    """The longest round length (a multiple of 100 ms, in whole frames) not over ``ms``."""
    frames = math.floor((ms // 100) * 100 * fps / 1000)
    return round(frames * 1000 / fps)
