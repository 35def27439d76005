"""Every failure the Nemo client reports, as one tree.

::

    NemoError                       anything this package raises on purpose
    ├── TransportError              no usable answer: connect/read timeouts, resets, DNS
    ├── ProtocolError               an answer arrived but does not parse as the contract says
    ├── StreamBroken                a chat stream ended without closing: the turn's outcome
    │                               is unknown (reset, timeout, truncated event, a limit)
    ├── DownloadTooLarge            a download passed its size bound and was abandoned
    └── ApiError(code, http_status, message)
        ├── TokenInvalid            1001, 1010, 1011, HTTP 401 (or no token at all)
        ├── SessionNotFound         1002
        ├── OutOfCredits            2001
        ├── UnsupportedMedia        4001
        ├── MediaTooLarge           4002
        ├── MissingClientId         400 on the anonymous-token call
        ├── ExportBlocked           402 (a plan limit, or a missing attribution header)
        ├── RateLimited             429, with ``retry_after`` seconds
        ├── DuplicateRenderId       a render id that is already taken
        └── ServerError             5xx

Each class says, as class attributes, whether the same call may simply be made again
(``retryable``) and what must be repaired first (``repair``, a :class:`Repair`), so the
pipeline decides from the exception alone and keeps no table of codes of its own. An
:class:`ApiError` is built from the body's ``code`` first and the HTTP status second,
exactly as nemo-api.md asks (see :func:`nemo.envelope.error_for`).

Messages never contain the token: the client scrubs every text it puts into an error
(see :mod:`nemo.config`), because exception messages end up in logs and job rows.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

__all__ = [
    "ApiError",
    "BreakReason",
    "DownloadTooLarge",
    "DuplicateRenderId",
    "ExportBlocked",
    "MediaTooLarge",
    "MissingClientId",
    "NemoError",
    "OutOfCredits",
    "ProtocolError",
    "RateLimited",
    "Repair",
    "ServerError",
    "SessionNotFound",
    "StreamBroken",
    "TokenInvalid",
    "TransportError",
    "UnsupportedMedia",
]

#: nemo-api.md: "wait 30 s and retry" when a 429 carries no Retry-After.
DEFAULT_RETRY_AFTER = 30.0


class Repair(StrEnum):
    """What has to change before the failed call is worth making again."""

    #: nothing can be repaired: retry as is if ``retryable``, otherwise report the failure
    NONE = "none"
    #: wait (``retry_after`` where given, the pipeline's backoff otherwise), then retry
    BACK_OFF = "back_off"
    #: acquire a new token (anonymous-token, single-flight), then retry
    NEW_TOKEN = "new_token"  # noqa: S105 - the name of a repair, not a password
    #: create a new session and re-upload what it needs, then retry
    NEW_SESSION = "new_session"
    #: the anonymous-token call lacked a client id: generate one, persist it, retry
    NEW_CLIENT_ID = "new_client_id"
    #: the turn's outcome is unknown: never re-send the message, read the state instead
    READ_STATE = "read_state"
    #: the render id already names a render: poll it rather than starting another
    POLL_RENDER = "poll_render"


def _restore(cls: type[NemoError], args: tuple[object, ...], state: dict[str, Any]) -> NemoError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class NemoError(Exception):
    """The root of everything the Nemo client raises."""

    retryable: ClassVar[bool] = False
    repair: ClassVar[Repair] = Repair.NONE

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        # The subclasses take keyword and extra arguments that Exception's own pickling
        # would not pass back; errors cross process boundaries (Celery), so keep them whole.
        return (_restore, (type(self), self.args, dict(self.__dict__)))


class TransportError(NemoError):
    """No answer could be read: connect or read timeout, reset, refused, DNS.

    ``reached_server`` is False when the request surely never left (a connect error or
    timeout, an exhausted pool): then even a call that costs money may be made again.
    """

    retryable = True
    repair = Repair.BACK_OFF

    def __init__(self, message: str, *, reached_server: bool = True) -> None:
        super().__init__(message)
        self.reached_server = reached_server


class ProtocolError(NemoError):
    """An answer arrived but does not parse: not JSON, a missing field, an unknown status.

    Retryable with backoff because the usual cause is a proxy's error page or a body cut
    short; a lasting contract mismatch is bounded by the pipeline's attempt limit.
    """

    retryable = True
    repair = Repair.BACK_OFF


class BreakReason(StrEnum):
    """How a chat stream broke (as opposed to closing, which ends a turn normally)."""

    #: the connection dropped or was reset in the middle of the stream
    RESET = "reset"
    #: the stream ended inside an event (no blank line after its last ``data:``)
    TRUNCATED = "truncated"
    #: not a single byte arrived for the read timeout
    READ_TIMEOUT = "read_timeout"
    #: only heartbeats arrived for the heartbeat limit (nemo-api.md: 10 minutes)
    HEARTBEAT_LIMIT = "heartbeat_limit"
    #: the turn ran past its total limit (nemo-api.md: 15 minutes)
    TURN_LIMIT = "turn_limit"
    #: one event grew past the size bound without ending
    EVENT_TOO_LARGE = "event_too_large"
    #: a 5xx answered the message: the backend may or may not have acted on it
    SERVER_ERROR = "server_error"
    #: a 2xx answered the message with something that is not an event stream
    NOT_A_STREAM = "not_a_stream"


class StreamBroken(NemoError):
    """A chat stream ended without closing cleanly: the turn's outcome is unknown.

    The message may have been executed (and charged). nemo-api.md's recovery: do not
    re-send; wait 30 s, read the state and compare the draft with the one before.
    """

    retryable = False
    repair = Repair.READ_STATE

    def __init__(self, reason: BreakReason, message: str) -> None:
        super().__init__(f"chat stream broke ({reason.value}): {message}")
        self.reason = reason


class DownloadTooLarge(NemoError):
    """A download passed its size bound; it was abandoned and nothing was kept."""

    def __init__(self, limit: int, seen: int) -> None:
        super().__init__(f"download exceeds the {limit}-byte limit ({seen} bytes or more)")
        self.limit = limit
        self.seen = seen


class ApiError(NemoError):
    """The backend answered, and the answer is an error.

    ``code`` is the body's ``code`` (None when the body had none, or no body parsed),
    ``http_status`` the HTTP status (None for errors raised before any request).
    """

    def __init__(self, code: int | None, http_status: int | None, message: str) -> None:
        parts = [f"code {code}" if code is not None else None]
        parts.append(f"HTTP {http_status}" if http_status is not None else None)
        where = ", ".join(part for part in parts if part)
        super().__init__(f"{message} ({where})" if where else message)
        self.code = code
        self.http_status = http_status
        self.detail = message


class TokenInvalid(ApiError):
    """The token expired, was revoked, or was never given (1001, 1010, 1011, HTTP 401)."""

    retryable = True
    repair = Repair.NEW_TOKEN


class SessionNotFound(ApiError):
    """The session is gone (1002): a new one is needed, with its media uploaded again."""

    retryable = True
    repair = Repair.NEW_SESSION


class OutOfCredits(ApiError):
    """No credits left (2001): anonymous users must register, others top up."""


class UnsupportedMedia(ApiError):
    """The file type is not accepted (4001)."""


class MediaTooLarge(ApiError):
    """The file is over the backend's size limit, 200 MB (4002)."""


class MissingClientId(ApiError):
    """The anonymous-token call had no usable ``X-Client-Id`` (400)."""

    retryable = True
    repair = Repair.NEW_CLIENT_ID


class ExportBlocked(ApiError):
    """Export refused (402): the plan does not allow it, or an attribution header is missing.

    Waiting does not help, so it is not retryable.
    """


class RateLimited(ApiError):
    """Too many requests (429): wait ``retry_after`` seconds, then retry."""

    retryable = True
    repair = Repair.BACK_OFF

    def __init__(
        self,
        code: int | None,
        http_status: int | None,
        message: str,
        *,
        retry_after: float = DEFAULT_RETRY_AFTER,
    ) -> None:
        super().__init__(code, http_status, message)
        self.retry_after = retry_after


class DuplicateRenderId(ApiError):
    """The render id is already taken, so a render with that id exists: poll it.

    Render ids are derived from the job and attempt and stored before the export call,
    so this is the answer a resumed job gets when its first export did go through.
    """

    repair = Repair.POLL_RENDER


class ServerError(ApiError):
    """The backend failed (5xx); usually transient."""

    retryable = True
    repair = Repair.BACK_OFF
