"""The standalone mode's broker: kombu's filesystem transport, each message whole.

kombu (5.7) creates a message's file under its final name and then writes into it; a
consumer polling in between renames the still-empty file away, cannot decode it, and
its worker stops (seen once in CI: a standalone's webhooks worker died of
``JSONDecodeError`` and its message was gone). Here a message is written in a staging
folder on the same file system and renamed into the queue folder when complete (a
rename is atomic), so a consumer sees either nothing or the whole message. A file that
still cannot be decoded (left by an older version, or damaged on disk) is logged and
set aside in the processed folder rather than stopping the worker: the rows decide,
and the reconciler re-sends what is due (design.md "Durability").

Selected by :func:`workers.app.create_celery` for every ``filesystem://`` broker URL.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.json import dumps

log = logging.getLogger(__name__)

#: the transport option naming the staging folder (``workers.app.transport_options``)
STAGING_OPTION = "staging_folder"


class Channel(filesystem.Channel):
    """kombu's filesystem channel, writing each message whole before it is visible."""

    def _put(self, queue: str, payload: dict[str, Any], **kwargs: Any) -> None:  # type: ignore[override]  # as kombu's own
        # kombu's own name: a consumer takes the oldest first, by sorting names
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        queue_folder = Path(self.data_folder_out)
        staging = Path(self.transport_options.get(STAGING_OPTION) or queue_folder / "staging")
        part = staging / name
        try:
            staging.mkdir(parents=True, exist_ok=True)
            part.write_bytes(dumps(payload).encode())
            part.replace(queue_folder / name)
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise ChannelError(f"Cannot add file {name!r} to {queue_folder}") from exc

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        """The next message of ``queue`` that decodes; kombu's ``Empty`` when none is left."""
        while True:
            try:
                return super()._get(queue)
            except ValueError as exc:  # json.JSONDecodeError, UnicodeDecodeError
                log.warning(
                    "a message file on queue %s could not be read and was set aside in %s: %s",
                    queue,
                    self.processed_folder,
                    exc,
                )


class Transport(filesystem.Transport):
    """kombu's filesystem transport with :class:`Channel`."""

    Channel = Channel
