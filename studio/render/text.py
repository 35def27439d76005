"""Text overlays: a title or caption rasterised once into an RGBA patch.

The font is Noto Sans CJK Bold from the ``cvttf-notosanscjk-bold`` package, so
accents, CJK and Latin render alike on any machine without a system font.
"""

from __future__ import annotations

import importlib.resources
import math
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from studio.render.frames import Overlay
from studio.render.media import rgba_to_planes
from studio.render.timeline import Canvas, Position, TextClip, TextStyle

#: distance of a top or bottom text from the canvas edge, as a fraction of the height
SAFE_MARGIN = 0.08
MAX_WIDTH = 0.88
BOX_ALPHA = 150


@cache
def font_path() -> Path:
    """The bundled font file."""
    package = importlib.resources.files("cvttf_NotoSansCJK_Bold")
    for entry in package.iterdir():
        if entry.name.lower().endswith((".otf", ".ttf")):
            return Path(str(entry))
    raise FileNotFoundError("cvttf_NotoSansCJK_Bold ships no font file")  # pragma: no cover


@cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path()), size)


def _wrap(text: str, font: ImageFont.FreeTypeFont, max_width: float) -> str:
    """Break lines to fit: at spaces where there are any, between characters otherwise (CJK)."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        tokens = paragraph.split(" ") if " " in paragraph else list(paragraph)
        joiner = " " if " " in paragraph else ""
        for token in tokens:
            candidate = f"{line}{joiner}{token}" if line else token
            if line and font.getlength(candidate) > max_width:
                lines.append(line)
                line = token
            else:
                line = candidate
        lines.append(line)
    return "\n".join(lines)


def rasterise(clip: TextClip, canvas: Canvas) -> Overlay:
    """Draw ``clip`` once: the text with its shadow or box, placed on the canvas."""
    size = max(8, round(clip.size * canvas.height))
    font = _font(size)
    text = _wrap(clip.text.strip(), font, canvas.width * MAX_WIDTH)
    spacing = round(size * 0.25)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, top, right, bottom = (
        math.floor(edge) if index < 2 else math.ceil(edge)
        for index, edge in enumerate(
            probe.multiline_textbbox((0, 0), text, font=font, spacing=spacing, align="center")
        )
    )
    pad = round(size * (0.45 if clip.style is TextStyle.BOX else 0.3))
    width = min(canvas.width, right - left + 2 * pad)
    height = min(canvas.height, bottom - top + 2 * pad)
    width, height = width + width % 2, height + height % 2
    patch = Image.new("RGBA", (width, height), (*clip.color, 0))
    origin = (pad - left, pad - top)
    if clip.style is TextStyle.BOX:
        box = Image.new("RGBA", (width, height), (0, 0, 0, 0))
        ImageDraw.Draw(box).rounded_rectangle(
            (0, 0, width - 1, height - 1), radius=round(size * 0.3), fill=(0, 0, 0, BOX_ALPHA)
        )
        patch = Image.alpha_composite(patch, box)
    else:
        shadow = Image.new("RGBA", (width, height), (0, 0, 0, 0))
        offset = max(1, round(size * 0.05))
        ImageDraw.Draw(shadow).multiline_text(
            (origin[0] + offset, origin[1] + offset),
            text,
            font=font,
            fill=(0, 0, 0, 220),
            spacing=spacing,
            align="center",
            stroke_width=max(1, round(size * 0.04)),
            stroke_fill=(0, 0, 0, 220),
        )
        shadow = shadow.filter(ImageFilter.GaussianBlur(radius=max(1.0, size * 0.06)))
        patch = Image.alpha_composite(patch, shadow)
    ImageDraw.Draw(patch).multiline_text(
        origin, text, font=font, fill=(*clip.color, 255), spacing=spacing, align="center"
    )
    x = (canvas.width - width) // 2
    if clip.position is Position.TOP:
        y = round(canvas.height * SAFE_MARGIN)
    elif clip.position is Position.BOTTOM:
        y = canvas.height - height - round(canvas.height * SAFE_MARGIN)
    else:
        y = (canvas.height - height) // 2
    y = max(0, min(y, canvas.height - height))
    planes, alpha, alpha_half = rgba_to_planes(np.asarray(patch, dtype=np.uint8))
    return Overlay(clip, planes, alpha, alpha_half, x - x % 2, y - y % 2)
