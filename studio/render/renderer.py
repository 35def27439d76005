"""Render a draft and its media into an MP4.

The order of work: check the draft and every file it names (so that bad input fails
before anything is encoded), rasterise the texts, start decoding the first photos,
synthesise a music bed where one is asked for, start mixing the audio, then encode
the frames: a thread composes them a few frames ahead while the main one hands them
to x264, and the next photos are decoded in the background. The output appears under
its final name only when it is complete.
"""

from __future__ import annotations

import contextlib
import queue
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2

from studio.render.encode import AudioInput, Encoder, Quality, background, default_ffmpeg
from studio.render.errors import RenderCancelled, RenderError
from studio.render.frames import Overlay, PhotoFrames, compose
from studio.render.media import (
    HEADROOM,
    Plane,
    Planes,
    check_audio,
    check_photo,
    load_photo,
    resolve,
)
from studio.render.music import synthesize, write_wav
from studio.render.text import rasterise
from studio.render.timeline import Timeline, parse_timeline

#: photos decoded ahead of the one being shown
LOOKAHEAD = 3
#: frames composed ahead of the encoder (3 MB each at 1080p)
FRAMES_AHEAD = 8
Frame = tuple[Plane, Plane, Plane]


@dataclass(frozen=True)
class RenderOptions:
    quality: Quality = Quality.HIGH
    #: seconds before the render is stopped; default: a minute plus ten times its length
    timeout_s: float | None = None
    #: the ffmpeg binary that mixes the audio; default: the one imageio-ffmpeg ships
    ffmpeg: str | None = None
    #: called with the fraction done, about once a second of video
    progress: Callable[[float], None] | None = field(default=None, compare=False)
    #: set it to stop the render (RenderCancelled is raised)
    cancel: threading.Event | None = field(default=None, compare=False)


@dataclass(frozen=True)
class RenderResult:
    path: Path
    width: int
    height: int
    fps: int
    frames: int
    duration_s: float
    size_bytes: int
    elapsed_s: float


def render_draft(
    draft: Mapping[str, Any],
    media_dir: Path,
    output: Path,
    options: RenderOptions | None = None,
) -> RenderResult:
    """Render ``draft`` with the files in ``media_dir`` to ``output`` (an MP4).

    Raises a :class:`~studio.render.errors.RenderError`; on any failure no file is
    left at ``output`` or beside it.
    """
    options = options or RenderOptions()
    started = time.monotonic()
    timeline, photo_paths, audio_paths, overlays = _prepare(draft, media_dir)
    timeout_s = options.timeout_s or 60.0 + 10.0 * timeline.duration_s

    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.{secrets.token_hex(4)}.partial")
    try:
        _encode(
            timeline,
            photo_paths=photo_paths,
            audio_paths=audio_paths,
            overlays=overlays,
            partial=partial,
            options=options,
            timeout_s=timeout_s,
        )
        partial.replace(output)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        raise
    if options.progress:
        options.progress(1.0)
    return RenderResult(
        path=output,
        width=timeline.canvas.width,
        height=timeline.canvas.height,
        fps=timeline.canvas.fps,
        frames=timeline.frames,
        duration_s=timeline.duration_s,
        size_bytes=output.stat().st_size,
        elapsed_s=time.monotonic() - started,
    )


def draft_frames(
    draft: Mapping[str, Any], media_dir: Path, quality: Quality = Quality.HIGH
) -> Iterator[Frame]:
    """The frames :func:`render_draft` would hand to x264 at ``quality``, one by one
    (Y, U and V planes), with no encoding: for measurements and tests."""
    timeline, photo_paths, _, overlays = _prepare(draft, media_dir)
    with _frames(timeline, photo_paths, overlays, quality) as frames:
        yield from frames


def _prepare(
    draft: Mapping[str, Any], media_dir: Path
) -> tuple[Timeline, list[Path], list[Path | None], tuple[Overlay, ...]]:
    """The draft's timeline, its files (each checked) and its texts, rasterised."""
    timeline = parse_timeline(draft)
    photo_paths = [resolve(media_dir, clip.src, clip.where) for clip in timeline.photos]
    for clip, path in zip(timeline.photos, photo_paths, strict=True):
        check_photo(path, clip.where)
    audio_paths: list[Path | None] = []
    for audio in timeline.audio:
        audio_path = resolve(media_dir, audio.src, audio.where) if audio.src else None
        if audio_path is not None:
            check_audio(audio_path, audio.where)
        audio_paths.append(audio_path)
    overlays = tuple(rasterise(text, timeline.canvas) for text in timeline.texts)
    return timeline, photo_paths, audio_paths, overlays


@contextlib.contextmanager
def _frames(
    timeline: Timeline, photo_paths: list[Path], overlays: tuple[Overlay, ...], quality: Quality
) -> Iterator[Iterator[Frame]]:
    """The timeline's frames, composed as they are asked for; the first photos start
    decoding on entry."""
    # x264 keeps both cores busy; OpenCV's own thread pool would only add handoffs
    # (measured: 5 % less CPU for the same frames on one thread). Process-wide, by design.
    cv2.setNumThreads(1)
    with (
        ThreadPoolExecutor(max_workers=2, thread_name_prefix="photo") as pool,
        # photos a clip or more ahead have seconds to spare: in x264's idle moments
        ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="photo-ahead", initializer=background
        ) as ahead,
    ):
        photos = _PhotoCache(
            timeline, photo_paths, pool, ahead, reference=quality is Quality.REFERENCE
        )
        photos.prefetch(0)
        yield compose(timeline.frames, timeline.photos, overlays, photos.get)


