"""Webhook delivery: which message goes out next, what its answer means, what follows.

Part A (``models.webhooks``) fans the outbox out into *messages*; this module sends
them, at least once, and keeps every attempt. Three layers:

- **Decisions** (plain functions, no I/O, tested on tables): :func:`retry_delay_s`
  (the Standard Webhooks schedule with jitter, scaled by ``time_scale``),
  :func:`classify` (what an answer or an :class:`~reelyard.outbound.OutboundError`
  means) and :func:`decide` (the message's next state, and what happens to its
  endpoint).
- **Claims and records** (SQL, the caller's session): :func:`claim` leases a few
  due messages of the destination of the oldest one whose destination has room,
  increments their ``attempt_count`` and writes their attempts' rows;
  :func:`record` writes an answer into its row and the message's new state, guarded
  by the lease, in one transaction after the call; :func:`release` hands back what
  a batch did not send.
- **Loops** (what the Celery tasks call): :func:`dispatch` (fan-out, and the
  delivery loops worth starting) and :func:`deliver_due` (claim a batch, call and
  record each, until nothing is due).

Why it is safe to lose any message or worker (design.md "Durability"): the rows
decide. A killed worker leaves a message leased; once the lease expires the next
claim takes it again (same ``msg_…``, the same ``webhook-id``), marks the attempt it
left incomplete as interrupted, and sends it. A lost wake-up is found by the beat's
sweep, which runs :func:`dispatch` every ``REELYARD_WEBHOOK_SWEEP_EVERY_S``.

Isolation: a *destination* is an endpoint, or the URL of a job's own ``webhook_url``.
At most ``endpoint_concurrency`` messages of one destination are leased at once
(counted under a per-destination advisory lock, so racing claims cannot overshoot),
and a claim skips destinations that are full, so a slow or blackholed endpoint holds
at most that many workers and never the queue. An endpoint that asks us to slow down
(429, 502, 504, with or without ``Retry-After``) has its other pending messages
pushed back too; one whose every attempt has failed for ``disable_after_s`` is
disabled, with the reason in the API.
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

import httpx
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from models.base import utcnow
from models.db import make_engine
from models.webhooks import (
    RESPONSE_BODY_LIMIT,
    AttemptTrigger,
    MessageStatus,
    WebhookMessage,
    disable_endpoint,
    live_secrets,
    signing_secrets,
)
from reelyard.crash import crash_point
from reelyard.outbound import (
    Connections,
    FetchFailed,
    OutboundError,
    Reply,
    TimedOut,
    UrlRefused,
    send,
)
from reelyard.settings import DEFAULT_WEBHOOK_SCHEDULE_S, Settings
from reelyard.webhooks import body_of, fan_out_events, headers_for
from workers import webhooks_sqlite

log = logging.getLogger(__name__)

#: statuses that ask the sender to slow down (rate limited, a gateway in trouble)
SLOW_DOWN_STATUSES: Final = frozenset({429, 502, 504})
#: the status that means "this endpoint is gone for good"
GONE: Final = 410
#: share of a delay added or taken at random, so retries of a burst spread out
JITTER: Final = 0.2
#: destinations a claim tries before it gives up (each found full once its lock came)
PICKS: Final = 5
#: events fanned out per transaction, and transactions per dispatch
FAN_OUT_BATCH: Final = 100
FAN_OUT_ROUNDS: Final = 50


# --- decisions (no I/O) -------------------------------------------------------------


class Kind(StrEnum):
    """What one attempt's result means, before the schedule is consulted."""

    DELIVERED = "delivered"  # 2xx
    GONE = "gone"  # 410: disable the endpoint, fail the message
    SLOW_DOWN = "slow_down"  # 429, 502, 504: retry, and back the endpoint off
    RETRY = "retry"  # any other status, a timeout, a broken connection, a redirect
    REFUSED = "refused"  # the URL failed the SSRF guard at delivery: fail at once


@dataclass(frozen=True)
class Outcome:
    """One attempt's result, as it is recorded and decided on."""

    kind: Kind
    status_code: int | None = None
    #: why there is no usable answer (the attempt row's ``error``)
    error: str | None = None
    #: seconds the receiver asked us to wait (``Retry-After``), unscaled
    retry_after_s: float | None = None
    response_body: str | None = None


