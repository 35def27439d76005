"""Alembic's entry point: runs the migrations against the configured database.

The URL is, in order: ``config.attributes["database_url"]`` (set by
``migrations.alembic_config``), ``-x url=...`` on the command line, then
``REELYARD_DATABASE_URL`` through the service's settings.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import pool

from models import Base
from models.db import make_engine, normalize_url
from reelyard.settings import Settings

config = context.config


def _database_url() -> str:
    url = config.attributes.get("database_url") or context.get_x_argument(as_dictionary=True).get(
        "url"
    )
    return normalize_url(url or Settings.from_env().database_url)


def run_migrations_offline() -> None:
    context.configure(
        url=_database_url(),
        target_metadata=Base.metadata,
        literal_binds=True,
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = make_engine(_database_url(), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                render_as_batch=True,
                compare_type=True,
            )
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
