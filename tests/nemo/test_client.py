"""Every call of nemo-api.md through the client, against hand-written answers."""

from __future__ import annotations

import io
import json

import httpx
import pytest

import reelyard
from nemo import (
    ApiError,
    Draft,
    MissingClientId,
    NemoClient,
    ProtocolError,
    RenderState,
    Secret,
    SessionNotFound,
    Token,
    TokenInvalid,
    TransportError,
)
from nemo.models import FileUpload
from tests.nemo.fakes import (
    TOKEN,
    USER_ID,
    Recorder,
    body_json,
    config,
    envelope,
    json_response,
    make_client,
)

OUTPUT_URL = "https://cdn.nemo.test/renders/render_1.mp4"
DRAFT = {
    "t": [{"tt": 0, "sg": [{"src": "a.jpg", "d": 3000, "x-vendor": {"k": 1}}]}],
    "d": 3000,
    "zz": [1, 2],
}


def test_anonymous_token_sends_the_client_id_without_a_bearer_and_returns_the_token():
    recorder = Recorder(
        [
            json_response(
                envelope(
                    {
                        "token": "nmv_usr_fresh0001",
                        "user_id": "anon_7",
                        "expires_at": "2030-01-01T00:00:00Z",
                        "credits": 100,
                    }
                )
            )
        ]
    )
    client = NemoClient(httpx.Client(transport=httpx.MockTransport(recorder)), config())

    token = client.anonymous_token("3f1c-uuid")

    request = recorder.last
    assert (request.method, request.url.path) == ("POST", "/api/auth/anonymous-token")
    assert request.headers["X-Client-Id"] == "3f1c-uuid"
    assert "authorization" not in request.headers
    assert request.content == b""
    assert token.value.reveal() == "nmv_usr_fresh0001"
    assert (token.user_id, token.expires_at, token.credits) == (
        "anon_7",
        "2030-01-01T00:00:00Z",
        100,
    )
    assert client.token == token


def test_after_anonymous_token_calls_carry_the_new_token_and_its_user_id():
    recorder = Recorder(
        [
            json_response(envelope({"token": "nmv_usr_fresh0001", "user_id": "anon_7"})),
            json_response(envelope({"state": {"draft": None}})),
        ]
    )
    client = NemoClient(httpx.Client(transport=httpx.MockTransport(recorder)), config())
    client.anonymous_token("3f1c-uuid")
    client.state("sess_1")
    assert recorder.last.headers["Authorization"] == "Bearer nmv_usr_fresh0001"
    assert recorder.last.url.path == "/api/state/nemo_agent/anon_7/sess_1/latest"


def test_anonymous_token_refuses_an_empty_client_id_before_sending():
    recorder = Recorder([])
    client = make_client(recorder)
    with pytest.raises(ValueError, match="client id"):
        client.anonymous_token("  ")
    assert recorder.requests == []


def test_anonymous_token_defaults_to_the_configured_client_id():
    recorder = Recorder([json_response(envelope({"token": "nmv_usr_fresh0001"}))])
    http = httpx.Client(transport=httpx.MockTransport(recorder))
    NemoClient(http, config(client_id="persisted-id")).anonymous_token()
    assert recorder.last.headers["X-Client-Id"] == "persisted-id"


def test_anonymous_token_without_a_token_in_the_answer_is_a_protocol_error():
    client = make_client(Recorder([json_response(envelope({"user_id": "anon_7"}))]))
    with pytest.raises(ProtocolError, match="token"):
        client.anonymous_token("id")


def test_anonymous_token_answered_400_is_missing_client_id():
    client = make_client(Recorder([json_response({"message": "bad request"}, 400)]))
    with pytest.raises(MissingClientId):
        client.anonymous_token("id")


