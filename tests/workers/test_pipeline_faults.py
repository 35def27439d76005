"""The pipeline against every studio fault: each job ends in the right state, and the
studio's ledger shows that nothing was sent or rendered twice and that one token
served the whole run (plus one per injected expiry).

Faults are set on the studio (``POST /_studio/faults``) either from the start or
armed just before a given call goes out (:func:`arm`, an httpx request hook), so a
test can strike exactly the call it is about.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from models.jobs import EventType, Job, JobStatus, Stage, finish_job
from models.upstream import UpstreamCredentials
from nemo import Draft, NemoConfig, Secret, Token
from nemo.errors import ApiError
from tests.workers.pipeline_fixtures import (
    deps,
    drive,
    events,
    load,
    photos,
    pipeline_studio,
    studio,
    submit,
    with_config,
)
from workers import leases
from workers import upstream as upstream_module
from workers.decisions import (
    MESSAGES,
    ErrorCode,
    JobOptions,
    compose_instruction,
    render_id,
)
from workers.pipeline import Deps, Queue, queue_for, run_stage
from workers.stages import HANDLERS
from workers.upstream import Upstream, current_token

__all__ = ["deps", "photos", "pipeline_studio", "studio"]

#: renders copy one premade clip: the faults are about orchestration, not ffmpeg
STUDIO_ENV = {"STUDIO_RENDER_MODE": "none", "STUDIO_FREE_CREDITS": "1000"}

DEAD = "dead-worker"
RETRY_WAIT = re.compile(r"retrying in ([0-9.]+) s")


# helpers


def step_to(deps: Deps, job_id: str, stage: Stage, *, timeout_s: float = 30.0) -> Job:
    """Run the job one stage at a time until ``stage`` is due (and not yet run)."""
    stepping = with_config(deps, continue_stages=False)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = load(deps, job_id)
        assert not job.status.terminal, (job.stage, job.error_code, job.error_message)
        wait = (job.next_run_at - deps.clock()).total_seconds() if job.next_run_at else 0.0
        if job.stage is stage and wait <= 0:
            return job
        if wait > 0:
            time.sleep(min(wait, 0.5))
            continue
        run_stage(stepping, job_id, queue=queue_for(job.stage), handlers=HANDLERS)
    raise AssertionError(f"job {job_id} did not reach {stage} within {timeout_s} s")


def arm(deps: Deps, studio, path: str, **faults: Any) -> Callable[[], bool]:
    """Set ``faults`` on the studio just before the next request whose path contains
    ``path`` goes out; a function that tells whether it has struck yet."""
    armed = {"done": False}

    def hook(request: httpx.Request) -> None:
        if not armed["done"] and path in request.url.path:
            armed["done"] = True
            studio.faults(**faults)

    deps.upstream.http.event_hooks["request"].append(hook)
    return lambda: armed["done"]


def record_calls(deps: Deps) -> list[str]:
    """The paths of the requests the pipeline makes from now on."""
    calls: list[str] = []
    deps.upstream.http.event_hooks["request"].append(lambda r: calls.append(r.url.path))
    return calls


def die_holding(deps: Deps, job_id: str, *, lease_s: float = 0.3, **values: Any) -> None:
    """A worker claims the job's due stage, checkpoints ``values``, and dies: its lease
    runs out ``lease_s`` later."""
    now = deps.clock()
    with deps.sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert leases.claim(session, job_id, {job.stage}, owner=DEAD, lease_s=lease_s, now=now)
        if values:
            session.execute(update(Job).where(Job.id == job_id).values(**values))
        session.commit()


def messages(ledger: dict[str, Any]) -> dict[str, list[str]]:
    """The messages each session received (sessions that received none left out)."""
    return {
        sid: [m["text"] for m in s["messages"]]
        for sid, s in ledger["sessions"].items()
        if s["messages"]
    }


def assert_nothing_twice(ledger: dict[str, Any], *, tokens: int | None = 1) -> None:
    """No message sent twice to a session, no render id submitted twice, no file
    uploaded twice to a session, and ``tokens`` tokens for the one client id (None:
    the caller checks the tokens)."""
    for session_id, session in ledger["sessions"].items():
        texts = [m["text"] for m in session["messages"]]
        assert len(texts) == len(set(texts)), (session_id, texts)
        assert all(count == 1 for count in session["uploads"].values()), session
    for rid, render in ledger["renders"].items():
        assert render["submissions"] == 1, (rid, render)
    if tokens is not None:
        assert list(ledger["tokens"].values()) == [tokens], ledger["tokens"]


def of_type(deps: Deps, job_id: str, type_: EventType | None = None) -> list[str]:
    """The messages of the job's events (of one type)."""
    return [e.message or "" for e in events(deps, job_id) if type_ is None or e.type is type_]


