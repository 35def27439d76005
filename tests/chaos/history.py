"""A chaos run's history, and the rules it must keep (issue 10).

The harness records what it did (the jobs it submitted and had accepted, the faults it
injected); at the end of the run :func:`load_history` adds what the system left behind
(the jobs' rows and event logs in PostgreSQL, the studio's ledger, the deliveries the
test receiver saw, the videos on disk). :func:`check` is a plain function of that
data, so that hand-built histories can prove that every rule can fail
(``tests/chaos/test_checker.py``).

Rules (each :class:`Violation` names its rule):

jobs (every job the harness had accepted, and any other job found in the database)
    ``job_lost``: accepted, but no row. ``job_not_terminal``: still queued or running
    after the settle. ``double_terminal``: more than one terminal event.
    ``terminal_event_missing``: a terminal row without a terminal event.
    ``terminal_mismatch``: the terminal event is not the row's status.
    ``event_after_terminal``: the log goes on after the terminal event.
    ``revision_parent``, ``batch_mismatch``: a revision or a batch member that the
    database does not tie to what was submitted. ``cancel_lost``: the API answered a
    cancel with ``canceled`` and the job ended otherwise.
studio ledger
    ``message_repeated``: the same instruction twice to one session.
    ``render_submitted_twice``: a render id POSTed more than once.
    ``render_unknown``: a render id no job's ``render_<job>_<attempt>`` accounts for.
    ``renders_exceed_attempts``: more renders started for a job than its
    ``render_attempt``. ``upload_repeated``: the same file twice to one session.
    ``credits_mismatch``: a session's credits charged are not the credits of the turns
    the studio recorded for it (plus exports). ``edits_unaccounted``: more charged
    instructions than the jobs' ``edits_sent`` record.
    ``instruction_unrecorded``: an instruction no job's log says it sent.
    ``tokens_issued``: a client id was issued other than 1 + the expiries injected on
    its tokens (a token lost by a worker that died before storing it is replaced under
    a new client id: the table counts the client ids).
webhooks (the test receiver's log)
    ``webhook_missing``: a job's terminal event never reached the receiver, verified.
    ``webhook_unverified``: a delivery whose signature did not verify.
    ``webhook_status_mismatch``: a terminal event that is not the job's status.
    ``webhook_id_changed``: one message delivered under several webhook-ids.
    ``webhook_id_reused``: one ``webhook-id`` on two different messages.
videos
    ``video_missing``: a succeeded job's file is not in the storage directory.
    ``video_checksum``: its bytes do not hash to the row's ``video_sha256``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.db import make_engine
from models.jobs import TERMINAL_STATUSES, EventType, Job, JobEvent, JobStatus, Stage
from reelyard.storage import video_key
from workers.decisions import render_id

#: job event types that end a job, and the row status each one means
TERMINAL_EVENTS = {
    EventType.SUCCEEDED: JobStatus.SUCCEEDED,
    EventType.FAILED: JobStatus.FAILED,
    EventType.CANCELED: JobStatus.CANCELED,
}
#: the webhook event type of each terminal status (docs/webhooks.md)
TERMINAL_WEBHOOKS = {status: f"job.{status.value}" for status in TERMINAL_STATUSES}

# --- the history --------------------------------------------------------------------


@dataclass(frozen=True)
class Submitted:
    """What the harness asked for and the API accepted."""

    #: every job id the API answered (single jobs, batch members and revisions)
    job_ids: tuple[str, ...]
    #: revision id -> the parent it was submitted against
    revisions: Mapping[str, str] = field(default_factory=dict)
    #: job id -> the status the cancel request answered (None: no answer came)
    cancels: Mapping[str, str | None] = field(default_factory=dict)
    #: batch id -> its job ids
    batches: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: jobs submitted without a webhook destination (no terminal webhook expected)
    without_webhook: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Event:
    """One entry of a job's log (``models.jobs.JobEvent``), in order."""

    id: int
    type: EventType
    stage: Stage | None = None
    message: str | None = None
    data: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class JobRecord:
    """A job's final row, as read from PostgreSQL, and its event log."""

    id: str
    status: JobStatus
    stage: Stage
    events: tuple[Event, ...]
    parent_id: str | None = None
    batch_id: str | None = None
    upstream_session_id: str | None = None
    #: instructions the job sent upstream and was charged for (``Job.edits_sent``)
    edits_sent: int = 0
    corrections: int = 0
    token_repairs: int = 0
    session_repairs: int = 0
    render_id: str | None = None
    render_attempt: int = 0
    video_sha256: str | None = None
    error_code: str | None = None

    @property
    def instructions_sent(self) -> list[str]:
        """The instructions its log says it sent (``data.instruction`` of the edit's
        checkpoint event; written before the request, so also those refused)."""
        return [
            str(event.data["instruction"])
            for event in self.events
            if event.type is EventType.MESSAGE and event.data and "instruction" in event.data
        ]


