"""The declarative base: naming conventions, column types shared by every table."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Enum, Integer, MetaData
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator, TypeEngine

#: constraint names Alembic can find again on every backend (batch mode on SQLite
#: needs named constraints to alter a table)
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: JSON documents: JSONB on PostgreSQL (indexable, compact), JSON text elsewhere
JSONDocument: TypeEngine[Any] = JSON().with_variant(JSONB(), "postgresql")
#: 64-bit surrogate keys; SQLite only auto-increments an ``INTEGER PRIMARY KEY``
BigID: TypeEngine[int] = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """Now, timezone-aware, in UTC: every timestamp the service stores is one."""
    return datetime.now(UTC)


def value_enum(enum_type: type[enum.Enum], name: str) -> Enum:
    """An enum column stored by value (``"queued"``, not ``"QUEUED"``) as a checked string.

    Not a native PostgreSQL enum: adding a value stays a one-line migration and the
    same column works on SQLite.
    """
    return Enum(
        enum_type,
        name=name,
        native_enum=False,
        create_constraint=True,
        validate_strings=True,
        length=max(len(str(member.value)) for member in enum_type) + 8,
        values_callable=lambda members: [str(member.value) for member in members],
    )


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware timestamp, also on SQLite (which hands back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store keeps aware UTC timestamps")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Every table of the system of record."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 (SQLAlchemy reads this class attribute)
        datetime: UTCDateTime(),
        dict[str, Any]: JSONDocument,
        list[Any]: JSONDocument,
    }
