"""Fixtures of the renderer's tests: a folder of photos made on the spot."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.studio.render.factory import BLUE, DARK, RED, solid, textured


@pytest.fixture
def media(tmp_path: Path) -> Path:
    folder = tmp_path / "media"
    folder.mkdir()
    solid(folder / "red.jpg", RED, quality=95)
    solid(folder / "blue.png", BLUE)
    solid(folder / "dark.jpg", DARK, quality=95)
    textured(folder / "texture.jpg", seed=1)
    return folder
