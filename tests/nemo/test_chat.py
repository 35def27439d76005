"""The chat stream: both event shapes, and the two ways a turn ends (closed or broke)."""

from __future__ import annotations

import contextlib
import json
import time

import httpx
import pytest

from nemo import (
    AgentError,
    BreakReason,
    Heartbeat,
    OutOfCredits,
    RateLimited,
    Repair,
    SessionNotFound,
    StreamBroken,
    Text,
    ToolCall,
    ToolResult,
    TransportError,
    Turn,
    TurnComplete,
    Unknown,
)
from nemo.events import parse_event
from tests.nemo.fakes import (
    USER_ID,
    Recorder,
    body_json,
    chunks_then,
    json_response,
    make_client,
    sse,
    sse_response,
)


def run_chat(chunks, **overrides):
    """The events of a chat whose stream is ``chunks``, and the recorder."""
    recorder = Recorder([sse_response(chunks)])
    events = list(make_client(recorder, **overrides).chat("s1", "add music"))
    return events, recorder


def test_chat_posts_the_adk_run_request_and_asks_for_an_event_stream():
    events, recorder = run_chat([sse({"type": "text", "content": "Done."})])
    request = recorder.last
    assert (request.method, request.url.path) == ("POST", "/run_sse")
    assert request.headers["Accept"] == "text/event-stream"
    assert body_json(request) == {
        "app_name": "nemo_agent",
        "user_id": USER_ID,
        "session_id": "s1",
        "new_message": {"parts": [{"text": "add music"}]},
    }
    assert events == [Text("Done.")]


def test_the_stream_read_timeout_is_bounded_by_the_heartbeat_limit():
    _, recorder = run_chat([], heartbeat_limit=42.0, turn_limit=900.0)
    assert recorder.last.extensions["timeout"]["read"] == 42.0


def test_the_documented_type_shape_becomes_typed_events():
    events, _ = run_chat(
        [
            sse({"type": "heartbeat"}),
            sse({"type": "tool_call", "name": "add_bgm", "args": {"mood": "lofi"}}),
            sse({"type": "tool_result", "name": "add_bgm", "result": {"ok": True}}),
            sse({"type": "text", "content": "I added lo-fi music."}),
        ]
    )
    assert events == [
        Heartbeat(),
        ToolCall("add_bgm", {"mood": "lofi"}),
        ToolResult("add_bgm", {"ok": True}),
        Text("I added lo-fi music."),
    ]


def test_the_adk_event_shape_becomes_typed_events():
    events, _ = run_chat(
        [
            sse(
                {
                    "author": "nemo_agent",
                    "content": {
                        "role": "model",
                        "parts": [
                            {
                                "functionCall": {
                                    "id": "c1",
                                    "name": "set_ratio",
                                    "args": {"r": "9:16"},
                                }
                            }
                        ],
                    },
                }
            ),
            sse(
                {
                    "author": "nemo_agent",
                    "content": {
                        "parts": [
                            {
                                "functionResponse": {
                                    "id": "c1",
                                    "name": "set_ratio",
                                    "response": {"ok": 1},
                                }
                            }
                        ]
                    },
                }
            ),
            sse(
                {"author": "nemo_agent", "partial": True, "content": {"parts": [{"text": "Now "}]}}
            ),
            sse(
                {"author": "nemo_agent", "partial": True, "content": {"parts": [{"text": "9:16."}]}}
            ),
            sse({"author": "nemo_agent", "content": {"parts": [{"text": "Now 9:16."}]}}),
            sse({"author": "nemo_agent", "turnComplete": True}),
        ]
    )
    assert events == [
        ToolCall("set_ratio", {"r": "9:16"}, "c1", "nemo_agent"),
        ToolResult("set_ratio", {"ok": 1}, "c1", "nemo_agent"),
        Text("Now ", partial=True, author="nemo_agent"),
        Text("9:16.", partial=True, author="nemo_agent"),
        Text("Now 9:16.", author="nemo_agent"),
        TurnComplete("nemo_agent"),
    ]
    assert Turn(tuple(events)).text == "Now 9:16."


