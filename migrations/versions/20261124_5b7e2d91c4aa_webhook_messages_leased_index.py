"""The messages in flight, indexed: delivery counts them per destination at every claim.

A partial index on ``lease_expires_at`` of pending, leased messages: the handful of
rows the delivery workers hold at any moment, so holding each endpoint to its
concurrency limit costs the same with five or fifty thousand messages waiting.

Revision ID: 5b7e2d91c4aa
Revises: 8eeaac4370cf
Create Date: 2026-11-24 15:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5b7e2d91c4aa"
down_revision: str | Sequence[str] | None = "8eeaac4370cf"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHERE = "status = 'pending' AND lease_expires_at IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("webhook_messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_messages_leased",
            ["lease_expires_at"],
            unique=False,
            postgresql_where=sa.text(_WHERE),
            sqlite_where=sa.text(_WHERE),
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_messages", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_webhook_messages_leased",
            postgresql_where=sa.text(_WHERE),
            sqlite_where=sa.text(_WHERE),
        )