def _encode(
    timeline: Timeline,
    *,
    photo_paths: list[Path],
    audio_paths: list[Path | None],
    overlays: tuple[Overlay, ...],
    partial: Path,
    options: RenderOptions,
    timeout_s: float,
) -> None:
    """Encode every frame and the audio, writing ``partial``."""
    with (
        tempfile.TemporaryDirectory(prefix="reelyard-render-") as scratch,
        _frames(timeline, photo_paths, overlays, options.quality) as composed,
        Encoder(
            ffmpeg=options.ffmpeg or default_ffmpeg(),
            canvas=timeline.canvas,
            # made and mixed on the encoder's audio thread, while the frames are encoded
            audio=lambda: _audio_inputs(timeline, audio_paths, Path(scratch)),
            total_frames=timeline.frames,
            output=partial,
            quality=options.quality,
            timeout_s=timeout_s,
            scratch=Path(scratch),
        ) as encoder,
    ):
        frames = _Producer(composed)
        report_every = max(1, timeline.canvas.fps)
        try:
            for index, planes in enumerate(frames):
                if options.cancel is not None and options.cancel.is_set():
                    raise RenderCancelled("the render was cancelled")
                encoder.write(planes)
                if options.progress and index % report_every == 0:
                    options.progress(index / timeline.frames)
        finally:
            frames.stop()
        encoder.finish()


class _Producer:
    """Frames made ahead on a thread of their own, while the last ones are written.

    OpenCV and numpy release the GIL, so the next frames are composed while x264
    encodes, and are there when x264's lookahead asks for several at once.
    """

    def __init__(self, frames: Iterator[Frame]) -> None:
        self._frames = frames
        self._queue: queue.Queue[Frame | BaseException | None] = queue.Queue(FRAMES_AHEAD)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frames", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for frame in self._frames:
                if not self._put(frame):
                    return
        except BaseException as exc:  # noqa: BLE001 (handed to the consumer, raised there)
            self._put(exc)
            return
        self._put(None)

    def _put(self, item: Frame | BaseException | None) -> bool:
        while not self._stopping.is_set():
            with contextlib.suppress(queue.Full):
                self._queue.put(item, timeout=0.1)
                return True
        return False

    def __iter__(self) -> Iterator[Frame]:
        while (item := self._queue.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()


def _audio_inputs(timeline: Timeline, paths: list[Path | None], scratch: Path) -> list[AudioInput]:
    inputs = []
    for index, (clip, path) in enumerate(zip(timeline.audio, paths, strict=True)):
        source = path
        if source is None:
            source = scratch / f"bed-{index}.wav"
            write_wav(source, synthesize(clip.duration_s, clip.mood))
        inputs.append(
            AudioInput(
                path=source,
                loop=clip.loop and path is not None,
                start_s=clip.start_s,
                duration_s=clip.duration_s,
                volume=clip.volume,
                fade_in_s=clip.fade_in_s,
                fade_out_s=clip.fade_out_s,
            )
        )
    return inputs


class _PhotoCache:
    """Photo planes decoded in the background a few clips ahead, dropped once shown.

    Photos needed now go to ``pool``; those ahead to ``ahead``, at a lower priority.
    """

    def __init__(
        self,
        timeline: Timeline,
        paths: list[Path],
        pool: ThreadPoolExecutor,
        ahead: ThreadPoolExecutor,
        *,
        reference: bool = False,
    ) -> None:
        self._ahead = ahead
        self._reference = reference
        self._timeline = timeline
        self._paths = paths
        self._pool = pool
        self._pending: dict[int, Future[Planes]] = {}
        self._ready: dict[int, PhotoFrames] = {}
        canvas = timeline.canvas
        # even sides, so chroma planes are exactly half
        self._size = (
            2 * round(canvas.width * HEADROOM / 2),
            2 * round(canvas.height * HEADROOM / 2),
        )

    def prefetch(self, index: int) -> None:
        """Start decoding clip ``index``'s photo and the few after it."""
        for ahead in range(index, min(index + LOOKAHEAD + 1, len(self._paths))):
            if ahead not in self._pending and ahead not in self._ready:
                clip = self._timeline.photos[ahead]
                # the photo needed now, and the first two (nothing else runs yet), at once
                pool = self._pool if ahead == index or ahead < 2 else self._ahead
                self._pending[ahead] = pool.submit(
                    load_photo, self._paths[ahead], *self._size, clip.fit, clip.where
                )

    def get(self, index: int) -> PhotoFrames:
        if index in self._ready:
            return self._ready[index]
        self.prefetch(index)
        try:
            planes = self._pending.pop(index).result()
        except RenderError:
            for future in self._pending.values():
                future.cancel()
            raise
        for done in [i for i in self._ready if i < index - 1]:
            del self._ready[done]
        frames = PhotoFrames(
            self._timeline.photos[index], planes, self._timeline.canvas, reference=self._reference
        )
        self._ready[index] = frames
        return frames
