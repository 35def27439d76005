"""A small web server in the test process, for URL uploads: files, redirects, odd answers."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class FileServer:
    """``/files/<name>`` serves ``files[name]`` with a Content-Length; ``/chunked/<name>``
    serves it chunked, with no length; ``/redirect/<n>?to=<url>`` answers 302; ``/slow``
    waits; anything else is 404. ``requests`` records each path and its Host header."""

    port: int = 0
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            server.requests.append((self.path, self.headers.get("Host", "")))
            path, _, query = self.path.partition("?")
            kind, _, name = path.lstrip("/").partition("/")
            if kind == "files" and name in server.files:
                self._send(200, server.files[name])
            elif kind == "chunked" and name in server.files:
                self._chunked(server.files[name])
            elif kind == "redirect" and query.startswith("to="):
                self.send_response(302)
                self.send_header("Location", query[3:])
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif kind == "slow":
                time.sleep(3)
                self._send(200, b"late")
            else:
                self._send(404, b"not here")

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the reader hung up (it had enough)
                self.wfile.write(body)

        def handle(self) -> None:
            with contextlib.suppress(OSError):  # the reader hung up before the answer
                super().handle()

        def _chunked(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            # the studio stops reading at its size limit and hangs up: that is the test
            with contextlib.suppress(OSError):
                for start in range(0, len(body), 64 * 1024):
                    piece = body[start : start + 64 * 1024]
                    self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")

    return Handler


@contextmanager
def serve_files(**files: bytes) -> Iterator[FileServer]:
    """A :class:`FileServer` on 127.0.0.1 and an ephemeral port, for the block's length."""
    state = FileServer(files=dict(files))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
