"""What a finished video is: its resolution and duration, read with PyAV (FFmpeg)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av


class NotAVideo(ValueError):
    """The file has no readable video stream."""


@dataclass(frozen=True)
class VideoFacts:
    width: int
    height: int
    duration_s: float


def probe_video(path: Path) -> VideoFacts:
    """Width, height and duration of the first video stream of ``path``."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise NotAVideo(f"{path.name} has no video stream")
            stream = container.streams.video[0]
            if container.duration is not None:
                duration = container.duration / 1_000_000
            elif stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            else:
                duration = 0.0
            return VideoFacts(
                stream.codec_context.width, stream.codec_context.height, round(duration, 3)
            )
    except av.error.FFmpegError as exc:
        raise NotAVideo(f"{path.name} is not a readable video: {exc}") from exc