@dataclass(frozen=True)
class LedgerMessage:
    text: str
    kind: str = "edit"
    credits: int = 0


@dataclass(frozen=True)
class LedgerSession:
    messages: tuple[LedgerMessage, ...] = ()
    credits_charged: int = 0
    #: content hash -> times uploaded
    uploads: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class LedgerRender:
    #: POSTs that named this id
    submissions: int
    #: its last status; None when no render was created under it (the POST was refused)
    status: str | None


@dataclass(frozen=True)
class Ledger:
    """The studio's ledger, as ``GET /_studio/ledger`` answers it."""

    sessions: Mapping[str, LedgerSession] = field(default_factory=dict)
    renders: Mapping[str, LedgerRender] = field(default_factory=dict)
    #: client id -> anonymous tokens issued
    tokens: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Ledger:
        return cls(
            sessions={
                sid: LedgerSession(
                    messages=tuple(
                        LedgerMessage(
                            text=str(m["text"]),
                            kind=str(m.get("kind", "edit")),
                            credits=int(m.get("credits", 0)),
                        )
                        for m in entry.get("messages", [])
                    ),
                    credits_charged=int(entry.get("credits_charged", 0)),
                    uploads={str(k): int(v) for k, v in entry.get("uploads", {}).items()},
                )
                for sid, entry in document.get("sessions", {}).items()
            },
            renders={
                rid: LedgerRender(
                    submissions=int(entry.get("submissions", 0)), status=entry.get("status")
                )
                for rid, entry in document.get("renders", {}).items()
            },
            tokens={str(k): int(v) for k, v in document.get("tokens", {}).items()},
        )


@dataclass(frozen=True)
class Delivery:
    """One request the test receiver got."""

    webhook_id: str
    event_type: str
    #: the job the payload is about (None for a batch's event)
    job_id: str | None
    verified: bool
    #: where it was sent (an endpoint, or a job's own ``webhook_url``): one event makes
    #: one message per destination, each with its own id
    destination: str = ""
    #: sha256 of the body, when the receiver kept it (same message, same bytes)
    body_sha256: str | None = None

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> Delivery:
        return cls(
            webhook_id=str(entry["webhook_id"]),
            event_type=str(entry["type"]),
            job_id=entry.get("job_id"),
            verified=bool(entry["verified"]),
            destination=str(entry.get("destination", "")),
            body_sha256=entry.get("body_sha256"),
        )


@dataclass(frozen=True)
class VideoFile:
    path: Path
    exists: bool
    sha256: str | None = None


@dataclass(frozen=True)
class Faults:
    """What the harness injected."""

    #: kind -> times injected (``kill_worker``, ``crash_point:edit_sent``,
    #: ``redis_flushall``, ``token_expiry``, …)
    by_kind: Mapping[str, int] = field(default_factory=dict)
    #: client id -> token expiries injected on its tokens (each one costs one new token)
    token_expiries: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class History:
    submitted: Submitted
    #: every job in the database, by id
    jobs: Mapping[str, JobRecord]
    ledger: Ledger = field(default_factory=Ledger)
    faults: Faults = field(default_factory=Faults)
    deliveries: tuple[Delivery, ...] = ()
    #: job id -> its video in the storage directory (every succeeded job, and any
    #: other job whose file exists)
    videos: Mapping[str, VideoFile] = field(default_factory=dict)
    #: credits the studio charges per export (``STUDIO_COST_EXPORT``)
    export_cost: int = 0


