"""The encoder: x264 in this process (PyAV), the audio mix in one ffmpeg process.

Frames go straight from the renderer's arrays into libx264 through PyAV: no pipe, no
second copy, no process to feed. The audio (files looped or trimmed, volume, fades,
offsets, AAC) is mixed meanwhile by one ffmpeg process into a scratch file, and its
packets are interleaved with the video's into one MP4 with ``+faststart``. The ffmpeg
binary is the static build that ``imageio-ffmpeg`` ships, unless another is configured.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import av
import av.container
import av.stream
import imageio_ffmpeg
import numpy as np
import numpy.typing as npt
from av.video.reformatter import ColorRange, Colorspace

from studio.render.errors import EncoderError, RenderTimeout
from studio.render.timeline import Canvas

AUDIO_RATE = 48_000
AUDIO_BITRATE = "160k"
#: how far the audio is muxed ahead of the video, in seconds
AUDIO_LEAD_S = 0.5


class Quality(StrEnum):
    HIGH = "high"
    DRAFT = "draft"
    #: near-lossless, every frame resampled with Lanczos: what the others are measured against
    REFERENCE = "reference"


@dataclass(frozen=True)
class X264:
    preset: str
    crf: int
    #: x264's own options over the preset's (``key=value:...``), or none
    params: str = ""


#: the encoder settings of each quality; the benchmark's encode-only floor uses the same.
#: ``high`` is x264's superfast analysis with veryfast's rate control (macroblock tree,
#: a 10-frame lookahead): measured on the bench draft's own frames, it keeps veryfast's
#: SSIM (0.9814 against 0.9813 for the reference render) and nearly its size (29.8
#: against 27.9 MB for 30 s of 1080p) for 57 % of its CPU time (16.3 against 28.6
#: CPU s); superfast alone, without the macroblock tree, needs 2.7x the bytes for the
#: same SSIM. CRF 16, not 20: these presets have no trellis, and their dead zones wipe
#: out a photo's fine grain (SSIM 0.967 at CRF 20, 0.974 even from the reference's own
#: frames); CRF 16 keeps 0.98 (about 8 Mbit/s at 1080p30 for the bench's grainy photos).
QUALITY_PRESETS: dict[Quality, X264] = {
    Quality.HIGH: X264(preset="superfast", crf=16, params="mbtree=1:rc-lookahead=10"),
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


def x264_options(quality: Quality) -> dict[str, str]:
    """libx264's options for ``quality``, as PyAV (and ffmpeg's ``-preset``...) take them."""
    settings = QUALITY_PRESETS[quality]
    options = {"preset": settings.preset, "crf": str(settings.crf)}
    if settings.params:
        options["x264-params"] = settings.params
    return options


def x264_args(quality: Quality) -> list[str]:
    """The same encoder as :class:`Encoder`'s, as ffmpeg's command-line arguments."""
    args = ["-c:v", "libx264"]
    for key, value in x264_options(quality).items():
        args += [f"-{key}", value]
    return [
        *args,
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


_BT709 = 1  # AVCOL_PRI_BT709 and AVCOL_TRC_BT709
#: the niceness of work that has time to spare: the audio, photos decoded ahead
BACKGROUND_NICE = 10


def background() -> None:
    """Lower the calling thread's priority by :data:`BACKGROUND_NICE`, so that it runs
    when the frames and x264 leave a core idle; processes it starts inherit it.

    Linux only (elsewhere a thread's niceness is its process's); never raised back.
    """
    if sys.platform != "linux":
        return
    thread = threading.get_native_id()
    with contextlib.suppress(OSError):
        niceness = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, niceness + BACKGROUND_NICE))


def _seconds(packet: av.Packet[Any]) -> float:
    """When a packet is decoded, in seconds (0 where it does not say)."""
    if packet.dts is None or packet.time_base is None:
        return 0.0
    return float(packet.dts * packet.time_base)


class Encoder:
    """x264 writing ``output`` from frames given to :meth:`write`; the audio mixed apart.

    The audio is prepared and mixed on the encoder's audio thread (``audio()``, then one
    ffmpeg process writing into ``scratch``), at a lower priority; video packets wait in
    memory until it is done (a few seconds at the most), then both are interleaved. The
    time limit is checked at every frame, and the audio thread kills ffmpeg when it
    passes.
    """

    def __init__(
        self,
        *,
        ffmpeg: str,
        canvas: Canvas,
        audio: Callable[[], list[AudioInput]],
        total_frames: int,
        output: Path,
        quality: Quality,
        timeout_s: float,
        scratch: Path,
    ) -> None:
        self.ffmpeg = ffmpeg
        self.audio = audio
        self.audio_file = scratch / "audio.m4a"
        self.total_s = total_frames / canvas.fps
        self.canvas = canvas
        self.output = output
        self.quality = quality
        self.timeout_s = timeout_s
        self.timed_out = threading.Event()
        self._deadline = 0.0
        self._frames = 0
        self._stderr: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 (closed in __exit__)
        self._lock = threading.Lock()
        self._stopping = False
        self._process: subprocess.Popen[bytes] | None = None
        self._mixer: threading.Thread | None = None
        self._mixed = threading.Event()
        self._mix_error: BaseException | None = None
        self._container: av.container.OutputContainer | None = None
        self._video: av.VideoStream | None = None
        self._audio_in: av.container.InputContainer | None = None
        self._audio: av.AudioStream | None = None
        self._audio_packets: Iterator[av.Packet[av.AudioStream]] = iter(())
        self._next_audio: av.Packet[av.AudioStream] | None = None
        self._waiting: list[av.Packet[av.stream.Stream]] = []

    def audio_command(self, inputs: list[AudioInput]) -> list[str]:
        """The ffmpeg command that mixes ``inputs`` into :attr:`audio_file`."""
        audio_args, graph = audio_graph(inputs, self.total_s, first_input=0)
        return [
            self.ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            *audio_args,
            "-filter_complex", graph,
            "-map", "[aout]",
            "-c:a", "aac", "-b:a", AUDIO_BITRATE, "-ar", str(AUDIO_RATE), "-ac", "2",
            "-f", "mp4", str(self.audio_file),
        ]  # fmt: skip

    def __enter__(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        self._deadline = time.monotonic() + self.timeout_s
        self._mixer = threading.Thread(target=self._mix, name="audio", daemon=True)
        self._mixer.start()
        with self._encoding("x264 could not start"):
            container = av.open(
                str(self.output), "w", format="mp4", options={"movflags": "+faststart"}
            )
            self._container = container
            video = container.add_stream(
                "libx264", rate=self.canvas.fps, options=x264_options(self.quality)
            )
            video.width, video.height = self.canvas.width, self.canvas.height
            video.pix_fmt = "yuv420p"
            # x264's frame threads, as ffmpeg's command line uses them: PyAV's default,
            # sliced threads, kept 1.6 of 2 cores busy on the bench draft, frames 1.85
            video.thread_type = "FRAME"
            context = video.codec_context
            context.color_range = ColorRange.MPEG
            context.colorspace = Colorspace.ITU709
            context.color_primaries = _BT709
            context.color_trc = _BT709
            self._video = video

    def _mix(self) -> None:
        """The audio thread: prepare the inputs, run ffmpeg, wait for it (to the deadline).

        It has the time the video takes, so it runs (and ffmpeg with it) at a lower
        priority than the frames and x264: in their idle moments, not in their way.
        """
        try:
            background()
            command = self.audio_command(self.audio())
            with self._lock:
                if self._stopping:
                    return
                try:
                    self._process = subprocess.Popen(
                        command,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=self._stderr,
                    )
                except OSError as exc:
                    raise EncoderError(f"ffmpeg could not start: {exc}") from exc
                process = self._process
            try:
                process.wait(timeout=max(0.0, self._deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.timed_out.set()
                process.kill()
                process.wait()
        except BaseException as exc:  # noqa: BLE001 (raised by the encoder's thread)
            self._mix_error = exc
        finally:
            self._mixed.set()

    def write(self, planes: Sequence[npt.NDArray[np.uint8]]) -> None:
        """Encode one frame (its Y, U and V planes)."""
        if time.monotonic() > self._deadline:
            self._raise_timeout()
        video = self._require_video()
        frame = av.VideoFrame(self.canvas.width, self.canvas.height, "yuv420p")
        for plane, source in zip(frame.planes, planes, strict=True):
            rows, columns = source.shape
            target = np.frombuffer(memoryview(plane), np.uint8).reshape(rows, plane.line_size)
            target[:, :columns] = source
        frame.pts = self._frames
        frame.time_base = Fraction(1, self.canvas.fps)
        self._frames += 1
        with self._encoding("x264 failed"):
            for packet in video.encode(frame):
                self._mux_video(packet)

    def finish(self) -> None:
        """Flush x264, wait for the audio, and write the file."""
        video = self._require_video()
        with self._encoding("x264 failed"):
            for packet in video.encode(None):
                self._mux_video(packet)
        self._attach_audio(wait=True)
        with self._encoding("writing the MP4 failed"):
            self._mux_waiting()
            self._mux_audio_until(None)
            self._require_container().close()
            self._container = None

    def _mux_video(self, packet: av.Packet[av.stream.Stream]) -> None:
        if self._audio is None and not self._attach_audio(wait=False):
            self._waiting.append(packet)
            return
        self._mux_waiting()
        self._mux_audio_until(_seconds(packet) + AUDIO_LEAD_S)
        self._require_container().mux(packet)

    def _mux_waiting(self) -> None:
        container = self._require_container()
        for packet in self._waiting:
            self._mux_audio_until(_seconds(packet) + AUDIO_LEAD_S)
            container.mux(packet)
        self._waiting.clear()

    def _mux_audio_until(self, until_s: float | None) -> None:
        """Mux the audio's packets up to ``until_s`` (all that are left if ``None``)."""
        container = self._require_container()
        stream = self._audio
        while stream is not None and (packet := self._next_audio) is not None:
            if until_s is not None and _seconds(packet) > until_s:
                return
            packet.stream = stream
            container.mux(packet)
            self._next_audio = next(self._audio_packets, None)

    def _attach_audio(self, *, wait: bool) -> bool:
        """Once the audio is mixed, add its stream; False if it is still being mixed."""
        if self._audio is not None:
            return True
        if not wait and not self._mixed.is_set():
            return False
        self._mixed.wait()
        if self._mix_error is not None:
            raise self._mix_error
        if self.timed_out.is_set():
            self._raise_timeout()
        process = self._require_process()
        if process.returncode != 0:
            self._fail(f"ffmpeg could not mix the audio (status {process.returncode})")
        with self._encoding("the mixed audio could not be read"):
            self._audio_in = av.open(str(self.audio_file))
            source = self._audio_in.streams.audio[0]
            self._audio = self._require_container().add_stream_from_template(source)
            self._audio_packets = (
                packet for packet in self._audio_in.demux(source) if packet.dts is not None
            )
            self._next_audio = next(self._audio_packets, None)
        return True

    @contextlib.contextmanager
    def _encoding(self, what: str) -> Iterator[None]:
        """PyAV's errors (and the disk's) as :class:`EncoderError`."""
        try:
            yield
        except (av.FFmpegError, OSError) as exc:
            raise EncoderError(what, stderr_tail=str(exc)) from exc

    def _raise_timeout(self) -> None:
        raise RenderTimeout(f"the render took longer than its limit of {self.timeout_s:g} s")

    def _fail(self, message: str) -> None:
        self._stderr.seek(0)
        tail = self._stderr.read().decode("utf-8", "replace").strip().splitlines()[-12:]
        raise EncoderError(message, stderr_tail="\n".join(tail))

    def _require_process(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError("the encoder is not started")
        return self._process

    def _require_container(self) -> av.container.OutputContainer:
        if self._container is None:
            raise RuntimeError("the encoder is not started")
        return self._container

    def _require_video(self) -> av.VideoStream:
        if self._video is None:
            raise RuntimeError("the encoder is not started")
        return self._video

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with self._lock:
            self._stopping = True
            process = self._process
        if process is not None and process.poll() is None:
            process.kill()
        if self._mixer is not None:
            self._mixer.join()
        for container in (self._audio_in, self._container):
            if container is not None:
                with contextlib.suppress(av.FFmpegError, OSError):
                    container.close()
        self._stderr.close()
