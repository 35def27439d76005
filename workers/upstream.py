"""The one upstream account every job shares: its client id and token, single-flight.

Tokens are scarce (about one per client id per week, nemo-api.md), so the service
keeps one client id and one token in ``upstream_credentials`` and every job uses
them. A token is replaced only after the upstream refused it (1001):

- :func:`invalidate` forgets the token a job saw refused, and only that one, so a
  late 1001 for an old token never throws away the fresh one;
- :func:`current_token` hands out the stored token, or, when there is none, lets
  exactly one worker fetch a new one: the one whose conditional UPDATE of
  ``refreshing_until`` matched. The others get :class:`TokenPending` and come back
  a moment later (a rescheduled task, not a sleep). A refresher that died leaves a
  claim that expires after :data:`REFRESH_CLAIM_S`.

A token fixed by configuration (``NEMO_TOKEN``) is used as it is and never refreshed.

A new token exists only in the refresher's memory until it is stored, and the upstream
will not issue another for the same client id while it lives (a week). So the
refresher keeps trying to store it while PostgreSQL refuses (up to
:data:`REFRESH_CLAIM_S`), and a refusal of a new token for longer than
:data:`TOKEN_LOCKOUT_S` means a refresher died between receiving and storing one:
the service goes on under a new client id (a warning says so; it costs one token of
the address's allowance) instead of waiting out the lost token's week.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import and_, or_, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from models.base import utcnow
from models.upstream import CREDENTIALS_ROW, UpstreamCredentials
from nemo import Credits, NemoClient, NemoConfig, Secret, Token, build_http_client
from nemo.errors import RateLimited

log = logging.getLogger(__name__)

#: seconds a worker may spend fetching a token before another may try
REFRESH_CLAIM_S = 30.0
#: a new token refused for longer than this (``Retry-After``): the client id holds a
#: live token the service lost; a transient 429 asks for seconds
TOKEN_LOCKOUT_S = 600.0
#: seconds between two tries to store a token received while PostgreSQL refuses
STORE_RETRY_S = 0.5
#: seconds a process reuses the token it last read before reading the row again: a
#: token replaced meanwhile is refused (1001) at worst, which costs no credit, and
#: :func:`invalidate` then tells the job it was stale, not expired
TOKEN_REUSE_S = 2.0


class TokenPending(Exception):
    """Another worker is fetching the token: try again in a moment."""


class FixedTokenRefused(Exception):
    """The configured ``NEMO_TOKEN`` was refused; nothing can replace it."""


@dataclass
class Upstream:
    """The upstream's configuration and one HTTP client for the whole process."""

    config: NemoConfig
    http: httpx.Client
    #: the token last read from the row, and when (``time.monotonic``)
    _known: tuple[Token, float] | None = field(default=None, init=False, repr=False)
    #: when the credit balance this process last saw was read from the upstream
    credits_seen_at: datetime | None = field(default=None, init=False, repr=False)

    @classmethod
    def connect(cls, config: NemoConfig, *, max_connections: int = 1100) -> Upstream:
        # one pool for every thread: each of the edit queue's streams holds a connection
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=100)
        return cls(config, build_http_client(config, transport=httpx.HTTPTransport(limits=limits)))

    def client(self, token: Token | None) -> NemoClient:
        return NemoClient(self.http, self.config, token=token)

    def close(self) -> None:
        self.http.close()

    def known_token(self) -> Token | None:
        """The token read less than :data:`TOKEN_REUSE_S` ago, if any."""
        known = self._known
        if known is None or time.monotonic() - known[1] >= TOKEN_REUSE_S:
            return None
        return known[0]

    def remember(self, token: Token | None) -> None:
        self._known = None if token is None else (token, time.monotonic())


def _row(session: Session) -> UpstreamCredentials:
    row = session.get(UpstreamCredentials, CREDENTIALS_ROW, populate_existing=True)
    if row is not None:
        return row
    try:
        with session.begin_nested():
            session.add(UpstreamCredentials(id=CREDENTIALS_ROW, client_id=str(uuid.uuid4())))
    except IntegrityError:  # another worker created it first
        pass
    row = session.get(UpstreamCredentials, CREDENTIALS_ROW, populate_existing=True)
    assert row is not None  # noqa: S101 (it exists: we or another worker created it)
    return row


