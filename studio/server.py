"""Serving the studio: gunicorn, one process, a thread per busy connection.

All state is in one process, so there is exactly one worker. It is gunicorn's
``gthread`` worker: an open SSE turn holds a thread (long and mostly idle, so a
thread each is cheap; :data:`THREADS` of them, measured with ``make bench-studio``),
and connections between requests wait in the worker's poller, not in a thread, so
clients keep them alive. Werkzeug's development server, used before, closed every
connection after one request: each call of a job then paid a new TCP connection on
both sides and a new thread here.

The socket is bound before gunicorn starts (and handed to it as ``fd://``), so that
with port 0 the studio knows its port before it builds the URLs it hands out.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import sys
from typing import Any

from studio.app import create_app
from studio.config import StudioConfig

log = logging.getLogger("studio")
#: connections waiting to be accepted (the kernel caps it at net.core.somaxconn)
LISTEN_BACKLOG = 2048
#: requests served at once, open SSE turns included (bench-studio holds 1,000)
THREADS = 1200
#: connections open at once, busy or waiting for their next request
MAX_CONNECTIONS = 10_000
#: seconds an idle connection is kept: longer than clients keep theirs (httpx: 5 s),
#: so that the client, not the studio, closes it and never reuses a closed one
KEEPALIVE_S = 75
#: seconds open turns get to end when the studio is told to stop
GRACEFUL_S = 3


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6, as the host resolves)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


def serve(config: StudioConfig, *, access_log: bool = False) -> None:
    """Listen until SIGINT or SIGTERM; print the address once ready."""
    from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]  # noqa: PLC0415

    listener = listen(config.host, config.port)
    if config.port == 0:  # an ephemeral port: the URLs the studio hands out need the real one
        config = dataclasses.replace(config, port=listener.getsockname()[1])

    def when_ready(server: Any) -> None:
        print(f"studio listening on {config.base_url}", flush=True)  # noqa: T201 (the ready line)

    def worker_exit(server: Any, worker: Any) -> None:
        app = getattr(worker, "wsgi", None)
        if app is not None:
            app.extensions["studio"].renders.shutdown()
        log.info("studio stopped")
        sys.stdout.flush()

    options: dict[str, Any] = {
        "bind": [f"fd://{listener.fileno()}"],
        "workers": 1,
        "worker_class": "gthread",
        "threads": THREADS,
        "worker_connections": MAX_CONNECTIONS,
        "keepalive": KEEPALIVE_S,
        "backlog": LISTEN_BACKLOG,
        # the one worker holds every session: never kill it for being busy
        "timeout": 0,
        "graceful_timeout": GRACEFUL_S,
        "accesslog": "-" if access_log else None,
        "errorlog": "-",
        "loglevel": "warning",
        "proc_name": "reelyard-studio",
        "when_ready": when_ready,
        "worker_exit": worker_exit,
    }

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for name, value in options.items():
                self.cfg.set(name, value)

        def load(self) -> Any:
            return create_app(config)

    Server().run()
