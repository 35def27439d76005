"""Every fault of studio/faults.py, set at run time through /_studio/faults, does what it
says to the next eligible call, and nothing once it is spent."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest

from nemo import NemoClient, NemoConfig, RateLimited, ServerError, build_http_client
from tests.studio.api.helpers import GENERATE, User, chat_body

pytestmark = pytest.mark.slow
BALANCE = "/api/credits/balance/simple"
DRAFT = {"t": [{"tt": 0, "sg": [{"src": "photo0.png", "d": 1000}]}]}


def test_the_faults_in_force_can_be_read(studio):
    faults = studio.admin("GET", "faults")
    assert faults["rate_limit"] == {"p": 0.0, "count": 0}
    assert faults["silent_close"] == {"p": 0.3, "count": 0}
    assert faults["retry_after_s"] == 30.0
    assert faults["status_shape"] is None


def test_settings_merge_and_clear_turns_all_off(studio):
    studio.faults(rate_limit={"p": 0.5}, latency_ms=5)
    merged = studio.faults(session_loss={"count": 2})
    assert merged["rate_limit"]["p"] == 0.5
    assert merged["session_loss"]["count"] == 2
    assert merged["latency_ms"] == 5
    cleared = studio.faults(clear=True)
    assert cleared["rate_limit"]["p"] == 0
    assert "latency_ms" not in cleared


# faults of any Nemo call


def test_a_rate_limit_burst_answers_429_with_retry_after_then_passes(studio, user):
    studio.faults(rate_limit={"count": 3}, retry_after_s=7)
    for _ in range(3):
        response = user.get(BALANCE)
        assert response.status_code == 429
        assert response.json()["code"] == 429
        assert response.headers["Retry-After"] == "7"
    assert user.get(BALANCE).status_code == 200
    assert studio.admin("GET", "faults")["rate_limit"]["count"] == 0


def test_a_rate_limit_strikes_any_call_before_it_is_acted_on(studio, user, client):
    session_id = user.session()
    studio.faults(rate_limit={"count": 2})
    assert client.post("/api/auth/anonymous-token", headers={"X-Client-Id": "x"}).status_code == 429
    assert user.post("/run_sse", json=chat_body(session_id, GENERATE)).status_code == 429
    assert user.balance()["available"] == 100  # the refused turn cost nothing
    assert studio.ledger()["tokens"] == {user.client_id: 1}
    assert studio.ledger()["sessions"][session_id]["messages"] == []


def test_a_rate_limit_probability_strikes_some_calls(studio, user):
    studio.faults(rate_limit=0.5)
    statuses = [user.get(BALANCE).status_code for _ in range(60)]
    assert set(statuses) == {200, 429}
    assert 12 <= statuses.count(429) <= 48  # 30 expected; seeded, so the same every run


def test_the_client_reads_the_rate_limit_and_its_wait(studio):
    studio.faults(rate_limit={"count": 1}, retry_after_s=12)
    config = NemoConfig(base_url=studio.url)
    with build_http_client(config) as http, pytest.raises(RateLimited) as limited:
        NemoClient(http, config).anonymous_token(str(uuid.uuid4()))
    assert limited.value.retry_after == 12


def test_a_server_error_is_an_html_503(studio, user):
    studio.faults(server_error={"count": 1})
    response = user.get(BALANCE)
    assert response.status_code == 503
    assert response.headers["content-type"].startswith("text/html")
    assert "<html>" in response.text
    assert user.get(BALANCE).status_code == 200


def test_the_client_reads_an_html_503_as_a_server_error(studio):
    studio.faults(server_error={"count": 1})
    config = NemoConfig(base_url=studio.url)
    with build_http_client(config) as http, pytest.raises(ServerError):
        NemoClient(http, config).anonymous_token(str(uuid.uuid4()))


def test_latency_is_added_to_every_call_until_removed(studio, user):
    studio.faults(latency_ms=500)
    started = time.monotonic()
    user.get(BALANCE)
    assert time.monotonic() - started >= 0.5
    studio.faults(latency_ms=None)
    started = time.monotonic()
    user.get(BALANCE)
    assert time.monotonic() - started < 0.5


# tokens and sessions


def test_token_expiry_kills_the_token_and_a_new_one_may_be_had(studio, client, user):
    studio.faults(token_expiry={"count": 1})
    for _ in range(2):  # dead, and it stays dead
        response = user.get(BALANCE)
        assert (response.status_code, response.json()["code"]) == (401, 1001)
    fresh = User.anonymous(client, user.client_id)  # not 429: the old one is gone
    assert fresh.token != user.token
    assert fresh.get(BALANCE).status_code == 200
    assert studio.ledger()["tokens"] == {user.client_id: 2}


def test_a_new_token_for_the_same_client_id_is_the_same_user_and_keeps_its_work(
    studio, client, user
):
    session_id = user.session(empty=True)
    studio.faults(token_expiry={"count": 1})
    assert user.state_response(session_id).status_code == 401
    fresh = User.anonymous(client, user.client_id)
    assert fresh.user_id == user.user_id
    assert fresh.state_response(session_id).status_code == 200  # 1001: new token, retry
    assert User.anonymous(client).user_id != user.user_id  # another client id, another user


def test_token_expiry_after_n_calls(studio, user):
    studio.faults(token_expiry_after=3)
    assert [user.get(BALANCE).status_code for _ in range(5)] == [200, 200, 200, 401, 401]


def test_token_expiry_after_counts_each_token_on_its_own(studio, client, user):
    studio.faults(token_expiry_after=2)
    other = User.anonymous(client)
    assert [user.get(BALANCE).status_code for _ in range(2)] == [200, 200]
    assert [other.get(BALANCE).status_code for _ in range(3)] == [200, 200, 401]


def test_session_loss_forgets_the_session(studio, user):
    lost, kept = user.session(empty=True), user.session(empty=True)
    studio.faults(session_loss={"count": 1})
    for _ in range(2):
        response = user.state_response(lost)
        assert (response.status_code, response.json()["code"]) == (404, 1002)
    assert user.state_response(kept).status_code == 200


def test_session_loss_strikes_a_chat_before_it_is_charged(studio, user):
    session_id = user.session()
    studio.faults(session_loss={"count": 1})
    response = user.post("/run_sse", json=chat_body(session_id, GENERATE))
    assert response.json()["code"] == 1002
    assert user.balance()["available"] == 100


def test_out_of_credits_refuses_a_turn_with_credits_left(studio, user):
    session_id = user.session()
    studio.faults(out_of_credits={"count": 1})
    response = user.post("/run_sse", json=chat_body(session_id, GENERATE))
    assert (response.status_code, response.json()["code"]) == (402, 2001)
    assert user.balance() == {"available": 100, "frozen": 0, "total": 100}
    assert studio.ledger()["sessions"].get(session_id, {}).get("messages", []) == []
    assert user.chat(session_id, GENERATE).status == 200  # spent: the next turn runs


# renders


def _export(user, session_id):
    render_id = f"render_{uuid.uuid4().hex}"
    response = user.start_render(session_id, DRAFT, render_id)
    assert response.status_code == 200, response.text
    return render_id


def test_render_failure_ends_failed_with_a_reason(studio, user):
    session_id = user.session()
    studio.faults(render_failure={"count": 1})
    render_id = _export(user, session_id)
    view = user.wait_render(render_id)
    assert view["status"] == "failed"
    assert "render failed" in view["error"]
    assert "outputUrl" not in view
    assert studio.ledger()["renders"][render_id] == {"submissions": 1, "status": "failed"}
    download = user.get(f"/api/render/proxy/{render_id}/download")
    assert download.json()["code"] == 4009


def test_a_stuck_render_stays_processing(studio, user):
    session_id = user.session()
    studio.faults(render_stuck={"count": 1})
    render_id = _export(user, session_id)
    views = []
    deadline = time.monotonic() + 1.0  # several times a whole render at this time scale
    while time.monotonic() < deadline:
        views.append(user.render_status(render_id).json()["data"])
        time.sleep(0.05)
    assert views[-1]["status"] == "processing"
    assert views[-1]["progress"] == 37.0
    assert views[-1]["completedAt"] is None
    # cancelling is the way out
    assert user.post(f"/api/render/proxy/lambda/{render_id}/cancel").status_code == 200
    view = user.wait_render(render_id, timeout_s=5)
    assert (view["status"], view["error"]) == ("failed", "the render was cancelled")


def test_the_status_shape_fault_moves_the_status_to_the_top(studio, user):
    session_id = user.session()
    studio.faults(render_stuck={"count": 1}, status_shape="top")
    render_id = _export(user, session_id)
    body = user.render_status(render_id).json()
    assert "data" not in body
    assert (body["success"], body["id"]) == (True, render_id)
    assert body["status"] in ("pending", "processing")
    studio.faults(status_shape="data")
    body = user.render_status(render_id).json()
    assert set(body) == {"success", "data"}
    assert body["data"]["id"] == render_id


# the chat stream's faults


def test_stream_cut_and_silent_close_spend_their_counts(studio, user):
    session_id = user.session()
    studio.faults(stream_cut={"count": 1}, silent_close={"p": 0, "count": 1})
    with pytest.raises(httpx.RemoteProtocolError):
        user.chat(session_id, GENERATE)
    faults = studio.admin("GET", "faults")
    assert faults["stream_cut"]["count"] == 0
    assert faults["silent_close"]["count"] == 0  # drawn for the cut turn as well