@dataclass(frozen=True)
class Violation:
    rule: str
    #: the job, session, render, client or webhook id concerned
    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule} [{self.subject}]: {self.message}"


# --- loading ------------------------------------------------------------------------


def load_history(
    database_url: str,
    ledger_json: Mapping[str, Any],
    receiver_log: Path | Iterable[Mapping[str, Any]],
    storage_dir: Path,
    submitted: Submitted,
    *,
    faults: Faults | None = None,
    export_cost: int = 0,
) -> History:
    """The history of a settled run: ``submitted`` and ``faults`` as the harness
    recorded them, the rest read from what the system left behind.

    ``receiver_log`` is the receiver's list of deliveries, or a JSON Lines file of them
    (``webhook_id``, ``type``, ``job_id``, ``verified``, optionally ``destination`` and
    ``body_sha256``).
    """
    jobs = read_jobs(database_url)
    if isinstance(receiver_log, Path):
        lines = receiver_log.read_text(encoding="utf-8").splitlines()
        entries: list[Mapping[str, Any]] = [json.loads(line) for line in lines if line.strip()]
    else:
        entries = list(receiver_log)
    wanted = {job.id for job in jobs.values() if job.status is JobStatus.SUCCEEDED}
    return History(
        submitted=submitted,
        jobs=jobs,
        ledger=Ledger.from_json(ledger_json),
        faults=faults or Faults(),
        deliveries=tuple(Delivery.from_json(entry) for entry in entries),
        videos=scan_videos(storage_dir, wanted),
        export_cost=export_cost,
    )


def read_jobs(database_url: str) -> dict[str, JobRecord]:
    """Every job row and its events, in log order (one read-only transaction)."""
    engine = make_engine(database_url, pool_size=1)
    try:
        with Session(engine) as session:
            events: dict[str, list[Event]] = defaultdict(list)
            for row in session.scalars(select(JobEvent).order_by(JobEvent.job_id, JobEvent.id)):
                events[row.job_id].append(
                    Event(
                        id=row.id,
                        type=row.type,
                        stage=row.stage,
                        message=row.message,
                        data=row.data,
                    )
                )
            return {
                job.id: JobRecord(
                    id=job.id,
                    status=job.status,
                    stage=job.stage,
                    events=tuple(events.get(job.id, ())),
                    parent_id=job.parent_id,
                    batch_id=job.batch_id,
                    upstream_session_id=job.upstream_session_id,
                    edits_sent=job.edits_sent,
                    corrections=job.corrections,
                    token_repairs=job.token_repairs,
                    session_repairs=job.session_repairs,
                    render_id=job.render_id,
                    render_attempt=job.render_attempt,
                    video_sha256=job.video_sha256,
                    error_code=job.error_code,
                )
                for job in session.scalars(select(Job).order_by(Job.id))
            }
    finally:
        engine.dispose()


def scan_videos(storage_dir: Path, job_ids: Iterable[str]) -> dict[str, VideoFile]:
    """The stored video of each job (``reelyard.storage.video_key``) and its checksum."""
    found: dict[str, VideoFile] = {}
    for job_id in job_ids:
        path = storage_dir / video_key(job_id)
        if path.is_file():
            digest = hashlib.sha256()
            with path.open("rb") as video:
                for chunk in iter(lambda: video.read(1 << 20), b""):
                    digest.update(chunk)
            found[job_id] = VideoFile(path, exists=True, sha256=digest.hexdigest())
        else:
            found[job_id] = VideoFile(path, exists=False)
    return found


# --- the rules ----------------------------------------------------------------------


def check(history: History) -> list[Violation]:
    """Every rule's violations, jobs first (see the module's docstring)."""
    return [
        *check_jobs(history),
        *check_ledger(history),
        *check_webhooks(history),
        *check_videos(history),
    ]


