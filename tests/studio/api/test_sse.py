"""The chat stream (/run_sse): what it says, in which order, how fast at a time scale,
how it ends (closed, silent, or cut), and what each message costs."""

from __future__ import annotations

import httpx
import pytest

from nemo import (
    BreakReason,
    Heartbeat,
    NemoClient,
    NemoConfig,
    StreamBroken,
    Text,
    Token,
    ToolCall,
)
from nemo.config import Secret
from tests.studio.api.helpers import ATTRIBUTION, GENERATE, chat_body, wait_for

pytestmark = pytest.mark.slow
PAID = "tok_sse_paid"
STUDIO_ENV = {"STUDIO_PAID_TOKENS": f"{PAID}:1000000"}
SCALE = 0.005  # the fixture's STUDIO_TIME_SCALE
HEARTBEAT_S = 5.0 * SCALE
GENERATION = (30 * SCALE, 90 * SCALE)
EDIT = (10 * SCALE, 30 * SCALE)
ANSWER = (5 * SCALE, 15 * SCALE)
SLACK_S = 2.0  # a loaded machine may deliver late, never early


def _generated(user):
    session_id = user.session()
    stream = user.chat(session_id, GENERATE)
    assert stream.status == 200
    return session_id


def test_generation_unfolds_in_two_stages_and_ends_with_text(chatty, paid):
    session_id = paid.session()
    stream = paid.chat(session_id, GENERATE)
    assert stream.status == 200
    assert stream.headers["content-type"].startswith("text/event-stream")
    assert stream.headers["cache-control"] == "no-cache"
    assert stream.kinds == [
        "tool_call", "text", "tool_result", "tool_call", "tool_result", "text"
    ]  # fmt: skip
    calls = [e.payload["name"] for e in stream.of_type("tool_call")]
    results = [e.payload["name"] for e in stream.of_type("tool_result")]
    assert calls == results == ["generate_timeline", "post_production"]
    assert stream.of_type("tool_call")[0].payload["args"] == {"stage": "raw"}
    first, last = stream.texts
    assert first == "Creating your video from the photos…"
    assert "'Hello'" in last
    assert all(e.type in ("text", "tool_call", "tool_result", "heartbeat") for e in stream.events)


def test_generation_takes_its_scaled_time(chatty, paid):
    session_id = paid.session()
    stream = paid.chat(session_id, GENERATE)
    total = stream.events[-1].at
    assert GENERATION[0] <= total <= GENERATION[1] + SLACK_S
    raw_result, final_result = stream.of_type("tool_result")
    # the raw timeline comes at 45 % of the turn, the finished one at 90 %
    assert raw_result.at >= 0.45 * GENERATION[0]
    assert final_result.at >= 0.9 * GENERATION[0]
    assert final_result.at - raw_result.at >= 0.45 * GENERATION[0]


def test_heartbeats_keep_coming_through_the_long_steps(chatty, paid):
    session_id = paid.session()
    stream = paid.chat(session_id, GENERATE)
    beats = stream.of_type("heartbeat")
    for n, beat in enumerate(beats, start=1):
        assert beat.at >= n * HEARTBEAT_S  # one every 5 s of the turn's time
        assert beat.payload == {"type": "heartbeat"}
    kinds = [e.type for e in stream.events]
    call, result = kinds.index("tool_call"), kinds.index("tool_result")
    # each stage lasts at least 12 s of turn time: two heartbeats or more inside
    assert kinds[call:result].count("heartbeat") >= 2
    second_call = kinds.index("tool_call", result)
    second_result = kinds.index("tool_result", second_call)
    assert kinds[second_call:second_result].count("heartbeat") >= 2
    assert kinds[-1] == "text"  # no heartbeat after the last word


def test_an_edit_changes_the_draft_and_says_what_changed(chatty, paid):
    session_id = _generated(paid)
    before = paid.state(session_id)["canvas_config"]
    stream = paid.chat(session_id, "make it vertical")
    assert stream.kinds == ["tool_call", "tool_result", "text"]
    call = stream.of_type("tool_call")[0].payload
    assert call["name"] == "edit_timeline"
    assert call["args"]["changes"] == ["aspect ratio 1:1 → 9:16"]
    assert "9:16" in stream.texts[0]
    after = paid.state(session_id)["canvas_config"]
    assert (before["width"], before["height"]) == (720, 720)
    assert (after["width"], after["height"]) == (720, 1280)
    assert EDIT[0] <= stream.events[-1].at <= EDIT[1] + SLACK_S


def test_a_question_is_answered_with_text_alone_and_changes_nothing(chatty, paid):
    session_id = _generated(paid)
    before = paid.draft(session_id)
    stream = paid.chat(session_id, "what is in my timeline?")
    assert stream.kinds == ["text"]
    assert "photos" in stream.texts[0]
    assert ANSWER[0] <= stream.events[-1].at <= ANSWER[1] + SLACK_S
    assert paid.draft(session_id) == before


