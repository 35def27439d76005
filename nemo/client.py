"""The client of NemoVideo's agent API: one method per call of nemo-api.md.

``NemoClient`` is given an ``httpx.Client`` (its timeouts, transport and lifetime belong
to the caller; :func:`nemo.config.build_http_client` makes a suitable one) and a frozen
:class:`~nemo.config.NemoConfig`. It makes no decisions about retrying: every failure
is raised as one exception of :mod:`nemo.errors`, which carries its own ``retryable`` and
``repair``, and the pipeline decides. Nothing here sleeps.

Every call sends the three attribution headers (exports are refused with 402 without
them) and the bearer token. Paths carry the user id that came with the token where the
client has one, and ``me`` otherwise (nemo-api.md, "me or the user id").

The chat (:meth:`NemoClient.chat`) is the one call whose failure can leave its outcome
unknown. It is a generator of :mod:`nemo.events` events and ends in one of two ways:

- the stream **closed**: iteration ends normally; the turn is over (with or without
  text — about 30 % of edits close silently, then read the state and diff the drafts);
- the stream **broke**: iteration raises :class:`~nemo.errors.StreamBroken` with a
  :class:`~nemo.errors.BreakReason` (reset, timeout, truncated event, heartbeat or turn
  limit, a 5xx answer); the message may have been executed, so never re-send it.

An error the backend answers before any event (429, 1001, 1002, 2001…) means the
message was refused, and is raised as that :class:`~nemo.errors.ApiError`; a connect
failure (nothing sent) is a :class:`~nemo.errors.TransportError` with
``reached_server=False``.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import logging
import mimetypes
import os
import tempfile
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import quote

import httpx
from sseclient import SSEClient

from nemo.config import NemoConfig, Secret, scrub
from nemo.draft import Draft
from nemo.envelope import Answer, Call, error_for, read_answer
from nemo.errors import (
    BreakReason,
    DownloadTooLarge,
    NemoError,
    ProtocolError,
    ServerError,
    StreamBroken,
    TokenInvalid,
    TransportError,
)
from nemo.events import ChatEvent, Heartbeat, Unknown, parse_event, scrub_event
from nemo.models import (
    Credits,
    DownloadedFile,
    FileUpload,
    RenderState,
    RenderStatus,
    Session,
    SessionState,
    Token,
    Upload,
)

__all__ = ["APP_NAME", "DEFAULT_OUTPUT", "NemoClient"]

log = logging.getLogger(__name__)

APP_NAME = "nemo_agent"
DEFAULT_OUTPUT: Mapping[str, str] = {"format": "mp4", "quality": "high"}
# the most of an error body kept in memory (it is only read for its message)
_MAX_ERROR_BODY = 64 * 1024
_DOWNLOAD_CHUNK = 1024 * 1024
# a request that never left: the same call may be made again, even a paid one
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


def _segment(value: str) -> str:
    """A path segment from an id: quoted, so an id can never change the path."""
    if not value:
        raise ValueError("an id in a path cannot be empty")
    return quote(value, safe="")


def _read_bounded(response: httpx.Response, limit: int = _MAX_ERROR_BODY) -> bytes:
    """At most ``limit`` bytes of a streamed body: enough for an error message."""
    data = bytearray()
    for chunk in response.iter_bytes():
        data += chunk
        if len(data) >= limit:
            break
    return bytes(data[:limit])


def _copy_bounded(chunks: Iterable[bytes], out: IO[bytes], limit: int) -> int:
    """Write ``chunks`` to ``out``, stopping as soon as more than ``limit`` bytes came."""
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise DownloadTooLarge(limit, size)
        out.write(chunk)
    if size == 0:
        raise ProtocolError("download: the file is empty")
    out.flush()
    os.fsync(out.fileno())
    return size


class _IterableReader(io.RawIOBase):
    """A read-only binary file over an iterable of byte strings.

    httpx's multipart encoder reads file objects piece by piece but takes no iterators;
    this lets a generator be uploaded without ever joining it.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        super().__init__()
        self._chunks = iter(chunks)
        self._chunk = b""
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while self._offset >= len(self._chunk):
            try:
                self._chunk, self._offset = bytes(next(self._chunks)), 0
            except StopIteration:
                return 0
        piece = memoryview(self._chunk)[self._offset : self._offset + len(buffer)]
        memoryview(buffer).cast("B")[: len(piece)] = piece
        self._offset += len(piece)
        return len(piece)


