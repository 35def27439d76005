"""File mode: reelyard fetches the photos itself and uploads their bytes to the session.

In URL mode the upstream fetches the caller's URLs; in file mode (``upload_mode``
``file``) the worker does, through :mod:`reelyard.outbound` (public addresses only
unless ``allow_private_urls``, pinned, at most :data:`MAX_FILE_BYTES` and
:data:`FILE_TIMEOUT_S` per file, redirects followed and checked), into a temporary
directory, then sends every file in one multipart upload. No file is ever held whole
in memory, and the temporary files are gone when the call returns, whatever happened.

A URL that cannot be fetched raises its :class:`reelyard.outbound.OutboundError`
(``UrlRefused``, ``TooLarge``, ``FetchFailed`` and its subclasses), before anything is
uploaded; the upload's own failures are the Nemo client's (:mod:`nemo.errors`).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Final

import httpx

from nemo import FileUpload, NemoClient, Upload
from reelyard.outbound import build_client, fetch_to_file, url_file_name
from workers.pipeline import PipelineConfig

log = logging.getLogger(__name__)

#: the upstream's limit per file (nemo-api.md: larger uploads are refused with 4002)
MAX_FILE_BYTES: Final = 200 * 1024 * 1024
#: the time one file may take to fetch, redirects included
FILE_TIMEOUT_S: Final = 60.0


def upload_as_files(
    client: NemoClient,
    session_id: str,
    urls: list[str],
    config: PipelineConfig,
    *,
    http: httpx.Client | None = None,
    keep_alive: Callable[[], None] | None = None,
) -> Upload:
    """Fetch each of ``urls``, then upload them all to ``session_id`` in one call.

    Each file is uploaded under the name of its URL's last path segment (as given, not
    after redirects), the name the upload stage looks for in the session when it
    resumes. ``http`` fetches the files (a client of :func:`reelyard.outbound.build_client`
    is made and closed otherwise); ``keep_alive`` is called after each file, so that a
    long series of downloads can renew the stage's lease.
    """
    if not urls:
        raise ValueError("nothing to upload")
    with contextlib.ExitStack() as stack:
        fetcher = http if http is not None else stack.enter_context(build_client())
        # the files opened below are entered later, so closed before this is removed
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="reelyard-")))
        uploads = []
        for index, url in enumerate(urls):
            path = scratch / f"{index:03d}.download"
            with path.open("wb") as target:
                fetched = fetch_to_file(
                    fetcher,
                    url,
                    target,
                    max_bytes=MAX_FILE_BYTES,
                    timeout_s=FILE_TIMEOUT_S,
                    allow_private=config.allow_private_urls,
                    follow_redirects=True,
                )
            log.debug(
                "fetched %s: %d bytes of %s", fetched.name, fetched.size, fetched.content_type
            )
            content: IO[bytes] = stack.enter_context(path.open("rb"))
            uploads.append(
                FileUpload(url_file_name(url), content, _media_type(fetched.content_type))
            )
            if keep_alive is not None:
                keep_alive()
        return client.upload_files(session_id, uploads)


def _media_type(declared: str | None) -> str | None:
    """The declared type if it says what the file is; else None: the name tells.

    Storage buckets often serve photos as ``application/octet-stream`` or
    ``binary/octet-stream``; the Nemo client then guesses from the file name.
    """
    if declared is not None and declared.startswith(("image/", "video/", "audio/")):
        return declared
    return None