@dataclass(frozen=True)
class Decision:
    """What an attempt's outcome does to its message and its endpoint."""

    status: MessageStatus
    #: when the next attempt is due (pending messages only)
    next_attempt_at: datetime | None = None
    #: the endpoint is disabled with this reason
    disable_reason: str | None = None
    #: the endpoint's other pending messages wait at least until then
    slow_endpoint_until: datetime | None = None


@dataclass(frozen=True)
class DeliveryConfig:
    """The webhooks' settings, as delivery uses them."""

    #: seconds before each attempt (the first is the first attempt's: 0, at once)
    schedule_s: Sequence[float] = DEFAULT_WEBHOOK_SCHEDULE_S
    #: multiplies every wait: the schedule, ``Retry-After``, the days before disabling
    time_scale: float = 1.0
    timeout_s: float = 15.0
    lease_s: float = 60.0
    endpoint_concurrency: int = 10
    disable_after_s: float = 5 * 86400.0
    #: delivery loops a wake-up may start
    parallel: int = 50
    #: messages of one destination a loop claims at once, at most (fewer claims per
    #: delivery: benchmarks/webhooks.py); sent one after the other
    batch: int = 5
    #: an answer slower than this ends a batch: the rest go to other loops
    batch_slow_s: float = 1.0
    allow_private_urls: bool = False
    jitter: float = JITTER

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryConfig:
        return cls(
            schedule_s=settings.webhook_schedule_s,
            time_scale=settings.time_scale,
            timeout_s=settings.webhook_timeout_s,
            lease_s=settings.webhook_lease_s,
            endpoint_concurrency=settings.webhook_endpoint_concurrency,
            disable_after_s=settings.webhook_disable_after_s,
            parallel=settings.webhook_parallel,
            allow_private_urls=settings.allow_private_urls,
        )

    @property
    def longest_wait_s(self) -> float:
        """The longest a ``Retry-After`` may hold a message: the schedule's longest step."""
        return max(self.schedule_s, default=0.0)