def _readable(content: IO[bytes] | Iterable[bytes]) -> IO[bytes]:
    """A file object for httpx: the content itself, or a reader over its pieces."""
    if isinstance(content, bytes | bytearray | memoryview):
        # bytes are an iterable of ints, not of pieces: read them as the one piece they are
        return io.BytesIO(bytes(content))
    if hasattr(content, "read"):
        return cast(IO[bytes], content)
    return cast(IO[bytes], _IterableReader(content))


class _Watchdog:
    """The chat's two clocks: the whole turn, and the time since something other than a
    heartbeat arrived."""

    def __init__(
        self, clock: Callable[[], float], heartbeat_limit: float, turn_limit: float
    ) -> None:
        self._clock = clock
        self._heartbeat_limit = heartbeat_limit
        self._turn_limit = turn_limit
        self._started = self._last_activity = clock()

    def activity(self) -> None:
        self._last_activity = self._clock()

    def check(self) -> None:
        now = self._clock()
        if now - self._started >= self._turn_limit:
            raise StreamBroken(
                BreakReason.TURN_LIMIT, f"the turn did not end within {self._turn_limit:g} s"
            )
        if now - self._last_activity >= self._heartbeat_limit:
            raise StreamBroken(
                BreakReason.HEARTBEAT_LIMIT,
                f"nothing but heartbeats for {self._heartbeat_limit:g} s",
            )


class _StreamSource:
    """The response body as sseclient reads it, watched on the way through.

    It checks the two clocks at every chunk (keep-alive comments and empty ``data:``
    lines reach here even though sseclient drops them), bounds the size of one event,
    replaces invalid UTF-8 (sseclient would raise on it), and records when the body has
    ended, which tells a truncated last event from a complete one: sseclient hands
    out whatever is left at the end as an event, and only we know it was left over.
    """

    def __init__(self, chunks: Iterator[bytes], watchdog: _Watchdog, max_event_bytes: int) -> None:
        self._chunks = chunks
        self._watchdog = watchdog
        self._max_event_bytes = max_event_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = 0
        self._tail = b""
        self.exhausted = False

    def __iter__(self) -> _StreamSource:
        return self

    def __next__(self) -> bytes:
        if self.exhausted:
            raise StopIteration
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self.exhausted = True
            rest = self._decoder.decode(b"", final=True)
            if rest:
                return rest.encode()
            raise
        self._watchdog.check()
        self._bound(chunk)
        return self._decoder.decode(chunk).encode()

    def _bound(self, chunk: bytes) -> None:
        window = self._tail + chunk
        boundary = max(window.rfind(b"\n\n"), window.rfind(b"\r\r"), window.rfind(b"\r\n\r\n"))
        if boundary >= 0:
            self._pending = len(window) - boundary
        else:
            self._pending += len(chunk)
        self._tail = window[-3:]
        if self._pending > self._max_event_bytes:
            raise StreamBroken(
                BreakReason.EVENT_TOO_LARGE,
                f"one event grew past {self._max_event_bytes} bytes without ending",
            )

    def close(self) -> None:
        """Nothing to do: the response is closed by the ``with`` that opened it."""


