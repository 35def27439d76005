"""A real webhook receiver for the tests: an HTTP server on loopback, in a thread.

Each request is recorded (headers, body, when, the connections open at that moment)
and answered by the next entry of a script, or the default once the script runs out:

- ``200``, ``500``, ``410``…: that status (``headers`` as given, e.g. ``Retry-After``,
  ``Location``);
- :data:`HANG`: accept and never answer, until the receiver is closed (a blackhole);
- :data:`CLOSE`: read the request, then close the connection without a word.

Messages are verified by the tests with the official ``standardwebhooks`` package.
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks.webhooks import Webhook

HANG = "hang"
CLOSE = "close"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float
    open_connections: int

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def verify(self, secret: str) -> Any:
        """The payload, verified with the official library (raises if it does not)."""
        return Webhook(secret).verify(self.body, self.headers)

    @property
    def payload(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)


Step = Reply | str | int


def serve(
    handle: Callable[[http.server.BaseHTTPRequestHandler], None], port: int = 0
) -> http.server.ThreadingHTTPServer:
    """An HTTP/1.1 server on loopback (``port``; 0: a free one) that passes every POST
    to ``handle``, serving in a daemon thread until ``shutdown``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            handle(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


class Receiver:
    def __init__(self, script: list[Step] | None = None, default: Step = 200) -> None:
        self.script = list(script or [])
        self.default = default
        self.received: list[Received] = []
        self.max_open = 0
        self._open = 0
        self._lock = threading.Lock()
        self._released = threading.Event()
        self.server = serve(self._handle)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def _next(self) -> Step:
        with self._lock:
            return self.script.pop(0) if self.script else self.default

    def _handle(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length", "0"))
        body = handler.rfile.read(length)
        with self._lock:
            self._open += 1
            self.max_open = max(self.max_open, self._open)
            self.received.append(
                Received(
                    {name.lower(): value for name, value in handler.headers.items()},
                    body,
                    time.monotonic(),
                    self._open,
                )
            )
        try:
            step = self._next()
            if step == HANG:
                self._released.wait(60)
                handler.close_connection = True
                return
            if step == CLOSE:
                handler.close_connection = True
                return
            reply = step if isinstance(step, Reply) else Reply(int(step))
            answer = b'{"ok":true}'
            handler.send_response(reply.status)
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(answer)))
            handler.end_headers()
            handler.wfile.write(answer)
        finally:
            with self._lock:
                self._open -= 1

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def close(self) -> None:
        self._released.set()
        self.server.shutdown()
        self.server.server_close()


def receiving(script: list[Step] | None = None, default: Step = 200) -> Iterator[Receiver]:
    receiver = Receiver(script, default)
    try:
        yield receiver
    finally:
        receiver.close()
