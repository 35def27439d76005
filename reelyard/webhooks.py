"""Webhook signing (Standard Webhooks) and payloads, shared by delivery and the CLI.

A message is sent as its JSON body with three headers (https://www.standardwebhooks.com):

- ``webhook-id``: the message's id (``msg_…``), the same on every retry and replay, so a
  receiver deduplicates on it;
- ``webhook-timestamp``: when this attempt was signed, in integer seconds since the
  epoch, so a receiver refuses old captures (the reference libraries allow 5 minutes);
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256>`` of ``"{id}.{timestamp}.{body}"``
  keyed with the secret's bytes (the base64 after ``whsec_``); one per live secret,
  space-separated, so during a rotation's overlap a receiver holding either the new
  or the previous secret verifies.

:func:`verify` checks a received request the same way (for ``reelyard webhooks
verify`` and the tests' receivers); the tests check the other direction with the
official ``standardwebhooks`` package.

Payloads reuse the API's views and output schemas (:class:`ApiViews`), so this module
imports ``api.views`` and ``api.schemas`` (neither imports the app, Celery or the
workers); ``models.webhooks.fan_out`` receives them as a parameter, so ``models``
never imports ``api``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy.orm import Session

from api.schemas import BatchOut, JobOut
from api.views import batch_to_dict, job_to_dict
from models.jobs import Batch, Job
from models.webhooks import SECRET_PREFIX, PayloadViews, fan_out

__all__ = [
    "API_VIEWS",
    "TOLERANCE_S",
    "SignatureInvalid",
    "body_of",
    "fan_out_events",
    "headers_for",
    "secret_bytes",
    "sign",
    "signature",
    "verify",
]

#: how far a ``webhook-timestamp`` may be from now when verifying (the spec's default)
TOLERANCE_S: Final = 300
_VERSION: Final = "v1"


class SignatureInvalid(ValueError):
    """A request that does not verify: headers missing, stale, or no signature matches."""


def secret_bytes(secret: str) -> bytes:
    """The key of a ``whsec_<base64>`` secret (the prefix is optional, as in the spec)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a webhook secret is whsec_ followed by base64") from exc
    if not key:
        raise ValueError("a webhook secret may not be empty")
    return key


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp}.{body}">`` for one secret."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return f"{_VERSION},{base64.b64encode(digest).decode()}"


def sign(msg_id: str, timestamp: int, body: bytes, secrets: Sequence[str]) -> str:
    """The ``webhook-signature`` value: one signature per secret, space-separated."""
    if not secrets:
        raise ValueError("a message is signed with at least one secret")
    return " ".join(signature(secret, msg_id, timestamp, body) for secret in secrets)


def headers_for(
    msg_id: str, body: bytes, secrets: Sequence[str], *, timestamp: int | None = None
) -> dict[str, str]:
    """The headers of one attempt: id, timestamp (now unless given), signatures, type."""
    signed_at = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(signed_at),
        "webhook-signature": sign(msg_id, signed_at, body, secrets),
        "Content-Type": "application/json",
    }


def body_of(payload: Mapping[str, Any]) -> bytes:
    """The bytes sent for a payload: compact UTF-8 JSON, ``type``, ``timestamp``, ``data``
    first in that order (the stored document's key order is the database's)."""
    ordered = {key: payload[key] for key in ("type", "timestamp", "data") if key in payload}
    ordered.update(payload)
    return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False).encode()


def verify(
    secret: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    now: float | None = None,
    tolerance_s: float = TOLERANCE_S,
) -> None:
    """Check a received request against ``secret``; :class:`SignatureInvalid` if it fails.

    Header names are matched without regard to case. The timestamp must be within
    ``tolerance_s`` of ``now`` (the current time by default; a saved request is checked
    with ``now`` = when it was received). Signatures are compared in constant time.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id = lowered.get("webhook-id")
    raw_timestamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (msg_id and raw_timestamp and signatures):
        raise SignatureInvalid("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        raise SignatureInvalid("webhook-timestamp is not a whole number of seconds") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise SignatureInvalid("webhook-timestamp is too far from now")
    expected = signature(secret, msg_id, timestamp, body).encode()
    for candidate in signatures.split():
        if hmac.compare_digest(candidate.encode(), expected):
            return
    raise SignatureInvalid("no signature matches the secret")


class ApiViews:
    """A payload's ``data`` as the API shows it (:class:`models.webhooks.PayloadViews`).

    The view functions the endpoints use, dumped through their output schemas, so
    timestamps are ISO 8601 strings exactly as ``GET /v1/jobs/{id}`` answers them.
    """

    def __init__(self) -> None:
        self._job_out = JobOut()
        self._batch_out = BatchOut()

    def job(self, job: Job) -> dict[str, Any]:
        data: dict[str, Any] = self._job_out.dump(job_to_dict(job))
        return data

    def batch(self, session: Session, batch: Batch) -> dict[str, Any]:
        data: dict[str, Any] = self._batch_out.dump(batch_to_dict(session, batch))
        return data


API_VIEWS: Final[PayloadViews] = ApiViews()


def fan_out_events(session: Session, now: datetime, *, limit: int = 100) -> list[str]:
    """:func:`models.webhooks.fan_out` with the API's views; the new messages' ids."""
    return fan_out(session, now, views=API_VIEWS, limit=limit)
