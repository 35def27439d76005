"""The encoder: one ffmpeg process fed raw YUV 4:2:0 frames on its standard input.

ffmpeg does only what it is best at here: x264, the AAC audio mix (files looped or
trimmed, volume, fades, offsets) and the MP4 with ``+faststart``. The ffmpeg binary
is the static build that ``imageio-ffmpeg`` ships, unless another is configured.
"""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import imageio_ffmpeg
import numpy as np
import numpy.typing as npt

from studio.render.errors import EncoderError, RenderTimeout
from studio.render.timeline import Canvas

AUDIO_RATE = 48_000
AUDIO_BITRATE = "160k"
_F_SETPIPE_SZ = 1031  # Linux: a bigger pipe means fewer context switches per frame
_PIPE_BYTES = 1 << 20


class Quality(StrEnum):
    HIGH = "high"
    DRAFT = "draft"
    #: near-lossless, every frame resampled with Lanczos: what the others are measured against
    REFERENCE = "reference"


@dataclass(frozen=True)
class X264:
    preset: str
    crf: int


#: the encoder settings of each quality; the benchmark's encode-only floor uses the same.
#: veryfast is about 2.5x the speed of x264's default (medium) for a 30 s 1080p
#: slideshow at a similar look (measured at CRF 20: 9.2 MB, 14 s versus 11.9 MB, 37 s on
#: 2 cores); a render farm's throughput is worth more than the rest. CRF 16, not 20:
#: veryfast has no trellis, and its dead zones wipe out a photo's fine grain. At CRF 20
#: the bench draft scores SSIM 0.967 against the reference render, and 0.974 even from
#: frames identical to the reference's; CRF 16 keeps 0.98 (about 6 Mbit/s at 1080p30,
#: and 20 % more encoding).
QUALITY_PRESETS: dict[Quality, X264] = {
    Quality.HIGH: X264(preset="veryfast", crf=16),
    Quality.DRAFT: X264(preset="ultrafast", crf=28),
    Quality.REFERENCE: X264(preset="medium", crf=10),
}


TAG_BT709 = "setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709:range=tv"


def default_ffmpeg() -> str:
    return str(imageio_ffmpeg.get_ffmpeg_exe())


@dataclass(frozen=True)
class AudioInput:
    """One audio input to mix: a file, where it starts, how long it plays, how loud."""

    path: Path
    loop: bool
    start_s: float
    duration_s: float
    volume: float
    fade_in_s: float
    fade_out_s: float


def x264_args(quality: Quality) -> list[str]:
    settings = QUALITY_PRESETS[quality]
    return [
        "-c:v", "libx264",
        "-preset", settings.preset,
        "-crf", str(settings.crf),
        "-pix_fmt", "yuv420p",
        "-colorspace", "bt709",
        "-color_primaries", "bt709",
        "-color_trc", "bt709",
        "-color_range", "tv",
    ]  # fmt: skip


def raw_input_args(canvas: Canvas, source: str = "pipe:0") -> list[str]:
    return [
        "-f", "rawvideo",
        "-pix_fmt", "yuv420p",
        "-video_size", f"{canvas.width}x{canvas.height}",
        "-framerate", str(canvas.fps),
        "-i", source,
    ]  # fmt: skip


