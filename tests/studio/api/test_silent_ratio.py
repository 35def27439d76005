"""Over many real turns, the share that closes without text is the configured ratio, and
about half of the rest speak as if the user had a GUI. The studio is seeded and reset
before the run, so the count is the same every time; the band is wide enough to hold
for any seed (more than three standard deviations each way)."""

from __future__ import annotations

import pytest

from tests.studio.api.helpers import User

pytestmark = pytest.mark.slow
PAID = "tok_many_turns"
STUDIO_ENV = {"STUDIO_TIME_SCALE": "0.0005", "STUDIO_PAID_TOKENS": f"{PAID}:1000000"}
TURNS = 200
GUI_WORDS = ("Click Export", "music panel", "Drag the clips", "Preview it in the timeline")


def _run_turns(user, count):
    session_id = user.session()
    user.chat(session_id, "a 3-second video")
    streams = [user.chat(session_id, f"change the title to 'Take {n}'") for n in range(count)]
    assert all(stream.status == 200 for stream in streams)
    assert all(stream.of_type("tool_result") for stream in streams)  # every one an edit
    return streams


def test_about_30_percent_of_turns_close_silently(studio, client):
    streams = _run_turns(User.paid(client, PAID), TURNS)
    silent = sum(not stream.texts for stream in streams)
    assert 0.2 * TURNS <= silent <= 0.4 * TURNS, silent
    speaking = [stream.texts[-1] for stream in streams if stream.texts]
    hints = sum(any(words in text for words in GUI_WORDS) for text in speaking)
    assert 0.35 * len(speaking) <= hints <= 0.65 * len(speaking), hints


def test_the_ratio_is_a_setting(studio, client):
    studio.faults(silent_close=0.8)
    streams = _run_turns(User.paid(client, PAID), 60)
    silent = sum(not stream.texts for stream in streams)
    assert 0.6 * 60 <= silent <= 0.97 * 60, silent