def succeeded(job: Job) -> bool:
    return job.status is JobStatus.SUCCEEDED


# 429 bursts


def test_a_429_burst_is_waited_out_for_its_retry_after_scaled(db_session, deps, photos, studio):
    studio.faults(rate_limit={"count": 3}, retry_after_s=30)
    job_id = submit(db_session, photos.urls)
    job = drive(deps, job_id)
    assert succeeded(job), (job.error_code, job.error_message)
    retries = of_type(deps, job_id, EventType.RETRY)
    assert len(retries) == 3
    waits = [float(found[1]) for found in map(RETRY_WAIT.search, retries) if found]
    assert len(waits) == 3, retries
    # Retry-After: 30 s (above the backoff's ceiling at these attempts), jittered up to
    # half as long again, times the pipeline's time scale 0.01
    assert all(0.3 <= wait <= 0.45 for wait in waits), retries
    assert_nothing_twice(studio.ledger())


def test_a_429_refusing_the_message_is_retried_and_the_message_arrives_once(
    db_session, deps, photos, studio
):
    struck = arm(deps, studio, "/run_sse", rate_limit={"count": 2}, retry_after_s=1)
    job_id = submit(db_session, photos.urls)
    job = drive(deps, job_id)
    assert struck()
    assert succeeded(job), (job.error_code, job.error_message)
    ledger = studio.ledger()
    assert [len(texts) for texts in messages(ledger).values()] == [1]
    assert len(of_type(deps, job_id, EventType.RETRY)) == 2
    assert job.edits_sent == 1
    assert_nothing_twice(ledger)


# token expiry


def test_a_token_that_expires_is_replaced_once(db_session, deps, photos, studio):
    studio.faults(token_expiry={"count": 1})
    job_id = submit(db_session, photos.urls)
    job = drive(deps, job_id)
    assert succeeded(job), (job.error_code, job.error_message)
    assert job.token_repairs == 1
    assert len(of_type(deps, job_id, EventType.REPAIR)) == 1
    assert_nothing_twice(studio.ledger(), tokens=2)


def test_tokens_that_die_after_n_calls_cost_one_token_per_expiry(db_session, deps, photos, studio):
    studio.faults(token_expiry_after=8)
    job_id = submit(db_session, photos.urls)
    job = drive(deps, job_id)
    assert succeeded(job), (job.error_code, job.error_message)
    assert job.token_repairs >= 1
    assert job.session_repairs == 0  # a new token reaches the same session
    assert_nothing_twice(studio.ledger(), tokens=1 + job.token_repairs)


def test_a_token_refused_on_the_message_is_replaced_and_the_message_sent_once(
    db_session, deps, photos, studio
):
    struck = arm(deps, studio, "/run_sse", token_expiry={"count": 1})
    job_id = submit(db_session, photos.urls)
    job = drive(deps, job_id)
    assert struck()
    assert succeeded(job), (job.error_code, job.error_message)
    assert (job.token_repairs, job.session_repairs) == (1, 0)
    ledger = studio.ledger()
    assert [len(texts) for texts in messages(ledger).values()] == [1]
    assert_nothing_twice(ledger, tokens=2)


def test_a_token_another_worker_already_replaced_is_no_repair(db_session, deps, photos, studio):
    # this process still holds the token it read a moment ago; another has replaced it
    current_token(deps.sessions, deps.upstream, owner=DEAD)
    deps.upstream.remember(Token(Secret("nmv_usr_replaced_a_moment_ago")))
    job_id = submit(db_session, photos.urls)
    job = drive(deps, job_id)
    assert succeeded(job), (job.error_code, job.error_message)
    assert job.token_repairs == 0
    retries = of_type(deps, job_id, EventType.RETRY)
    assert retries == ["The video service's token had just been replaced; retrying."]
    assert_nothing_twice(studio.ledger(), tokens=1)


