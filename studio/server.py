"""Serving the studio: a threaded WSGI server, one thread per connection.

Open SSE turns are long and mostly idle, so a thread each is cheap and nothing
caps how many can be open at once (measured with ``make bench-studio``). All
state is in this one process, so there is exactly one.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import sys
import threading
from types import FrameType

from werkzeug.serving import WSGIRequestHandler, make_server

from studio.app import create_app
from studio.config import StudioConfig

log = logging.getLogger("studio")
#: connections waiting to be accepted (werkzeug's default is 128; the kernel caps it at
#: net.core.somaxconn)
LISTEN_BACKLOG = 2048


class _QuietHandler(WSGIRequestHandler):
    """No line per request unless access logging is on."""

    access_log = False

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.access_log:
            super().log_request(code, size)


def serve(config: StudioConfig, *, access_log: bool = False) -> None:
    """Listen until SIGINT or SIGTERM; print the address once ready."""
    handler = type("Handler", (_QuietHandler,), {"access_log": access_log})
    app = create_app(config)
    server = make_server(config.host, config.port, app, threaded=True, request_handler=handler)
    # a crowd of clients connecting at once must wait in the queue, not be reset
    server.socket.listen(LISTEN_BACKLOG)
    if config.port == 0:  # an ephemeral port: the URLs the studio hands out need the real one
        config = dataclasses.replace(config, port=server.server_port)
        app = create_app(config)
        server.app = app

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"studio listening on {config.base_url}", flush=True)  # noqa: T201 (the ready line)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        app.extensions["studio"].renders.shutdown()
        server.server_close()
        log.info("studio stopped")
        sys.stdout.flush()