def test_create_session_posts_the_task_and_returns_the_session():
    recorder = Recorder(
        [json_response(envelope({"task_id": "t1", "session_id": "s1", "user_id": USER_ID}))]
    )
    session = make_client(recorder).create_session("zh")
    assert recorder.last.url.path == "/api/tasks/me/with-session/nemo_agent"
    assert body_json(recorder.last) == {"task_name": "project", "language": "zh"}
    assert (session.session_id, session.task_id, session.user_id) == ("s1", "t1", USER_ID)


def test_create_session_without_a_session_id_is_a_protocol_error():
    client = make_client(Recorder([json_response(envelope({"task_id": "t1"}))]))
    with pytest.raises(ProtocolError, match="session_id"):
        client.create_session()


UPLOAD_ANSWER = envelope(
    {
        "files": [
            {
                "filename": "a.jpg",
                "file_type": "image",
                "cdn_url": "https://cdn.nemo.test/a.jpg",
                "width": 1920,
                "height": 1080,
                "duration": None,
                "fps": None,
                "hash": "abc",
            }
        ],
        "session_state_applied": True,
    }
)


def test_upload_urls_posts_the_urls_in_url_mode():
    recorder = Recorder([json_response(UPLOAD_ANSWER)])
    upload = make_client(recorder).upload_urls("s1", ["https://img.test/a.jpg"])
    assert recorder.last.url.path == f"/api/upload-video/nemo_agent/{USER_ID}/s1"
    assert body_json(recorder.last) == {"urls": ["https://img.test/a.jpg"], "source_type": "url"}
    assert upload.session_state_applied is True
    (uploaded,) = upload.files
    assert (uploaded.filename, uploaded.cdn_url, uploaded.width, uploaded.height) == (
        "a.jpg",
        "https://cdn.nemo.test/a.jpg",
        1920,
        1080,
    )
    assert uploaded.hash == "abc"


def test_upload_without_a_files_list_is_a_protocol_error():
    client = make_client(Recorder([json_response(envelope({"session_state_applied": True}))]))
    with pytest.raises(ProtocolError, match="files"):
        client.upload_urls("s1", ["https://img.test/a.jpg"])


def test_paths_use_me_when_the_token_came_without_a_user_id():
    recorder = Recorder([json_response(UPLOAD_ANSWER)])
    client = make_client(recorder, token=Token(Secret(TOKEN)))
    client.upload_urls("s1", ["https://img.test/a.jpg"])
    assert recorder.last.url.path == "/api/upload-video/nemo_agent/me/s1"


def test_ids_are_quoted_so_they_cannot_change_the_path():
    recorder = Recorder([json_response(envelope({"state": {}}))])
    make_client(recorder).state("../../auth")
    assert recorder.last.url.raw_path == b"/api/state/nemo_agent/anon_42/..%2F..%2Fauth/latest"


def test_upload_files_sends_one_multipart_form_with_a_files_field_per_file(tmp_path):
    photo = tmp_path / "beach.png"
    photo.write_bytes(b"\x89PNG fake")
    handle = io.BytesIO(b"jpeg bytes")
    recorder = Recorder([json_response(UPLOAD_ANSWER)])
    make_client(recorder).upload_files("s1", [photo, FileUpload("city.jpg", handle)])

    request = recorder.last
    assert request.headers["content-type"].startswith("multipart/form-data; boundary=")
    body = request.content
    assert body.count(b'name="files"') == 2
    assert b'filename="beach.png"\r\nContent-Type: image/png' in body
    assert b'filename="city.jpg"\r\nContent-Type: image/jpeg' in body
    assert b"\x89PNG fake" in body
    assert b"jpeg bytes" in body
    assert not handle.closed  # the caller's file stays the caller's


def test_upload_files_accepts_a_generator_of_bytes():
    recorder = Recorder([json_response(UPLOAD_ANSWER)])
    pieces = (part for part in (b"first-", b"second-", b"third"))
    make_client(recorder).upload_files("s1", [FileUpload("clip.mp4", pieces)])
    assert b"first-second-third" in recorder.last.content
    assert b"Content-Type: video/mp4" in recorder.last.content


