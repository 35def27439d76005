"""The studio's memory: tokens and credits, sessions and their media, renders, the ledger.

Everything lives in one process behind one lock (the studio stands for a remote
service; it is not a system of record). The ledger records what the studio was asked,
so that tests can prove that nothing was sent, charged, uploaded or rendered twice.

With a state file (``STUDIO_PERSIST``), every mutation also writes the records it
touched before it returns, under the same lock (:mod:`studio.persist`), and a new
store loads them: the real service does not forget sessions, drafts, renders or
credits when its client restarts, nor when it has a hiccup itself. Two exceptions,
both about work the restart cut: a render's progress alone is written at most every
:data:`PROGRESS_SAVE_S` (a resumed render starts again from its last saved
progress), and a chat turn that was running is finished on load, as the real agent
would finish it whatever happened to the client's stream: its draft applied and its
credits spent (:class:`RunningTurn`; credits frozen with no turn to account for them
go back). Media files and render outputs are files under the data directory already;
the state keeps their names.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from studio.config import StudioConfig
from studio.envelopes import NemoFailure
from studio.faults import Faults
from studio.media import MediaFile
from studio.persist import Key, Record, StateFile, StateFileError

Clock = Callable[[], float]
#: a render's progress alone is written to the state file at most this often (seconds):
#: it moves at every frame, and a resumed render starts again anyway
PROGRESS_SAVE_S = 1.0


def iso(timestamp: float) -> str:
    return (
        datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


@dataclass
class RunningTurn:
    """A chat turn under way: what finishing it means (kept until it has finished)."""

    turn_id: str
    token: str
    session_id: str
    cost: int
    #: the draft the turn leaves (None: an answer changes nothing)
    draft: dict[str, Any] | None


@dataclass
class Account:
    token: str
    user_id: str
    client_id: str | None
    issued_at: float
    expires_at: float | None
    available: int
    frozen: int = 0
    paid: bool = False
    calls: int = 0
    revoked: bool = False

    def live(self, now: float) -> bool:
        return not self.revoked and (self.expires_at is None or now < self.expires_at)


@dataclass
class Session:
    session_id: str
    task_id: str
    user_id: str
    language: str
    created_at: float
    expires_at: float
    media: list[MediaFile] = field(default_factory=list)
    draft: dict[str, Any] | None = None
    generated_media: list[dict[str, Any]] = field(default_factory=list)
    turns: int = 0


class RenderStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass
class Render:
    render_id: str
    session_id: str
    user_id: str
    draft: dict[str, Any]
    output: dict[str, Any]
    created_at: float
    status: RenderStatus = RenderStatus.PENDING
    progress: float = 0.0
    started_at: float | None = None
    completed_at: float | None = None
    error: str | None = None
    #: a client asked to cancel it (kept, so that a restart does not undo the cancel)
    cancel_requested: bool = False
    cancel: threading.Event = field(default_factory=threading.Event)

    @property
    def finished(self) -> bool:
        return self.status in (RenderStatus.COMPLETED, RenderStatus.FAILED)


@dataclass
class Ledger:
    #: per session: every message received, in order
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: per session: credits charged by its turns
    credits: dict[str, int] = field(default_factory=dict)
    #: per render id: submissions (every POST naming it) and its final status
    renders: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: per client id: anonymous tokens issued
    tokens: dict[str, int] = field(default_factory=dict)
    #: per client id: its tokens the faults killed (token_expiry, token_expiry_after)
    revoked: dict[str, int] = field(default_factory=dict)
    #: per session: uploads by content hash
    uploads: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "sessions": {
                sid: {
                    "messages": self.messages.get(sid, []),
                    "credits_charged": self.credits.get(sid, 0),
                    "uploads": self.uploads.get(sid, {}),
                }
                for sid in sorted({*self.messages, *self.credits, *self.uploads})
            },
            "renders": self.renders,
            "tokens": self.tokens,
            "tokens_revoked": self.revoked,
        }


def _fields_of(instance: Any, *left_out: str) -> dict[str, Any]:
    """A dataclass's fields, shallow (``asdict`` deep-copies a draft on every write)."""
    return {f.name: getattr(instance, f.name) for f in fields(instance) if f.name not in left_out}


