"""A typed client of reelyard's own REST API (``/v1``), for the ``reelyard`` CLI and scripts.

:class:`ReelyardClient` is given an :class:`httpx.Client` (base URL, key, explicit
timeouts; :func:`connect` builds one) and answers the API's objects as plain
dictionaries, exactly as the API sends them, so ``--json`` prints what the API said.
Every failure is one of this module's exceptions:

- :class:`ClientError`: anything the client could not do
  - :class:`ApiUnreachable`: no answer (connection refused, timeout, broken stream)
  - :class:`ApiError`: the API answered an error (its ``code``, ``message``, ``errors``)
    - :class:`AuthFailed`: 401 or 403, a missing, wrong or revoked key
    - :class:`NotFound`: 404, no such job (or another tenant's)
    - :class:`Rejected`: any other 4xx, e.g. 422 ``validation_failed``
    - :class:`ServerError`: 5xx
  - :class:`BadResponse`: a 2xx answer that is not what the API sends
  - :class:`LocalFileError`: a file of ours cannot be read, written or served

:class:`LocalFiles` serves local photos over HTTP on a loopback port, because the API
takes photos only as http(s) URLs (``api/schemas.py``); docs/cli.md explains when its
URLs are reachable.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import mimetypes
import os
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit

import httpx

from reelyard import __version__

__all__ = [
    "DEFAULT_API_URL",
    "STAGES",
    "TERMINAL_EVENTS",
    "TERMINAL_STATUSES",
    "ApiError",
    "ApiUnreachable",
    "AuthFailed",
    "BadResponse",
    "ClientConfig",
    "ClientError",
    "Event",
    "LocalFileError",
    "LocalFiles",
    "NotFound",
    "ReelyardClient",
    "Rejected",
    "ServerError",
    "connect",
    "parse_sse",
    "read_client_file",
    "resolve_config",
]

#: where ``reelyard api`` listens unless told otherwise (api/commands.py)
DEFAULT_API_URL: Final = "http://127.0.0.1:8000"
#: the standalone mode writes ``{"api_url", "api_key"}`` here, under the data directory
CLIENT_FILE: Final = "client.json"
#: the pipeline's stages in order (models.jobs.Stage)
STAGES: Final = (
    "authorize",
    "open_session",
    "upload",
    "edit",
    "verify",
    "export",
    "poll_render",
    "finalize",
)
TERMINAL_STATUSES: Final = frozenset({"succeeded", "failed", "canceled"})
#: the event types that end a job's log (one per terminal status)
TERMINAL_EVENTS: Final = TERMINAL_STATUSES
SSE: Final = "text/event-stream"
#: the events stream sends a comment every 15 s; four missed in a row is a dead stream
STREAM_READ_TIMEOUT_S: Final = 60.0
#: reconnections of an events stream in a row that delivered nothing before giving up
STREAM_RETRIES: Final = 3
CHUNK: Final = 1024 * 1024
#: seconds before reconnecting a broken events stream, times the failures in a row
RECONNECT_DELAY_S: Final = 1.0

JsonObject = dict[str, Any]


class ClientError(Exception):
    """Something the client could not do; ``str()`` is one line fit to show."""


class ApiUnreachable(ClientError):
    """The API did not answer: refused, timed out, or the connection broke."""


class ApiError(ClientError):
    """The API answered an error, in its ``{"code", "status", "message", "errors"}`` shape."""

    def __init__(
        self, status: int, code: str, message: str, errors: list[JsonObject] | None = None
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors or []
        super().__init__(self._line())

    def _line(self) -> str:
        details = "; ".join(_error_item(item) for item in self.errors)
        text = f"{self.message} ({self.status} {self.code})"
        return f"{text}: {details}" if details else text


class AuthFailed(ApiError):
    """401 or 403: the key is missing, wrong or revoked."""


class NotFound(ApiError):
    """404: no such resource for this key's tenant."""


class Rejected(ApiError):
    """Any other 4xx: the request is not acceptable as it stands."""


class ServerError(ApiError):
    """5xx: the API failed or is not ready."""


class BadResponse(ClientError):
    """A success status with a body the API does not send."""


class LocalFileError(ClientError):
    """A local file cannot be read, written or served."""


def _error_item(item: Mapping[str, Any]) -> str:
    field_name = item.get("field")
    message = str(item.get("message") or item.get("code") or "invalid")
    return f"{field_name}: {message}" if field_name else message


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --- configuration ------------------------------------------------------------------


