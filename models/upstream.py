"""The service-wide upstream credentials: one row, shared by every worker.

Upstream tokens are scarce (design.md: never one per job), so the client id, token
and its expiry live here, and a refresh is single-flight: the worker that wins the
conditional UPDATE on ``refreshing_until`` refreshes; the others wait and re-read.
The pipeline also records the credit balance it last read, which ``GET /v1/credits``
shows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, utcnow

#: the primary key of the one row
CREDENTIALS_ROW = 1


class UpstreamCredentials(Base):
    """Client id, token and credits of the service's one upstream account."""

    __tablename__ = "upstream_credentials"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    client_id: Mapped[str | None] = mapped_column(String(200))
    token: Mapped[str | None] = mapped_column(Text)
    #: the user id that came with the token (the contract's ``me`` in paths)
    user_id: Mapped[str | None] = mapped_column(String(200))
    token_expires_at: Mapped[datetime | None]
    #: a refresh in progress until then (single-flight); None when nobody refreshes
    refreshing_until: Mapped[datetime | None]
    refreshing_owner: Mapped[str | None] = mapped_column(String(200))
    credits_balance: Mapped[int | None]
    credits_checked_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (CheckConstraint(f"id = {CREDENTIALS_ROW}", name="single_row"),)