class Store:
    def __init__(self, config: StudioConfig, faults: Faults, clock: Clock = time.time) -> None:
        self.config = config
        self.faults = faults
        self.clock = clock
        self.lock = threading.RLock()
        self.accounts: dict[str, Account] = {}
        self.by_client: dict[str, Account] = {}
        self.issued_by_ip: dict[str, list[float]] = {}
        self.sessions: dict[str, Session] = {}
        self.renders: dict[str, Render] = {}
        self.turns: dict[str, RunningTurn] = {}
        self.ledger = Ledger()
        #: when each render's progress was last written (monotonic seconds)
        self._progress_saved: dict[str, float] = {}
        self._state: StateFile | None = None
        if config.state_file is not None:
            self._state = StateFile(config.state_file)
            try:
                self._load(self._state.read(), config.state_file)
            except BaseException:
                self._state.close()
                raise
        self._saved(*self._add_paid_tokens())

    def close(self) -> None:
        """Let go of the state file (the studio is stopping)."""
        with self.lock:
            if self._state is not None:
                self._state.close()
                self._state = None

    def reset(self) -> None:
        with self.lock:
            self.accounts.clear()
            self.by_client.clear()
            self.issued_by_ip.clear()
            self.sessions.clear()
            for render in self.renders.values():
                render.cancel.set()
            self.renders.clear()
            self.turns.clear()
            self.ledger = Ledger()
            self._progress_saved.clear()
            added = self._add_paid_tokens()
            if self._state is not None:
                self._state.write({key: self._record(key) for key in added}, clear=True)

    def _add_paid_tokens(self) -> list[Key]:
        """The configured paid tokens that the store does not hold yet (a loaded state
        keeps what was spent of them)."""
        added: list[Key] = []
        for index, (token, credits) in enumerate(self.config.paid_tokens.items()):
            if token in self.accounts:
                continue
            added.append(("account", token))
            self.accounts[token] = Account(
                token=token,
                user_id=f"user_paid_{index + 1}",
                client_id=None,
                issued_at=self.clock(),
                expires_at=None,
                available=credits,
                paid=True,
            )
        return added

    def unfinished_renders(self) -> list[Render]:
        """Renders still pending or processing, oldest first (to resume after a load)."""
        with self.lock:
            waiting = [r for r in self.renders.values() if not r.finished]
        return sorted(waiting, key=lambda render: render.created_at)

    # the state file

    def _saved(self, *keys: Key) -> None:
        """Write these records as they are now (gone ones are deleted); under the lock."""
        if self._state is not None and keys:
            self._state.write({key: self._record(key) for key in keys})

    def _record(self, key: Key) -> Record | None:  # noqa: PLR0911 (a return per kind of record)
        kind, name = key
        if kind == "account":
            account = self.accounts.get(name)
            return _fields_of(account) if account else None
        if kind == "client":
            holder = self.by_client.get(name)
            return {"token": holder.token} if holder else None
        if kind == "address":
            issued = self.issued_by_ip.get(name)
            return {"issued": issued} if issued is not None else None
        if kind == "session":
            session = self.sessions.get(name)
            if session is None:
                return None
            return _fields_of(session) | {"media": [asdict(m) for m in session.media]}
        if kind == "render":
            render = self.renders.get(name)
            if render is None:
                return None
            return _fields_of(render, "cancel") | {"status": render.status.value}
        if kind == "turn":
            running = self.turns.get(name)
            return asdict(running) if running else None
        if kind == "ledger.session":
            parts: dict[str, dict[str, Any]] = {
                "messages": self.ledger.messages,
                "credits": self.ledger.credits,
                "uploads": self.ledger.uploads,
            }
            found = {part: held[name] for part, held in parts.items() if name in held}
            return found or None
        if kind == "ledger.render":
            return self.ledger.renders.get(name)
        if kind == "ledger.tokens":
            issued_tokens = self.ledger.tokens.get(name)
            if issued_tokens is None:
                return None
            return {"issued": issued_tokens, "revoked": self.ledger.revoked.get(name, 0)}
        raise ValueError(f"no such record kind: {kind}")

    def _load(self, records: dict[str, dict[str, Record]], path: Path) -> None:
        """Become the state the file holds; a record that does not fit refuses it all."""
        try:
            self._decode(records)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateFileError(path, f"a record does not fit: {exc!r}") from None
        # a turn that was running is finished, as the agent would have finished it
        finished: list[Key] = []
        for running in list(self.turns.values()):
            session = self.sessions.get(running.session_id)
            account = self.accounts.get(running.token)
            if session is not None and running.draft is not None:
                session.draft = running.draft
                finished.append(("session", session.session_id))
            if account is not None:
                account.frozen -= running.cost
                spent = self.ledger.credits.get(running.session_id, 0) + running.cost
                self.ledger.credits[running.session_id] = spent
                finished += [("account", account.token), ("ledger.session", running.session_id)]
            del self.turns[running.turn_id]
            finished.append(("turn", running.turn_id))
        # credits frozen with no turn to account for them (an export cut mid-way) go back
        thawed = [a for a in self.accounts.values() if a.frozen]
        for account in thawed:
            account.available += account.frozen
            account.frozen = 0
        self._saved(*finished, *(("account", a.token) for a in thawed))

    def _decode(self, records: dict[str, dict[str, Record]]) -> None:
        for token, data in records.get("account", {}).items():
            self.accounts[token] = Account(**data)
        for client_id, data in records.get("client", {}).items():
            self.by_client[client_id] = self.accounts[data["token"]]
        for address, data in records.get("address", {}).items():
            self.issued_by_ip[address] = [float(t) for t in data["issued"]]
        for session_id, data in records.get("session", {}).items():
            media = [MediaFile(**m) for m in data.pop("media")]
            self.sessions[session_id] = Session(**data, media=media)
        for render_id, data in records.get("render", {}).items():
            render = Render(**{**data, "status": RenderStatus(data["status"])})
            if render.cancel_requested:
                render.cancel.set()
            self.renders[render_id] = render
        for turn_id, data in records.get("turn", {}).items():
            self.turns[turn_id] = RunningTurn(**data)
        self._decode_ledger(records)

    def _decode_ledger(self, records: dict[str, dict[str, Record]]) -> None:
        for session_id, data in records.get("ledger.session", {}).items():
            if "messages" in data:
                self.ledger.messages[session_id] = list(data["messages"])
            if "credits" in data:
                self.ledger.credits[session_id] = int(data["credits"])
            if "uploads" in data:
                self.ledger.uploads[session_id] = dict(data["uploads"])
        for render_id, data in records.get("ledger.render", {}).items():
            self.ledger.renders[render_id] = dict(data)
        for client_id, data in records.get("ledger.tokens", {}).items():
            self.ledger.tokens[client_id] = int(data["issued"])
            if data.get("revoked"):
                self.ledger.revoked[client_id] = int(data["revoked"])

    # tokens and credits

    def issue_anonymous(self, client_id: str, address: str) -> Account:
        """A new anonymous token, within the per-client and per-address limits.

        The client id is the anonymous user (nemo-api.md binds it on registration): a
        new token for it is the same user, so its sessions and renders outlive the
        token, as "1001: get a new token, retry" needs.
        """
        now = self.clock()
        window = self.config.token_window_s
        with self.lock:
            previous = self.by_client.get(client_id)
            if previous and previous.live(now) and now - previous.issued_at < window:
                raise NemoFailure(
                    429,
                    "a token was already issued for this client id; reuse it until it expires",
                    retry_after_s=previous.issued_at + window - now,
                )
            recent = [t for t in self.issued_by_ip.get(address, []) if now - t < window]
            if len(recent) >= self.config.tokens_per_ip:
                raise NemoFailure(
                    429,
                    "too many anonymous tokens from this address",
                    retry_after_s=recent[0] + window - now,
                )
            account = Account(
                token=f"nmv_usr_{secrets.token_urlsafe(24)}",
                user_id=previous.user_id if previous else f"anon_{uuid.uuid4().hex[:16]}",
                client_id=client_id,
                issued_at=now,
                expires_at=now + self.config.token_ttl_s,
                available=self.config.free_credits,
            )
            self.accounts[account.token] = account
            self.by_client[client_id] = account
            self.issued_by_ip[address] = [*recent, now]
            self.ledger.tokens[client_id] = self.ledger.tokens.get(client_id, 0) + 1
            self._saved(
                ("account", account.token),
                ("client", client_id),
                ("address", address),
                ("ledger.tokens", client_id),
            )
            return account

    def authenticate(self, authorization: str | None) -> Account:
        """The account of a ``Bearer`` token; 1001 when it is missing, unknown or dead."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NemoFailure(1001, "missing bearer token")
        with self.lock:
            account = self.accounts.get(token.strip())
            if account is None or not account.live(self.clock()):
                raise NemoFailure(1001)
            account.calls += 1
            limit = self.faults.number("token_expiry_after")
            if (limit is not None and account.calls > limit) or self.faults.fires("token_expiry"):
                account.revoked = True
                client = account.client_id
                if client is not None:
                    self.ledger.revoked[client] = self.ledger.revoked.get(client, 0) + 1
                    self._saved(("account", account.token), ("ledger.tokens", client))
                else:
                    self._saved(("account", account.token))
                raise NemoFailure(1001)
            self._saved(("account", account.token))
            return account

    def balance(self, account: Account) -> dict[str, int]:
        with self.lock:
            return {
                "available": account.available,
                "frozen": account.frozen,
                "total": account.available + account.frozen,
            }

    def reserve(self, account: Account, cost: int, *, turn: bool = True) -> None:
        """Freeze the credits a turn (or an export) will cost; 2001 before any work if
        they are not there. The ``out_of_credits`` fault strikes turns only."""
        with self.lock:
            if (turn and self.faults.fires("out_of_credits")) or account.available < cost:
                what = "turn" if turn else "export"
                raise NemoFailure(
                    2001,
                    f"out of credits: this {what} costs {cost}, {account.available} available",
                )
            account.available -= cost
            account.frozen += cost
            self._saved(("account", account.token))

    def release(self, account: Account, cost: int) -> None:
        """The work was refused after all: its frozen credits go back."""
        with self.lock:
            account.frozen -= cost
            account.available += cost
            self._saved(("account", account.token))

    def settle(
        self, account: Account, session_id: str, cost: int, *, turn_id: str | None = None
    ) -> None:
        """The work is done: its frozen credits are spent (and its turn, if one, is over)."""
        with self.lock:
            account.frozen -= cost
            self.ledger.credits[session_id] = self.ledger.credits.get(session_id, 0) + cost
            over: list[Key] = []
            if turn_id is not None and self.turns.pop(turn_id, None) is not None:
                over.append(("turn", turn_id))
            self._saved(("account", account.token), ("ledger.session", session_id), *over)

    def begin_turn(
        self, account: Account, session: Session, cost: int, draft: dict[str, Any] | None
    ) -> str:
        """Remember a turn under way, so that a restart finishes it; its id."""
        with self.lock:
            turn_id = f"turn_{uuid.uuid4().hex}"
            self.turns[turn_id] = RunningTurn(
                turn_id=turn_id,
                token=account.token,
                session_id=session.session_id,
                cost=cost,
                draft=draft,
            )
            self._saved(("turn", turn_id))
            return turn_id

    # sessions

    def create_session(self, account: Account, language: str) -> Session:
        now = self.clock()
        session = Session(
            session_id=f"sess_{uuid.uuid4().hex}",
            task_id=f"task_{uuid.uuid4().hex[:20]}",
            user_id=account.user_id,
            language=language,
            created_at=now,
            expires_at=now + self.config.session_ttl_s,
        )
        with self.lock:
            self.sessions[session.session_id] = session
            self._saved(("session", session.session_id))
        return session

    def session(self, account: Account, session_id: Any, user: str = "me") -> Session:
        """A live session of this account; 1002 otherwise."""
        if not isinstance(session_id, str) or not session_id:
            raise NemoFailure(1002, "session not found: no session id given")
        with self.lock:
            session = self.sessions.get(session_id)
            if (
                session is None
                or session.user_id != account.user_id
                or user not in ("me", account.user_id)
            ):
                raise NemoFailure(1002)
            if self.clock() >= session.expires_at or self.faults.fires("session_loss"):
                del self.sessions[session_id]
                self._saved(("session", session_id))
                raise NemoFailure(1002)
            return session

    def add_media(self, session: Session, files: list[MediaFile]) -> None:
        with self.lock:
            session.media.extend(files)
            counts = self.ledger.uploads.setdefault(session.session_id, {})
            for media in files:
                counts[media.hash] = counts.get(media.hash, 0) + 1
            self._saved(("session", session.session_id), ("ledger.session", session.session_id))

    def set_draft(self, session: Session, draft: dict[str, Any]) -> None:
        with self.lock:
            session.draft = draft
            self._saved(("session", session.session_id))

    def record_message(self, session: Session, text: str, kind: str, cost: int) -> dict[str, Any]:
        with self.lock:
            messages = self.ledger.messages.setdefault(session.session_id, [])
            entry = {
                "text": text,
                "at": iso(self.clock()),
                "kind": kind,
                "credits": cost,
                "repeat": any(m["text"] == text for m in messages),
            }
            messages.append(entry)
            session.turns += 1
            self._saved(("session", session.session_id), ("ledger.session", session.session_id))
            return entry

    # renders

    def count_submission(self, render_id: str) -> None:
        with self.lock:
            entry = self.ledger.renders.setdefault(render_id, {"submissions": 0, "status": None})
            entry["submissions"] += 1
            self._saved(("ledger.render", render_id))

    def add_render(self, render: Render) -> None:
        """Register a new render id; 4009 if the id was used before."""
        with self.lock:
            if render.render_id in self.renders:
                raise NemoFailure(4009, f"render id {render.render_id} already exists")
            self.renders[render.render_id] = render
            self.ledger.renders[render.render_id]["status"] = render.status.value
            self._saved(("render", render.render_id), ("ledger.render", render.render_id))

    def update_render(self, render: Render, **changes: Any) -> None:
        with self.lock:
            for key, value in changes.items():
                setattr(render, key, value)
            entry = self.ledger.renders.get(render.render_id)
            if entry is not None:
                entry["status"] = render.status.value
            now = time.monotonic()
            last_saved = self._progress_saved.get(render.render_id, -PROGRESS_SAVE_S)
            if changes.keys() == {"progress"} and now - last_saved < PROGRESS_SAVE_S:
                return
            if render.finished:
                self._progress_saved.pop(render.render_id, None)
            else:
                self._progress_saved[render.render_id] = now
            self._saved(("render", render.render_id), ("ledger.render", render.render_id))

    def render(self, render_id: str, account: Account) -> Render:
        with self.lock:
            render = self.renders.get(render_id)
            if render is None or render.user_id != account.user_id:
                raise NemoFailure(4004, f"no render {render_id}")
            return render