@dataclass(frozen=True)
class ClientConfig:
    api_url: str
    api_key: str | None


def read_client_file(path: Path) -> JsonObject | None:
    """The standalone mode's ``client.json``, or None when there is none (or it is unusable)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return document if isinstance(document, dict) else None


def resolve_config(
    api_url: str | None, api_key: str | None, environ: Mapping[str, str]
) -> ClientConfig:
    """The URL and key to use: given (option or environment), else the standalone's file.

    The file's key is used only for the file's own URL (or when no URL was given), so a
    key is never sent to a server it was not made for.
    """
    data_dir = Path(environ.get("REELYARD_DATA_DIR") or ".reelyard")
    url = api_url.rstrip("/") if api_url else None
    if api_key:
        return ClientConfig(url or DEFAULT_API_URL, api_key)
    saved = read_client_file(data_dir / CLIENT_FILE) or {}
    saved_url = str(saved.get("api_url") or DEFAULT_API_URL).rstrip("/")
    saved_key = saved.get("api_key")
    if isinstance(saved_key, str) and saved_key and url in {None, saved_url}:
        return ClientConfig(saved_url, saved_key)
    return ClientConfig(url or DEFAULT_API_URL, None)


def connect(config: ClientConfig, *, timeout_s: float = 30.0) -> ReelyardClient:
    """A client of the API at ``config.api_url`` with its key (the caller closes it)."""
    headers = {"User-Agent": f"reelyard-cli/{__version__}", "Accept": "application/json"}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    http = httpx.Client(
        base_url=config.api_url,
        headers=headers,
        timeout=httpx.Timeout(timeout_s, connect=5.0),
        follow_redirects=False,
    )
    return ReelyardClient(http)


# --- events -------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One entry of a job's log (``GET /v1/jobs/{id}/events``), ``raw`` as sent."""

    id: int
    type: str
    stage: str | None
    progress: int | None
    message: str | None
    raw: JsonObject = field(repr=False)

    @classmethod
    def from_json(cls, raw: Any) -> Event:
        if not isinstance(raw, dict) or not isinstance(raw.get("id"), int):
            raise BadResponse(f"not a job event: {_one_line(str(raw))[:200]}")
        progress = raw.get("progress")
        return cls(
            id=raw["id"],
            type=str(raw.get("type")),
            stage=raw.get("stage") if isinstance(raw.get("stage"), str) else None,
            progress=progress if isinstance(progress, int) else None,
            message=raw.get("message") if isinstance(raw.get("message"), str) else None,
            raw=raw,
        )

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_EVENTS


@dataclass
class _SseFields:
    data: list[str] = field(default_factory=list)


def parse_sse(lines: Iterable[str]) -> Iterator[str]:
    """The ``data`` of each Server-Sent Event in ``lines`` (comments, ``id``, ``event``
    and ``retry`` are left out: a job event's JSON carries its id and type)."""
    pending = _SseFields()
    for line in lines:
        if line == "":
            if pending.data:
                yield "\n".join(pending.data)
            pending = _SseFields()
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if name == "data":
            pending.data.append(value.removeprefix(" "))


# --- the client ---------------------------------------------------------------------


