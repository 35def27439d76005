"""Alembic migrations of the system of record (arrive with the job store)."""