class NemoClient:
    """Typed calls to the Nemo agent API (see the module docstring for the contract).

    ``token`` is the token to use (one the caller stored earlier); without it, the
    configured ``NEMO_TOKEN`` is used, with ``me`` in paths. ``clock`` is the monotonic
    clock of the chat's limits, replaceable in tests.
    """

    def __init__(
        self,
        http: httpx.Client,
        config: NemoConfig,
        *,
        token: Token | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._config = config
        self._base = httpx.URL(config.base_url.rstrip("/") + "/")
        self._clock = clock
        if token is None and config.token is not None:
            token = Token(config.token)
        self._token = token

    def __repr__(self) -> str:
        user = self._token.user_id if self._token else None
        return f"NemoClient(base_url={self._config.base_url!r}, user_id={user!r})"

    @property
    def token(self) -> Token | None:
        return self._token

    def use_token(self, token: Token) -> None:
        """Use ``token`` from now on (a token read from storage, or a fresh one)."""
        self._token = token

    @property
    def user_path(self) -> str:
        """What goes where the contract has ``me``: the token's user id, if it came with one."""
        if self._token is not None and self._token.user_id:
            return self._token.user_id
        return "me"

    # -- plumbing -------------------------------------------------------------------

    def _secrets(self) -> tuple[Secret | None, ...]:
        return (self._token.value if self._token else None, self._config.token)

    def _url(self, path: str) -> httpx.URL:
        return self._base.join(path.lstrip("/"))

    def _is_ours(self, url: httpx.URL) -> bool:
        """Whether ``url`` is on the API's host; only those get the token."""
        return (url.scheme, url.host, url.port) == (
            self._base.scheme,
            self._base.host,
            self._base.port,
        )

    def _headers(self, *, auth: bool = True) -> dict[str, str]:
        headers = {
            "X-Skill-Source": self._config.skill_source,
            "X-Skill-Version": self._config.skill_version,
            "X-Skill-Platform": self._config.skill_platform,
        }
        if auth:
            if self._token is None:
                raise TokenInvalid(
                    None, None, "no token: set NEMO_TOKEN or call anonymous_token() first"
                )
            headers["Authorization"] = f"Bearer {self._token.value.reveal()}"
        return headers

    def _transport_error(self, call: Call, exc: httpx.RequestError) -> NemoError:
        detail = scrub(f"{call.value}: {type(exc).__name__}: {exc}", self._secrets())
        if isinstance(exc, httpx.DecodingError):
            return ProtocolError(detail)
        return TransportError(detail, reached_server=not isinstance(exc, _NOT_SENT))

    def _call(
        self,
        method: str,
        path: str,
        *,
        call: Call,
        auth: bool = True,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        files: Any = None,
    ) -> Answer:
        request_headers = self._headers(auth=auth) | dict(headers or {})
        started = self._clock()
        try:
            response = self._http.request(
                method, self._url(path), headers=request_headers, json=json, files=files
            )
        except httpx.RequestError as exc:
            log.info("nemo %s %s failed: %s", method, path, type(exc).__name__)
            raise self._transport_error(call, exc) from exc
        log.debug(
            "nemo %s %s -> %d in %.2f s",
            method,
            path,
            response.status_code,
            self._clock() - started,
        )
        return read_answer(
            response.status_code,
            response.headers,
            response.content,
            call=call,
            secrets=self._secrets(),
        )

    # -- calls ----------------------------------------------------------------------

    def anonymous_token(self, client_id: str | None = None) -> Token:
        """A free anonymous token for ``client_id`` (default: the configured
        ``NEMO_CLIENT_ID``), which is then used for every call.

        Tokens are scarce (about one per client id per 7 days): the caller persists the
        client id and the token, and asks again only after :class:`TokenInvalid`.
        """
        client_id = (client_id or self._config.client_id or "").strip()
        if not client_id:
            raise ValueError("no client id: generate one (uuid4), persist it, and pass it")
        answer = self._call(
            "POST",
            "/api/auth/anonymous-token",
            call=Call.ANONYMOUS_TOKEN,
            auth=False,
            headers={"X-Client-Id": client_id},
        )
        token = Token.from_data(answer.data)
        self._token = token
        return token

    def create_session(self, language: str = "en", *, task_name: str = "project") -> Session:
        answer = self._call(
            "POST",
            f"/api/tasks/me/with-session/{APP_NAME}",
            call=Call.CREATE_SESSION,
            json={"task_name": task_name, "language": language},
        )
        return Session.from_data(answer.data)

    def upload_urls(self, session_id: str, urls: Sequence[str]) -> Upload:
        """Have the backend fetch media from ``urls`` into the session."""
        if not urls:
            raise ValueError("nothing to upload")
        answer = self._call(
            "POST",
            f"/api/upload-video/{APP_NAME}/{_segment(self.user_path)}/{_segment(session_id)}",
            call=Call.UPLOAD,
            json={"urls": list(urls), "source_type": "url"},
        )
        return Upload.from_data(answer.data)

    def upload_files(self, session_id: str, files: Sequence[FileUpload | Path]) -> Upload:
        """Upload files as one multipart form (field ``files``), streamed.

        Paths are opened here and closed afterwards; file objects are read in pieces
        and left open for their owner. Nothing is ever read whole into memory.
        """
        if not files:
            raise ValueError("nothing to upload")
        with contextlib.ExitStack() as stack:
            fields: list[tuple[str, tuple[str, IO[bytes], str]]] = []
            for given in files:
                item = (
                    FileUpload(given.name, stack.enter_context(given.open("rb")))
                    if isinstance(given, Path)
                    else given
                )
                stream = _readable(item.content)
                content_type = (
                    item.content_type
                    or mimetypes.guess_type(item.filename)[0]
                    or "application/octet-stream"
                )
                fields.append(("files", (item.filename, stream, content_type)))
            answer = self._call(
                "POST",
                f"/api/upload-video/{APP_NAME}/{_segment(self.user_path)}/{_segment(session_id)}",
                call=Call.UPLOAD,
                files=fields,
            )
        return Upload.from_data(answer.data)

    def credits(self) -> Credits:
        answer = self._call("GET", "/api/credits/balance/simple", call=Call.CREDITS)
        return Credits.from_data(answer.data)

    def state(self, session_id: str) -> SessionState:
        answer = self._call(
            "GET",
            f"/api/state/{APP_NAME}/{_segment(self.user_path)}/{_segment(session_id)}/latest",
            call=Call.STATE,
        )
        return SessionState.from_data(answer.data)

    def start_render(
        self,
        render_id: str,
        session_id: str,
        draft: Draft | Mapping[str, Any],
        output: Mapping[str, Any] | None = None,
    ) -> RenderStatus:
        """Start exporting ``draft`` under ``render_id``, chosen (and stored) by the caller.

        The id is the render's only handle: store it before calling, and after any
        failure poll it before starting another. A taken id raises
        :class:`~nemo.errors.DuplicateRenderId`.
        """
        _segment(render_id)
        draft_json = draft.to_json() if isinstance(draft, Draft) else dict(draft)
        answer = self._call(
            "POST",
            "/api/render/proxy/lambda",
            call=Call.START_RENDER,
            json={
                "id": render_id,
                "sessionId": session_id,  # camelCase: the contract's one exception
                "draft": draft_json,
                "output": dict(output or DEFAULT_OUTPUT),
            },
        )
        return RenderStatus.from_body(render_id, answer.body or {}, default=RenderState.PENDING)

    def render_status(self, render_id: str) -> RenderStatus:
        answer = self._call(
            "GET", f"/api/render/proxy/lambda/{_segment(render_id)}", call=Call.RENDER_STATUS
        )
        return RenderStatus.from_body(render_id, answer.body)

    def cancel_render(self, render_id: str) -> None:
        self._call(
            "POST",
            f"/api/render/proxy/lambda/{_segment(render_id)}/cancel",
            call=Call.CANCEL_RENDER,
        )

    # -- download -------------------------------------------------------------------

    def download(
        self,
        source: RenderStatus | str,
        destination: Path,
        *,
        render_id: str | None = None,
        max_bytes: int | None = None,
    ) -> DownloadedFile:
        """Save a finished video at ``destination``, streamed, at most ``max_bytes``.

        ``source`` is a completed :class:`RenderStatus` (its URL, with its id for the
        fallback), a URL (``http(s)://…`` or a path on the API; pass ``render_id`` to
        allow the fallback) or a render id. The URL is tried first; if it cannot be
        fetched (transport error, error status), the file is fetched from the proxy
        endpoint ``/api/render/proxy/<id>/download``. A size overrun is not retried.

        The bytes go to a temporary file beside ``destination``, renamed into place
        when complete: on any failure no file, partial or whole, is left behind. The
        token is sent only to the API's own host, never to a CDN.
        """
        limit = max_bytes if max_bytes is not None else self._config.max_download_bytes
        url: str | None
        if isinstance(source, RenderStatus):
            url, render_id = source.output_url, render_id or source.render_id
        elif source.startswith(("http://", "https://", "/")):
            url = source
        else:
            url, render_id = None, source
        if url:
            try:
                return self._fetch(url, destination, limit, via_proxy=False)
            except DownloadTooLarge:
                raise
            except NemoError as exc:
                if not render_id:
                    raise
                log.warning("render %s: its URL failed (%s); trying the proxy", render_id, exc)
        if not render_id:
            raise ValueError("nothing to download: no URL and no render id")
        path = f"/api/render/proxy/{_segment(render_id)}/download"
        return self._fetch(path, destination, limit, via_proxy=True)

    def _fetch(self, url: str, destination: Path, limit: int, *, via_proxy: bool) -> DownloadedFile:
        target = self._url(url) if url.startswith("/") else httpx.URL(url)
        headers = self._headers() if self._is_ours(target) else {}
        try:
            with self._http.stream("GET", target, headers=headers, follow_redirects=True) as answer:
                self._check_download(answer)
                size = self._save(answer, destination, limit)
        except httpx.RequestError as exc:
            raise self._transport_error(Call.DOWNLOAD, exc) from exc
        shown = str(target.copy_with(query=None))
        log.info("downloaded %d bytes from %s to %s", size, shown, destination)
        return DownloadedFile(destination, size, shown, via_proxy)

    def _check_download(self, response: httpx.Response) -> None:
        """Raise unless ``response`` is a file: an error status, or JSON where a file
        was expected (an error envelope answered with 200)."""
        content_type = response.headers.get("content-type", "")
        if response.status_code < 300 and not content_type.startswith("application/json"):
            return
        read_answer(
            response.status_code,
            response.headers,
            _read_bounded(response),
            call=Call.DOWNLOAD,
            secrets=self._secrets(),
        )
        # the body claimed success: believe the status, which says this is no file
        if response.status_code < 300:
            raise ProtocolError("download: the answer is JSON, not a file")
        raise error_for(None, response.status_code, "download failed", call=Call.DOWNLOAD)

    def _save(self, response: httpx.Response, destination: Path, limit: int) -> int:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise DownloadTooLarge(limit, int(declared))
        destination.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=destination.parent, prefix=f".{destination.name}.", suffix=".part"
        )
        partial = Path(temporary)
        try:
            with os.fdopen(handle, "wb") as out:
                size = _copy_bounded(response.iter_bytes(_DOWNLOAD_CHUNK), out, limit)
            partial.replace(destination)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return size

    # -- chat -----------------------------------------------------------------------

    def chat(self, session_id: str, text: str) -> Generator[ChatEvent, None, None]:
        """Send ``text`` to the agent and yield the turn's events as they arrive.

        The message is sent when iteration starts. Iteration ends normally when the
        stream closes and raises :class:`~nemo.errors.StreamBroken` when it breaks (see
        the module docstring). Close the iterator (``contextlib.closing``) to let go of
        the stream early. Never call this twice for the same instruction.
        """
        if not text.strip():
            raise ValueError("an empty message would still be charged")
        body = {
            "app_name": APP_NAME,
            "user_id": self.user_path,
            "session_id": session_id,
            "new_message": {"parts": [{"text": text}]},
        }
        headers = self._headers() | {"Accept": "text/event-stream"}
        return self._chat_events(body, headers)

    def _chat_events(
        self, body: Mapping[str, Any], headers: Mapping[str, str]
    ) -> Generator[ChatEvent, None, None]:
        config = self._config
        # the read timeout never outlasts the limits: silence is caught even with no bytes
        timeout = httpx.Timeout(
            connect=config.connect_timeout,
            read=min(config.heartbeat_limit, config.turn_limit),
            write=config.write_timeout,
            pool=config.pool_timeout,
        )
        secrets = self._secrets()
        watchdog = _Watchdog(self._clock, config.heartbeat_limit, config.turn_limit)
        try:
            with self._http.stream(
                "POST", self._url("/run_sse"), json=body, headers=headers, timeout=timeout
            ) as response:
                self._check_stream(response)
                source = _StreamSource(response.iter_bytes(), watchdog, config.max_event_bytes)
                for message in SSEClient(source).events():
                    if source.exhausted:
                        raise StreamBroken(
                            BreakReason.TRUNCATED, "the stream ended inside an event"
                        )
                    for event in parse_event(message.data, message.event):
                        if not isinstance(event, Heartbeat | Unknown):
                            watchdog.activity()
                        yield scrub_event(event, secrets)
        except _NOT_SENT as exc:
            raise self._transport_error(Call.CHAT, exc) from exc
        except httpx.TimeoutException as exc:
            raise StreamBroken(
                BreakReason.READ_TIMEOUT, scrub(f"{type(exc).__name__}: {exc}", secrets)
            ) from exc
        except httpx.RequestError as exc:
            raise StreamBroken(
                BreakReason.RESET, scrub(f"{type(exc).__name__}: {exc}", secrets)
            ) from exc

    def _check_stream(self, response: httpx.Response) -> None:
        """Raise unless ``response`` is an event stream.

        A refusal (429, 1001, 1002, 2001…) is raised as its ApiError: the message was
        not acted on. A 5xx, or a 2xx that is no stream, leaves the outcome unknown.
        """
        content_type = response.headers.get("content-type", "")
        is_stream = not content_type or content_type.startswith("text/event-stream")
        if response.status_code < 300 and is_stream:
            return
        try:
            read_answer(
                response.status_code,
                response.headers,
                _read_bounded(response),
                call=Call.CHAT,
                secrets=self._secrets(),
            )
        except ServerError as exc:
            raise StreamBroken(BreakReason.SERVER_ERROR, exc.message) from exc
        except ProtocolError as exc:
            raise StreamBroken(BreakReason.NOT_A_STREAM, exc.message) from exc
        raise StreamBroken(
            BreakReason.NOT_A_STREAM,
            f"HTTP {response.status_code} {content_type or 'without a content type'}",
        )