def test_a_process_reads_the_stored_token_again_after_a_moment(deps, studio, monkeypatch):
    first = current_token(deps.sessions, deps.upstream, owner=DEAD)
    deps.upstream.remember(Token(Secret("nmv_usr_held_in_memory")))
    held = current_token(deps.sessions, deps.upstream, owner=DEAD)
    assert held.value.reveal() == "nmv_usr_held_in_memory"
    later = time.monotonic() + upstream_module.TOKEN_REUSE_S
    monkeypatch.setattr(upstream_module.time, "monotonic", lambda: later)
    again = current_token(deps.sessions, deps.upstream, owner=DEAD)
    assert again.value.reveal() == first.value.reveal()


def _client_id(deps: Deps) -> str:
    with deps.sessions() as session:
        row = session.get(UpstreamCredentials, 1)
        assert row is not None
        assert row.client_id is not None
        return row.client_id


def test_a_token_lost_before_it_was_stored_is_replaced_under_a_new_client_id(
    db_session, deps, photos, studio, caplog
):
    """Regression (chaos run, seed 2131928724): a pipeline worker killed between
    receiving a new token and storing it left its client id holding a live token no one
    had; every later refresh was refused for the token's week (429) and 58 jobs waited
    at authorize."""
    first = current_token(deps.sessions, deps.upstream, owner=DEAD)
    lost_client = _client_id(deps)
    studio.faults(token_expiry={"count": 1})
    with contextlib.suppress(ApiError):
        deps.upstream.client(first).credits()  # 1001: the studio kills it
    upstream_module.invalidate(deps.sessions, deps.upstream, first)
    # a refresher receives the next token, and dies before it stores it
    deps.upstream.client(None).anonymous_token(lost_client)
    deps.upstream.remember(None)

    job = drive(deps, submit(db_session, photos.urls))

    assert succeeded(job), (job.error_code, job.error_message)
    fresh_client = _client_id(deps)
    assert fresh_client != lost_client
    assert studio.ledger()["tokens"] == {lost_client: 2, fresh_client: 1}
    assert "never stored" in caplog.text


def test_a_short_refusal_of_a_new_token_keeps_the_client_id(db_session, deps, photos, studio):
    studio.faults(rate_limit={"count": 1}, retry_after_s=0.05)
    job = drive(deps, submit(db_session, photos.urls))
    assert succeeded(job), (job.error_code, job.error_message)
    assert len(studio.ledger()["tokens"]) == 1


def test_a_token_received_while_postgres_refuses_is_stored_once_it_answers(
    deps, studio, monkeypatch
):
    real_update = upstream_module._update
    refusals = []

    def refusing(sessions, *where, **values):
        if "token" in values and len(refusals) < 2:
            refusals.append(values["token"])
            raise OperationalError("UPDATE", {}, Exception("connection refused"))
        return real_update(sessions, *where, **values)

    monkeypatch.setattr(upstream_module, "_update", refusing)
    monkeypatch.setattr(upstream_module, "STORE_RETRY_S", 0.01)
    token = current_token(deps.sessions, deps.upstream, owner=DEAD)
    assert len(refusals) == 2
    with deps.sessions() as session:
        row = session.get(UpstreamCredentials, 1)
        assert row is not None
        assert row.token == token.value.reveal()
    assert list(studio.ledger()["tokens"].values()) == [1]


def test_a_refresher_whose_claim_was_taken_over_still_stores_its_token(deps, studio, monkeypatch):
    """A refresh slower than the claim (30 s): the claim passed to another worker,
    which is refused a token (the client id holds ours); ours must not be dropped."""
    real_fetch = upstream_module._fetch

    def slow(sessions, upstream, owner, client_id):
        fetched = real_fetch(sessions, upstream, owner, client_id)
        with sessions() as session:
            session.execute(update(UpstreamCredentials).values(refreshing_owner="another-worker"))
            session.commit()
        return fetched

    monkeypatch.setattr(upstream_module, "_fetch", slow)
    token = current_token(deps.sessions, deps.upstream, owner=DEAD)
    with deps.sessions() as session:
        row = session.get(UpstreamCredentials, 1)
        assert row is not None
        assert row.token == token.value.reveal()