def test_upload_files_refuses_an_empty_list():
    with pytest.raises(ValueError, match="nothing"):
        make_client(Recorder([])).upload_files("s1", [])


def test_credits_reads_available_frozen_and_total():
    recorder = Recorder([json_response(envelope({"available": 80, "frozen": 20, "total": 100}))])
    credits = make_client(recorder).credits()
    assert (recorder.last.method, recorder.last.url.path) == ("GET", "/api/credits/balance/simple")
    assert (credits.available, credits.frozen, credits.total) == (80, 20, 100)


def test_credits_without_a_total_adds_available_and_frozen():
    client = make_client(Recorder([json_response(envelope({"available": 70, "frozen": 5}))]))
    assert client.credits().total == 75


def test_credits_without_available_is_a_protocol_error():
    client = make_client(Recorder([json_response(envelope({"total": 5}))]))
    with pytest.raises(ProtocolError, match="available"):
        client.credits()


STATE = {
    "draft": DRAFT,
    "video_infos": [{"filename": "a.jpg"}, "junk"],
    "canvas_config": {"width": 1080, "height": 1920, "aspect_ratio": "9:16"},
    "generated_media": [{"url": "https://cdn.nemo.test/gen.mp4"}],
    "video_analyses": [{"summary": "a beach"}],
    "vendor_extra": {"kept": True},
}


def test_state_reads_draft_media_and_canvas():
    recorder = Recorder([json_response(envelope({"state": STATE}))])
    state = make_client(recorder).state("s1")
    assert recorder.last.url.path == f"/api/state/nemo_agent/{USER_ID}/s1/latest"
    assert state.draft is not None
    assert state.draft.to_json() == DRAFT
    assert state.video_infos == ({"filename": "a.jpg"},)
    assert state.canvas_config is not None
    assert (state.canvas_config.width, state.canvas_config.aspect_ratio) == (1080, "9:16")
    assert state.generated_media == ({"url": "https://cdn.nemo.test/gen.mp4"},)
    assert state.video_analyses == ({"summary": "a beach"},)
    assert state.raw["vendor_extra"] == {"kept": True}


def test_state_of_a_new_session_has_no_draft():
    client = make_client(Recorder([json_response(envelope({"state": {"draft": None}}))]))
    assert client.state("s1").draft is None


def test_state_accepts_a_bare_state_object():
    client = make_client(Recorder([json_response({"draft": DRAFT})]))
    assert client.state("s1").draft == Draft(DRAFT)


def test_state_with_a_draft_that_is_not_an_object_is_a_protocol_error():
    client = make_client(Recorder([json_response(envelope({"state": {"draft": "nope"}}))]))
    with pytest.raises(ProtocolError, match="draft"):
        client.state("s1")


def test_state_of_a_lost_session_raises_session_not_found():
    client = make_client(Recorder([json_response({"code": 1002, "message": "no session"}, 404)]))
    with pytest.raises(SessionNotFound):
        client.state("s1")


def test_start_render_posts_the_draft_unchanged_with_camelcase_session_and_default_output():
    recorder = Recorder([json_response({"success": True})])
    status = make_client(recorder).start_render("render_1", "s1", Draft(DRAFT))
    request = recorder.last
    assert (request.method, request.url.path) == ("POST", "/api/render/proxy/lambda")
    assert request.content.decode().count('"x-vendor"') == 1
    assert body_json(request) == {
        "id": "render_1",
        "sessionId": "s1",
        "draft": DRAFT,
        "output": {"format": "mp4", "quality": "high"},
    }
    assert (status.render_id, status.status) == ("render_1", RenderState.PENDING)


