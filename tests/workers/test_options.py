"""Job options as the API stores them, read by the pipeline."""

from __future__ import annotations

import pytest

from workers.decisions import JobOptions, compose_instruction


@pytest.mark.parametrize(
    ("stored", "music"),
    [
        ("on", True),
        ("off", False),
        ("https://cdn.example.com/song.mp3", "https://cdn.example.com/song.mp3"),
        (True, True),
        (False, False),
        (None, None),
        (3, None),
    ],
)
def test_music_as_the_api_stores_it(stored, music):
    assert JobOptions.from_json({"music": stored}).music == music


def test_music_on_asks_for_background_music_not_an_uploaded_track():
    instruction = compose_instruction("a video", JobOptions.from_json({"music": "on"}))
    assert "Add background music." in instruction
    assert "uploaded audio" not in instruction