def test_a_refused_fixed_token_fails_the_job_at_once_and_mints_none(
    db_session, deps, photos, studio
):
    fixed = NemoConfig(base_url=studio.url, token=Secret("nmv_usr_revoked_long_ago"))
    upstream = Upstream.connect(fixed)
    try:
        job_id = submit(db_session, photos.urls)
        job = drive(replace(deps, upstream=upstream), job_id)
    finally:
        upstream.close()
    assert job.status is JobStatus.FAILED
    assert job.error_code == ErrorCode.UPSTREAM_AUTH
    assert of_type(deps, job_id, EventType.RETRY) == []
    assert studio.ledger()["tokens"] == {}


# session loss


def test_a_session_lost_before_the_edit_is_replaced_and_the_photos_uploaded_again(
    db_session, deps, photos, studio
):
    studio.faults(session_loss={"count": 1})  # strikes the upload, the first call naming it
    job_id = submit(db_session, photos.urls)
    job = drive(deps, job_id)
    assert succeeded(job), (job.error_code, job.error_message)
    assert job.session_repairs == 1
    assert any("lost the session" in m for m in of_type(deps, job_id, EventType.REPAIR))
    ledger = studio.ledger()
    sent = messages(ledger)
    assert sorted(len(texts) for texts in sent.values()) == [1]
    assert list(sent) == [job.upstream_session_id]
    assert len(ledger["sessions"][job.upstream_session_id]["uploads"]) == len(photos.urls)
    assert_nothing_twice(ledger)


def test_a_session_lost_after_the_edit_gets_the_edit_again_only_in_the_new_session(
    db_session, deps, photos, studio
):
    job_id = submit(db_session, photos.urls)
    first = step_to(deps, job_id, Stage.VERIFY).upstream_session_id
    studio.faults(session_loss={"count": 1})  # verify's read of the state
    job = drive(deps, job_id)
    assert succeeded(job), (job.error_code, job.error_message)
    assert job.session_repairs == 1
    assert job.upstream_session_id != first
    sent = messages(studio.ledger())
    assert set(sent) == {first, job.upstream_session_id}
    assert len(sent[first]) == 1
    assert len(sent[job.upstream_session_id]) == 1
    assert len(of_type(deps, job_id, EventType.REPAIR)) == 1
    assert_nothing_twice(studio.ledger())


# silent close and stream cut


def test_a_silent_close_is_read_from_the_state_and_the_job_succeeds(
    db_session, deps, photos, studio
):
    studio.faults(silent_close={"count": 1})
    job_id = submit(db_session, photos.urls, options={"aspect_ratio": "9:16"})
    job = drive(deps, job_id)
    assert succeeded(job), (job.error_code, job.error_message)
    assert job.timeline is not None
    assert job.timeline["summary"]
    assert job.draft_after
    said = of_type(deps, job_id, EventType.MESSAGE)
    assert said == ["Sent the instruction to the video editor."]  # the editor said nothing
    assert sum("The editor finished." in m for m in of_type(deps, job_id)) == 1
    assert_nothing_twice(studio.ledger())


def test_a_cut_stream_is_never_resent_the_state_shows_the_edit(db_session, deps, photos, studio):
    studio.faults(stream_cut={"count": 1}, silent_close=0)
    job_id = submit(db_session, photos.urls)
    job = drive(deps, job_id)
    assert succeeded(job), (job.error_code, job.error_message)
    assert any("not sent again" in m for m in of_type(deps, job_id, EventType.RETRY))
    assert any("went through" in m for m in of_type(deps, job_id, EventType.MESSAGE))
    assert job.edits_sent == 1
    ledger = studio.ledger()
    assert [len(texts) for texts in messages(ledger).values()] == [1]
    assert_nothing_twice(ledger)


# render failures


def test_a_failed_render_is_tried_once_more_under_a_new_id(db_session, deps, photos, studio):
    studio.faults(render_failure={"count": 1})
    job_id = submit(db_session, photos.urls)
    job = drive(deps, job_id)
    assert succeeded(job), (job.error_code, job.error_message)
    renders = studio.ledger()["renders"]
    assert renders == {
        render_id(job_id, 1): {"submissions": 1, "status": "failed"},
        render_id(job_id, 2): {"submissions": 1, "status": "completed"},
    }
    assert job.render_id == render_id(job_id, 2)
    assert_nothing_twice(studio.ledger())


