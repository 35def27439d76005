"""Named crash points, for the chaos suite only: the process exits at once where told.

The pipeline and webhook delivery call :func:`crash_point` at the moments a crash is
hardest to recover from (after the edit is marked sent and before the request, after
the request and before the stream is read, after the render POST and before its
answer is stored, after the video is stored and before the job is marked done, in the
middle of a webhook delivery). Nothing happens unless the test-only setting
``REELYARD_CRASH_POINTS`` names the point (comma-separated, see :data:`POINTS`); then
the process exits with :data:`EXIT_CODE` via ``os._exit`` (no cleanup, no ``finally``:
what a ``kill -9`` does) the first time it gets there. "First" is kept as a file in
``REELYARD_CRASH_DIR`` (required with the points; made with ``O_EXCL``, so among
processes sharing the directory exactly one crashes there): the harness re-arms a
point by removing its file, and a running process crashes there again the next time it
gets there (the file is looked up every time: one failed ``open``, and only while armed).
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

POINTS: Final = frozenset(
    {
        "edit_marked_sent",
        "edit_request_sent",
        "render_posted",
        "video_stored",
        "webhook_mid_delivery",
    }
)
#: the exit status of a process that crashed on purpose (as a SIGKILL would leave it)
EXIT_CODE: Final = 137


class CrashSettingError(ValueError):
    pass


@functools.cache
def _armed() -> tuple[frozenset[str], Path | None]:
    raw = os.environ.get("REELYARD_CRASH_POINTS", "").strip()
    if not raw:
        return frozenset(), None
    names = frozenset(part.strip() for part in raw.split(",") if part.strip())
    unknown = names - POINTS
    if unknown:
        raise CrashSettingError(f"REELYARD_CRASH_POINTS: unknown points {sorted(unknown)}")
    folder = os.environ.get("REELYARD_CRASH_DIR", "").strip()
    if not folder:
        raise CrashSettingError("REELYARD_CRASH_POINTS needs REELYARD_CRASH_DIR")
    return names, Path(folder)


def crash_point(name: str) -> None:
    """Exit now if ``name`` is armed and no process has crashed there yet."""
    names, folder = _armed()
    if name not in names or folder is None:
        return
    try:
        descriptor = os.open(folder / name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return
    os.write(descriptor, f"{os.getpid()}\n".encode())
    os.close(descriptor)
    log.warning("crash point %s: exiting now (REELYARD_CRASH_POINTS)", name)
    os._exit(EXIT_CODE)