def test_start_render_takes_a_plain_draft_and_an_output():
    recorder = Recorder([json_response({"success": True, "data": {"status": "processing"}})])
    status = make_client(recorder).start_render(
        "render_1", "s1", DRAFT, {"format": "mp4", "quality": "medium"}
    )
    assert body_json(recorder.last)["output"] == {"format": "mp4", "quality": "medium"}
    assert status.status is RenderState.PROCESSING


RENDER_SHAPES = [
    (
        {
            "success": True,
            "data": {"status": "completed", "outputUrl": OUTPUT_URL, "progress": 100},
        },
        RenderState.COMPLETED,
        100,
        OUTPUT_URL,
        None,
    ),
    (
        {"success": True, "status": "completed", "output": {"url": OUTPUT_URL}, "progress": 100},
        RenderState.COMPLETED,
        100,
        OUTPUT_URL,
        None,
    ),
    ({"status": "processing", "progress": 40}, RenderState.PROCESSING, 40, None, None),
    ({"success": True, "data": {"status": "pending"}}, RenderState.PENDING, None, None, None),
    (
        {"code": 0, "data": {"status": "failed", "error": "GPU lost"}},
        RenderState.FAILED,
        None,
        None,
        "GPU lost",
    ),
    (
        {"success": True, "data": {"status": "failed", "error": {"message": "bad draft"}}},
        RenderState.FAILED,
        None,
        None,
        "bad draft",
    ),
    (
        {"success": True, "data": {"status": "Done", "output_url": OUTPUT_URL, "progress": "99.5"}},
        RenderState.COMPLETED,
        99.5,
        OUTPUT_URL,
        None,
    ),
]


@pytest.mark.parametrize(
    ("body", "state", "progress", "url", "error"),
    RENDER_SHAPES,
    ids=[
        "data.status-outputUrl",
        "top-level-status-output.url",
        "bare",
        "pending",
        "failed-string-error",
        "failed-object-error",
        "synonym-and-snake-case",
    ],
)
def test_render_status_is_read_wherever_the_sources_put_it(body, state, progress, url, error):
    recorder = Recorder([json_response(body)])
    status = make_client(recorder).render_status("render_1")
    assert recorder.last.url.path == "/api/render/proxy/lambda/render_1"
    assert (status.status, status.progress, status.output_url, status.error) == (
        state,
        progress,
        url,
        error,
    )
    assert status.is_final == (state in (RenderState.COMPLETED, RenderState.FAILED))


def test_render_status_keeps_the_vendor_timestamps():
    body = {
        "success": True,
        "data": {"status": "completed", "createdAt": 1000, "completedAt": 9000},
    }
    status = make_client(Recorder([json_response(body)])).render_status("r")
    assert (status.created_at_ms, status.completed_at_ms) == (1000, 9000)


@pytest.mark.parametrize(
    "body", [{"success": True, "data": {"status": "teleporting"}}, {"success": True, "data": {}}]
)
def test_render_status_without_a_known_status_is_a_protocol_error(body):
    with pytest.raises(ProtocolError, match="status"):
        make_client(Recorder([json_response(body)])).render_status("r")


def test_cancel_render_posts_to_the_cancel_endpoint():
    recorder = Recorder([json_response({"success": True})])
    make_client(recorder).cancel_render("render_1")
    assert (recorder.last.method, recorder.last.url.path) == (
        "POST",
        "/api/render/proxy/lambda/render_1/cancel",
    )


def test_cancel_of_an_unknown_render_raises():
    recorder = Recorder([json_response({"success": False, "error": "not found"}, 404)])
    with pytest.raises(ApiError) as caught:
        make_client(recorder).cancel_render("render_1")
    assert caught.value.http_status == 404