def test_an_adk_error_event_is_reported_and_the_stream_goes_on():
    events, _ = run_chat(
        [
            sse(
                {
                    "author": "nemo_agent",
                    "errorCode": "MALFORMED_FUNCTION_CALL",
                    "errorMessage": "bad",
                }
            ),
            sse({"type": "text", "content": "Let me try again."}),
        ]
    )
    assert events == [AgentError("bad", "MALFORMED_FUNCTION_CALL"), Text("Let me try again.")]


def test_one_adk_event_with_several_parts_gives_one_event_per_part():
    events, _ = run_chat(
        [
            sse(
                {
                    "author": "a",
                    "content": {
                        "parts": [{"text": "Adding music."}, {"functionCall": {"name": "bgm"}}]
                    },
                }
            )
        ]
    )
    assert events == [Text("Adding music.", author="a"), ToolCall("bgm", {}, None, "a")]


def test_a_plain_text_data_line_is_text():
    events, _ = run_chat([b"data: Your video is ready\n\n"])
    assert events == [Text("Your video is ready")]


def test_malformed_and_unknown_events_never_crash_the_stream():
    events, _ = run_chat(
        [
            b'data: {"type": "text", "content": \n\n',  # broken JSON object
            sse({"type": "progress", "value": 3}),  # unknown type
            sse([1, 2, 3]),  # JSON, but neither shape
            sse({"type": "text", "content": 42}),  # text that is not a string
            sse({"type": "tool_call"}),  # a call without a name
            b"data: \xff\xfe broken utf-8\n\n",
            sse({"type": "text", "content": "Still here."}),
        ]
    )
    assert events[:5] == [
        Unknown('{"type": "text", "content": '),
        Unknown('{"type": "progress", "value": 3}'),
        Unknown("[1, 2, 3]"),
        Unknown('{"type": "text", "content": 42}'),
        Unknown('{"type": "tool_call"}'),
    ]
    assert events[5] == Text("\ufffd\ufffd broken utf-8")
    assert events[6] == Text("Still here.")


def test_a_multiline_data_field_is_joined():
    events, _ = run_chat([b'data: {"type": "text",\ndata: "content": "joined"}\n\n'])
    assert events == [Text("joined")]


def test_an_event_split_across_chunks_is_reassembled():
    payload = sse({"type": "text", "content": "split \u00e9vent"})
    pieces = [payload[i : i + 5] for i in range(0, len(payload), 5)]
    events, _ = run_chat(pieces)
    assert events == [Text("split \u00e9vent")]


def test_named_heartbeat_events_and_comments_are_heartbeats_or_nothing():
    events, _ = run_chat([b": keep-alive\n\n", b"event: ping\ndata: {}\n\n", sse({"type": "ping"})])
    assert events == [Heartbeat(), Heartbeat()]


# -- closed: the iterator ends normally ------------------------------------------------


def test_a_clean_close_without_text_ends_the_turn_silently():
    events, _ = run_chat(
        [sse({"type": "heartbeat"}), sse({"type": "tool_call", "name": "edit", "args": {}})]
    )
    turn = Turn(tuple(events))
    assert turn.silent
    assert turn.tool_calls == (ToolCall("edit", {}),)


def test_an_empty_stream_is_a_closed_turn():
    events, _ = run_chat([])
    assert events == []
    assert Turn(()).silent


def test_a_stream_ending_with_crlf_boundaries_is_closed():
    events, _ = run_chat([b'data: {"type":"text","content":"ok"}\r\n\r\n'])
    assert events == [Text("ok")]


def test_a_trailing_comment_without_a_blank_line_loses_nothing_and_is_closed():
    events, _ = run_chat([sse({"type": "text", "content": "ok"}), b": bye"])
    assert events == [Text("ok")]


def test_turn_joins_whole_texts_by_line_and_reports_errors():
    turn = Turn.collect(
        iter([Text("First."), Heartbeat(), Text("Second."), AgentError("oops", "E1")])
    )
    assert turn.text == "First.\nSecond."
    assert not turn.silent
    assert turn.errors == (AgentError("oops", "E1"),)


# -- broke: the iterator raises StreamBroken --------------------------------------------


def collect_until_broken(client):
    """The events that came before the break, and the StreamBroken."""
    seen = []
    stream = client.chat("s1", "add music")
    with pytest.raises(StreamBroken) as caught:
        seen.extend(stream)  # keeps what came before the exception
    assert caught.value.repair is Repair.READ_STATE
    assert not caught.value.retryable
    return seen, caught.value


