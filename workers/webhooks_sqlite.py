"""Webhook delivery's statements on SQLite (the standalone mode's database).

The same rules as the PostgreSQL statements in ``workers.webhooks``, written as SQLAlchemy
Core statements on the mapped tables (so timestamps and JSON are stored and read as
the models store them), one message per claim. What makes them safe is SQLite's
single writer: a statement that writes runs alone, so the claim, which picks and
leases a message in one ``UPDATE``, and its per-destination count cannot race with
another claim; no row locks or advisory locks are needed, and none exist.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, func, or_, select, update
from sqlalchemy.orm import Session

from models.webhooks import (
    AttemptTrigger,
    MessageStatus,
    WebhookAttempt,
    WebhookEndpoint,
    WebhookMessage,
)

_destination = func.coalesce(WebhookMessage.endpoint_id, WebhookMessage.url)


def _pending_due(now: datetime) -> ColumnElement[bool]:
    return and_(
        WebhookMessage.status == MessageStatus.PENDING,
        WebhookMessage.next_attempt_at <= now,
        or_(WebhookMessage.lease_expires_at.is_(None), WebhookMessage.lease_expires_at <= now),
        or_(
            WebhookMessage.endpoint_id.is_(None),
            exists().where(
                WebhookEndpoint.id == WebhookMessage.endpoint_id, WebhookEndpoint.enabled
            ),
        ),
    )


def _with_room(now: datetime, per_destination: int) -> ColumnElement[bool]:
    full = (
        select(_destination)
        .where(
            WebhookMessage.status == MessageStatus.PENDING,
            WebhookMessage.lease_expires_at > now,
        )
        .group_by(_destination)
        .having(func.count() >= per_destination)
    )
    return _destination.not_in(full)


def lease_one(
    session: Session, *, owner: str, now: datetime, expires: datetime, per_destination: int
) -> tuple[WebhookMessage, int, AttemptTrigger] | None:
    """Lease the oldest due message whose destination has room and write its attempt's
    row; (the message, the attempt's id, its trigger), or None."""
    oldest = (
        select(WebhookMessage.id)
        .where(_pending_due(now), _with_room(now, per_destination))
        .order_by(WebhookMessage.next_attempt_at)
        .limit(1)
        .scalar_subquery()
    )
    leased = session.execute(
        update(WebhookMessage)
        .where(WebhookMessage.id == oldest)
        .values(
            lease_owner=owner,
            lease_expires_at=expires,
            attempt_count=WebhookMessage.attempt_count + 1,
            last_attempt_at=now,
        )
        .returning(WebhookMessage.id, WebhookMessage.next_attempt_trigger)
        .execution_options(synchronize_session=False)
    ).first()
    if leased is None:
        return None
    message_id, trigger = leased
    attempt = WebhookAttempt(message_id=message_id, started_at=now, trigger=trigger)
    session.add(attempt)
    session.flush()
    session.execute(
        update(WebhookMessage)
        .where(WebhookMessage.id == message_id)
        .values(next_attempt_trigger=AttemptTrigger.SCHEDULED)
        .execution_options(synchronize_session=False)
    )
    message = session.get_one(WebhookMessage, message_id, populate_existing=True)
    return message, attempt.id, trigger


def endpoint_secrets(session: Session, endpoint_id: str) -> dict[str, Any]:
    """The endpoint's columns that the claim returns on PostgreSQL."""
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        return {
            "secret": None,
            "previous_secret": None,
            "previous_secret_expires_at": None,
            "failing_since": None,
        }
    return {
        "secret": endpoint.secret,
        "previous_secret": endpoint.previous_secret,
        "previous_secret_expires_at": endpoint.previous_secret_expires_at,
        "failing_since": endpoint.failing_since,
    }


def record(session: Session, values: dict[str, Any]) -> int:
    """``workers.webhooks._RECORD`` in three statements; messages settled (0 or 1)."""
    session.execute(
        update(WebhookAttempt)
        .where(WebhookAttempt.id == values["attempt_id"])
        .values(
            duration_ms=values["duration_ms"],
            status_code=values["status_code"],
            response_body=values["response_body"],
            error=values["error"],
        )
        .execution_options(synchronize_session=False)
    )
    delivered = bool(values["delivered"])
    if values["endpoint_id"] is not None:
        session.execute(
            update(WebhookEndpoint)
            .where(
                WebhookEndpoint.id == values["endpoint_id"],
                WebhookEndpoint.failing_since.is_not(None)
                if delivered
                else WebhookEndpoint.failing_since.is_(None),
            )
            .values(failing_since=None if delivered else values["now"])
            .execution_options(synchronize_session=False)
        )
    settled = session.execute(
        update(WebhookMessage)
        .where(
            WebhookMessage.id == values["message_id"],
            WebhookMessage.lease_owner == values["owner"],
            WebhookMessage.status == MessageStatus.PENDING,
        )
        .values(
            status=MessageStatus(values["status"]),
            next_attempt_at=values["next_attempt_at"],
            delivered_at=case(
                (WebhookMessage.delivered_at.is_(None), values["now"]),
                else_=WebhookMessage.delivered_at,
            )
            if delivered
            else WebhookMessage.delivered_at,
            lease_owner=None,
            lease_expires_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(settled, "rowcount", 0) or 0)


def slow_down(session: Session, *, until: datetime, destination: str, now: datetime) -> None:
    session.execute(
        update(WebhookMessage)
        .where(
            WebhookMessage.status == MessageStatus.PENDING,
            WebhookMessage.next_attempt_at < until,
            _destination == destination,
            or_(WebhookMessage.lease_expires_at.is_(None), WebhookMessage.lease_expires_at <= now),
        )
        .values(next_attempt_at=until)
        .execution_options(synchronize_session=False)
    )


def count_due(session: Session, *, now: datetime, per_destination: int, limit: int) -> int:
    due = (
        select(WebhookMessage.id)
        .where(_pending_due(now), _with_room(now, per_destination))
        .limit(limit)
        .subquery()
    )
    return int(session.execute(select(func.count()).select_from(due)).scalar_one())