def test_a_render_that_fails_twice_fails_the_job(db_session, deps, photos, studio):
    studio.faults(render_failure={"count": 2})
    job_id = submit(db_session, photos.urls)
    job = drive(deps, job_id)
    assert job.status is JobStatus.FAILED
    assert job.error_code == ErrorCode.RENDER_FAILED
    assert job.error_message.startswith(MESSAGES[ErrorCode.RENDER_FAILED])
    renders = studio.ledger()["renders"]
    assert sorted(renders) == [render_id(job_id, 1), render_id(job_id, 2)]
    assert all(r["status"] == "failed" for r in renders.values())
    assert_nothing_twice(studio.ledger())


def test_a_stuck_render_is_canceled_after_its_timeout_and_started_again(
    db_session, deps, photos, studio
):
    studio.faults(render_stuck={"count": 1})
    job_id = submit(db_session, photos.urls)
    job = drive(with_config(deps, render_timeout_s=1.0), job_id)
    assert succeeded(job), (job.error_code, job.error_message)
    renders = studio.ledger()["renders"]
    assert renders == {
        render_id(job_id, 1): {"submissions": 1, "status": "failed"},  # canceled
        render_id(job_id, 2): {"submissions": 1, "status": "completed"},
    }
    assert any("no result after 1 s" in m for m in of_type(deps, job_id, EventType.RETRY))
    assert_nothing_twice(studio.ledger())


def test_a_render_the_service_no_longer_knows_is_rendered_again_in_a_new_session(
    db_session, deps, photos, studio
):
    """After the service moved to a new client id (a lost token, workers/upstream.py),
    the old user's render answers 4004 and its session 1002: the job renders again
    after a session repair, instead of failing ``invalid_input``."""
    job_id = submit(db_session, photos.urls)
    step_to(deps, job_id, Stage.POLL_RENDER)
    fresh = deps.upstream.client(None).anonymous_token("a-new-client-id")
    with deps.sessions() as session:
        session.execute(
            update(UpstreamCredentials).values(
                token=fresh.value.reveal(), user_id=fresh.user_id, client_id="a-new-client-id"
            )
        )
        session.commit()
    deps.upstream.remember(None)
    job = drive(deps, job_id)
    assert succeeded(job), (job.error_code, job.error_message)
    assert job.session_repairs == 1
    # the old user's render; one refused (its session was gone: the repair); the new one
    renders = studio.ledger()["renders"]
    assert [entry["status"] for entry in renders.values()] == ["completed", None, "completed"]
    assert job.render_id == render_id(job_id, job.render_attempt)
    retries = of_type(deps, job_id, EventType.RETRY)
    assert any("the video service no longer knows the render" in retry for retry in retries)
    ledger = studio.ledger()
    assert sorted(ledger["tokens"].values()) == [1, 1]  # the old client id's, the new one's
    assert_nothing_twice(ledger, tokens=None)


def test_a_render_status_at_the_top_level_is_read_as_well(db_session, deps, photos, studio):
    studio.faults(status_shape="top")  # status and output.url outside data
    job_id = submit(db_session, photos.urls)
    job = drive(deps, job_id)
    assert succeeded(job), (job.error_code, job.error_message)
    assert job.video_sha256
    assert_nothing_twice(studio.ledger())


# 5xx


def test_5xx_answers_are_retried(db_session, deps, photos, studio):
    studio.faults(server_error={"count": 3})
    job_id = submit(db_session, photos.urls)
    job = drive(deps, job_id)
    assert succeeded(job), (job.error_code, job.error_message)
    assert len(of_type(deps, job_id, EventType.RETRY)) == 3
    assert_nothing_twice(studio.ledger())


def test_a_5xx_on_the_export_is_retried_under_the_same_render_id(db_session, deps, photos, studio):
    struck = arm(deps, studio, "/api/render/proxy/lambda", server_error={"count": 1})
    job_id = submit(db_session, photos.urls)
    job = drive(deps, job_id)
    assert struck()
    assert succeeded(job), (job.error_code, job.error_message)
    assert list(studio.ledger()["renders"]) == [render_id(job_id, 1)]
    assert_nothing_twice(studio.ledger())