@pytest.mark.parametrize(
    "tail",
    [b'data: {"type":"text","content":"Hel', b'data: {"type":"text","content":"Hello"}\n'],
    ids=["inside-the-json", "before-the-blank-line"],
)
def test_a_truncated_last_event_means_the_stream_broke(tail):
    recorder = Recorder([sse_response([sse({"type": "text", "content": "Working."}), tail])])
    seen, error = collect_until_broken(make_client(recorder))
    assert seen == [Text("Working.")]
    assert error.reason is BreakReason.TRUNCATED


def test_a_reset_mid_stream_means_the_stream_broke():
    chunks = chunks_then(
        [sse({"type": "text", "content": "Working."})],
        httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
    )
    seen, error = collect_until_broken(make_client(Recorder([sse_response(chunks)])))
    assert seen == [Text("Working.")]
    assert error.reason is BreakReason.RESET


def test_a_read_timeout_means_the_stream_broke():
    chunks = chunks_then([sse({"type": "heartbeat"})], httpx.ReadTimeout("timed out"))
    seen, error = collect_until_broken(make_client(Recorder([sse_response(chunks)])))
    assert seen == [Heartbeat()]
    assert error.reason is BreakReason.READ_TIMEOUT


def test_heartbeats_alone_past_the_limit_break_the_stream(clock):
    def beats():
        for _ in range(100):
            clock.now += 10
            yield sse({"type": "heartbeat"})

    client = make_client(
        Recorder([sse_response(beats())]), clock=clock, heartbeat_limit=60, turn_limit=900
    )
    seen, error = collect_until_broken(client)
    assert error.reason is BreakReason.HEARTBEAT_LIMIT
    assert seen == [Heartbeat()] * 5  # the sixth arrives 60 s after the start


def test_keepalive_comments_count_against_the_heartbeat_limit(clock):
    def comments():
        for _ in range(100):
            clock.now += 10
            yield b": keep-alive\n\n"

    client = make_client(
        Recorder([sse_response(comments())]), clock=clock, heartbeat_limit=60, turn_limit=900
    )
    seen, error = collect_until_broken(client)
    assert (seen, error.reason) == ([], BreakReason.HEARTBEAT_LIMIT)


def test_real_events_reset_the_heartbeat_clock_until_the_turn_limit(clock):
    def busy():
        for step in range(100):
            clock.now += 25
            yield sse({"type": "tool_call", "name": f"step{step}", "args": {}})
            clock.now += 25
            yield sse({"type": "heartbeat"})

    client = make_client(
        Recorder([sse_response(busy())]), clock=clock, heartbeat_limit=60, turn_limit=900
    )
    seen, error = collect_until_broken(client)
    assert error.reason is BreakReason.TURN_LIMIT
    assert len(seen) == 35  # a chunk every 25 s: the 36th arrives at the 900 s limit
    assert sum(isinstance(event, ToolCall) for event in seen) == 18


def test_the_heartbeat_limit_holds_on_the_real_clock_with_small_values():
    def beats():
        for _ in range(1000):
            time.sleep(0.01)
            yield sse({"type": "heartbeat"})

    client = make_client(Recorder([sse_response(beats())]), heartbeat_limit=0.1, turn_limit=5)
    started = time.monotonic()
    seen, error = collect_until_broken(client)
    assert error.reason is BreakReason.HEARTBEAT_LIMIT
    assert 0.1 <= time.monotonic() - started < 2
    assert 3 <= len(seen) <= 10


def test_an_event_that_never_ends_breaks_the_stream_at_the_size_bound():
    produced = []

    def endless():
        yield b"data: "
        for _ in range(10_000):
            produced.append(1)
            yield b"x" * 1024

    client = make_client(Recorder([sse_response(endless())]), max_event_bytes=64 * 1024)
    _, error = collect_until_broken(client)
    assert error.reason is BreakReason.EVENT_TOO_LARGE
    assert len(produced) < 70


# -- answers before the stream ----------------------------------------------------------


