"""The chaos checker catches each kind of violation (issue 10, must-show 3).

Hand-built histories: a clean one passes, and each broken one fails with exactly the
rule it breaks. One test loads a history from a real, migrated PostgreSQL database.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from migrations import upgrade
from models.access import create_tenant
from models.db import make_engine
from models.jobs import EventType, Job, JobStatus, Stage, add_event, finish_job, queue_jobs
from tests.chaos.history import (
    Delivery,
    Event,
    Faults,
    History,
    JobRecord,
    Ledger,
    LedgerMessage,
    LedgerRender,
    LedgerSession,
    Submitted,
    VideoFile,
    Violation,
    check,
    format_table,
    load_history,
    scan_videos,
)
from tests.conftest import run_tag
from tests.e2e.system import create_database, drop_database

CLIENT = "chaos-client"
FIRST = "Make a calm 16:9 slideshow of the beach house, about 15 seconds."
SECOND = "Revision: add the title 'Summer' at the start."
FAILING = "Make a 9:16 video of the garden."


def sent(instruction: str, id_: int) -> Event:
    """The edit's checkpoint event, as workers/stages.py writes it."""
    return Event(
        id_,
        EventType.MESSAGE,
        Stage.EDIT,
        "Sent the instruction to the video editor.",
        {"instruction": instruction},
    )


def succeeded_log(first_id: int, instruction: str) -> tuple[Event, ...]:
    n = first_id
    return (
        Event(n, EventType.CREATED, Stage.AUTHORIZE, "Job queued."),
        Event(n + 1, EventType.STAGE, Stage.OPEN_SESSION),
        Event(n + 2, EventType.STAGE, Stage.UPLOAD),
        Event(n + 3, EventType.STAGE, Stage.EDIT, "Uploaded 2 photos."),
        sent(instruction, n + 4),
        Event(n + 5, EventType.MESSAGE, Stage.EDIT, "Done."),
        Event(n + 6, EventType.STAGE, Stage.VERIFY, "The editor finished."),
        Event(n + 7, EventType.STAGE, Stage.EXPORT),
        Event(n + 8, EventType.STAGE, Stage.POLL_RENDER, "Rendering started."),
        Event(n + 9, EventType.STAGE, Stage.FINALIZE),
        Event(n + 10, EventType.SUCCEEDED, None, "The video is ready."),
    )


def write_video(storage: Path, job_id: str, content: bytes) -> str:
    storage.mkdir(parents=True, exist_ok=True)
    (storage / f"{job_id}.mp4").write_bytes(content)
    return hashlib.sha256(content).hexdigest()


