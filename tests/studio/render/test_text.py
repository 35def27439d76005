"""Text overlays: real glyphs for every script, wrapped to fit, placed where asked."""

from __future__ import annotations

import numpy as np
from PIL import ImageFont

from studio.render.text import font_path, rasterise
from studio.render.timeline import Canvas, Position, TextClip, TextStyle

CANVAS = Canvas(1080, 1920, 30)


def clip(text: str, **overrides) -> TextClip:
    values = {
        "where": "t[1].sg[0]",
        "text": text,
        "start": 0,
        "frames": 30,
        "position": Position.CENTER,
        "size": 0.05,
        "color": (255, 255, 255),
        "style": TextStyle.SHADOW,
        "fade_frames": 0,
    }
    values.update(overrides)
    return TextClip(**values)


def glyph_mask(text: str) -> np.ndarray:
    font = ImageFont.truetype(str(font_path()), 64)
    return np.asarray(font.getmask(text))


def test_bundled_font_has_real_glyphs_for_cjk_and_accents():
    missing = glyph_mask("\ue000")  # a private-use code point: the font's "missing" box
    for character in "夏季促销éÉ—":
        mask = glyph_mask(character)
        assert mask.shape != missing.shape or not np.array_equal(mask, missing), character


def test_long_title_is_wrapped_inside_the_canvas():
    overlay = rasterise(clip("Summer Sale on every single item in the store today only"), CANVAS)
    assert overlay.planes.width <= CANVAS.width
    assert overlay.x >= 0
    single = rasterise(clip("Summer Sale"), CANVAS)
    assert overlay.planes.height > single.planes.height * 1.8


def test_cjk_text_without_spaces_is_wrapped_between_characters():
    overlay = rasterise(clip("夏季促销" * 12), CANVAS)
    assert overlay.planes.width <= CANVAS.width
    assert overlay.planes.height > rasterise(clip("夏季促销"), CANVAS).planes.height * 1.8


def test_overlay_coordinates_and_sides_are_even_for_chroma():
    for position in Position:
        overlay = rasterise(clip("Café", position=position, style=TextStyle.BOX), CANVAS)
        assert overlay.x % 2 == overlay.y % 2 == 0
        assert overlay.planes.width % 2 == overlay.planes.height % 2 == 0
        assert overlay.alpha_half.shape == (overlay.planes.height // 2, overlay.planes.width // 2)


def test_box_style_is_opaque_behind_the_whole_text():
    boxed = rasterise(clip("Sale", style=TextStyle.BOX), CANVAS)
    shadowed = rasterise(clip("Sale"), CANVAS)
    assert (boxed.alpha > 0.5).mean() > 0.9
    assert (shadowed.alpha > 0.5).mean() < 0.6
