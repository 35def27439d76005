"""Settings of the Nemo client, the token wrapper that keeps it out of sight, and scrubbing.

Settings are read from the environment once, by the caller, into a frozen
:class:`NemoConfig` that is passed down (nothing here reads the environment at import
time). The token is held in a :class:`Secret`, whose ``repr`` and ``str`` are a mask, so
that a settings object, a token or an exception can be logged without leaking it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import httpx

from reelyard import __version__

__all__ = [
    "DEFAULT_SKILL_SOURCE",
    "PRODUCTION_BASE_URL",
    "NemoConfig",
    "Secret",
    "build_http_client",
    "scrub",
]

PRODUCTION_BASE_URL = "https://mega-api-prod.nemovideo.ai"
DEFAULT_SKILL_SOURCE = "reelyard"
MASK = "***"

# Anything shaped like a Nemo token or a bearer credential is masked even when it is not
# the token this client holds: a server may echo another one (a fresh anonymous token in
# a body that fails to parse, say).
_TOKEN_SHAPES = re.compile(r"nmv_[A-Za-z0-9_\-.]{4,}|Bearer\s+[A-Za-z0-9._~+/=\-]{12,}")


class Secret:
    """A string that does not show itself: ``repr`` and ``str`` are a mask.

    Call :meth:`reveal` at the one place the value is needed (the Authorization header).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value:
            raise ValueError("a secret cannot be empty")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        # Pickling (Celery results, say) would otherwise be refused by __slots__ without
        # state; it keeps the value, because a pickled token must still work.
        return (Secret, (self._value,))


def scrub(text: str, secrets: Iterable[Secret | None] = ()) -> str:
    """``text`` with the given secrets and anything token-shaped replaced by a mask."""
    for secret in secrets:
        if secret is not None:
            text = text.replace(secret.reveal(), MASK)
    return _TOKEN_SHAPES.sub(MASK, text)


def _env(environ: Mapping[str, str], name: str) -> str | None:
    """The variable's value, or None when it is unset or blank (an empty export)."""
    value = environ.get(name, "").strip()
    return value or None


@dataclass(frozen=True)
class NemoConfig:
    """Everything the client needs to know, fixed for its lifetime.

    Times are seconds. ``heartbeat_limit`` and ``turn_limit`` are the chat stream's two
    limits from nemo-api.md (10 minutes of heartbeats alone, 15 minutes in all); tests
    pass small values.
    """

    base_url: str = PRODUCTION_BASE_URL
    token: Secret | None = None
    client_id: str | None = None
    #: the three attribution headers; exports are refused with 402 if one is missing
    skill_source: str = DEFAULT_SKILL_SOURCE
    skill_version: str = __version__
    skill_platform: str = "unknown"
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    write_timeout: float = 60.0
    pool_timeout: float = 10.0
    heartbeat_limit: float = 600.0
    turn_limit: float = 900.0
    #: a finished export is 1080p at most and usually under a minute; 2 GiB is generous
    max_download_bytes: int = 2 * 1024**3
    #: one SSE event larger than this (no blank line in sight) breaks the stream
    max_event_bytes: int = 16 * 1024**2

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"NEMO_API_BASE must be an http(s) URL, not {self.base_url!r}")
        for name in ("skill_source", "skill_version", "skill_platform"):
            if not getattr(self, name):
                raise ValueError(f"{name} cannot be empty: exports would be refused with 402")
        if self.heartbeat_limit <= 0 or self.turn_limit <= 0:
            raise ValueError("the chat limits must be positive")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> NemoConfig:
        """Read ``NEMO_API_BASE``, ``NEMO_TOKEN``, ``NEMO_CLIENT_ID``, ``NEMO_SKILL_SOURCE``
        and ``NEMO_SKILL_PLATFORM``; unset or blank variables keep the defaults.

        The caller passes ``os.environ`` (or a test's own mapping): reading it here,
        once, keeps imports free of side effects.
        """
        token = _env(environ, "NEMO_TOKEN")
        return cls(
            base_url=_env(environ, "NEMO_API_BASE") or PRODUCTION_BASE_URL,
            token=Secret(token) if token else None,
            client_id=_env(environ, "NEMO_CLIENT_ID"),
            skill_source=_env(environ, "NEMO_SKILL_SOURCE") or DEFAULT_SKILL_SOURCE,
            skill_platform=_env(environ, "NEMO_SKILL_PLATFORM") or "unknown",
        )

    @property
    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.connect_timeout,
            read=self.read_timeout,
            write=self.write_timeout,
            pool=self.pool_timeout,
        )


def build_http_client(
    config: NemoConfig, *, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    """An ``httpx.Client`` with the configured timeouts, for :class:`nemo.NemoClient`.

    The caller owns it (closes it, or uses it as a context manager). Redirects are not
    followed by default: an API call that redirects is a misconfiguration worth seeing;
    downloads opt in per request.
    """
    return httpx.Client(timeout=config.timeout, transport=transport, follow_redirects=False)