def clean_history(storage: Path) -> History:
    """Four jobs that kept every rule: a success and its revision (one session), a
    failure and a canceled job (a batch), one token expiry, one duplicate delivery."""
    sha_a = write_video(storage, "job_a", b"video a")
    sha_r = write_video(storage, "job_r", b"video r")
    jobs = {
        "job_a": JobRecord(
            "job_a",
            JobStatus.SUCCEEDED,
            Stage.FINALIZE,
            succeeded_log(1, FIRST),
            upstream_session_id="sess_1",
            edits_sent=1,
            token_repairs=1,
            render_id="render_job_a_1",
            render_attempt=1,
            video_sha256=sha_a,
        ),
        "job_r": JobRecord(
            "job_r",
            JobStatus.SUCCEEDED,
            Stage.FINALIZE,
            succeeded_log(20, SECOND),
            parent_id="job_a",
            upstream_session_id="sess_1",
            edits_sent=1,
            render_id="render_job_r_2",
            render_attempt=2,
            video_sha256=sha_r,
        ),
        "job_b": JobRecord(
            "job_b",
            JobStatus.FAILED,
            Stage.EDIT,
            (
                Event(40, EventType.CREATED, Stage.AUTHORIZE),
                sent(FAILING, 41),
                Event(42, EventType.FAILED, None, "The editor finished without a video."),
            ),
            batch_id="bat_1",
            upstream_session_id="sess_2",
            edits_sent=1,
            error_code="no_exportable_draft",
        ),
        "job_c": JobRecord(
            "job_c",
            JobStatus.CANCELED,
            Stage.AUTHORIZE,
            (
                Event(50, EventType.CREATED, Stage.AUTHORIZE),
                Event(51, EventType.CANCELED, None, "Canceled."),
            ),
            batch_id="bat_1",
        ),
    }
    ledger = Ledger(
        sessions={
            "sess_1": LedgerSession(
                messages=(
                    LedgerMessage(FIRST, "generate", 100),
                    LedgerMessage(SECOND, "edit", 50),
                ),
                credits_charged=150,
                uploads={"h1": 1, "h2": 1},
            ),
            "sess_2": LedgerSession(
                messages=(LedgerMessage(FAILING, "generate", 100),),
                credits_charged=100,
                uploads={"h3": 1},
            ),
        },
        renders={
            "render_job_a_1": LedgerRender(1, "completed"),
            "render_job_r_1": LedgerRender(1, "failed"),
            "render_job_r_2": LedgerRender(1, "completed"),
        },
        tokens={CLIENT: 2},
    )
    deliveries = (
        Delivery("msg_a", "job.succeeded", "job_a", verified=True),
        Delivery("msg_a", "job.succeeded", "job_a", verified=True),  # a retry
        Delivery("msg_r", "job.succeeded", "job_r", verified=True),
        Delivery("msg_b", "job.failed", "job_b", verified=True),
        Delivery("msg_c", "job.canceled", "job_c", verified=True),
        Delivery("msg_bat", "batch.completed", None, verified=True),
    )
    return History(
        submitted=Submitted(
            job_ids=("job_a", "job_r", "job_b", "job_c"),
            revisions={"job_r": "job_a"},
            cancels={"job_c": "canceled"},
            batches={"bat_1": ("job_b", "job_c")},
        ),
        jobs=jobs,
        ledger=ledger,
        faults=Faults(by_kind={"token_expiry": 1, "kill_worker": 2}, token_expiries={CLIENT: 1}),
        deliveries=deliveries,
        videos=scan_videos(storage, ["job_a", "job_r"]),
    )


@pytest.fixture
def clean(tmp_path: Path) -> History:
    return clean_history(tmp_path / "videos")


def rules(violations: list[Violation]) -> list[str]:
    return [violation.rule for violation in violations]


def with_job(history: History, job: JobRecord) -> History:
    return replace(history, jobs={**history.jobs, job.id: job})


def with_session(history: History, session_id: str, session: LedgerSession) -> History:
    ledger = replace(history.ledger, sessions={**history.ledger.sessions, session_id: session})
    return replace(history, ledger=ledger)


# --- the clean history ----------------------------------------------------------------


def test_a_clean_history_has_no_violations(clean: History) -> None:
    violations = check(clean)

    assert violations == []
    table = format_table(clean, violations)
    assert "PASS" in table
    assert "token_expiry" in table


# --- jobs -------------------------------------------------------------------------------


def test_a_lost_job_is_a_violation(clean: History) -> None:
    submitted = replace(clean.submitted, job_ids=(*clean.submitted.job_ids, "job_gone"))

    violations = check(replace(clean, submitted=submitted))

    assert rules(violations) == ["job_lost"]
    assert violations[0].subject == "job_gone"


def test_a_job_left_running_is_a_violation(clean: History) -> None:
    job_b = clean.jobs["job_b"]
    running = replace(job_b, status=JobStatus.RUNNING, events=job_b.events[:-1])
    deliveries = tuple(d for d in clean.deliveries if d.job_id != "job_b")

    violations = check(replace(with_job(clean, running), deliveries=deliveries))

    assert rules(violations) == ["job_not_terminal"]


