"""The ledger (GET /_studio/ledger) records what the studio was asked, so that tests can
prove exactly-once; POST /_studio/reset forgets everything."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

import pytest

from tests.studio.api import samples
from tests.studio.api.fileserver import serve_files
from tests.studio.api.helpers import GENERATE, User, chat_body

pytestmark = pytest.mark.slow
STUDIO_ENV = {"STUDIO_RENDER_MODE": "none", "STUDIO_SILENT_CLOSE_RATIO": "0"}


def test_an_empty_ledger(studio):
    assert studio.ledger() == {"sessions": {}, "renders": {}, "tokens": {}, "tokens_revoked": {}}


def test_messages_are_recorded_per_session_in_order_with_time_kind_and_cost(studio, client):
    user = User.anonymous(client)
    session_id = user.session()
    before = datetime.now(UTC).replace(microsecond=0)
    user.chat(session_id, "a 4-second video")
    user.chat(session_id, "what is in my timeline?")
    entry = studio.ledger()["sessions"][session_id]
    first, second = entry["messages"]
    assert (first["text"], first["kind"], first["credits"], first["repeat"]) == (
        "a 4-second video", "generate", 100, False
    )  # fmt: skip
    assert (second["kind"], second["credits"], second["repeat"]) == ("answer", 0, False)
    at = datetime.fromisoformat(first["at"].replace("Z", "+00:00"))
    assert before <= at <= datetime.now(UTC)
    assert entry["credits_charged"] == 100


def test_a_message_refused_before_any_work_is_not_recorded(studio, user):
    session_id = user.session()
    user.chat(session_id, GENERATE)
    user.post("/run_sse", json=chat_body(session_id, "make it vertical"))  # 2001
    messages = studio.ledger()["sessions"][session_id]["messages"]
    assert [m["text"] for m in messages] == [GENERATE]


def test_uploads_are_counted_per_session_by_content_hash(studio, user):
    session_id = user.session(empty=True)
    red, blue = samples.image_bytes(color=(255, 0, 0)), samples.image_bytes(color=(0, 0, 255))
    user.upload(session_id, files=[("files", ("a.png", red)), ("files", ("b.png", blue))])
    user.upload(session_id, files=[("files", ("again.png", red))])  # same bytes, new name
    with serve_files(**{"red.png": red}) as files:
        user.upload(session_id, json={"urls": [files.url("/files/red.png")]})
    other = user.session(empty=True)
    user.upload(other, files=[("files", ("a.png", red))])
    sessions = studio.ledger()["sessions"]
    assert sessions[session_id]["uploads"] == {
        hashlib.sha256(red).hexdigest(): 3,
        hashlib.sha256(blue).hexdigest(): 1,
    }
    assert sessions[other]["uploads"] == {hashlib.sha256(red).hexdigest(): 1}


def test_a_refused_upload_is_not_counted(studio, user):
    session_id = user.session(empty=True)
    user.upload(session_id, files=[("files", ("a.jpg", samples.TEXT))])
    assert studio.ledger()["sessions"].get(session_id, {}).get("uploads", {}) == {}


def test_tokens_are_counted_per_client_id(studio, client):
    User.anonymous(client, "one")
    User.anonymous(client, "two")
    client.post("/api/auth/anonymous-token", headers={"X-Client-Id": "one"})  # 429
    studio.faults(token_expiry={"count": 1})
    first = User.anonymous(client, "three")
    first.get("/api/credits/balance/simple")  # expires it
    User.anonymous(client, "three")
    assert studio.ledger()["tokens"] == {"one": 1, "two": 1, "three": 2}
    assert studio.ledger()["tokens_revoked"] == {"three": 1}  # the expiry, whose it was


def test_renders_count_every_submission_and_keep_the_final_status(studio, user):
    session_id = user.session()
    user.chat(session_id, "a 2-second video")
    draft = user.draft(session_id)
    render_id = f"render_{uuid.uuid4().hex}"
    assert user.start_render(session_id, draft, render_id).status_code == 200
    assert user.wait_render(render_id)["status"] == "completed"
    again = user.start_render(session_id, draft, render_id)
    assert again.status_code == 409
    assert again.json() == {
        "success": False,
        "error": f"render id {render_id} already exists",
        "code": 4009,
    }
    user.start_render(session_id, {"t": []}, "render_refused")
    renders = studio.ledger()["renders"]
    assert renders[render_id] == {"submissions": 2, "status": "completed"}
    assert renders["render_refused"] == {"submissions": 1, "status": None}


def test_credits_charged_add_up_per_session(studio, client):
    paid_session = {}
    for name in ("one", "two"):
        user = User.anonymous(client)
        paid_session[name] = user.session()
        user.chat(paid_session[name], "a 2-second video")
    sessions = studio.ledger()["sessions"]
    assert [sessions[s]["credits_charged"] for s in paid_session.values()] == [100, 100]


def test_reset_forgets_tokens_sessions_renders_and_faults(studio, user):
    session_id = user.session()
    user.chat(session_id, "a 2-second video")
    studio.faults(latency_ms=1, rate_limit={"p": 0.01})
    studio.reset()
    assert studio.ledger() == {"sessions": {}, "renders": {}, "tokens": {}, "tokens_revoked": {}}
    assert user.get("/api/credits/balance/simple").json()["code"] == 1001
    faults = studio.admin("GET", "faults")
    assert "latency_ms" not in faults
    assert faults["rate_limit"] == {"p": 0.0, "count": 0}
    # the same client id may have a token again
    assert User.anonymous(user.http, user.client_id).token != user.token


def test_reset_replays_the_same_random_draws(studio, client):
    runs = []
    for _ in range(2):
        studio.reset()
        user = User.anonymous(client)
        studio.faults(rate_limit=0.5)
        runs.append([user.get("/api/credits/balance/simple").status_code for _ in range(30)])
    assert runs[0] == runs[1]
    assert set(runs[0]) == {200, 429}
