"""Exports: a bounded pool that renders drafts in order, with the real service's timing.

A render goes ``pending`` (queued) → ``processing`` (``progress`` rising) →
``completed`` (the file is served) or ``failed``. At time scale 1 a render takes at
least 30-60 s, as the real ones do (a quick ffmpeg render is held back); tests scale
that down. In no-render mode every export completes with one small file made once,
so load tests measure orchestration, not ffmpeg. Cancelling stops a pending render
before it starts and a running one at its next frame; it ends ``failed``.

Stopping the studio stops the renders too, but does not fail them: with a state file
they are still pending or processing, and the next studio resumes them from the start
(:meth:`RenderPool.resume`; a partly written output is discarded), as the real service
finishes a render through its own hiccups. A resumed render is not a new submission.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from studio.config import RenderMode, StudioConfig
from studio.faults import Faults
from studio.render import (
    EncoderError,
    Quality,
    RenderCancelled,
    RenderError,
    RenderOptions,
    render_draft,
)
from studio.store import Render, RenderStatus, Store

log = logging.getLogger(__name__)

#: how long a render takes at the least, at time scale 1 (seconds, low and high)
MIN_RENDER_S = (30.0, 60.0)
STUCK_PROGRESS = 37.0
#: times ffmpeg may fail on its own (killed from outside, crashed) before the render fails
ENCODER_ATTEMPTS = 3
CANCELLED = "the render was cancelled"


class RenderPool:
    def __init__(self, config: StudioConfig, store: Store, faults: Faults) -> None:
        self.config = config
        self.store = store
        self.faults = faults
        self.output_dir = config.data_dir / "renders"
        self._executor = ThreadPoolExecutor(
            max_workers=config.render_workers, thread_name_prefix="studio-render"
        )
        self._futures: dict[str, Future[None]] = {}
        self._premade_lock = threading.Lock()
        #: set once the studio is stopping: renders it interrupts are left unfinished
        self._stopping = False

    def output_path(self, render_id: str) -> Path:
        return self.output_dir / f"{render_id}.mp4"

    def submit(self, render: Render, media_dir: Path) -> None:
        self._futures[render.render_id] = self._executor.submit(self._run, render, media_dir)

    def resume(self, render: Render, media_dir: Path) -> None:
        """Render again one that a stopped studio left pending or processing (loaded from
        the state file): whatever it had written of its output goes first."""
        self.output_path(render.render_id).unlink(missing_ok=True)
        for partial in self.output_dir.glob(f".{render.render_id}.mp4.*.partial"):
            partial.unlink(missing_ok=True)
        self.submit(render, media_dir)

    def cancel(self, render: Render) -> None:
        self.store.update_render(render, cancel_requested=True)
        render.cancel.set()
        future = self._futures.get(render.render_id)
        if future is None:
            return
        # still queued, it never starts; stuck, nothing is working on it any more
        if future.cancel() or (future.done() and not render.finished):
            self._fail(render, CANCELLED)

    def shutdown(self) -> None:
        self._stopping = True
        for render in list(self.store.renders.values()):
            render.cancel.set()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _interrupted(self, render: Render) -> bool:
        """Stopped by the studio stopping, not by a client (nor a reset): it is left as
        it is, to be resumed."""
        return self._stopping and not render.cancel_requested

    def _stopped(self, render: Render) -> None:
        """A client's cancel (or a reset) fails it; the studio stopping leaves it be."""
        if not self._interrupted(render):
            self._fail(render, CANCELLED)

    def _run(self, render: Render, media_dir: Path) -> None:
        if render.cancel.is_set():  # cancelled (or the studio reset) while it was queued
            self._stopped(render)
            return
        started = time.monotonic()
        minimum = self.faults.uniform(*MIN_RENDER_S) * self.config.time_scale
        # a resumed render keeps when it first started, and its progress never goes back
        self.store.update_render(
            render,
            status=RenderStatus.PROCESSING,
            started_at=render.started_at or self.store.clock(),
            progress=render.progress,
        )
        if self.faults.fires("render_stuck"):
            self.store.update_render(render, progress=STUCK_PROGRESS)
            return  # never finishes: a client must give up on its own deadline
        failing = self.faults.fires("render_failure")
        target = self.output_path(render.render_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if failing:
                self._pace(render, started, minimum * 0.5, 0.0, 60.0)
                self._fail(render, "render failed: the renderer ran out of memory")
                return
            if self.config.render_mode is RenderMode.NONE:
                shutil.copyfile(self._premade(), target)
            else:
                self._render(render, media_dir, target)
            self._pace(render, started, minimum, render.progress, 99.0)
        except Exception as exc:
            # cancelled, or it broke because it was being stopped
            if isinstance(exc, RenderCancelled) or render.cancel.is_set():
                self._stopped(render)
                return
            if isinstance(exc, RenderError):
                self._fail(render, f"render failed: {exc}")
            else:
                log.exception("render %s crashed", render.render_id)
                self._fail(render, "render failed: internal error")
            return
        self.store.update_render(
            render, status=RenderStatus.COMPLETED, progress=100.0, completed_at=self.store.clock()
        )

    def _render(self, render: Render, media_dir: Path, target: Path) -> None:
        """Render the draft; an ffmpeg that fails on its own is started again (it may
        have been killed along with the studio's process group, the studio staying up
        a moment longer to stop gracefully), as the real service rides out a hiccup."""
        options = RenderOptions(
            quality=Quality(self.config.render_quality),
            cancel=render.cancel,
            progress=lambda done: self.store.update_render(
                render, progress=max(render.progress, round(90 * done, 1))
            ),
        )
        for attempt in range(1, ENCODER_ATTEMPTS + 1):
            try:
                render_draft(render.draft, media_dir, target, options)
            except EncoderError as exc:
                if render.cancel.is_set():
                    raise RenderCancelled(CANCELLED) from exc
                if attempt == ENCODER_ATTEMPTS:
                    raise
                log.warning("render %s: %s; rendering it again", render.render_id, exc)
            else:
                return

    def _pace(
        self, render: Render, started: float, minimum: float, low: float, high: float
    ) -> None:
        """Hold the render until its minimum duration, progress climbing from low to high."""
        while (elapsed := time.monotonic() - started) < minimum:
            if render.cancel.is_set():
                raise RenderCancelled(CANCELLED)
            share = elapsed / minimum
            self.store.update_render(
                render, progress=round(max(render.progress, low + (high - low) * share), 1)
            )
            time.sleep(min(0.25, minimum - elapsed))

    def _fail(self, render: Render, message: str) -> None:
        self.store.update_render(
            render, status=RenderStatus.FAILED, error=message, completed_at=self.store.clock()
        )

    def _premade(self) -> Path:
        """A one-second clip, rendered once, that every export copies in no-render mode."""
        path = self.config.data_dir / "premade.mp4"
        with self._premade_lock:
            if not path.exists():
                from PIL import Image  # noqa: PLC0415 (only in no-render mode)

                media = self.config.data_dir / "premade-media"
                media.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (320, 180), (40, 90, 160)).save(media / "frame.png")
                draft = {
                    "m": {"w": 320, "h": 180},
                    "t": [{"tt": 0, "sg": [{"src": "frame.png", "d": 1000}]}],
                }
                render_draft(draft, media, path, RenderOptions(quality=Quality.DRAFT))
        return path