def test_a_double_terminal_state_is_a_violation(clean: History) -> None:
    job_c = clean.jobs["job_c"]
    twice = replace(
        job_c, events=(*job_c.events, Event(52, EventType.CANCELED, None, "Canceled again."))
    )

    violations = check(with_job(clean, twice))

    assert rules(violations) == ["double_terminal"]


def test_a_terminal_event_unlike_the_row_is_a_violation(clean: History) -> None:
    job_c = clean.jobs["job_c"]
    other = replace(job_c, events=(job_c.events[0], Event(51, EventType.FAILED)))

    violations = check(with_job(clean, other))

    assert rules(violations) == ["terminal_mismatch"]


def test_an_event_after_the_terminal_one_is_a_violation(clean: History) -> None:
    job_a = clean.jobs["job_a"]
    late = replace(job_a, events=(*job_a.events, Event(99, EventType.STAGE, Stage.FINALIZE)))

    violations = check(with_job(clean, late))

    assert rules(violations) == ["event_after_terminal"]


def test_a_cancel_answered_canceled_must_end_canceled(clean: History) -> None:
    submitted = replace(clean.submitted, cancels={"job_c": "canceled", "job_b": "canceled"})

    violations = check(replace(clean, submitted=submitted))

    assert rules(violations) == ["cancel_lost"]
    assert violations[0].subject == "job_b"


# --- the studio ledger ------------------------------------------------------------------


def test_a_message_sent_twice_to_a_session_is_a_violation(clean: History) -> None:
    sess_2 = clean.ledger.sessions["sess_2"]
    twice = replace(
        sess_2,
        messages=(*sess_2.messages, LedgerMessage(FAILING, "edit", 50)),
        credits_charged=150,
    )
    job_b = clean.jobs["job_b"]
    history = with_job(with_session(clean, "sess_2", twice), replace(job_b, edits_sent=2))

    violations = check(history)

    assert rules(violations) == ["message_repeated"]
    assert violations[0].subject == "sess_2"


def test_a_render_submitted_twice_is_a_violation(clean: History) -> None:
    renders = {**clean.ledger.renders, "render_job_a_1": LedgerRender(2, "completed")}

    violations = check(replace(clean, ledger=replace(clean.ledger, renders=renders)))

    assert rules(violations) == ["render_submitted_twice"]
    assert violations[0].subject == "render_job_a_1"


def test_more_renders_than_the_job_records_is_a_violation(clean: History) -> None:
    renders = {**clean.ledger.renders, "render_job_a_2": LedgerRender(1, "completed")}

    violations = check(replace(clean, ledger=replace(clean.ledger, renders=renders)))

    assert set(rules(violations)) == {"renders_exceed_attempts"}
    assert {v.subject for v in violations} == {"job_a"}


def test_a_render_no_job_accounts_for_is_a_violation(clean: History) -> None:
    renders = {**clean.ledger.renders, "render_job_zz_1": LedgerRender(1, "completed")}

    violations = check(replace(clean, ledger=replace(clean.ledger, renders=renders)))

    assert rules(violations) == ["render_unknown"]


def test_credits_other_than_the_turns_cost_are_a_violation(clean: History) -> None:
    overcharged = replace(clean.ledger.sessions["sess_2"], credits_charged=200)

    violations = check(with_session(clean, "sess_2", overcharged))

    assert rules(violations) == ["credits_mismatch"]


def test_more_charged_instructions_than_the_jobs_record_is_a_violation(clean: History) -> None:
    job_b = clean.jobs["job_b"]

    violations = check(with_job(clean, replace(job_b, edits_sent=0)))

    assert rules(violations) == ["edits_unaccounted"]


def test_an_instruction_no_job_sent_is_a_violation(clean: History) -> None:
    stranger = replace(
        clean.ledger.sessions["sess_2"], messages=(LedgerMessage("something else", "edit", 100),)
    )

    violations = check(with_session(clean, "sess_2", stranger))

    assert rules(violations) == ["instruction_unrecorded"]


