"""The script of a chat turn and its encoding: plain functions, tested without a server."""

from __future__ import annotations

import json
import socket
import threading

import pytest

from studio.config import EventShape
from studio.planner import Plan, TurnKind
from studio.turns import Draws, Step, Turn, encode, script

RAW = {"t": [{"tt": 0, "sg": [{"src": "a.png", "d": 3000}]}], "d": 3000}
FINAL = {
    "t": [
        {"tt": 0, "sg": [{"src": "a.png", "d": 3000}]},
        {"tt": 1, "sg": [{"d": 3000, "m": {"mood": "calm"}}]},
        {"tt": 7, "sg": [{"text": "Hi", "s": 0, "d": 2000}]},
    ],
    "d": 3000,
}
EDITED = {**FINAL, "m": {"ratio": "9:16"}}


def _plan(kind):
    if kind is TurnKind.GENERATE:
        return Plan(kind, RAW, FINAL, "Made a 3 s video.", ("made",), ())
    if kind is TurnKind.EDIT:
        return Plan(kind, None, EDITED, "Done: 9:16.", ("aspect ratio 16:9 → 9:16",), ())
    return Plan(kind, None, None, "Your timeline has one photo.", (), ())


def _draws(duration_s=40.0, *, silent=False, cut=False, hint=None):
    return Draws(duration_s=duration_s, silent=silent, cut=cut, hint=hint)


def _steps(actions):
    """(step, event type or None, name or None) of every action but heartbeats."""
    out = []
    for action in actions:
        event = action.event or {}
        if event.get("type") == "heartbeat":
            continue
        out.append((action.step.value, event.get("type"), event.get("name")))
    return out


def test_generation_reports_two_stages_and_applies_each():
    actions = script(_plan(TurnKind.GENERATE), _draws(), heartbeat_s=5.0)
    assert _steps(actions) == [
        ("event", "tool_call", "generate_timeline"),
        ("event", "text", None),
        ("apply", None, None),
        ("event", "tool_result", "generate_timeline"),
        ("event", "tool_call", "post_production"),
        ("apply", None, None),
        ("event", "tool_result", "post_production"),
        ("event", "text", None),
    ]
    applies = [a.draft for a in actions if a.step is Step.APPLY]
    assert applies == [RAW, FINAL]


def test_generation_timing_is_a_share_of_the_turn():
    actions = script(_plan(TurnKind.GENERATE), _draws(40.0), heartbeat_s=5.0)
    timed = {(a.step.value, (a.event or {}).get("type"), (a.event or {}).get("name")): a.at_s
             for a in actions if (a.event or {}).get("type") != "heartbeat"}  # fmt: skip
    assert timed[("event", "tool_call", "generate_timeline")] == pytest.approx(2.0)
    assert timed[("event", "tool_result", "generate_timeline")] == pytest.approx(18.0)
    assert timed[("event", "tool_call", "post_production")] == pytest.approx(20.0)
    assert timed[("event", "tool_result", "post_production")] == pytest.approx(36.0)
    assert actions[-1].at_s == pytest.approx(40.0)
    assert actions[-1].event == {"type": "text", "content": "Made a 3 s video."}


def test_actions_are_in_time_order_and_within_the_turn():
    for kind in TurnKind:
        for draws in (_draws(17.3), _draws(17.3, silent=True), _draws(17.3, cut=True)):
            actions = script(_plan(kind), draws, heartbeat_s=2.0)
            times = [a.at_s for a in actions]
            assert times == sorted(times)
            assert times[0] > 0
            assert times[-1] <= 17.3


def test_an_edit_calls_one_tool_then_speaks():
    actions = script(_plan(TurnKind.EDIT), _draws(20.0), heartbeat_s=5.0)
    assert _steps(actions) == [
        ("event", "tool_call", "edit_timeline"),
        ("apply", None, None),
        ("event", "tool_result", "edit_timeline"),
        ("event", "text", None),
    ]
    call = next(a.event for a in actions if a.event and a.event["type"] == "tool_call")
    assert call["args"] == {"changes": ["aspect ratio 16:9 → 9:16"]}


def test_an_answer_is_text_alone():
    actions = script(_plan(TurnKind.ANSWER), _draws(10.0), heartbeat_s=5.0)
    assert _steps(actions) == [("event", "text", None)]


def test_a_silent_turn_does_the_work_and_says_nothing():
    actions = script(_plan(TurnKind.EDIT), _draws(20.0, silent=True), heartbeat_s=5.0)
    assert _steps(actions) == [
        ("event", "tool_call", "edit_timeline"),
        ("apply", None, None),
        ("event", "tool_result", "edit_timeline"),
    ]


def test_a_gui_hint_follows_the_reply():
    actions = script(_plan(TurnKind.EDIT), _draws(hint="Click Export."), heartbeat_s=5.0)
    assert actions[-1].event == {"type": "text", "content": "Done: 9:16. Click Export."}