def test_a_5xx_answering_the_message_is_an_unknown_outcome_never_resent(
    db_session, deps, photos, studio
):
    # the 503 comes before the studio records the message, but a client cannot know that
    struck = arm(deps, studio, "/run_sse", server_error={"count": 1})
    job_id = submit(db_session, photos.urls)
    job = drive(deps, job_id)
    assert struck()
    assert job.status is JobStatus.FAILED
    assert job.error_code == ErrorCode.EDIT_OUTCOME_UNKNOWN
    assert job.edit_reads == 5
    ledger = studio.ledger()
    assert messages(ledger) == {}
    assert_nothing_twice(ledger)


# out of credits


def test_out_of_credits_fails_the_job_at_once_with_a_message_to_show(
    db_session, deps, photos, studio
):
    studio.faults(out_of_credits={"count": 1})
    job_id = submit(db_session, photos.urls)
    job = drive(deps, job_id)
    assert job.status is JobStatus.FAILED
    assert job.error_code == ErrorCode.OUT_OF_CREDITS
    assert job.error_message.startswith(MESSAGES[ErrorCode.OUT_OF_CREDITS])
    assert "nmv_" not in job.error_message
    assert of_type(deps, job_id, EventType.RETRY) == []
    ledger = studio.ledger()
    assert messages(ledger) == {}
    assert ledger["renders"] == {}
    assert_nothing_twice(ledger)


# a worker that dies


def test_a_worker_that_dies_holding_a_stage_delays_the_job_and_nothing_is_done_twice(
    db_session, deps, photos, studio
):
    job_id = submit(db_session, photos.urls)
    step_to(deps, job_id, Stage.EXPORT)
    die_holding(deps, job_id)
    assert run_stage(deps, job_id, queue=Queue.PIPELINE, handlers=HANDLERS) is None  # held
    job = drive(deps, job_id)
    assert succeeded(job), (job.error_code, job.error_message)
    assert_nothing_twice(studio.ledger())


def test_a_worker_that_died_after_uploading_is_resumed_without_uploading_again(
    db_session, deps, photos, studio
):
    job_id = submit(db_session, photos.urls)
    job = step_to(deps, job_id, Stage.UPLOAD)
    die_holding(deps, job_id, uploaded_media=[])  # the checkpoint before the upload
    token = _stored_token(deps)
    deps.upstream.client(token).upload_urls(job.upstream_session_id, photos.urls)  # its upload
    job = drive(deps, job_id)
    assert succeeded(job), (job.error_code, job.error_message)
    uploads = studio.ledger()["sessions"][job.upstream_session_id]["uploads"]
    assert len(uploads) == len(photos.urls)
    assert_nothing_twice(studio.ledger())


def test_a_worker_that_died_with_the_stream_open_is_resumed_by_reading_the_state(
    db_session, deps, photos, studio
):
    job_id = submit(db_session, photos.urls)
    job = step_to(deps, job_id, Stage.EDIT)
    instruction = compose_instruction(job.prompt, JobOptions.from_json(job.options))
    die_holding(deps, job_id, instruction=instruction, edit_sent_at=deps.clock(), edits_sent=1)
    # the dead worker's message went out; its stream dies with it after the first event
    chat = deps.upstream.client(_stored_token(deps)).chat(job.upstream_session_id, instruction)
    with contextlib.closing(chat):
        next(chat)
    job = drive(deps, job_id)
    assert succeeded(job), (job.error_code, job.error_message)
    assert job.edits_sent == 1
    assert messages(studio.ledger()) == {job.upstream_session_id: [instruction]}
    assert_nothing_twice(studio.ledger())


def test_a_worker_that_died_after_starting_the_render_is_resumed_on_that_render(
    db_session, deps, photos, studio
):
    job_id = submit(db_session, photos.urls)
    job = step_to(deps, job_id, Stage.EXPORT)
    rid = render_id(job_id, 1)
    die_holding(deps, job_id, render_attempt=1, render_id=rid)
    token = _stored_token(deps)
    deps.upstream.client(token).start_render(
        rid, job.upstream_session_id, Draft(job.draft_after or {})
    )
    job = drive(deps, job_id)
    assert succeeded(job), (job.error_code, job.error_message)
    assert studio.ledger()["renders"] == {rid: {"submissions": 1, "status": "completed"}}
    assert_nothing_twice(studio.ledger())