def test_a_file_uploaded_twice_to_a_session_is_a_violation(clean: History) -> None:
    twice = replace(clean.ledger.sessions["sess_2"], uploads={"h3": 2})

    violations = check(with_session(clean, "sess_2", twice))

    assert rules(violations) == ["upload_repeated"]


def test_too_many_tokens_is_a_violation(clean: History) -> None:
    ledger = replace(clean.ledger, tokens={CLIENT: 3})

    violations = check(replace(clean, ledger=ledger))

    assert rules(violations) == ["tokens_issued"]
    assert violations[0].subject == CLIENT


# --- webhooks ---------------------------------------------------------------------------


def test_a_missing_terminal_webhook_is_a_violation(clean: History) -> None:
    deliveries = tuple(d for d in clean.deliveries if d.job_id != "job_b")

    violations = check(replace(clean, deliveries=deliveries))

    assert rules(violations) == ["webhook_missing"]
    assert violations[0].subject == "job_b"


def test_a_job_submitted_without_a_webhook_expects_none(clean: History) -> None:
    deliveries = tuple(d for d in clean.deliveries if d.job_id != "job_b")
    submitted = replace(clean.submitted, without_webhook=frozenset({"job_b"}))

    assert check(replace(clean, deliveries=deliveries, submitted=submitted)) == []


def test_a_duplicate_delivery_under_another_webhook_id_is_a_violation(clean: History) -> None:
    again = Delivery("msg_other", "job.failed", "job_b", verified=True)

    violations = check(replace(clean, deliveries=(*clean.deliveries, again)))

    assert rules(violations) == ["webhook_id_changed"]


def test_one_webhook_id_on_two_messages_is_a_violation(clean: History) -> None:
    reused = Delivery("msg_a", "job.succeeded", "job_r", verified=True)
    others = tuple(d for d in clean.deliveries if d.webhook_id != "msg_r")

    violations = check(replace(clean, deliveries=(*others, reused)))

    assert rules(violations) == ["webhook_id_reused"]


def test_an_unverified_webhook_is_a_violation(clean: History) -> None:
    forged = Delivery("msg_b", "job.failed", "job_b", verified=False)

    violations = check(replace(clean, deliveries=(*clean.deliveries, forged)))

    assert rules(violations) == ["webhook_unverified"]


def test_a_webhook_unlike_the_jobs_status_is_a_violation(clean: History) -> None:
    wrong = Delivery("msg_b2", "job.succeeded", "job_b", verified=True)

    violations = check(replace(clean, deliveries=(*clean.deliveries, wrong)))

    assert rules(violations) == ["webhook_status_mismatch"]


# --- videos -----------------------------------------------------------------------------


def test_a_missing_video_file_is_a_violation(clean: History) -> None:
    path = clean.videos["job_r"].path
    path.unlink()
    videos = scan_videos(path.parent, ["job_a", "job_r"])

    violations = check(replace(clean, videos=videos))

    assert rules(violations) == ["video_missing"]
    assert violations[0].subject == "job_r"


def test_a_corrupted_video_file_is_a_violation(clean: History) -> None:
    path = clean.videos["job_a"].path
    path.write_bytes(b"video a, truncated")
    videos = scan_videos(path.parent, ["job_a", "job_r"])

    violations = check(replace(clean, videos=videos))

    assert rules(violations) == ["video_checksum"]
    assert violations[0].subject == "job_a"


def test_a_failed_checker_prints_its_violations(clean: History) -> None:
    videos = {**clean.videos, "job_a": VideoFile(Path("/nowhere/job_a.mp4"), exists=False)}
    broken = replace(clean, videos=videos)

    table = format_table(broken, check(broken))

    assert "FAIL: 1 violation(s)" in table
    assert "video_missing [job_a]" in table


