"""Media made on the spot, drafts that use it, and PyAV probes of what came out."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pillow_heif
from PIL import Image

RED = (200, 30, 30)
BLUE = (30, 30, 200)
DARK = (20, 20, 20)

pillow_heif.register_heif_opener()


def solid(path: Path, color: tuple[int, int, int], size=(640, 360), fmt=None, **save) -> Path:
    Image.new("RGB", size, color).save(path, format=fmt, **save)
    return path


def halves(path: Path, first, second, size, *, vertical: bool, fmt=None, **save) -> Path:
    """An image whose top/bottom (vertical) or left/right halves have two colours."""
    w, h = size
    pixels = np.empty((h, w, 3), dtype=np.uint8)
    if vertical:
        pixels[: h // 2] = first
        pixels[h // 2 :] = second
    else:
        pixels[:, : w // 2] = first
        pixels[:, w // 2 :] = second
    Image.fromarray(pixels).save(path, format=fmt, **save)
    return path


def textured(path: Path, seed: int, size=(800, 600)) -> Path:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : size[1], 0 : size[0]]
    pixels = np.stack(
        [xx * 255 // size[0], yy * 255 // size[1], rng.integers(0, 255, size[::-1])], axis=2
    ).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path


def small_draft(*segments, w=320, h=180, fps=30, extra_tracks=()):
    return {
        "m": {"w": w, "h": h, "fps": fps},
        "t": [{"tt": 0, "sg": list(segments)}, *extra_tracks],
    }


def photo(src, d=1000, **meta):
    return {"src": src, "d": d, "m": {"motion": "none", **meta}}


@dataclass
class Probe:
    video_codec: str
    audio_codec: str | None
    width: int
    height: int
    fps: Fraction
    frames: int
    duration_s: float
    audio_duration_s: float | None
    pix_fmt: str


def probe(path: Path) -> Probe:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        frames = sum(1 for _ in container.decode(video))
        fps = video.average_rate
        return Probe(
            video_codec=video.codec_context.name,
            audio_codec=audio.codec_context.name if audio else None,
            width=video.codec_context.width,
            height=video.codec_context.height,
            fps=Fraction(fps) if fps else Fraction(0),
            frames=frames,
            duration_s=frames / float(fps) if fps else 0.0,
            audio_duration_s=float(audio.duration * audio.time_base)
            if audio and audio.duration
            else None,
            pix_fmt=video.codec_context.pix_fmt or "",
        )


def frames_rgb(path: Path, indices: list[int]) -> dict[int, np.ndarray]:
    """Decoded frames at the given indices, as RGB arrays."""
    wanted = set(indices)
    found = {}
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in wanted:
                found[index] = frame.to_ndarray(format="rgb24").astype(np.int16)
            if len(found) == len(wanted):
                break
    return found


def audio_rms(path: Path, start_s: float, end_s: float) -> float:
    """Root mean square of the decoded audio between two times."""
    chunks = []
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            t = float(frame.pts * stream.time_base)
            if start_s <= t < end_s:
                chunks.append(frame.to_ndarray().astype(np.float64).ravel())
    if not chunks:
        return 0.0
    return float(np.sqrt(np.mean(np.concatenate(chunks) ** 2)))


def wav_tone(path: Path, seconds: float, freq: float = 440.0, rate: int = 48000) -> Path:
    import wave  # noqa: PLC0415

    t = np.arange(int(seconds * rate)) / rate
    samples = (np.sin(2 * np.pi * freq * t) * 0.5 * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


def files_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}