def test_an_edit_marked_sent_by_a_dead_worker_is_never_sent_and_given_up(
    db_session, deps, photos, studio
):
    job_id = submit(db_session, photos.urls)
    step_to(deps, job_id, Stage.EDIT)
    die_holding(deps, job_id, edit_sent_at=deps.clock(), edits_sent=1, instruction="x")
    job = drive(deps, job_id)
    assert job.status is JobStatus.FAILED
    assert job.error_code == ErrorCode.EDIT_OUTCOME_UNKNOWN
    assert job.edit_reads == 5
    ledger = studio.ledger()
    assert messages(ledger) == {}
    assert_nothing_twice(ledger)


# duplicates and cancel


def test_a_duplicate_export_message_does_nothing(db_session, deps, photos, studio):
    job_id = submit(db_session, photos.urls)
    step_to(deps, job_id, Stage.EXPORT)
    stepping = with_config(deps, continue_stages=False)
    first = run_stage(stepping, job_id, queue=Queue.PIPELINE, handlers=HANDLERS)
    assert first is not None
    assert first.stage is Stage.POLL_RENDER
    before = load(deps, job_id)
    assert run_stage(stepping, job_id, queue=Queue.PIPELINE, handlers=HANDLERS) is None
    after = load(deps, job_id)
    assert (after.stage, after.total_attempts, after.render_id) == (
        before.stage,
        before.total_attempts,
        before.render_id,
    )
    job = drive(deps, job_id)
    assert succeeded(job), (job.error_code, job.error_message)
    assert list(studio.ledger()["renders"]) == [render_id(job_id, 1)]
    assert_nothing_twice(studio.ledger())


def test_a_duplicate_edit_message_does_not_send_the_instruction_again(
    db_session, deps, photos, studio
):
    job_id = submit(db_session, photos.urls)
    step_to(deps, job_id, Stage.EDIT)
    run_stage(deps, job_id, queue=Queue.EDIT, handlers=HANDLERS)
    assert load(deps, job_id).stage is not Stage.EDIT
    calls = record_calls(deps)
    assert run_stage(deps, job_id, queue=Queue.EDIT, handlers=HANDLERS) is None
    assert calls == []
    job = drive(deps, job_id)
    assert succeeded(job), (job.error_code, job.error_message)
    assert [len(texts) for texts in messages(studio.ledger()).values()] == [1]
    assert_nothing_twice(studio.ledger())


def test_a_job_canceled_between_stages_is_left_alone(db_session, deps, photos, studio):
    job_id = submit(db_session, photos.urls)
    step_to(deps, job_id, Stage.EDIT)
    with deps.sessions() as session:
        assert finish_job(session, job_id, JobStatus.CANCELED, message="Canceled.")
        session.commit()
    before = studio.ledger()
    calls = record_calls(deps)
    for queue in Queue:
        assert run_stage(deps, job_id, queue=queue, handlers=HANDLERS) is None
    job = load(deps, job_id)
    assert job.status is JobStatus.CANCELED
    assert job.edit_sent_at is None
    assert calls == []
    assert studio.ledger() == before
    assert messages(before) == {}


def test_a_job_canceled_while_its_edit_streams_stops_and_nothing_follows(
    db_session, deps, photos, studio
):
    studio.faults(silent_close=0)  # the editor speaks; its words are written with the result
    job_id = submit(db_session, photos.urls)
    step_to(deps, job_id, Stage.EDIT)

    def cancel(request: httpx.Request) -> None:
        if request.url.path == "/run_sse":
            with deps.sessions() as session:
                finish_job(session, job_id, JobStatus.CANCELED, message="Canceled.")
                session.commit()

    deps.upstream.http.event_hooks["request"].append(cancel)
    calls = record_calls(deps)
    assert run_stage(deps, job_id, queue=Queue.EDIT, handlers=HANDLERS) is None
    job = load(deps, job_id)
    assert job.status is JobStatus.CANCELED
    assert job.draft_after is None  # the turn's result was never recorded
    after_stream = calls[calls.index("/run_sse") + 1 :]
    assert all(path.startswith("/api/state/") for path in after_stream), after_stream
    assert [event.type for event in events(deps, job_id)][-1] == EventType.CANCELED
    assert studio.ledger()["renders"] == {}
    assert_nothing_twice(studio.ledger())


def _stored_token(deps: Deps) -> Token:
    return current_token(deps.sessions, deps.upstream, owner=DEAD)