def check_jobs(history: History) -> list[Violation]:
    submitted = history.submitted
    found = [
        Violation("job_lost", job_id, "accepted by the API, not in the database")
        for job_id in dict.fromkeys(submitted.job_ids)
        if job_id not in history.jobs
    ]
    for record in history.jobs.values():
        found.extend(_check_job(record))
    for revision, parent in submitted.revisions.items():
        job = history.jobs.get(revision)
        if job is not None and job.parent_id != parent:
            found.append(
                Violation(
                    "revision_parent",
                    revision,
                    f"submitted as a revision of {parent}, its row says {job.parent_id}",
                )
            )
    for batch_id, members in submitted.batches.items():
        for job_id in members:
            job = history.jobs.get(job_id)
            if job is not None and job.batch_id != batch_id:
                found.append(
                    Violation(
                        "batch_mismatch",
                        job_id,
                        f"submitted in batch {batch_id}, its row says {job.batch_id}",
                    )
                )
    for job_id, answered in submitted.cancels.items():
        job = history.jobs.get(job_id)
        if (
            job is not None
            and answered == JobStatus.CANCELED.value
            and job.status is not JobStatus.CANCELED
        ):
            found.append(
                Violation(
                    "cancel_lost",
                    job_id,
                    f"the cancel was answered 'canceled', the job ended {job.status.value}",
                )
            )
    return found


def _check_job(job: JobRecord) -> list[Violation]:
    found: list[Violation] = []
    if not job.status.terminal:
        found.append(
            Violation(
                "job_not_terminal",
                job.id,
                f"still {job.status.value} (stage {job.stage.value}) after the settle",
            )
        )
    terminal = [
        (index, event) for index, event in enumerate(job.events) if event.type in TERMINAL_EVENTS
    ]
    if len(terminal) > 1:
        kinds = ", ".join(event.type.value for _, event in terminal)
        found.append(
            Violation("double_terminal", job.id, f"{len(terminal)} terminal events: {kinds}")
        )
    if not terminal:
        if job.status.terminal:
            found.append(
                Violation(
                    "terminal_event_missing",
                    job.id,
                    f"the row is {job.status.value}, the log has no terminal event",
                )
            )
        return found
    first_index, first = terminal[0]
    if TERMINAL_EVENTS[first.type] is not job.status:
        found.append(
            Violation(
                "terminal_mismatch",
                job.id,
                f"the log ended it {first.type.value}, the row is {job.status.value}",
            )
        )
    later = [e for e in job.events[first_index + 1 :] if e.type not in TERMINAL_EVENTS]
    if later:
        found.append(
            Violation(
                "event_after_terminal",
                job.id,
                f"{len(later)} event(s) after {first.type.value}, the first: "
                f"{later[0].type.value} ({later[0].stage.value if later[0].stage else '-'})",
            )
        )
    return found


def check_ledger(history: History) -> list[Violation]:
    found: list[Violation] = []
    ledger = history.ledger
    found.extend(_check_sessions(history))
    found.extend(_check_renders(history))
    charged = sum(len(session.messages) for session in ledger.sessions.values())
    recorded = sum(job.edits_sent for job in history.jobs.values())
    if charged > recorded:
        found.append(
            Violation(
                "edits_unaccounted",
                "*",
                f"the studio charged {charged} instruction(s), the jobs record {recorded} "
                "(edits_sent)",
            )
        )
    expiries = history.faults.token_expiries
    for client_id in sorted({*ledger.tokens, *expiries}):
        issued = ledger.tokens.get(client_id, 0)
        expected = 1 + expiries.get(client_id, 0)
        if issued != expected:
            found.append(
                Violation(
                    "tokens_issued",
                    client_id,
                    f"{issued} token(s) issued, expected {expected} "
                    f"(1 + {expected - 1} injected expiries)",
                )
            )
    return found


