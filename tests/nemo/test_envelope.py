"""Envelopes and error codes: the body's code first, the HTTP status second (nemo-api.md)."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime

import pytest

from nemo.envelope import Answer, Call, error_for, parse_retry_after, read_answer
from nemo.errors import (
    ApiError,
    BreakReason,
    DownloadTooLarge,
    DuplicateRenderId,
    ExportBlocked,
    MediaTooLarge,
    MissingClientId,
    NemoError,
    OutOfCredits,
    ProtocolError,
    RateLimited,
    Repair,
    ServerError,
    SessionNotFound,
    StreamBroken,
    TokenInvalid,
    TransportError,
    UnsupportedMedia,
)

HTML_502 = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)


def answer(body: object, status: int = 200, call: Call = Call.CREDITS, **headers: str) -> Answer:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return read_answer(status, headers, raw, call=call)


@pytest.mark.parametrize(
    ("body", "data"),
    [
        ({"code": 0, "message": "ok", "data": {"available": 5}}, {"available": 5}),
        ({"code": "0", "data": {"available": 5}}, {"available": 5}),
        ({"success": True, "data": {"status": "pending"}}, {"status": "pending"}),
        ({"available": 5, "frozen": 0}, {"available": 5, "frozen": 0}),
        ({"code": 0, "message": "ok"}, {"code": 0, "message": "ok"}),
        ([1, 2], [1, 2]),
    ],
    ids=["code-envelope", "code-as-string", "success-envelope", "bare", "no-data", "list"],
)
def test_successful_answers_yield_their_data_in_every_envelope(body, data):
    assert answer(body).data == data


def test_an_empty_successful_answer_has_no_data():
    assert read_answer(204, {}, b"", call=Call.CANCEL_RENDER) == Answer(None, None)


def test_code_zero_is_success_even_when_a_message_is_present():
    assert answer({"code": 0, "message": "error-free", "data": {"x": 1}}).data == {"x": 1}


# (code in the body, HTTP status, call, expected class, retryable, repair)
CODE_TABLE = [
    (1001, 200, Call.STATE, TokenInvalid, True, Repair.NEW_TOKEN),
    (1010, 200, Call.STATE, TokenInvalid, True, Repair.NEW_TOKEN),
    (1011, 200, Call.STATE, TokenInvalid, True, Repair.NEW_TOKEN),
    (1002, 200, Call.STATE, SessionNotFound, True, Repair.NEW_SESSION),
    (2001, 200, Call.CHAT, OutOfCredits, False, Repair.NONE),
    (4001, 200, Call.UPLOAD, UnsupportedMedia, False, Repair.NONE),
    (4002, 200, Call.UPLOAD, MediaTooLarge, False, Repair.NONE),
    (400, 200, Call.ANONYMOUS_TOKEN, MissingClientId, True, Repair.NEW_CLIENT_ID),
    (402, 200, Call.START_RENDER, ExportBlocked, False, Repair.NONE),
    (429, 200, Call.CHAT, RateLimited, True, Repair.BACK_OFF),
    (500, 200, Call.STATE, ServerError, True, Repair.BACK_OFF),
    (7777, 200, Call.STATE, ApiError, False, Repair.NONE),
    # the same codes with the HTTP status agreeing
    (1001, 401, Call.STATE, TokenInvalid, True, Repair.NEW_TOKEN),
    (2001, 402, Call.CHAT, OutOfCredits, False, Repair.NONE),
    (429, 429, Call.CHAT, RateLimited, True, Repair.BACK_OFF),
    # the code wins over a status that says something else
    (1002, 500, Call.STATE, SessionNotFound, True, Repair.NEW_SESSION),
    (4002, 413, Call.UPLOAD, MediaTooLarge, False, Repair.NONE),
    # an unknown code falls back to the status
    (7777, 503, Call.STATE, ServerError, True, Repair.BACK_OFF),
    (7777, 401, Call.STATE, TokenInvalid, True, Repair.NEW_TOKEN),
]


@pytest.mark.parametrize(
    ("code", "status", "call", "cls", "advice"),
    [(*row[:4], row[4:]) for row in CODE_TABLE],
    ids=[f"code{row[0]}-http{row[1]}" for row in CODE_TABLE],
)
def test_a_body_code_maps_to_its_error(code, status, call, cls, advice):
    with pytest.raises(ApiError) as caught:
        answer({"code": code, "message": "no", "data": None}, status, call)
    error = caught.value
    assert type(error) is cls
    assert (error.code, error.http_status) == (code, status)
    assert (error.retryable, error.repair) == advice


# (HTTP status, body without a code, call, expected class)
STATUS_TABLE = [
    (401, {"detail": "unauthorized"}, Call.STATE, TokenInvalid),
    (400, {"message": "X-Client-Id header is required"}, Call.ANONYMOUS_TOKEN, MissingClientId),
    (400, b"", Call.ANONYMOUS_TOKEN, MissingClientId),
    (400, {"message": "language must be a string"}, Call.CREATE_SESSION, ApiError),
    (400, {"message": "missing client id"}, Call.CREATE_SESSION, MissingClientId),
    (402, {"error": "export requires a subscription"}, Call.START_RENDER, ExportBlocked),
    (429, {"message": "slow down"}, Call.CHAT, RateLimited),
    (500, {"message": "boom"}, Call.STATE, ServerError),
    (503, b"Service Unavailable", Call.STATE, ServerError),
    (404, {"success": False, "error": "Render not found"}, Call.RENDER_STATUS, ApiError),
    (409, {"success": False, "error": "conflict"}, Call.START_RENDER, DuplicateRenderId),
    (409, {"success": False, "error": "conflict"}, Call.STATE, ApiError),
]


@pytest.mark.parametrize(
    ("status", "body", "call", "cls"),
    STATUS_TABLE,
    ids=[f"http{row[0]}-{row[2].value}" for row in STATUS_TABLE],
)
def test_without_a_code_the_http_status_decides(status, body, call, cls):
    with pytest.raises(ApiError) as caught:
        answer(body, status, call)
    assert type(caught.value) is cls
    assert caught.value.code is None
    assert caught.value.http_status == status


def test_a_success_false_envelope_is_an_error_even_with_http_200():
    with pytest.raises(ApiError) as caught:
        answer({"success": False, "error": "render queue unavailable"}, 200, Call.RENDER_STATUS)
    assert type(caught.value) is ApiError
    assert caught.value.detail == "render queue unavailable"
    assert caught.value.http_status == 200


def test_a_code_nested_in_the_error_object_is_read():
    body = {"success": False, "error": {"code": 1001, "message": "token expired"}}
    with pytest.raises(TokenInvalid) as caught:
        answer(body, 200, Call.RENDER_STATUS)
    assert caught.value.code == 1001
    assert caught.value.detail == "token expired"


@pytest.mark.parametrize(
    "message",
    ["render id render_7 already exists", "Duplicate render id", "id already in use"],
)
def test_a_taken_render_id_is_recognised_by_its_message_on_the_export_call(message):
    with pytest.raises(DuplicateRenderId) as caught:
        answer({"success": False, "error": message}, 400, Call.START_RENDER)
    assert caught.value.repair is Repair.POLL_RENDER
    assert not caught.value.retryable


def test_the_same_message_elsewhere_is_a_plain_error():
    with pytest.raises(ApiError) as caught:
        answer({"success": False, "error": "already exists"}, 400, Call.UPLOAD)
    assert type(caught.value) is ApiError


def test_an_html_error_page_is_read_by_its_status_and_titled():
    with pytest.raises(ServerError) as caught:
        read_answer(502, {"content-type": "text/html"}, HTML_502, call=Call.STATE)
    assert caught.value.http_status == 502
    assert "502 Bad Gateway" in str(caught.value)
    assert "<" not in str(caught.value)


def test_an_html_page_answered_with_200_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="not JSON"):
        read_answer(200, {"content-type": "text/html"}, HTML_502, call=Call.STATE)


def test_malformed_json_with_200_is_a_protocol_error():
    with pytest.raises(ProtocolError) as caught:
        read_answer(200, {}, b'{"code": 0, "data": {"state": ', call=Call.STATE)
    assert caught.value.retryable
    assert caught.value.repair is Repair.BACK_OFF


def test_malformed_json_with_a_5xx_is_a_server_error():
    with pytest.raises(ServerError):
        read_answer(500, {}, b'{"code": 5', call=Call.STATE)


def test_a_redirect_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="redirect"):
        read_answer(302, {"location": "http://elsewhere/"}, b"", call=Call.STATE)


def test_long_error_messages_are_cut():
    with pytest.raises(ApiError) as caught:
        answer({"code": 7777, "message": "x" * 5000})
    assert len(caught.value.detail) == 300


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("12", 12.0), ("0.5", 0.5), ("-4", 0.0), (None, 30.0), ("", 30.0), ("soon", 30.0)],
)
def test_retry_after_is_read_from_the_header_or_defaults_to_30s(header, seconds):
    assert parse_retry_after(header) == seconds


def test_retry_after_as_an_http_date_is_counted_from_now():
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Wed, 01 Jan 2025 12:00:45 GMT", now=now) == 45.0


def test_a_429_carries_the_header_retry_after():
    with pytest.raises(RateLimited) as caught:
        answer({"code": 429, "message": "slow down"}, 429, Call.CHAT, **{"retry-after": "7"})
    assert caught.value.retry_after == 7.0


def test_a_429_without_the_header_waits_30s():
    with pytest.raises(RateLimited) as caught:
        answer({"message": "slow down"}, 429, Call.CHAT)
    assert caught.value.retry_after == 30.0


def test_error_for_without_code_or_status_is_a_plain_api_error():
    error = error_for(None, None, "something")
    assert type(error) is ApiError
    assert str(error) == "something"


@pytest.mark.parametrize(
    ("error", "retryable", "repair"),
    [
        (TransportError("reset"), True, Repair.BACK_OFF),
        (ProtocolError("bad"), True, Repair.BACK_OFF),
        (DownloadTooLarge(10, 11), False, Repair.NONE),
        (StreamBroken(BreakReason.RESET, "reset"), False, Repair.READ_STATE),
        (ExportBlocked(402, 402, "plan"), False, Repair.NONE),
        (DuplicateRenderId(None, 409, "taken"), False, Repair.POLL_RENDER),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, NemoError) else str(value),
)
def test_every_error_says_whether_to_retry_and_what_to_repair(error, retryable, repair):
    assert isinstance(error, NemoError)
    assert (error.retryable, error.repair) == (retryable, repair)


def test_the_api_errors_all_share_one_root():
    for cls in (
        TokenInvalid,
        SessionNotFound,
        OutOfCredits,
        UnsupportedMedia,
        MediaTooLarge,
        MissingClientId,
        ExportBlocked,
        RateLimited,
        DuplicateRenderId,
        ServerError,
    ):
        assert issubclass(cls, ApiError)
    assert not issubclass(StreamBroken, TransportError)  # a broken turn is never re-sent


@pytest.mark.parametrize(
    "error",
    [
        RateLimited(429, 429, "slow", retry_after=7.0),
        StreamBroken(BreakReason.TURN_LIMIT, "too long"),
        TransportError("refused", reached_server=False),
        DownloadTooLarge(10, 20),
        TokenInvalid(1001, 401, "expired"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_errors_survive_pickling_with_their_attributes(error):
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)
