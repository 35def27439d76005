"""The chaos run's webhook receiver: a loopback HTTP server that can misbehave.

Every request is verified with the official ``standardwebhooks`` package (against the
tenant's current secrets, set by the harness) and recorded as one line of the
history's receiver log (``webhook_id``, ``type``, ``job_id``, ``verified``,
``destination``, ``body_sha256``), whatever it is then answered. The harness switches
its :class:`Mode` for a while:

- ``ok``: 200;
- ``fail``: 500;
- ``timeout``: read the request and answer only after ``timeout_s`` (longer than the
  sender waits);
- ``down``: nothing listens on the port (connections are refused); the server comes
  back on the same port when the mode changes.

A request that arrives while the mode is ``fail`` or ``timeout`` is still recorded: a
sender cannot know whether a receiver that did not answer 2xx acted on the message,
which is why duplicates must carry the same ``webhook-id``.
"""

from __future__ import annotations

import enum
import hashlib
import http.server
import json
import threading
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.webhooks.receiver import serve


class Mode(enum.StrEnum):
    OK = "ok"
    FAIL = "fail"
    TIMEOUT = "timeout"
    DOWN = "down"


class ChaosReceiver:
    def __init__(self, *, timeout_s: float = 5.0) -> None:
        self.timeout_s = timeout_s
        self.log: list[dict[str, Any]] = []
        self.secrets: list[str] = []
        self._mode = Mode.OK
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server: http.server.ThreadingHTTPServer | None = None
        self.port = 0
        self._listen()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def mode(self) -> Mode:
        return self._mode

    def _listen(self) -> None:
        self._server = serve(self._handle, self.port)
        self.port = self._server.server_address[1]

    def _unlisten(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def set_mode(self, mode: Mode) -> None:
        """Switch to ``mode``; ``down`` closes the port, leaving it opens it again."""
        with self._lock:
            before, self._mode = self._mode, mode
        if mode is Mode.DOWN and before is not Mode.DOWN:
            self._unlisten()
        elif mode is not Mode.DOWN and before is Mode.DOWN:
            self._listen()

    def verify(self, body: bytes, headers: dict[str, str]) -> bool:
        for secret in list(self.secrets):
            try:
                Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
            return True
        return False

    def _handle(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length", "0"))
        body = handler.rfile.read(length)
        headers = {name.lower(): value for name, value in handler.headers.items()}
        try:
            payload = json.loads(body)
            data = payload.get("data") or {}
            event_type = str(payload.get("type", ""))
            job_id = data.get("id") if data.get("object") == "job" else None
        except (ValueError, AttributeError):
            event_type, job_id = "", None
        entry = {
            "webhook_id": headers.get("webhook-id", ""),
            "type": event_type,
            "job_id": job_id,
            "verified": self.verify(body, headers),
            "destination": handler.path,
            "body_sha256": hashlib.sha256(body).hexdigest(),
        }
        with self._lock:
            self.log.append(entry)
            mode = self._mode
        if mode is Mode.TIMEOUT:
            self._released.wait(self.timeout_s)
            handler.close_connection = True
            return
        status = 500 if mode is Mode.FAIL else 200
        answer = b'{"ok":true}'
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(answer)))
        handler.end_headers()
        handler.wfile.write(answer)

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.log)

    def close(self) -> None:
        self._released.set()
        self._unlisten()
