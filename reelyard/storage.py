"""Where finished videos are kept: a small interface, and the local directory behind it.

The pipeline stores a job's video under a key (``<job id>.mp4``) and the API serves
it from there. :class:`LocalStorage` keeps files in ``REELYARD_STORAGE_DIR``; an
S3-compatible store can implement the same three methods.

A file is written beside its final name and renamed into place, so a reader never
sees half a video and a crash leaves at most a stray ``.part`` file.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Protocol

_KEY = re.compile(r"^[A-Za-z0-9_-]{1,80}\.mp4$")


class StorageError(ValueError):
    """A key that cannot name a stored video."""


class Storage(Protocol):
    def put(self, key: str, source: Path) -> None:
        """Store the file at ``source`` under ``key`` (moved, or copied and removed)."""

    def path(self, key: str) -> Path | None:
        """The local path of ``key``'s file, None when there is no such file."""

    def delete(self, key: str) -> None:
        """Remove ``key``'s file, if any."""


def video_key(job_id: str) -> str:
    return f"{job_id}.mp4"


class LocalStorage:
    """Videos in one local directory, created on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _file(self, key: str) -> Path:
        if not _KEY.fullmatch(key):
            raise StorageError(f"not a video key: {key!r}")
        return self.root / key

    def put(self, key: str, source: Path) -> None:
        target = self._file(key)
        self.root.mkdir(parents=True, exist_ok=True)
        handle, scratch = tempfile.mkstemp(dir=self.root, prefix=f".{key}.", suffix=".part")
        os.close(handle)
        try:
            shutil.move(source, scratch)
            Path(scratch).replace(target)
        except BaseException:
            Path(scratch).unlink(missing_ok=True)
            raise

    def path(self, key: str) -> Path | None:
        target = self._file(key)
        return target if target.is_file() else None

    def delete(self, key: str) -> None:
        self._file(key).unlink(missing_ok=True)