CALLS = {
    "create_session": lambda client: client.create_session(),
    "upload_urls": lambda client: client.upload_urls("s1", ["https://img.test/a.jpg"]),
    "upload_files": lambda client: client.upload_files(
        "s1", [FileUpload("a.jpg", io.BytesIO(b"x"))]
    ),
    "credits": lambda client: client.credits(),
    "state": lambda client: client.state("s1"),
    "start_render": lambda client: client.start_render("r1", "s1", DRAFT),
    "render_status": lambda client: client.render_status("r1"),
    "cancel_render": lambda client: client.cancel_render("r1"),
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_every_call_sends_the_three_attribution_headers_and_the_bearer(call):
    recorder = Recorder([json_response({"code": 7777, "message": "stop here"})])
    client = make_client(recorder)
    with pytest.raises(ApiError):
        call(client)
    headers = recorder.last.headers
    assert headers["X-Skill-Source"] == "reelyard"
    assert headers["X-Skill-Version"] == reelyard.__version__
    assert headers["X-Skill-Platform"] == "pytest"
    assert headers["Authorization"] == f"Bearer {TOKEN}"


def test_the_skill_source_and_platform_are_configurable():
    recorder = Recorder([json_response(envelope({"available": 1}))])
    make_client(recorder, skill_source="acme-reels", skill_platform="linux-x86_64").credits()
    assert recorder.last.headers["X-Skill-Source"] == "acme-reels"
    assert recorder.last.headers["X-Skill-Platform"] == "linux-x86_64"


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_without_a_token_no_call_is_sent(call):
    recorder = Recorder([])
    client = NemoClient(httpx.Client(transport=httpx.MockTransport(recorder)), config())
    with pytest.raises(TokenInvalid, match="no token"):
        call(client)
    assert recorder.requests == []


def test_the_configured_token_is_used_with_me():
    recorder = Recorder([json_response(envelope({"state": {}}))])
    http = httpx.Client(transport=httpx.MockTransport(recorder))
    NemoClient(http, config(token=Secret("nmv_usr_fromenv1"))).state("s1")
    assert recorder.last.headers["Authorization"] == "Bearer nmv_usr_fromenv1"
    assert recorder.last.url.path == "/api/state/nemo_agent/me/s1/latest"


def test_a_base_url_with_a_path_prefix_is_kept():
    recorder = Recorder([json_response(envelope({"available": 1}))])
    make_client(recorder, base_url="http://gateway.test/nemo/").credits()
    assert str(recorder.last.url) == "http://gateway.test/nemo/api/credits/balance/simple"


def raising(error: Exception):
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    return handler


def test_a_refused_connection_is_a_transport_error_that_never_reached_the_server():
    client = make_client(raising(httpx.ConnectError("connection refused")))
    with pytest.raises(TransportError) as caught:
        client.credits()
    assert caught.value.reached_server is False
    assert caught.value.retryable


@pytest.mark.parametrize(
    "error",
    [httpx.ReadTimeout("timed out"), httpx.RemoteProtocolError("peer closed connection")],
    ids=["read-timeout", "reset"],
)
def test_a_timeout_or_reset_after_sending_is_a_transport_error_that_may_have_arrived(error):
    client = make_client(raising(error))
    with pytest.raises(TransportError) as caught:
        client.start_render("r1", "s1", DRAFT)
    assert caught.value.reached_server is True
    assert type(error).__name__ in str(caught.value)


def test_a_body_that_cannot_be_decoded_is_a_protocol_error():
    response = httpx.Response(
        200, headers={"content-encoding": "gzip"}, content=iter([b"not gzip at all"])
    )
    with pytest.raises(ProtocolError):
        make_client(Recorder([response])).credits()


def test_the_client_repr_names_the_base_and_user():
    assert repr(make_client(Recorder([]))) == (
        "NemoClient(base_url='http://nemo.test', user_id='anon_42')"
    )


def test_json_bodies_are_sent_as_json():
    recorder = Recorder([json_response(envelope({"task_id": "t", "session_id": "s"}))])
    make_client(recorder).create_session()
    assert recorder.last.headers["content-type"] == "application/json"
    assert json.loads(recorder.last.content)["task_name"] == "project"