def test_a_429_before_the_stream_is_rate_limited_not_broken():
    recorder = Recorder(
        [json_response({"code": 429, "message": "slow"}, 429, **{"retry-after": "3"})]
    )
    with pytest.raises(RateLimited) as caught:
        list(make_client(recorder).chat("s1", "hi"))
    assert caught.value.retry_after == 3.0


def test_an_error_envelope_answered_with_200_json_is_raised_as_its_error():
    recorder = Recorder([json_response({"code": 2001, "message": "no credits"})])
    with pytest.raises(OutOfCredits):
        list(make_client(recorder).chat("s1", "hi"))


def test_a_lost_session_before_the_stream_is_session_not_found():
    recorder = Recorder([json_response({"code": 1002, "message": "no session"}, 404)])
    with pytest.raises(SessionNotFound):
        list(make_client(recorder).chat("s1", "hi"))


def test_a_5xx_answer_leaves_the_outcome_unknown():
    recorder = Recorder([httpx.Response(502, text="<html><title>Bad Gateway</title></html>")])
    _, error = collect_until_broken(make_client(recorder))
    assert error.reason is BreakReason.SERVER_ERROR
    assert "Bad Gateway" in str(error)


def test_a_2xx_answer_that_is_not_a_stream_leaves_the_outcome_unknown():
    recorder = Recorder([json_response({"code": 0, "data": {}})])
    _, error = collect_until_broken(make_client(recorder))
    assert error.reason is BreakReason.NOT_A_STREAM


def test_a_refused_connection_is_a_transport_error_and_safe_to_resend():
    def refuse(request):
        raise httpx.ConnectError("connection refused")

    with pytest.raises(TransportError) as caught:
        list(make_client(refuse).chat("s1", "hi"))
    assert caught.value.reached_server is False


def test_nothing_is_sent_until_iteration_starts_and_closing_early_releases_it():
    response = sse_response(
        [sse({"type": "text", "content": "one"}), sse({"type": "text", "content": "two"})]
    )
    recorder = Recorder([response])
    stream = make_client(recorder).chat("s1", "hi")
    assert recorder.requests == []
    with contextlib.closing(stream):
        assert next(stream) == Text("one")
        assert not response.is_closed
    assert response.is_closed


def test_an_empty_message_is_refused_before_anything_is_sent():
    recorder = Recorder([])
    with pytest.raises(ValueError, match="empty"):
        make_client(recorder).chat("s1", "   ")
    assert recorder.requests == []


# -- the event reader on its own ---------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ('"quoted text"', [Text("quoted text")]),
        ("", [Heartbeat()]),
        ("[DONE]", [Unknown("[DONE]")]),
        ("null", [Unknown("null")]),
        ('{"foo": 1}', [Unknown('{"foo": 1}')]),
        (
            '{"type": "error", "message": "model overloaded", "code": 503}',
            [AgentError("model overloaded", "503")],
        ),
        ('{"type": "tool_call", "name": "f", "args": "{\\"a\\": 1}"}', [ToolCall("f", {"a": 1})]),
        (
            '{"type": "tool_call", "name": "f", "args": "not json"}',
            [ToolCall("f", {"value": "not json"})],
        ),
        ('{"author": "a", "content": {"parts": ["odd"]}}', [Unknown('"odd"')]),
        (
            '{"author": "a", "actions": {"stateDelta": {}}}',
            [Unknown('{"author": "a", "actions": {"stateDelta": {}}}')],
        ),
        (
            '{"author": "a", "content": {"parts": [{"function_call": {"name": "g", "args": {}}}]}}',
            [ToolCall("g", {}, None, "a")],
        ),
        ("[" * 100_000, [Unknown("[" * 100_000)]),
    ],
    ids=[
        "json-string",
        "empty",
        "done-marker",
        "null",
        "object-of-neither-shape",
        "typed-error",
        "args-as-json-string",
        "args-as-plain-string",
        "adk-part-not-an-object",
        "adk-without-content",
        "adk-snake-case",
        "deeply-nested",
    ],
)
def test_parse_event_reads_odd_payloads_without_raising(data, expected):
    assert parse_event(data) == expected


def test_parse_event_keeps_unknown_events_with_their_sse_name():
    assert parse_event(json.dumps({"x": 1}), "custom") == [Unknown('{"x": 1}', "custom")]