def _check_sessions(history: History) -> list[Violation]:
    found: list[Violation] = []
    sent = Counter(text for job in history.jobs.values() for text in job.instructions_sent)
    exports = 0
    for session_id, session in history.ledger.sessions.items():
        texts = Counter(message.text for message in session.messages)
        for text, times in texts.items():
            if times > 1:
                found.append(
                    Violation(
                        "message_repeated",
                        session_id,
                        f"sent {times} times: {_short(text)}",
                    )
                )
            if text not in sent:
                found.append(
                    Violation(
                        "instruction_unrecorded",
                        session_id,
                        f"no job's log says it sent: {_short(text)}",
                    )
                )
        for digest, times in session.uploads.items():
            if times > 1:
                found.append(
                    Violation(
                        "upload_repeated", session_id, f"file {digest} uploaded {times} times"
                    )
                )
        turns = sum(message.credits for message in session.messages)
        extra = session.credits_charged - turns
        exported = extra // history.export_cost if history.export_cost else 0
        if extra < 0 or extra != exported * history.export_cost:
            found.append(
                Violation(
                    "credits_mismatch",
                    session_id,
                    f"{session.credits_charged} credits charged, its turns cost {turns}"
                    + (f" and exports {history.export_cost} each" if history.export_cost else ""),
                )
            )
        exports += max(exported, 0)
    started = sum(1 for render in history.ledger.renders.values() if render.status is not None)
    if exports > started:
        found.append(
            Violation(
                "credits_mismatch",
                "*",
                f"credits charged for {exports} exports, {started} renders were started",
            )
        )
    return found


def _render_prefix(job_id: str) -> str:
    return render_id(job_id, 0).removesuffix("0")


def _check_renders(history: History) -> list[Violation]:
    found: list[Violation] = []
    owners = {_render_prefix(job.id): job for job in history.jobs.values()}
    started: Counter[str] = Counter()
    for rid, render in sorted(history.ledger.renders.items()):
        if render.submissions > 1:
            found.append(
                Violation("render_submitted_twice", rid, f"POSTed {render.submissions} times")
            )
        prefix, _, attempt = rid.rpartition("_")
        job = owners.get(f"{prefix}_")
        if job is None or not attempt.isdigit():
            found.append(Violation("render_unknown", rid, "no job's render id"))
            continue
        if render.status is None:
            continue  # the POST was refused: nothing started
        started[job.id] += 1
        if int(attempt) > job.render_attempt:
            found.append(
                Violation(
                    "renders_exceed_attempts",
                    job.id,
                    f"render {rid} started, the job records {job.render_attempt} attempt(s)",
                )
            )
    for job_id, count in started.items():
        job = history.jobs[job_id]
        if count > job.render_attempt:
            found.append(
                Violation(
                    "renders_exceed_attempts",
                    job_id,
                    f"{count} renders started, the job records {job.render_attempt} attempt(s)",
                )
            )
    return found


def check_webhooks(history: History) -> list[Violation]:
    found: list[Violation] = []
    by_message: dict[tuple[str | None, str, str], set[str]] = defaultdict(set)
    by_id: dict[str, set[tuple[str | None, str, str, str | None]]] = defaultdict(set)
    verified: set[tuple[str | None, str]] = set()
    for delivery in history.deliveries:
        if not delivery.verified:
            found.append(
                Violation(
                    "webhook_unverified",
                    delivery.webhook_id,
                    f"{delivery.event_type} for {delivery.job_id} did not verify",
                )
            )
            continue
        verified.add((delivery.job_id, delivery.event_type))
        message = (delivery.job_id, delivery.event_type, delivery.destination)
        by_message[message].add(delivery.webhook_id)
        by_id[delivery.webhook_id].add((*message, delivery.body_sha256))
    for (job_id, event_type, destination), ids in sorted(
        by_message.items(), key=lambda item: str(item[0])
    ):
        if len(ids) > 1:
            found.append(
                Violation(
                    "webhook_id_changed",
                    job_id or "-",
                    f"{event_type} to {destination or 'the receiver'} came under "
                    f"{len(ids)} webhook-ids: {', '.join(sorted(ids))}",
                )
            )
    for webhook_id, messages in sorted(by_id.items()):
        if len(messages) > 1:
            found.append(
                Violation(
                    "webhook_id_reused",
                    webhook_id,
                    f"one webhook-id on {len(messages)} different messages",
                )
            )
    expecting = [
        job_id
        for job_id in dict.fromkeys(history.submitted.job_ids)
        if job_id not in history.submitted.without_webhook
    ]
    for job_id in expecting:
        job = history.jobs.get(job_id)
        if job is None or not job.status.terminal:
            continue  # job_lost / job_not_terminal already say it
        wanted = TERMINAL_WEBHOOKS[job.status]
        if (job_id, wanted) not in verified:
            found.append(
                Violation("webhook_missing", job_id, f"{wanted} never reached the receiver")
            )
    terminal_types = set(TERMINAL_WEBHOOKS.values())
    for job_id, event_type in sorted(verified, key=str):
        job = history.jobs.get(job_id) if job_id is not None else None
        if (
            job is not None
            and event_type in terminal_types
            and event_type != TERMINAL_WEBHOOKS.get(job.status)
        ):
            found.append(
                Violation(
                    "webhook_status_mismatch",
                    job_id or "-",
                    f"{event_type} delivered, the job is {job.status.value}",
                )
            )
    return found


