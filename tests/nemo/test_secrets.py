"""The token never shows: not in a log line, a repr, an exception message or an event."""

from __future__ import annotations

import logging
import pickle

import httpx
import pytest

from nemo import (
    ApiError,
    NemoClient,
    NemoConfig,
    NemoError,
    ProtocolError,
    Secret,
    StreamBroken,
    Token,
    TokenInvalid,
    TransportError,
)
from nemo.config import scrub
from tests.nemo.fakes import (
    TOKEN,
    Recorder,
    config,
    envelope,
    json_response,
    make_client,
    sse,
    sse_response,
)

FRESH = "nmv_usr_fresh-anon-token-77"


def shows_no_token(text: str) -> bool:
    return TOKEN not in text and FRESH not in text and "5ecret" not in text


def test_secret_hides_itself_but_reveals_on_request():
    secret = Secret(TOKEN)
    assert repr(secret) == "Secret('***')"
    assert str(secret) == "***"
    assert f"{secret}" == "***"
    assert secret.reveal() == TOKEN
    assert pickle.loads(pickle.dumps(secret)).reveal() == TOKEN  # noqa: S301 - our own bytes


def test_config_token_and_client_reprs_hide_the_token():
    settings = NemoConfig.from_env({"NEMO_TOKEN": TOKEN})
    token = Token(Secret(TOKEN), user_id="anon_1")
    client = NemoClient(httpx.Client(), settings, token=token)
    for text in (repr(settings), str(settings), repr(token), repr(client)):
        assert shows_no_token(text), text
    assert "***" in repr(settings)


def test_no_log_line_holds_the_token(caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    recorder = Recorder(
        [
            json_response(envelope({"token": FRESH, "user_id": "anon_1"})),
            json_response(envelope({"state": {"draft": None}})),
            json_response({"code": 1001, "message": f"token {FRESH} expired"}),
            sse_response([sse({"type": "text", "content": "ok"})]),
            httpx.Response(403, json={"message": f"denied for {FRESH}"}),
            httpx.Response(200, content=b"video"),
        ]
    )
    client = NemoClient(httpx.Client(transport=httpx.MockTransport(recorder)), config())
    client.anonymous_token("client-1")
    client.state("s1")
    with pytest.raises(TokenInvalid):
        client.credits()
    list(client.chat("s1", "hello"))
    client.download("https://cdn.test/v.mp4", tmp_path / "v.mp4", render_id="render_1")

    assert len(recorder.requests) == 6
    assert any(record.name.startswith("nemo") for record in caplog.records)
    for record in caplog.records:
        assert shows_no_token(record.getMessage()), record.getMessage()
    assert shows_no_token(caplog.text)


def test_an_error_message_echoing_the_token_is_scrubbed():
    recorder = Recorder([json_response({"code": 1001, "message": f"invalid token {TOKEN}"})])
    with pytest.raises(TokenInvalid) as caught:
        make_client(recorder).credits()
    for text in (str(caught.value), repr(caught.value), caught.value.detail):
        assert shows_no_token(text), text


def test_a_malformed_token_answer_does_not_put_the_new_token_in_the_error():
    body = f'{{"code": 0, "data": {{"token": "{FRESH}", "user_id": '.encode()
    client = make_client(Recorder([httpx.Response(200, content=body)]))
    with pytest.raises(ProtocolError) as caught:
        client.anonymous_token("client-1")
    assert shows_no_token(str(caught.value))


def test_a_non_json_error_page_echoing_a_bearer_header_is_scrubbed():
    page = f"<html><body>Bad request: Authorization: Bearer {TOKEN}</body></html>"
    client = make_client(Recorder([httpx.Response(400, text=page)]))
    with pytest.raises(ApiError) as caught:
        client.create_session()
    assert shows_no_token(str(caught.value))
    assert "Bad request" in str(caught.value)


def test_a_transport_error_mentioning_the_token_is_scrubbed():
    def fail(request):
        raise httpx.ReadError(f"reset while sending {request.headers['authorization']}")

    with pytest.raises(TransportError) as caught:
        make_client(fail).credits()
    assert shows_no_token(str(caught.value))


def test_a_broken_stream_error_is_scrubbed():
    recorder = Recorder([httpx.Response(500, json={"message": f"crashed holding {TOKEN}"})])
    with pytest.raises(StreamBroken) as caught:
        list(make_client(recorder).chat("s1", "hi"))
    assert shows_no_token(str(caught.value))


def test_events_echoing_the_token_are_scrubbed():
    recorder = Recorder(
        [
            sse_response(
                [
                    sse({"type": "text", "content": f"your token is {TOKEN}"}),
                    sse(
                        {
                            "type": "tool_call",
                            "name": "auth",
                            "args": {"headers": [f"Bearer {TOKEN}"]},
                        }
                    ),
                    sse({"type": "tool_result", "name": "auth", "result": {"token": TOKEN}}),
                    sse({"type": "mystery", "token": TOKEN}),
                    sse({"author": "a", "errorCode": "E", "errorMessage": f"bad {TOKEN}"}),
                    f"data: plain {TOKEN}\n\n".encode(),
                ]
            )
        ]
    )
    events = list(make_client(recorder).chat("s1", "hi"))
    assert len(events) == 6
    for event in events:
        assert shows_no_token(repr(event)), event


def test_every_nemo_error_built_from_an_answer_is_scrubbed_of_token_shapes():
    assert scrub(f"a {TOKEN} b") == "a *** b"
    assert scrub("Authorization: Bearer abcdefghijklmnop") == "Authorization: ***"
    assert scrub("the bearer of good news") == "the bearer of good news"
    assert scrub("secret-value here", [Secret("secret-value")]) == "*** here"
    assert issubclass(ProtocolError, NemoError)