def current_token(
    sessions: sessionmaker[Session],
    upstream: Upstream,
    *,
    owner: str,
    clock: Callable[[], datetime] = utcnow,
) -> Token:
    """The token to call the upstream with; fetches one (single-flight) when none is stored."""
    if upstream.config.token is not None:
        return Token(upstream.config.token)
    known = upstream.known_token()
    if known is not None:
        return known
    with sessions() as session:
        row = _row(session)
        if row.token:
            token = Token(Secret(row.token), user_id=row.user_id)
            session.commit()
            upstream.remember(token)
            return token
        now = clock()
        won = session.execute(
            update(UpstreamCredentials)
            .where(
                and_(
                    UpstreamCredentials.id == CREDENTIALS_ROW,
                    UpstreamCredentials.token.is_(None),
                    or_(
                        UpstreamCredentials.refreshing_until.is_(None),
                        UpstreamCredentials.refreshing_until <= now,
                    ),
                )
            )
            .values(
                refreshing_until=now + timedelta(seconds=REFRESH_CLAIM_S),
                refreshing_owner=owner,
                updated_at=now,
            )
            .returning(UpstreamCredentials.client_id)
        ).first()
        session.commit()
    if won is None:
        raise TokenPending
    client_id = upstream.config.client_id or won.client_id
    try:
        token, client_id = _fetch(sessions, upstream, owner, client_id)
    except BaseException:
        _release(sessions, owner)
        raise
    stored = _store(
        sessions,
        owner,
        token=token.value.reveal(),
        user_id=token.user_id,
        client_id=client_id,
        token_expires_at=_parse_time(token.expires_at),
        refreshing_until=None,
        refreshing_owner=None,
        credits_balance=int(token.credits) if token.credits is not None else None,
        credits_checked_at=clock() if token.credits is not None else None,
        updated_at=clock(),
    )
    if not stored:  # another worker stored one meanwhile (our claim had expired): use it
        with sessions() as session:
            row = _row(session)
            if row.token:
                token = Token(Secret(row.token), user_id=row.user_id)
            session.commit()
    upstream.remember(token)
    return token


def _fetch(
    sessions: sessionmaker[Session], upstream: Upstream, owner: str, client_id: str
) -> tuple[Token, str]:
    """A new token, and the client id it was issued to (see the module doc)."""
    try:
        return upstream.client(None).anonymous_token(client_id), client_id
    except RateLimited as refused:
        if upstream.config.client_id is not None or refused.retry_after < TOKEN_LOCKOUT_S:
            raise  # a configured client id stays; a short 429 is waited out
        locked_s = refused.retry_after
    fresh = str(uuid.uuid4())
    log.warning(
        "the upstream refuses a new token for client id %s for %.0f s: it holds a live "
        "token that was never stored (a worker died between receiving and storing it); "
        "going on with a new client id %s",
        client_id,
        locked_s,
        fresh,
    )
    if not _update(sessions, UpstreamCredentials.refreshing_owner == owner, client_id=fresh):
        raise TokenPending  # our claim expired meanwhile: whoever holds it decides
    return upstream.client(None).anonymous_token(fresh), fresh


def _store(sessions: sessionmaker[Session], owner: str, **values: Any) -> bool:
    """Store a token just received (only in this process's memory until then), trying
    again while PostgreSQL refuses, for up to :data:`REFRESH_CLAIM_S`; whether it was
    stored (False: another worker stored one after our claim expired)."""
    deadline = time.monotonic() + REFRESH_CLAIM_S
    while True:
        try:
            return _update(
                sessions,
                or_(
                    UpstreamCredentials.refreshing_owner == owner,
                    UpstreamCredentials.token.is_(None),
                ),
                **values,
            )
        except OperationalError:
            if time.monotonic() >= deadline:
                raise
            log.warning("could not store the new upstream token yet; trying again")
            time.sleep(STORE_RETRY_S)


def _update(sessions: sessionmaker[Session], *where: Any, **values: Any) -> bool:
    """Change the credentials row where ``where`` holds, and commit; whether it held."""
    with sessions() as session:
        changed = session.execute(
            update(UpstreamCredentials)
            .where(and_(UpstreamCredentials.id == CREDENTIALS_ROW, *where))
            .values(**values)
            .returning(UpstreamCredentials.id)
        ).first()
        session.commit()
    return changed is not None


def _release(sessions: sessionmaker[Session], owner: str) -> None:
    _update(
        sessions,
        UpstreamCredentials.refreshing_owner == owner,
        refreshing_until=None,
        refreshing_owner=None,
    )


def invalidate(sessions: sessionmaker[Session], upstream: Upstream, refused: Token) -> bool:
    """Forget ``refused`` (the upstream answered 1001 to it), unless already replaced.

    True if it was the stored token (it expired); False if another worker had already
    replaced it (this process used it a moment too long: no repair is needed).
    """
    if upstream.config.token is not None:
        raise FixedTokenRefused
    upstream.remember(None)
    return _update(
        sessions,
        UpstreamCredentials.token == refused.value.reveal(),
        token=None,
        user_id=None,
        token_expires_at=None,
        updated_at=utcnow(),
    )


def record_credits(
    sessions: sessionmaker[Session],
    upstream: Upstream,
    credits: Credits,
    *,
    now: datetime | None = None,
) -> None:
    now = now or utcnow()
    _update(sessions, credits_balance=int(credits.available), credits_checked_at=now)
    upstream.credits_seen_at = now


def credits_due(
    sessions: sessionmaker[Session], upstream: Upstream, every_s: float, now: datetime
) -> bool:
    """Whether the credit balance is older than ``every_s`` seconds.

    The row is read only when this process has not seen a balance that recent.
    """
    every = timedelta(seconds=every_s)
    seen = upstream.credits_seen_at
    if seen is not None and now - seen < every:
        return False
    with sessions() as session:
        row = session.get(UpstreamCredentials, CREDENTIALS_ROW)
        checked = row.credits_checked_at if row is not None else None
        session.rollback()
    upstream.credits_seen_at = checked
    return checked is None or checked <= now - every


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