def audio_graph(
    inputs: list[AudioInput], total_s: float, first_input: int
) -> tuple[list[str], str]:
    """ffmpeg input arguments and a filter graph that ends in ``[aout]``, ``total_s`` long."""
    args: list[str] = []
    chains: list[str] = []
    if not inputs:
        # platforms expect an audio track: a silent one
        args += ["-f", "lavfi", "-i", f"anullsrc=r={AUDIO_RATE}:cl=stereo"]
        chains.append(f"[{first_input}:a]atrim=0:{total_s:.6f}[aout]")
        return args, ";".join(chains)
    labels = []
    for offset, audio in enumerate(inputs):
        index = first_input + offset
        if audio.loop:
            args += ["-stream_loop", "-1"]
        args += ["-i", str(audio.path)]
        steps = [
            f"atrim=0:{audio.duration_s:.6f}",
            "asetpts=PTS-STARTPTS",
            f"aformat=sample_fmts=fltp:sample_rates={AUDIO_RATE}:channel_layouts=stereo",
            f"volume={audio.volume:.4f}",
        ]
        if audio.fade_in_s > 0:
            steps.append(f"afade=t=in:st=0:d={audio.fade_in_s:.6f}")
        if audio.fade_out_s > 0:
            start = max(0.0, audio.duration_s - audio.fade_out_s)
            steps.append(f"afade=t=out:st={start:.6f}:d={audio.fade_out_s:.6f}")
        if audio.start_s > 0:
            steps.append(f"adelay={round(audio.start_s * 1000)}:all=1")
        label = f"a{offset}"
        chains.append(f"[{index}:a]{','.join(steps)}[{label}]")
        labels.append(f"[{label}]")
    mixed = labels[0]
    if len(labels) > 1:
        mixed = f"{''.join(labels)}amix=inputs={len(labels)}:duration=longest:normalize=0,"
    # pad with silence, then cut: the audio is exactly as long as the video
    chains.append(f"{mixed}apad,atrim=0:{total_s:.6f}[aout]")
    return args, ";".join(chains)


class Encoder:
    """An ffmpeg process writing ``output``; frames go in through :meth:`write`.

    Killed when the deadline passes (a watchdog, so a blocked write is freed too).
    """

    def __init__(
        self,
        *,
        ffmpeg: str,
        canvas: Canvas,
        audio: list[AudioInput],
        total_frames: int,
        output: Path,
        quality: Quality,
        timeout_s: float,
    ) -> None:
        total_s = total_frames / canvas.fps
        audio_args, graph = audio_graph(audio, total_s, first_input=1)
        self.command = [
            ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            *raw_input_args(canvas),
            *audio_args,
            # the frames are BT.709 already: say so, or ffmpeg "converts" them from BT.601
            "-filter_complex", f"[0:v]{TAG_BT709}[vout];{graph}",
            "-map", "[vout]", "-map", "[aout]",
            *x264_args(quality),
            "-c:a", "aac", "-b:a", AUDIO_BITRATE, "-ar", str(AUDIO_RATE), "-ac", "2",
            "-movflags", "+faststart",
            "-f", "mp4", str(output),
        ]  # fmt: skip
        self.timeout_s = timeout_s
        self.timed_out = threading.Event()
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        self._process: subprocess.Popen[bytes] | None = None
        self._watchdog: threading.Timer | None = None

    def __enter__(self) -> Self:
        self._process = subprocess.Popen(
            self.command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._stderr
        )
        with contextlib.suppress(OSError):
            fcntl.fcntl(self._stdin().fileno(), _F_SETPIPE_SZ, _PIPE_BYTES)
        self._watchdog = threading.Timer(self.timeout_s, self._expire)
        self._watchdog.daemon = True
        self._watchdog.start()
        return self

    def _expire(self) -> None:
        self.timed_out.set()
        if self._process is not None:
            self._process.kill()

    def write(self, planes: Sequence[npt.NDArray[np.uint8]]) -> None:
        """Send one frame (its Y, U and V planes, C-contiguous)."""
        stdin = self._stdin()
        try:
            for plane in planes:
                stdin.write(plane.data)
        except (BrokenPipeError, OSError):
            self._fail("ffmpeg stopped reading frames")

    def finish(self) -> None:
        """Close the input and wait for ffmpeg to write the file."""
        process = self._require()
        try:
            self._stdin().close()
        except (BrokenPipeError, OSError):
            self._fail("ffmpeg stopped reading frames")
        code = process.wait()
        if code != 0:
            self._fail(f"ffmpeg exited with status {code}")

    def _stdin(self) -> IO[bytes]:
        stdin = self._require().stdin
        if stdin is None:
            raise RuntimeError("the encoder has no input pipe")
        return stdin

    def _require(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError("the encoder is not started")
        return self._process

    def _fail(self, message: str) -> None:
        process = self._require()
        process.kill()
        process.wait()
        if self.timed_out.is_set():
            raise RenderTimeout(f"the render took longer than its limit of {self.timeout_s:g} s")
        self._stderr.seek(0)
        tail = self._stderr.read().decode("utf-8", "replace").strip().splitlines()[-12:]
        raise EncoderError(message, stderr_tail="\n".join(tail))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        if process is not None and process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        self._stderr.close()