@pytest.mark.parametrize("kind", [TurnKind.GENERATE, TurnKind.EDIT])
def test_a_cut_comes_after_the_work_started_and_before_it_is_all_done(kind):
    actions = script(_plan(kind), _draws(30.0, cut=True), heartbeat_s=5.0)
    steps = [a.step for a in actions]
    cut = steps.index(Step.CUT)
    first_call = next(
        i for i, a in enumerate(actions) if a.event and a.event["type"] == "tool_call"
    )
    assert first_call < cut
    assert Step.APPLY in steps[cut:]  # the last change lands after the client is gone
    assert steps.count(Step.CUT) == 1


def test_an_answer_can_be_cut_too():
    actions = script(_plan(TurnKind.ANSWER), _draws(10.0, cut=True), heartbeat_s=5.0)
    assert [a.step for a in actions if a.step is not Step.EVENT] == [Step.CUT]


@pytest.mark.parametrize(("duration", "beats"), [(40.0, 7), (12.0, 2), (10.0, 1), (4.0, 0)])
def test_heartbeats_every_interval_strictly_inside_the_turn(duration, beats):
    actions = script(_plan(TurnKind.GENERATE), _draws(duration), heartbeat_s=5.0)
    times = [a.at_s for a in actions if a.event == {"type": "heartbeat"}]
    assert times == [5.0 * n for n in range(1, beats + 1)]


def test_no_heartbeats_when_the_interval_is_zero():
    actions = script(_plan(TurnKind.GENERATE), _draws(40.0), heartbeat_s=0)
    assert not [a for a in actions if a.event == {"type": "heartbeat"}]


def test_the_tool_result_reports_the_draft_outline():
    actions = script(_plan(TurnKind.GENERATE), _draws(), heartbeat_s=5.0)
    results = [a.event["result"] for a in actions if a.event and a.event["type"] == "tool_result"]
    assert results == [{"tracks": 1, "duration_ms": 3000}, {"tracks": 3, "duration_ms": 3000}]


# encoding


def test_an_event_is_one_data_line_and_a_blank_line():
    text = encode({"type": "text", "content": "two\nlines, “quoted”, 中文"}, EventShape.TYPE)
    assert text.startswith("data: ")
    assert text.endswith("\n\n")
    assert text.count("\n") == 2  # the newline inside is escaped
    assert json.loads(text[6:]) == {"type": "text", "content": "two\nlines, “quoted”, 中文"}
    assert "中文" in text  # not \u-escaped


def test_a_heartbeat_is_an_event_or_an_empty_data_line():
    assert encode({"type": "heartbeat"}, EventShape.TYPE) == 'data: {"type": "heartbeat"}\n\n'
    assert encode({"type": "heartbeat"}, EventShape.ADK) == "data: \n\n"
    assert encode(None, EventShape.TYPE) == "data: \n\n"


def test_adk_events_carry_the_same_parts():
    def part(event):
        return json.loads(encode(event, EventShape.ADK)[6:])["content"]["parts"][0]

    assert part({"type": "text", "content": "Hi"}) == {"text": "Hi"}
    call = part({"type": "tool_call", "name": "edit_timeline", "args": {"x": 1}})["functionCall"]
    assert (call["name"], call["args"]) == ("edit_timeline", {"x": 1})
    result = part({"type": "tool_result", "name": "edit_timeline", "result": {"tracks": 2}})
    assert result == {"functionResponse": {"name": "edit_timeline", "response": {"tracks": 2}}}
    whole = json.loads(encode({"type": "text", "content": "Hi"}, EventShape.ADK)[6:])
    assert whole["author"] == "nemo_agent"
    assert whole["partial"] is False
    assert whole["content"]["role"] == "model"


# running a turn


class _Recorder:
    def __init__(self):
        self.applied = []
        self.finished = threading.Event()

    def turn(self, actions, shape=EventShape.TYPE):
        return Turn(
            actions=actions,
            time_scale=0.0,
            apply=self.applied.append,
            finish=self.finished.set,
            shape=shape,
        )


def test_a_turn_relays_its_events_and_applies_its_drafts():
    recorder = _Recorder()
    actions = script(_plan(TurnKind.GENERATE), _draws(), heartbeat_s=5.0)
    turn = recorder.turn(actions)
    turn.start()
    relayed = list(turn.relay(None))
    assert recorder.finished.wait(5)
    events = [a.event for a in actions if a.step is Step.EVENT]
    assert relayed == [encode(e, EventShape.TYPE) for e in events]
    assert recorder.applied == [RAW, FINAL]


def test_a_cut_drops_the_connection_and_the_turn_goes_on():
    recorder = _Recorder()
    actions = script(_plan(TurnKind.EDIT), _draws(cut=True), heartbeat_s=5.0)
    server, peer = socket.socketpair()
    with server, peer:
        turn = recorder.turn(actions)
        turn.start()
        relayed = list(turn.relay(server))
        peer.settimeout(5)
        assert peer.recv(10) == b""  # the other end sees the connection end
    assert relayed
    assert not any('"tool_result"' in chunk for chunk in relayed)
    assert recorder.finished.wait(5)
    assert recorder.applied == [EDITED]