# --- loading from PostgreSQL ------------------------------------------------------------


@pytest.fixture(scope="module")
def chaos_database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, migrated database of this module's own: the loader reads committed rows,
    which the rolled-back transactions of the shared database fixtures never hold."""
    workerinput = getattr(request.config, "workerinput", None)
    worker = str(workerinput["workerid"]) if workerinput else "gw0"
    name = f"reelyard_test_{run_tag()}_{worker}_chaos"
    url = create_database(name)
    try:
        upgrade(url)
        yield url
    finally:
        drop_database(name)


def _request(prompt: str, webhook_url: str | None = "http://127.0.0.1:9/hook") -> dict[str, Any]:
    return {
        "images": ["https://photos.example.com/a.jpg"],
        "prompt": prompt,
        "options": {"aspect_ratio": "16:9"},
        "metadata": {},
        "webhook_url": webhook_url,
    }


def test_load_history_reads_jobs_and_events_from_postgresql(
    chaos_database_url: str, tmp_path: Path
) -> None:
    engine = make_engine(chaos_database_url, pool_size=1)
    try:
        with Session(engine) as session:
            tenant = create_tenant(session, "chaos")
            done, running = (
                job["id"]
                for job in queue_jobs(session, tenant.id, [_request(FIRST), _request(SECOND)])
            )
            add_event(session, done, EventType.STAGE, stage=Stage.EDIT)
            add_event(
                session,
                done,
                EventType.MESSAGE,
                stage=Stage.EDIT,
                message="Sent the instruction to the video editor.",
                data={"instruction": FIRST},
            )
            sha = write_video(tmp_path / "videos", done, b"the video")
            session.execute(
                update(Job)
                .where(Job.id == done)
                .values(edits_sent=1, render_attempt=1, render_id=f"render_{done}_1")
            )
            assert finish_job(
                session,
                done,
                JobStatus.SUCCEEDED,
                values={"video_url": f"http://api/v1/jobs/{done}/video", "video_sha256": sha},
                message="The video is ready.",
            )
            add_event(session, running, EventType.STAGE, stage=Stage.UPLOAD)
            session.commit()
    finally:
        engine.dispose()
    ledger = {
        "sessions": {
            "sess_1": {
                "messages": [{"text": FIRST, "kind": "generate", "credits": 100, "repeat": False}],
                "credits_charged": 100,
                "uploads": {"h1": 1},
            }
        },
        "renders": {f"render_{done}_1": {"submissions": 1, "status": "completed"}},
        "tokens": {CLIENT: 1},
    }
    log = tmp_path / "receiver.jsonl"
    log.write_text(
        json.dumps(
            {"webhook_id": "msg_1", "type": "job.succeeded", "job_id": done, "verified": True}
        )
        + "\n",
        encoding="utf-8",
    )
    submitted = Submitted(job_ids=(done, running, "job_never_stored"))

    history = load_history(chaos_database_url, ledger, log, tmp_path / "videos", submitted)

    assert set(history.jobs) == {done, running}
    finished = history.jobs[done]
    assert finished.status is JobStatus.SUCCEEDED
    assert finished.video_sha256 == sha
    assert finished.edits_sent == 1
    assert finished.render_attempt == 1
    assert [e.type for e in finished.events] == [
        EventType.CREATED,
        EventType.STAGE,
        EventType.MESSAGE,
        EventType.SUCCEEDED,
    ]
    assert finished.instructions_sent == [FIRST]
    assert history.jobs[running].status is JobStatus.QUEUED
    assert history.videos[done].exists
    assert history.ledger.sessions["sess_1"].credits_charged == 100
    assert history.deliveries == (Delivery("msg_1", "job.succeeded", done, verified=True),)
    violations = check(history)
    assert sorted((v.rule, v.subject) for v in violations) == [
        ("job_lost", "job_never_stored"),
        ("job_not_terminal", running),
    ]
