"""The studio's state on disk, when ``STUDIO_PERSIST`` asks for it: an SQLite file.

One table holds every record of the store as JSON, keyed by kind and key (an account
by its token, a session by its id, a render by its id, the ledger's entries by
session, render and client). The store writes the records a mutation touched, in one
transaction, under its lock, before the mutation's caller gets an answer: a process
killed at any moment (SIGKILL included) comes back with the state as of its last
completed mutation. SQLite rather than a JSON snapshot rewritten whole: a write costs
what the touched records cost, not what the whole state costs (measured on the dev VM:
0.1-0.3 ms per mutation with ``synchronous=FULL``, one fsync per commit, against about
12 ms for a 1 MB snapshot written, fsynced and renamed, and more as the state grows).

The file is held with an exclusive lock while a studio uses it, so a second studio on
the same file is refused ("database is locked") instead of forking the state.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from studio.config import ConfigError

#: ``PRAGMA user_version`` of a studio state file; anything else is not ours to read
SCHEMA_VERSION = 1
#: seconds to wait for a studio that is still letting go of the file (it is exiting)
BUSY_TIMEOUT_S = 5.0

Record = dict[str, Any]
#: (kind, key): ``("session", "sess_…")``
Key = tuple[str, str]


class StateFileError(ConfigError):
    """The state file cannot be read or written: the studio refuses to start."""

    def __init__(self, path: Path, reason: object) -> None:
        super().__init__(f"the studio's state file {path} cannot be used: {reason}")
        self.path = path


class StateFile:
    """An open state file: every record read at once, the touched ones written."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise StateFileError(path, exc) from None
        try:
            self._prepare()
        except (sqlite3.Error, StateFileError) as exc:
            self._db.close()
            if isinstance(exc, StateFileError):
                raise
            raise StateFileError(path, exc) from None

    def _prepare(self) -> None:
        db = self._db
        # the store's lock serialises every write: one connection, shared by threads
        db.execute("PRAGMA locking_mode = EXCLUSIVE")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("BEGIN EXCLUSIVE")  # takes the lock now, and keeps it until close
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
            fresh = version == 0 and not tables
            if fresh:
                db.execute(
                    "CREATE TABLE record (kind TEXT NOT NULL, key TEXT NOT NULL,"
                    " body TEXT NOT NULL, PRIMARY KEY (kind, key)) WITHOUT ROWID"
                )
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if not fresh and (version != SCHEMA_VERSION or "record" not in tables):
            raise StateFileError(self.path, f"not a studio state file (schema version {version})")

    def read(self) -> dict[str, dict[str, Record]]:
        """Every record, by kind and key."""
        records: dict[str, dict[str, Record]] = {}
        try:
            for kind, key, body in self._db.execute("SELECT kind, key, body FROM record"):
                records.setdefault(kind, {})[key] = _decoded(kind, key, body)
        except (sqlite3.Error, ValueError, TypeError) as exc:
            raise StateFileError(self.path, exc) from None
        return records

    def write(self, records: Mapping[Key, Record | None], *, clear: bool = False) -> None:
        """Store these records in one transaction (None deletes one); ``clear`` forgets
        every other record first."""
        rows = [
            (kind, key, json.dumps(body))
            for (kind, key), body in records.items()
            if body is not None
        ]
        gone = [key for key, body in records.items() if body is None]
        with self._db:  # BEGIN … COMMIT, ROLLBACK on an error
            self._db.execute("BEGIN")
            if clear:
                self._db.execute("DELETE FROM record")
            self._db.executemany(
                "INSERT INTO record (kind, key, body) VALUES (?, ?, ?)"
                " ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body",
                rows,
            )
            self._db.executemany("DELETE FROM record WHERE kind = ? AND key = ?", gone)

    def close(self) -> None:
        self._db.close()


def _decoded(kind: str, key: str, body: str) -> Record:
    record = json.loads(body)
    if not isinstance(record, dict):
        raise TypeError(f"the {kind} record {key} is not a JSON object")
    return record


def check_state_file(path: Path) -> None:
    """Refuse (:class:`StateFileError`, one line naming the file) a state file that
    cannot be opened and read; a file that is not there yet is fine."""
    if not path.exists() and not path.is_symlink():
        return
    state = StateFile(path)
    try:
        state.read()
    finally:
        state.close()