def retry_delay_s(
    attempts_made: int,
    schedule_s: Sequence[float],
    *,
    time_scale: float = 1.0,
    jitter: float = JITTER,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """Seconds until the next attempt after ``attempts_made`` attempts; None when the
    schedule is spent (the message has failed).

    The schedule lists the wait before each attempt, the first one's included (0: at
    once), so after ``n`` attempts the next waits ``schedule_s[n]``, give or take
    ``jitter`` of it: a burst of failures does not come back as a burst.
    """
    if attempts_made < 0 or attempts_made >= len(schedule_s):
        return None
    base = schedule_s[attempts_made] * time_scale
    return max(0.0, base * (1 + jitter * (2 * rand() - 1)))


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date); None if absent or
    unreadable, and never negative."""
    if value is None or not value.strip():
        return None
    raw = value.strip()
    if raw.isdigit():
        return float(raw)
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def response_text(body: bytes, limit: int = RESPONSE_BODY_LIMIT) -> str:
    """The start of an answer as text, at most ``limit`` bytes once encoded (a
    replacement character takes three bytes where the bad byte took one)."""
    shown = body[:limit].decode("utf-8", errors="replace")
    while len(shown.encode()) > limit:
        shown = shown[:-1]
    return shown


def classify(reply: Reply | None, error: OutboundError | None, now: datetime) -> Outcome:
    """What the answer (or the error instead of one) means for the message."""
    if reply is None:
        return _classify_error(error)
    body = response_text(reply.body)
    status = reply.status
    if 200 <= status < 300:
        kind = Kind.DELIVERED
    elif status == GONE:
        return Outcome(Kind.GONE, status_code=status, response_body=body, error="410 Gone")
    elif status in SLOW_DOWN_STATUSES:
        return Outcome(
            Kind.SLOW_DOWN,
            status_code=status,
            response_body=body,
            retry_after_s=parse_retry_after(reply.headers.get("retry-after"), now),
        )
    elif 300 <= status < 400:
        return Outcome(
            Kind.RETRY,
            status_code=status,
            response_body=body,
            error=f"redirect not followed (HTTP {status})",
        )
    else:
        kind = Kind.RETRY
    return Outcome(kind, status_code=status, response_body=body)


def _classify_error(error: OutboundError | None) -> Outcome:
    if isinstance(error, UrlRefused):
        return Outcome(Kind.REFUSED, error=f"refused URL: {error.message}")
    if isinstance(error, TimedOut):
        return Outcome(Kind.RETRY, error=f"timeout: {error.message}")
    if isinstance(error, FetchFailed):
        if isinstance(error.__cause__, httpx.ConnectError):
            return Outcome(Kind.RETRY, error=f"connection refused: {error.message}")
        return Outcome(Kind.RETRY, error=f"connection closed: {error.message}")
    return Outcome(Kind.RETRY, error=error.message if error is not None else "no answer")


def decide(
    outcome: Outcome,
    *,
    attempts_made: int,
    trigger: AttemptTrigger,
    now: datetime,
    config: DeliveryConfig,
    failing_since: datetime | None = None,
    rand: Callable[[], float] = random.random,
) -> Decision:
    """The message's next state after its ``attempts_made``-th attempt.

    A replay is one more attempt, not a new schedule: if it fails, the message is
    failed again. ``failing_since`` is the start of the endpoint's run of failures,
    this one included (None for a job's own URL, which has no endpoint to disable).
    """
    if outcome.kind is Kind.DELIVERED:
        return Decision(MessageStatus.DELIVERED)
    if outcome.kind is Kind.GONE:
        return Decision(MessageStatus.FAILED, disable_reason="410 Gone")
    disable_reason = None
    window = timedelta(seconds=config.disable_after_s * config.time_scale)
    if failing_since is not None and now - failing_since >= window:
        days = config.disable_after_s / 86400
        disable_reason = (
            f"every attempt failed since {failing_since.isoformat()} ({days:g} days or more)"
        )
    if outcome.kind is Kind.REFUSED:
        return Decision(MessageStatus.FAILED, disable_reason=disable_reason)
    delay = (
        None
        if trigger is AttemptTrigger.REPLAY
        else retry_delay_s(
            attempts_made,
            config.schedule_s,
            time_scale=config.time_scale,
            jitter=config.jitter,
            rand=rand,
        )
    )
    slow_until = None
    if outcome.kind is Kind.SLOW_DOWN:
        asked = outcome.retry_after_s
        held_s = (
            min(asked, config.longest_wait_s) * config.time_scale
            if asked is not None
            else (delay or 0.0)
        )
        slow_until = now + timedelta(seconds=held_s)
        if delay is not None:
            delay = max(delay, held_s)
    if delay is None:
        return Decision(
            MessageStatus.FAILED, disable_reason=disable_reason, slow_endpoint_until=slow_until
        )
    return Decision(
        MessageStatus.PENDING,
        next_attempt_at=now + timedelta(seconds=delay),
        disable_reason=disable_reason,
        slow_endpoint_until=slow_until,
    )


# --- claims and records (SQL) -------------------------------------------------------

#: messages whose lease is live, per destination (an endpoint, or a job's own URL);
#: served by the partial index ``ix_webhook_messages_leased``
_LEASED = """
    SELECT coalesce(endpoint_id, url) AS destination
    FROM webhook_messages
    WHERE status = 'pending' AND lease_expires_at > :now
"""

#: a message that may be attempted now (``m``), its destination's room aside
_DUE_WHERE = """
    m.status = 'pending' AND m.next_attempt_at <= :now
      AND (m.lease_expires_at IS NULL OR m.lease_expires_at <= :now)
      AND (m.endpoint_id IS NULL OR EXISTS (
          SELECT 1 FROM webhook_endpoints e WHERE e.id = m.endpoint_id AND e.enabled
      ))
"""


def _due(also: str = "") -> str:
    """Due messages whose destination has room, oldest first (``also``: a further
    condition on ``m``)."""
    # the fragments are this module's constants, never input: S608 does not apply
    return f"""
        SELECT m.id, coalesce(m.endpoint_id, m.url) AS destination
        FROM webhook_messages m
        WHERE {_DUE_WHERE} {also}
          AND coalesce(m.endpoint_id, m.url) NOT IN (
              SELECT destination FROM ({_LEASED}) AS leased
              GROUP BY destination HAVING count(*) >= :per_destination
          )
        ORDER BY m.next_attempt_at
    """  # noqa: S608


#: the destination of the oldest due message whose destination has room (as this
#: statement's snapshot sees it), and that destination's advisory lock, held to the
#: commit: claims of one destination happen one after the other
_PICK = text(
    f"""
    SELECT destination,
           pg_advisory_xact_lock(hashtext('webhooks:' || destination)) IS NULL AS locked
    FROM ({_due("AND NOT coalesce(m.endpoint_id, m.url) = ANY(CAST(:tried AS text[]))")}
          LIMIT 1) AS due
    """  # noqa: S608
)

#: after the lock, a new snapshot sees every claim of the destination committed before
#: it: up to ``batch`` due messages of it, within its room, leased with their attempts'
#: rows (``SKIP LOCKED`` all the same: a replay may hold one)
_CLAIM = text(
    f"""
    WITH room AS (
        SELECT :per_destination - count(*) AS n FROM ({_LEASED}) AS leased
        WHERE destination = :destination
    ),
    candidate AS (
        SELECT m.id, m.lease_owner AS previous_owner, m.next_attempt_trigger AS trigger,
               m.last_attempt_at AS previous_attempt_at
        FROM webhook_messages m
        WHERE {_DUE_WHERE} AND coalesce(m.endpoint_id, m.url) = :destination
        ORDER BY m.next_attempt_at
        -- half the room, so that a batch sent one after the other leaves room for
        -- other loops: at least one message while there is room, none once it is full
        LIMIT (SELECT CASE WHEN n <= 0 THEN 0 ELSE least(:batch, greatest(1, n / 2)) END
               FROM room)
        FOR UPDATE OF m SKIP LOCKED
    ),
    claimed AS (
        UPDATE webhook_messages m
        SET lease_owner = :owner, lease_expires_at = :expires,
            attempt_count = m.attempt_count + 1, last_attempt_at = :now,
            next_attempt_trigger = 'scheduled'
        FROM candidate c
        WHERE m.id = c.id
        RETURNING m.id, m.tenant_id, m.endpoint_id, m.url, m.payload, m.attempt_count,
                  m.next_attempt_at, c.trigger, c.previous_owner, c.previous_attempt_at
    ),
    attempt AS (
        INSERT INTO webhook_attempts (message_id, started_at, trigger)
        SELECT id, :now, trigger FROM claimed
        RETURNING id, message_id
    )
    SELECT claimed.*, attempt.id AS attempt_id,
           e.secret, e.previous_secret, e.previous_secret_expires_at, e.failing_since
    FROM claimed
    JOIN attempt ON attempt.message_id = claimed.id
    LEFT JOIN webhook_endpoints e ON e.id = claimed.endpoint_id
    ORDER BY claimed.next_attempt_at, claimed.id
    """  # noqa: S608
)

#: the messages of a batch that were not attempted, handed back as they were found:
#: no lease, the attempt not counted and its row gone, the trigger it had
_RELEASE = text(
    """
    WITH released AS (
        UPDATE webhook_messages m
        SET lease_owner = NULL, lease_expires_at = NULL,
            attempt_count = m.attempt_count - 1, last_attempt_at = r.previous_attempt_at,
            next_attempt_trigger = r.trigger
        FROM (
            SELECT unnest(CAST(:ids AS text[])) AS id,
                   unnest(CAST(:triggers AS text[])) AS trigger,
                   unnest(CAST(:previous AS timestamptz[])) AS previous_attempt_at
        ) AS r
        WHERE m.id = r.id AND m.lease_owner = :owner AND m.status = 'pending'
        RETURNING m.id
    )
    DELETE FROM webhook_attempts a
    USING released
    WHERE a.message_id = released.id AND a.id = ANY(CAST(:attempt_ids AS bigint[]))
    """
)

_COUNT_DUE = text(f"SELECT count(*) FROM ({_due()} LIMIT :limit) AS due")  # noqa: S608

_INTERRUPTED = text(
    """
    UPDATE webhook_attempts SET error = :error
    WHERE message_id = :message_id AND id < :attempt_id
      AND duration_ms IS NULL AND status_code IS NULL AND error IS NULL
    """
)

#: an attempt's result, in one statement: the attempt's row completed (whoever holds
#: the message now: the call was made), the endpoint's run of failures started, kept
#: or ended, and the message settled if this worker still holds it (PostgreSQL runs
#: every data-modifying WITH exactly once, read or not)
_RECORD = text(
    """
    WITH attempt AS (
        UPDATE webhook_attempts
        SET duration_ms = :duration_ms, status_code = :status_code,
            response_body = :response_body, error = :error
        WHERE id = :attempt_id
        RETURNING id
    ),
    endpoint AS (
        UPDATE webhook_endpoints
        SET failing_since = CASE WHEN :delivered THEN NULL
                                 ELSE coalesce(failing_since, :now) END
        -- written only when the run starts or ends, not at every failure
        WHERE id = :endpoint_id
          AND CASE WHEN :delivered THEN failing_since IS NOT NULL
                   ELSE failing_since IS NULL END
        RETURNING id
    ),
    settled AS (
        UPDATE webhook_messages
        SET status = :status,
            next_attempt_at = :next_attempt_at,
            delivered_at = CASE WHEN :delivered THEN coalesce(delivered_at, :now)
                                ELSE delivered_at END,
            lease_owner = NULL, lease_expires_at = NULL
        WHERE id = :message_id AND lease_owner = :owner AND status = 'pending'
        RETURNING id
    )
    SELECT count(*) FROM settled
    """
)

_SLOW_DOWN = text(
    """
    UPDATE webhook_messages SET next_attempt_at = :until
    WHERE status = 'pending' AND next_attempt_at < :until
      AND coalesce(endpoint_id, url) = :destination
      AND (lease_expires_at IS NULL OR lease_expires_at <= :now)
    """
)

INTERRUPTED_ERROR: Final = "interrupted: the delivery worker was lost mid-attempt"


def _on_sqlite(session: Session) -> bool:
    """Whether delivery runs on SQLite (the standalone mode: workers/webhooks_sqlite.py)."""
    return session.get_bind().dialect.name == "sqlite"


@dataclass(frozen=True)
class Claimed:
    """A message leased for one attempt, and that attempt's row."""

    message_id: str
    tenant_id: str
    endpoint_id: str | None
    url: str
    payload: dict[str, Any]
    #: attempts made, this one included
    attempt_count: int
    trigger: AttemptTrigger
    attempt_id: int
    #: the secrets that sign this attempt
    secrets: list[str] = field(default_factory=list)
    #: the start of the endpoint's run of failures, as the claim found it
    failing_since: datetime | None = None
    #: the message's ``last_attempt_at`` before this claim (restored by a release)
    previous_attempt_at: datetime | None = None
    #: when this worker's lease ends
    lease_expires_at: datetime | None = None

    @property
    def destination(self) -> str:
        return self.endpoint_id or self.url


def claim(
    session: Session, *, owner: str, now: datetime, config: DeliveryConfig, batch: int = 1
) -> list[Claimed]:
    """Lease up to ``batch`` due messages of one destination and start their attempts;
    oldest first (empty: nothing could be claimed).

    In the caller's transaction (the caller commits), which must hold nothing else: a
    destination found full is let go of by rolling back. The first statement picks the
    destination of the oldest due message whose destination has room and takes that
    destination's advisory lock (held to the commit); the second, whose snapshot sees
    every claim of the destination committed before the lock was granted, counts its
    room and takes at most half of it (at least one message), ``FOR UPDATE SKIP
    LOCKED``, leasing them, counting the attempts and writing the attempts' rows.
    """
    # Core statements on the session's connection: the ORM's execution path would add
    # a third to the CPU of every claim, for nothing it maps
    connection = session.connection()
    params: dict[str, Any] = {"now": now, "per_destination": config.endpoint_concurrency}
    expires = now + timedelta(seconds=config.lease_s)
    if _on_sqlite(session):
        return _claim_sqlite(session, owner=owner, now=now, expires=expires, config=config)
    tried: list[str] = []
    rows: Sequence[Any] = ()
    while not rows and len(tried) < PICKS:
        if tried:  # let go of the full destination's lock before taking another's:
            # holding one while waiting for the next could deadlock with another claim
            session.rollback()
            connection = session.connection()
        destination = connection.execute(_PICK, {**params, "tried": tried}).scalar_one_or_none()
        if destination is None:
            return []
        # another claim may have filled the destination while this one waited for its
        # lock: then the next oldest destination with room
        tried.append(destination)
        rows = (
            connection.execute(
                _CLAIM,
                {
                    **params,
                    "destination": destination,
                    "owner": owner,
                    "expires": expires,
                    "batch": batch,
                },
            )
            .mappings()
            .all()
        )
    tenant_secrets: dict[str, list[str]] = {}
    claimed = []
    for row in rows:
        if row["previous_owner"] is not None:  # a lease that expired: its worker is gone
            connection.execute(
                _INTERRUPTED,
                {
                    "message_id": row["id"],
                    "attempt_id": row["attempt_id"],
                    "error": INTERRUPTED_ERROR,
                },
            )
        if row["endpoint_id"] is not None:
            secrets = live_secrets(
                row["secret"], row["previous_secret"], row["previous_secret_expires_at"], now
            )
        elif row["tenant_id"] in tenant_secrets:
            secrets = tenant_secrets[row["tenant_id"]]
        else:  # a job's own URL: the tenant's secret, made on first need
            stand_in = WebhookMessage(id=row["id"], tenant_id=row["tenant_id"], endpoint_id=None)
            secrets = tenant_secrets[row["tenant_id"]] = signing_secrets(session, stand_in, now)
        claimed.append(
            Claimed(
                message_id=row["id"],
                tenant_id=row["tenant_id"],
                endpoint_id=row["endpoint_id"],
                url=row["url"],
                payload=row["payload"],
                attempt_count=row["attempt_count"],
                trigger=AttemptTrigger(row["trigger"]),
                attempt_id=row["attempt_id"],
                secrets=secrets,
                failing_since=row["failing_since"],
                previous_attempt_at=row["previous_attempt_at"],
                lease_expires_at=expires,
            )
        )
    return claimed


def _claim_sqlite(
    session: Session, *, owner: str, now: datetime, expires: datetime, config: DeliveryConfig
) -> list[Claimed]:
    """:func:`claim` on SQLite: one message at a time (workers/webhooks_sqlite.py)."""
    found = webhooks_sqlite.lease_one(
        session,
        owner=owner,
        now=now,
        expires=expires,
        per_destination=config.endpoint_concurrency,
    )
    if found is None:
        return []
    message, attempt_id, trigger = found
    if message.attempt_count > 1:  # an earlier attempt may have been cut off
        session.execute(
            _INTERRUPTED,
            {"message_id": message.id, "attempt_id": attempt_id, "error": INTERRUPTED_ERROR},
        )
    endpoint: dict[str, Any] = {"failing_since": None}
    if message.endpoint_id is not None:
        endpoint = webhooks_sqlite.endpoint_secrets(session, message.endpoint_id)
        secrets = live_secrets(
            endpoint["secret"],
            endpoint["previous_secret"],
            endpoint["previous_secret_expires_at"],
            now,
        )
    else:
        secrets = signing_secrets(session, message, now)
    return [
        Claimed(
            message_id=message.id,
            tenant_id=message.tenant_id,
            endpoint_id=message.endpoint_id,
            url=message.url,
            payload=message.payload,
            attempt_count=message.attempt_count,
            trigger=AttemptTrigger(trigger),
            attempt_id=attempt_id,
            secrets=secrets,
            failing_since=endpoint["failing_since"],
            previous_attempt_at=None,
            lease_expires_at=expires,
        )
    ]


def release(session: Session, unsent: Sequence[Claimed], *, owner: str) -> None:
    """Hand back claimed messages that were not attempted, as the claim found them (the
    caller commits): due at once for whichever loop claims next."""
    if not unsent:
        return
    session.connection().execute(
        _RELEASE,
        {
            "ids": [c.message_id for c in unsent],
            "triggers": [c.trigger.value for c in unsent],
            "previous": [c.previous_attempt_at for c in unsent],
            "attempt_ids": [c.attempt_id for c in unsent],
            "owner": owner,
        },
    )


def count_due(session: Session, *, now: datetime, config: DeliveryConfig, limit: int) -> int:
    """Messages a claim could take now (at most ``limit``): how many loops to start."""
    if _on_sqlite(session):
        return webhooks_sqlite.count_due(
            session, now=now, per_destination=config.endpoint_concurrency, limit=limit
        )
    return int(
        session.execute(
            _COUNT_DUE,
            {"now": now, "per_destination": config.endpoint_concurrency, "limit": limit},
        ).scalar_one()
    )


def record(
    session: Session,
    claimed: Claimed,
    outcome: Outcome,
    *,
    owner: str,
    now: datetime,
    duration_ms: int,
    config: DeliveryConfig,
    rand: Callable[[], float] = random.random,
) -> Decision | None:
    """Write the attempt's result and the message's new state (the caller commits).

    One statement in the usual case (:data:`_RECORD`). The attempt's row is completed
    whatever happens: the call was made. The message moves only if this worker still
    holds its lease (None otherwise: whoever took it over decides). The endpoint's run
    of failures is kept here, judged from ``failing_since`` as the claim read it, and
    the endpoint is disabled (410, or failing for too long) or slowed down as
    :func:`decide` says.
    """
    delivered = outcome.kind is Kind.DELIVERED
    failing_since = None
    if claimed.endpoint_id is not None and not delivered:
        failing_since = claimed.failing_since or now  # this failure may start the run
    decision = decide(
        outcome,
        attempts_made=claimed.attempt_count,
        trigger=claimed.trigger,
        now=now,
        config=config,
        failing_since=failing_since,
        rand=rand,
    )
    values = {
        "attempt_id": claimed.attempt_id,
        "duration_ms": duration_ms,
        "status_code": outcome.status_code,
        "response_body": outcome.response_body,
        "error": outcome.error,
        "endpoint_id": claimed.endpoint_id,
        "message_id": claimed.message_id,
        "owner": owner,
        "status": decision.status.value,
        "next_attempt_at": decision.next_attempt_at,
        "delivered": delivered,
        "now": now,
    }
    sqlite = _on_sqlite(session)
    if sqlite:
        settled = webhooks_sqlite.record(session, values)
    else:
        settled = session.connection().execute(_RECORD, values).scalar_one()
    if not settled:
        return None
    if decision.slow_endpoint_until is not None:
        slowed: dict[str, Any] = {
            "until": decision.slow_endpoint_until,
            "destination": claimed.destination,
            "now": now,
        }
        if sqlite:
            webhooks_sqlite.slow_down(session, **slowed)
        else:
            session.execute(_SLOW_DOWN, slowed)
    if (
        decision.disable_reason is not None
        and claimed.endpoint_id is not None
        and disable_endpoint(session, claimed.endpoint_id, decision.disable_reason)
    ):
        log.warning("endpoint %s disabled: %s", claimed.endpoint_id, decision.disable_reason)
    return decision


# --- loops (what the tasks call) ----------------------------------------------------

#: The claim must walk ``ix_webhook_messages_due`` in order and stop at the first row
#: that passes its filters. Misjudging how many due rows pass them, the planner may
#: instead read every due message with a bitmap scan and sort them all, at each claim:
#: 2.3 ms against 0.5 ms with 5,000 waiting (benchmarks/webhooks.py). Set on the
#: delivery engine's connections, which run nothing else that a bitmap scan would serve.
DELIVERY_CONNECTION_OPTIONS: Final = "-c enable_bitmapscan=off"


def make_delivery_engine(database_url: str, *, pool_size: int) -> Engine:
    """The engine of a delivery worker: its own pool, its planner setting."""
    options: dict[str, Any] = {}
    if not database_url.startswith("sqlite"):
        options["connect_args"] = {"options": DELIVERY_CONNECTION_OPTIONS}
    return make_engine(database_url, pool_size=pool_size, **options)


@dataclass
class WebhookDeps:
    """What delivery needs from the outside, made once per worker process."""

    sessions: sessionmaker[Session]
    #: keep-alive pools per receiver (a plain client makes a connection per call)
    client: httpx.Client | Connections
    config: DeliveryConfig
    clock: Callable[[], datetime] = utcnow


def attempt(deps: WebhookDeps, claimed: Claimed) -> Outcome:
    """Make the call for a claimed message: signed now, sent to the checked address."""
    body = body_of(claimed.payload)
    started = deps.clock()
    try:
        headers = headers_for(claimed.message_id, body, claimed.secrets)
        reply = send(
            deps.client,
            "POST",
            claimed.url,
            content=body,
            headers=headers,
            timeout_s=deps.config.timeout_s,
            allow_private=deps.config.allow_private_urls,
            max_response_bytes=RESPONSE_BODY_LIMIT,
        )
    except OutboundError as error:
        return classify(None, error, started)
    except ValueError as error:  # no secret to sign with (a message whose endpoint is gone)
        return Outcome(Kind.REFUSED, error=f"cannot sign: {error}")
    return classify(reply, None, started)


def deliver_next(deps: WebhookDeps, owner: str) -> int:
    """Claim a batch of one destination's due messages, call each, then record them; the
    attempts made (0: nothing could be claimed).

    No transaction is open during a call: the claim commits before the first, and the
    answers are recorded together, in one transaction, after the batch (a worker lost
    before that leaves the messages leased: they are sent again, same ``webhook-id``,
    once the lease expires, as after a loss between any call and its record). The
    batch stops early, handing its unsent messages back (:func:`release`), when an
    attempt was not delivered or took longer than ``batch_slow_s`` (the destination is
    in trouble or slow: other loops should take its messages, one each), or when the
    lease could not cover another call.
    """
    with deps.sessions() as session:
        batch = claim(
            session, owner=owner, now=deps.clock(), config=deps.config, batch=deps.config.batch
        )
        session.commit()
    answers: list[tuple[Claimed, Outcome, datetime, float]] = []
    unsent: Sequence[Claimed] = ()
    for index, claimed in enumerate(batch):
        started = time.monotonic()
        outcome = attempt(deps, claimed)
        elapsed_s = time.monotonic() - started
        now = deps.clock()
        answers.append((claimed, outcome, now, elapsed_s))
        crash_point("webhook_mid_delivery")  # called, not yet recorded
        if index + 1 < len(batch) and _stop_batch(deps.config, outcome, elapsed_s, now, claimed):
            unsent = batch[index + 1 :]
            break
    if not answers:
        return 0
    with deps.sessions() as session:
        release(session, unsent, owner=owner)  # first, so that a slow-down holds them too
        for claimed, outcome, now, elapsed_s in answers:
            decision = record(
                session,
                claimed,
                outcome,
                owner=owner,
                now=now,
                duration_ms=round(elapsed_s * 1000),
                config=deps.config,
            )
            if decision is None:
                log.info("message %s: lease lost during the attempt", claimed.message_id)
        session.commit()
    return len(answers)


def _stop_batch(
    config: DeliveryConfig, outcome: Outcome, elapsed_s: float, now: datetime, claimed: Claimed
) -> bool:
    if outcome.kind is not Kind.DELIVERED or elapsed_s > config.batch_slow_s:
        return True
    expires = claimed.lease_expires_at
    return expires is not None and now + timedelta(seconds=config.timeout_s + 1) >= expires


def deliver_due(deps: WebhookDeps, owner: str, *, budget_s: float = 60.0) -> tuple[int, bool]:
    """Deliver due messages, batch after batch, until none can be claimed or ``budget_s``
    has passed; (attempts made, whether work may be left).

    One loop per worker thread: a slow destination holds the loop that claimed it,
    and claims skip a destination that already has its share of loops.
    """
    ends = time.monotonic() + budget_s
    made = 0
    while time.monotonic() < ends:
        attempts = deliver_next(deps, owner)
        if not attempts:
            return made, False
        made += attempts
    return made, True


def dispatch(deps: WebhookDeps, start_loops: Callable[[int], None]) -> int:
    """Fan out undispatched events and start the delivery loops that are worth it;
    how many were started.

    Fan-out runs in rounds of :data:`FAN_OUT_BATCH` events, one transaction each
    (``SKIP LOCKED``: concurrent dispatches share them), until a round takes none.
    After each round, loops are started for what is due now (up to ``parallel`` in
    all), so a long backlog of events is being delivered while the rest fans out.
    """
    started = 0
    for _ in range(FAN_OUT_ROUNDS):
        with deps.sessions() as session:
            made = fan_out_events(session, deps.clock(), limit=FAN_OUT_BATCH)
            left = bool(made) or _undispatched(session)
            session.commit()
        if made:
            started += _start(deps, start_loops, started)
        if not left:
            break
    if not started:  # a sweep: retries that came due, leases that expired
        started = _start(deps, start_loops, started)
    return started


def _start(deps: WebhookDeps, start_loops: Callable[[int], None], started: int) -> int:
    room = deps.config.parallel - started
    if room <= 0:
        return 0
    with deps.sessions() as session:
        due = count_due(session, now=deps.clock(), config=deps.config, limit=room)
        session.rollback()
    if due:
        start_loops(due)
    return due


def _undispatched(session: Session) -> bool:
    """Whether an event is waiting for fan-out (one that had no destination leaves
    ``fan_out`` answering no ids while others wait behind it)."""
    query = "SELECT 1 FROM outbox_events WHERE dispatched_at IS NULL LIMIT 1"
    if not _on_sqlite(session):  # SQLite has one writer, no row locks
        query += " FOR UPDATE SKIP LOCKED"
    return session.execute(text(query)).first() is not None
