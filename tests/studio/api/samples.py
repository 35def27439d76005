"""Small media files made on the spot: photos, a clip, sounds, and things that are none."""

from __future__ import annotations

import io
import math
import struct
import wave
from fractions import Fraction

import av
import numpy as np
from PIL import Image


def image_bytes(
    width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 60, 40), fmt: str = "PNG"
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format=fmt)
    return buffer.getvalue()


def noisy_png(size_bytes: int) -> bytes:
    """A valid PNG of at least ``size_bytes`` (random pixels do not compress)."""
    side = math.isqrt(size_bytes // 3) + 16
    pixels = np.random.default_rng(5).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def wav_bytes(seconds: float = 1.0, rate: int = 8000) -> bytes:
    frames = int(seconds * rate)
    samples = (int(8000 * math.sin(2 * math.pi * 440 * n / rate)) for n in range(frames))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return buffer.getvalue()


def mp3_bytes(seconds: float = 1.0) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=44100)
        stream.layout = "mono"
        frame_size = 1152
        total = int(seconds * 44100)
        for start in range(0, total, frame_size):
            samples = np.zeros((1, frame_size), dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 44100
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def mp4_bytes(width: int = 96, height: int = 64, fps: int = 10, frames: int = 10) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        for index in range(frames):
            pixels = np.full((height, width, 3), index * 20 % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


TEXT = b"just some words, not a photo\n" * 20
ZIP = b"PK\x03\x04" + b"\x00" * 200  # a zip archive's magic: a known type, not media
