"""Segment lengths: the video lasts what was asked, as the renderer counts it."""

from __future__ import annotations

import pytest

from studio.planner.timing import MIN_SOLO_MS, lay_out, overlap_ms, shortest_total_ms
from studio.render import parse_timeline


def as_draft(layout, fps=30):
    n = len(layout.durations)
    segments = []
    for i in range(n):
        meta = {}
        if i < n - 1:
            meta["transition"] = {"type": "crossfade", "d": layout.transitions_ms[i]}
        segments.append({"src": f"{i}.jpg", "s": layout.starts[i], "d": layout.durations[i],
                         "m": meta})  # fmt: skip
    return {"t": [{"tt": 0, "sg": segments}], "m": {"fps": fps}}


@pytest.mark.parametrize(
    ("count", "transition", "total", "fps"),
    [
        (5, 500, 15_000, 30),
        (5, 800, 10_000, 30),
        (3, 0, 7_000, 30),
        (7, 500, 10_001, 30),
        (12, 500, 30_000, 25),
        (4, 450, 9_000, 24),
        (1, 500, 4_000, 30),
    ],
)
def test_the_video_lasts_the_asked_length(count, transition, total, fps):
    layout = lay_out([1.0] * count, [transition] * (count - 1), total, fps)
    timeline = parse_timeline(as_draft(layout, fps))  # also checks every declared start
    assert layout.total_ms == total
    assert abs(timeline.frames * 1000 / fps - total) <= 1000 / fps
    assert layout.starts[0] == 0


def test_photos_keep_their_relative_screen_time():
    layout = lay_out([1.0, 2.0, 1.0], [0, 0], 8_000, 30)
    assert layout.durations == (2_000, 4_000, 2_000)


def test_transitions_shrink_before_the_length_grows():
    layout = lay_out([1.0] * 4, [1000] * 3, 4_000, 30)
    assert layout.total_ms == 4_000
    assert all(t < 1000 for t in layout.transitions_ms)
    solos = [
        d - (overlap_ms(layout.transitions_ms[i - 1], 30) if i else 0)
        - (overlap_ms(layout.transitions_ms[i], 30) if i < 3 else 0)
        for i, d in enumerate(layout.durations)
    ]  # fmt: skip
    assert min(solos) >= MIN_SOLO_MS - 1


def test_a_length_too_short_for_the_photos_is_raised():
    layout = lay_out([1.0] * 20, [500] * 19, 3_000, 30)
    assert layout.total_ms == shortest_total_ms(20, 30) == 10_000
    assert set(layout.transitions_ms) == {0}
    parse_timeline(as_draft(layout))