def test_a_silent_turn_closes_after_the_tool_result_without_text(studio, paid):
    session_id = _generated(paid)
    studio.faults(silent_close={"count": 1})
    stream = paid.chat(session_id, "make it vertical")
    assert stream.status == 200
    assert stream.kinds == ["tool_call", "tool_result"]
    assert stream.texts == []
    assert paid.state(session_id)["canvas_config"]["height"] == 1280  # it happened


def test_a_question_is_never_silent(studio, paid):
    session_id = _generated(paid)
    studio.faults(silent_close=1.0)
    assert paid.chat(session_id, "what is in my timeline?").kinds == ["text"]


def test_a_cut_stream_is_a_broken_connection_and_the_edit_still_lands(studio, paid):
    session_id = _generated(paid)
    studio.faults(stream_cut={"count": 1}, silent_close=0)
    received = []
    body = chat_body(session_id, "make it vertical")
    with (  # noqa: PT012 (the break comes mid-read)
        pytest.raises(httpx.RemoteProtocolError),
        paid.http.stream("POST", "/run_sse", json=body, headers=paid.headers) as response,
    ):
        assert response.status_code == 200
        received.extend(line for line in response.iter_lines() if line.strip())
    assert any('"tool_call"' in line for line in received)  # the work had started
    assert not any('"tool_result"' in line for line in received)
    wait_for(
        lambda: paid.state(session_id)["canvas_config"]["height"] == 1280,
        what="the edit reaching the state",
    )
    # and it is charged, once, like any turn that ran
    ledger = wait_for(
        lambda: (s := studio.ledger()["sessions"][session_id])["credits_charged"] == 150 and s
    )
    assert [m["repeat"] for m in ledger["messages"]] == [False, False]


def test_the_nemo_client_sees_a_cut_stream_as_stream_broken(studio, paid):
    session_id = _generated(paid)
    studio.faults(stream_cut={"count": 1})
    config = NemoConfig(base_url=studio.url, token=Secret(PAID))
    with httpx.Client(timeout=30) as http:
        client = NemoClient(http, config, token=Token(Secret(PAID), paid.user_id))
        events = []
        with pytest.raises(StreamBroken) as broken:
            events.extend(client.chat(session_id, "make it vertical"))
        assert broken.value.reason in (BreakReason.RESET, BreakReason.TRUNCATED)
        assert any(isinstance(e, ToolCall) for e in events)
        state = wait_for(
            lambda: (s := client.state(session_id)).canvas_config.height == 1280 and s,
            what="the edit reaching the state",
        )
        assert state.canvas_config.aspect_ratio == "9:16"


def test_the_nemo_client_reads_a_whole_turn(chatty, paid, studio):
    session_id = _generated(paid)
    config = NemoConfig(base_url=studio.url, token=Secret(PAID))
    with httpx.Client(timeout=30) as http:
        client = NemoClient(http, config, token=Token(Secret(PAID), paid.user_id))
        events = list(client.chat(session_id, "make it square"))
    assert [type(e) for e in events if not isinstance(e, Heartbeat)][-1] is Text


def test_a_repeated_message_is_run_and_charged_twice_and_flagged(chatty, studio, paid):
    session_id = paid.session()
    paid.chat(session_id, "a 20-second video")
    before = paid.balance()["available"]
    first = paid.chat(session_id, "make it faster")
    length_once = paid.draft(session_id)["d"]
    second = paid.chat(session_id, "make it faster")
    assert first.texts != second.texts  # run again, on the new draft
    assert paid.draft(session_id)["d"] < length_once
    assert paid.balance()["available"] == before - 100
    ledger = studio.ledger()["sessions"][session_id]
    assert [(m["text"], m["repeat"], m["credits"]) for m in ledger["messages"]] == [
        ("a 20-second video", False, 100),
        ("make it faster", False, 50),
        ("make it faster", True, 50),
    ]
    assert ledger["credits_charged"] == 200


def test_the_same_text_in_another_session_is_no_repeat(chatty, studio, paid):
    one, two = paid.session(), paid.session()
    paid.chat(one, "a 5-second video")
    paid.chat(two, "a 5-second video")
    sessions = studio.ledger()["sessions"]
    assert [m["repeat"] for m in sessions[one]["messages"]] == [False]
    assert [m["repeat"] for m in sessions[two]["messages"]] == [False]


def test_credits_are_frozen_while_a_turn_runs(chatty, user):
    session_id = user.session()
    balances = []
    with user.http.stream(
        "POST", "/run_sse", json=chat_body(session_id, GENERATE), headers=user.headers
    ) as response:
        for line in response.iter_lines():
            if '"tool_call"' in line and not balances:
                balances.append(user.balance())
    assert balances == [{"available": 0, "frozen": 100, "total": 100}]
    assert user.balance() == {"available": 0, "frozen": 0, "total": 0}


def test_a_refused_turn_sends_no_stream(client, user):
    session_id = user.session()
    response = client.post(
        "/run_sse",
        json=chat_body(session_id, GENERATE),
        headers=ATTRIBUTION | {"Authorization": "Bearer nope"},
    )
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