def check_videos(history: History) -> list[Violation]:
    found: list[Violation] = []
    for job in history.jobs.values():
        if job.status is not JobStatus.SUCCEEDED:
            continue
        video = history.videos.get(job.id)
        if video is None or not video.exists:
            found.append(Violation("video_missing", job.id, "succeeded, but no video file"))
        elif job.video_sha256 is None or video.sha256 != job.video_sha256:
            found.append(
                Violation(
                    "video_checksum",
                    job.id,
                    f"the file hashes to {video.sha256}, the row records {job.video_sha256}",
                )
            )
    return found


def _short(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 1] + "…")


# --- the table ----------------------------------------------------------------------


def format_table(history: History, violations: list[Violation]) -> str:
    """A summary of the run to print: jobs, faults, ledger, webhooks, violations."""
    lines: list[str] = []

    def section(title: str, rows: Iterable[tuple[str, object]]) -> None:
        lines.append(title)
        listed = list(rows)
        width = max((len(name) for name, _ in listed), default=0)
        lines.extend(f"  {name:<{width}}  {value}" for name, value in listed)
        if not listed:
            lines.append("  (none)")

    submitted = set(history.submitted.job_ids)
    statuses = Counter(job.status.value for job in history.jobs.values())
    lost = len(submitted - set(history.jobs))
    section(
        "jobs",
        [
            ("accepted", len(submitted)),
            *((status.value, statuses.get(status.value, 0)) for status in JobStatus),
            ("lost", lost),
            ("not submitted", len(set(history.jobs) - submitted)),
            ("revisions", len(history.submitted.revisions)),
            ("cancels requested", len(history.submitted.cancels)),
            ("batches", len(history.submitted.batches)),
        ],
    )
    section("faults injected", sorted(history.faults.by_kind.items()))
    ledger = history.ledger
    section(
        "studio ledger",
        [
            ("sessions", len(ledger.sessions)),
            ("messages", sum(len(s.messages) for s in ledger.sessions.values())),
            ("credits charged", sum(s.credits_charged for s in ledger.sessions.values())),
            ("edits recorded by jobs", sum(j.edits_sent for j in history.jobs.values())),
            ("renders started", sum(1 for r in ledger.renders.values() if r.status is not None)),
            ("render submissions", sum(r.submissions for r in ledger.renders.values())),
            ("render attempts by jobs", sum(j.render_attempt for j in history.jobs.values())),
            ("tokens issued", sum(ledger.tokens.values())),
            ("tokens expired by faults", sum(history.faults.token_expiries.values())),
            ("client ids", len(ledger.tokens)),
        ],
    )
    deliveries = history.deliveries
    section(
        "webhooks",
        [
            ("deliveries", len(deliveries)),
            ("messages", len({d.webhook_id for d in deliveries})),
            ("duplicates", len(deliveries) - len({d.webhook_id for d in deliveries})),
            ("unverified", sum(1 for d in deliveries if not d.verified)),
        ],
    )
    by_rule = Counter(violation.rule for violation in violations)
    section("violations", sorted(by_rule.items()))
    lines.extend(f"  - {violation}" for violation in violations)
    lines.append("PASS" if not violations else f"FAIL: {len(violations)} violation(s)")
    return "\n".join(lines)