class ReelyardClient:
    """The ``/v1`` endpoints a person or a script drives jobs with."""

    def __init__(self, http: httpx.Client) -> None:
        self._http = http

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ReelyardClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def api_url(self) -> str:
        return str(self._http.base_url).rstrip("/")

    # jobs

    def create_job(self, body: JsonObject, *, idempotency_key: str | None = None) -> JsonObject:
        """``POST /v1/jobs``: the queued job."""
        return self._object("POST", "/v1/jobs", json=body, headers=_idempotency(idempotency_key))

    def list_jobs(self, *, statuses: Iterable[str] = (), limit: int = 20) -> JsonObject:
        """``GET /v1/jobs``: a page ``{"data": [job, …], "next_cursor"}``, newest first."""
        params: list[tuple[str, str | int]] = [("limit", limit)]
        params += [("status", status) for status in statuses]
        return self._object("GET", "/v1/jobs", params=params)

    def get_job(self, job_id: str) -> JsonObject:
        return self._object("GET", f"/v1/jobs/{_segment(job_id)}")

    def cancel_job(self, job_id: str) -> JsonObject:
        return self._object("POST", f"/v1/jobs/{_segment(job_id)}/cancel")

    def revise_job(
        self, job_id: str, body: JsonObject, *, idempotency_key: str | None = None
    ) -> JsonObject:
        """``POST /v1/jobs/{id}/revisions``: the new job (the parent must have succeeded)."""
        return self._object(
            "POST",
            f"/v1/jobs/{_segment(job_id)}/revisions",
            json=body,
            headers=_idempotency(idempotency_key),
        )

    # events

    def event_page(self, job_id: str, *, after: int = 0, limit: int = 1000) -> JsonObject:
        """``GET /v1/jobs/{id}/events`` as JSON: ``{"data", "job_status", "next_after"}``."""
        params = {"after": after, "limit": limit}
        return self._object("GET", f"/v1/jobs/{_segment(job_id)}/events", params=params)

    def all_events(self, job_id: str) -> tuple[list[Event], str]:
        """Every event logged so far and the job's status."""
        events: list[Event] = []
        after = 0
        while True:
            page = self.event_page(job_id, after=after)
            events += [Event.from_json(raw) for raw in _list(page, "data")]
            next_after = page.get("next_after")
            if not isinstance(next_after, int):
                return events, str(page.get("job_status"))
            after = next_after

    def follow_events(self, job_id: str, *, after: int = 0) -> Iterator[Event]:
        """The job's events as they are logged, until its terminal event.

        Reads the SSE stream and reconnects from the last id when the server ends it
        (it does every ``REELYARD_EVENTS_STREAM_S``) or the connection breaks; gives up
        with :class:`ApiUnreachable` after :data:`STREAM_RETRIES` attempts in a row that
        delivered nothing.
        """
        last_id = after
        failures = 0  # reconnections in a row that delivered nothing
        opened = False  # a stream was read before: the API was there
        while True:
            delivered = False
            try:
                for event in self._stream_once(job_id, last_id):
                    delivered = opened = True
                    last_id = event.id
                    yield event
                    if event.terminal:
                        return
            except ApiUnreachable:
                failures = 0 if delivered else failures + 1
                if not opened or failures >= STREAM_RETRIES:
                    raise
                time.sleep(RECONNECT_DELAY_S * failures)
                continue
            opened = True
            if not delivered and self.get_job(job_id).get("status") in TERMINAL_STATUSES:
                return  # the log has no terminal event to wait for (it always should)
            failures = 0

    def _stream_once(self, job_id: str, after: int) -> Iterator[Event]:
        headers = {"Accept": SSE}
        if after:
            headers["Last-Event-ID"] = str(after)
        timeout = httpx.Timeout(STREAM_READ_TIMEOUT_S, connect=5.0)
        url = f"/v1/jobs/{_segment(job_id)}/events"
        try:
            with self._http.stream("GET", url, headers=headers, timeout=timeout) as response:
                if response.is_error:
                    response.read()
                    raise _api_error(response)
                for data in parse_sse(response.iter_lines()):
                    try:
                        raw = json.loads(data)
                    except json.JSONDecodeError:
                        raise BadResponse(f"an event that is not JSON: {data[:200]}") from None
                    yield Event.from_json(raw)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    # the video

    def download_video(self, job_id: str, destination: Path, *, overwrite: bool = False) -> int:
        """Write the job's video to ``destination``; its size in bytes.

        Streamed into a temporary file beside ``destination``, checked against the
        ``ETag`` (the video's SHA-256) when it is one, then renamed into place: an
        interrupted download leaves nothing behind. Without ``overwrite`` an existing
        ``destination`` is never replaced (:class:`LocalFileError`).
        """
        if destination.exists() and not overwrite:
            raise LocalFileError(f"{destination} exists (--force replaces it)")
        url = f"/v1/jobs/{_segment(job_id)}/video"
        try:
            with self._http.stream("GET", url) as response:
                if response.is_error:
                    response.read()
                    raise _api_error(response)
                return _save(response, destination, overwrite=overwrite)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    # plumbing

    def _object(self, method: str, url: str, **kwargs: Any) -> JsonObject:
        try:
            response = self._http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        if response.is_error:
            raise _api_error(response)
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BadResponse(
                f"{method} {url} answered {response.status_code} without JSON"
            ) from None
        if not isinstance(body, dict):
            raise BadResponse(f"{method} {url} answered {response.status_code} with a non-object")
        return body

    def _unreachable(self, exc: httpx.TransportError) -> ApiUnreachable:
        reason = _one_line(str(exc)) or type(exc).__name__
        if isinstance(exc, httpx.TimeoutException):
            reason = f"timed out ({reason})"
        return ApiUnreachable(f"the API at {self.api_url} cannot be reached: {reason}")


