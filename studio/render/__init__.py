"""The studio's renderer: a Nemo draft plus photos (and audio) in, an MP4 out.

The draft fields it reads are defined in :mod:`studio.render.timeline`; errors are
the tree in :mod:`studio.render.errors`.
"""

from studio.render.encode import QUALITY_PRESETS, Quality
from studio.render.errors import (
    DraftError,
    EncoderError,
    MediaError,
    RenderCancelled,
    RenderError,
    RenderTimeout,
)
from studio.render.renderer import RenderOptions, RenderResult, draft_frames, render_draft
from studio.render.timeline import Timeline, parse_timeline

__all__ = [
    "QUALITY_PRESETS",
    "DraftError",
    "EncoderError",
    "MediaError",
    "Quality",
    "RenderCancelled",
    "RenderError",
    "RenderOptions",
    "RenderResult",
    "RenderTimeout",
    "Timeline",
    "draft_frames",
    "parse_timeline",
    "render_draft",
]