def _idempotency(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key} if key else {}


def _segment(value: str) -> str:
    return quote(value, safe="")


def _list(page: Mapping[str, Any], name: str) -> list[Any]:
    value = page.get(name)
    if not isinstance(value, list):
        raise BadResponse(f"a page without its {name!r} list")
    return value


def _api_error(response: httpx.Response) -> ApiError:
    status = response.status_code
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        code = str(body.get("code") or "error")
        message = body["message"]
        errors = [item for item in body.get("errors") or [] if isinstance(item, dict)]
    else:
        code = "error"
        message = _one_line(response.text)[:200] or response.reason_phrase or "no message"
        errors = []
    kind: type[ApiError]
    if status in {401, 403}:
        kind = AuthFailed
    elif status == 404:
        kind = NotFound
    elif status >= 500:
        kind = ServerError
    else:
        kind = Rejected
    return kind(status, code, _one_line(message), errors)


def _save(response: httpx.Response, destination: Path, *, overwrite: bool) -> int:
    expected = response.headers.get("ETag", "").strip('"').lower()
    digest = hashlib.sha256()
    size = 0
    directory = destination.parent
    try:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (renamed, not closed, on success)
            dir=directory, prefix=f".{destination.name}.", suffix=".part", delete=False
        )
    except OSError as exc:
        raise LocalFileError(f"{destination}: cannot be written ({exc.strerror or exc})") from None
    partial = Path(handle.name)
    try:
        with handle:
            for chunk in response.iter_bytes(CHUNK):
                handle.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        if len(expected) == 64 and digest.hexdigest() != expected:
            raise BadResponse("the video received does not match its SHA-256 (ETag)")
        _place(partial, destination, overwrite=overwrite)
    except OSError as exc:
        raise LocalFileError(f"{destination}: cannot be written ({exc.strerror or exc})") from None
    finally:
        partial.unlink(missing_ok=True)
    return size


def _place(partial: Path, destination: Path, *, overwrite: bool) -> None:
    if overwrite:
        partial.replace(destination)
        return
    try:  # a hard link never replaces an existing name, unlike a rename
        os.link(partial, destination)
    except FileExistsError:
        raise LocalFileError(f"{destination} exists (--force replaces it)") from None
    except OSError:  # no hard links here (some network file systems): check, then rename
        if destination.exists():
            raise LocalFileError(f"{destination} exists (--force replaces it)") from None
        partial.replace(destination)


# --- local photos -------------------------------------------------------------------


class LocalFiles:
    """Serves a fixed set of local files over HTTP, each under an unguessable URL.

    ``urls`` keep each file's own name as the last path segment (the pipeline names an
    uploaded photo after it). Nothing else is served: any other path is a 404.
    """

    def __init__(self, paths: list[Path], *, host: str = "127.0.0.1", port: int = 0) -> None:
        token = secrets.token_urlsafe(16)
        self._files = {
            f"/{token}/{index}/{quote(path.name)}": path for index, path in enumerate(paths)
        }
        try:
            self._server = _FileServer((host, port), self._files)
        except OSError as exc:
            raise LocalFileError(
                f"cannot serve local files on {host}:{port} ({exc.strerror or exc})"
            ) from None
        bound_port = self._server.server_address[1]
        url_host = socket.gethostname() if host in {"0.0.0.0", "::", ""} else host  # noqa: S104
        if ":" in url_host:
            url_host = f"[{url_host}]"
        self.urls = [f"http://{url_host}:{bound_port}{path}" for path in self._files]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="reelyard-local-files", daemon=True
        )

    def __enter__(self) -> LocalFiles:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


class _FileServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], files: Mapping[str, Path]) -> None:
        self.files = dict(files)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _FileHandler)


class _FileHandler(http.server.BaseHTTPRequestHandler):
    server: _FileServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, *, body: bool) -> None:
        path = self.server.files.get(urlsplit(self.path).path)
        if path is None:
            self.send_error(404)
            return
        try:
            with path.open("rb") as source:
                size = os.fstat(source.fileno()).st_size
                self.send_response(200)
                content_type = mimetypes.guess_type(unquote(path.name))[0]
                self.send_header("Content-Type", content_type or "application/octet-stream")
                self.send_header("Content-Length", str(size))
                self.end_headers()
                if body:
                    with contextlib.suppress(ConnectionError):
                        while chunk := source.read(CHUNK):
                            self.wfile.write(chunk)
        except OSError:
            self.send_error(404)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the CLI's output is the job's progress, not an access log."""
