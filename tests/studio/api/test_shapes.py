"""The studio's other documented shapes, all at once: errors with HTTP 200 and the code in
the body, the render status at the top level, ADK events, and exports that finish with a
small pre-made file (no-render mode). The project's client reads every one."""

from __future__ import annotations

import time
import uuid

import av
import httpx
import pytest

from nemo import (
    FileUpload,
    Heartbeat,
    NemoClient,
    NemoConfig,
    RenderState,
    Secret,
    SessionNotFound,
    Text,
    TokenInvalid,
    ToolCall,
    ToolResult,
    build_http_client,
)
from tests.studio.api import samples
from tests.studio.api.helpers import GENERATE

pytestmark = pytest.mark.slow
STUDIO_ENV = {
    "STUDIO_ERROR_STATUS": "ok",
    "STUDIO_STATUS_SHAPE": "top",
    "STUDIO_EVENT_SHAPE": "adk",
    "STUDIO_RENDER_MODE": "none",
}


# errors answered with HTTP 200


def test_a_missing_client_id_is_200_with_code_400(client):
    response = client.post("/api/auth/anonymous-token")
    assert response.status_code == 200
    assert response.json()["code"] == 400


def test_token_and_session_errors_are_200_with_their_code(client, user):
    bad = client.get("/api/credits/balance/simple", headers={"Authorization": "Bearer nope"})
    assert (bad.status_code, bad.json()["code"]) == (200, 1001)
    missing = user.state_response(f"sess_{uuid.uuid4().hex}")
    assert (missing.status_code, missing.json()["code"]) == (200, 1002)


def test_a_rate_limit_is_200_with_code_429_and_retry_after(studio, client):
    studio.faults(rate_limit={"count": 1}, retry_after_s=4)
    response = client.post("/api/auth/anonymous-token", headers={"X-Client-Id": "c"})
    assert response.status_code == 200
    assert response.json()["code"] == 429
    assert response.headers["Retry-After"] == "4"


def test_a_refused_upload_is_200_with_code_4001(user):
    session_id = user.session(empty=True)
    response = user.upload(session_id, files=[("files", ("a.jpg", samples.TEXT))])
    assert (response.status_code, response.json()["code"]) == (200, 4001)


def test_render_errors_are_200_with_success_false_and_the_code(client, user):
    session_id = user.session(empty=True)
    response = client.post(
        "/api/render/proxy/lambda",
        json={"id": "render_x", "sessionId": session_id, "draft": {}},
        headers={"Authorization": f"Bearer {user.token}"},  # no attribution
    )
    assert response.status_code == 200
    assert response.json() == {"success": False, "error": response.json()["error"], "code": 402}
    unknown = user.render_status("render_unknown")
    assert unknown.status_code == 200
    assert (unknown.json()["success"], unknown.json()["code"]) == (False, 4004)


def test_files_and_admin_keep_their_real_status(client):
    assert client.get(f"/cdn/sess_{'0' * 32}/{'0' * 24}.png").status_code == 404
    assert client.get("/renders/render_none.mp4").status_code == 404
    assert client.post("/_studio/faults", json={"meteor": 1}).status_code == 400


def test_the_client_reads_codes_from_200_answers(studio):
    config = NemoConfig(base_url=studio.url)
    with build_http_client(config) as http:
        client = NemoClient(http, config)
        client.use_token(client.anonymous_token(str(uuid.uuid4())))
        with pytest.raises(SessionNotFound):
            client.state(f"sess_{uuid.uuid4().hex}")
    with build_http_client(config) as http:
        stranger = NemoClient(http, NemoConfig(base_url=studio.url, token=Secret("nope")))
        with pytest.raises(TokenInvalid):
            stranger.credits()


# ADK events


def test_events_are_adk_events(studio, user):
    studio.faults(silent_close=0)
    session_id = user.session()
    stream = user.chat(session_id, GENERATE)
    assert stream.status == 200
    beats = [e for e in stream.events if e.payload is None]
    events = [e.payload for e in stream.events if e.payload is not None]
    assert beats  # heartbeats are empty data lines
    for event in events:
        assert "type" not in event
        assert event["author"] == "nemo_agent"
        assert event["partial"] is False
        assert event["content"]["role"] == "model"
        assert isinstance(event["timestamp"], float)
    parts = [event["content"]["parts"][0] for event in events]
    kinds = [next(iter(part)) for part in parts]
    assert kinds == [
        "functionCall", "text", "functionResponse", "functionCall", "functionResponse", "text"
    ]  # fmt: skip
    call = parts[0]["functionCall"]
    assert (call["name"], call["args"]) == ("generate_timeline", {"stage": "raw"})
    assert call["id"].startswith("call_")
    assert parts[2]["functionResponse"]["name"] == "generate_timeline"
    assert parts[2]["functionResponse"]["response"]["tracks"] == 1


# the whole journey through the project's client, in these shapes


def test_the_client_makes_a_video_end_to_end(studio, tmp_path):
    studio.faults(silent_close=0)
    config = NemoConfig(base_url=studio.url, client_id=str(uuid.uuid4()))
    photo = tmp_path / "beach.png"
    photo.write_bytes(samples.image_bytes(160, 120))
    with build_http_client(config) as http:
        client = NemoClient(http, config)
        client.use_token(client.anonymous_token(config.client_id))
        session = client.create_session()
        upload = client.upload_files(
            session.session_id, [photo, FileUpload("tune.wav", [samples.wav_bytes(0.5)])]
        )
        assert [f.file_type for f in upload.files] == ["image", "audio"]
        events = list(client.chat(session.session_id, GENERATE))
        kinds = {type(e) for e in events}
        assert {ToolCall, ToolResult, Text, Heartbeat} <= kinds
        state = client.state(session.session_id)
        assert state.draft is not None
        render_id = f"render_{uuid.uuid4().hex}"
        started = client.start_render(render_id, session.session_id, state.draft)
        assert started.status in (RenderState.PENDING, RenderState.PROCESSING)
        deadline = time.monotonic() + 30
        status = client.render_status(render_id)
        while not status.is_final and time.monotonic() < deadline:
            time.sleep(0.05)
            status = client.render_status(render_id)
        assert status.status is RenderState.COMPLETED
        assert status.output_url is not None
        assert status.output_url.endswith(f"/renders/{render_id}.mp4")
        assert status.progress == 100
        saved = client.download(status, tmp_path / "video.mp4")
    assert not saved.via_proxy
    with av.open(str(saved.path)) as video:
        stream = video.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (320, 180)
        assert video.duration / av.time_base == pytest.approx(1.0, abs=0.1)


def test_the_top_level_status_shape(user, client):
    session_id = user.session()
    user.chat(session_id, "a 2-second video")
    render_id = f"render_{uuid.uuid4().hex}"
    started = user.start_render(session_id, user.draft(session_id), render_id)
    assert started.json()["success"] is True
    body = {}
    for _ in range(600):
        body = user.render_status(render_id).json()
        if body["status"] in ("completed", "failed"):
            break
        time.sleep(0.05)
    assert "data" not in body
    assert body["success"] is True
    assert (body["id"], body["status"], body["progress"]) == (render_id, "completed", 100.0)
    assert body["output"]["url"].endswith(f"/renders/{render_id}.mp4")
    assert body["completedAt"] >= body["createdAt"] > 0
    small = client.get(body["output"]["url"])
    assert small.status_code == 200
    assert small.headers["content-type"] == "video/mp4"
    assert 0 < len(small.content) < 200_000


def test_the_status_shape_fault_switches_to_data(studio, user):
    session_id = user.session()
    user.chat(session_id, "a 2-second video")
    render_id = f"render_{uuid.uuid4().hex}"
    user.start_render(session_id, user.draft(session_id), render_id)
    studio.faults(status_shape="data")
    body = user.render_status(render_id).json()
    assert body["success"] is True
    assert body["data"]["id"] == render_id
    assert "status" not in body


def test_a_download_through_the_proxy_serves_the_same_file(user):
    session_id = user.session()
    user.chat(session_id, "a 2-second video")
    render_id = f"render_{uuid.uuid4().hex}"
    user.start_render(session_id, user.draft(session_id), render_id)
    for _ in range(600):
        body = user.render_status(render_id).json()
        if body["status"] == "completed":
            break
        time.sleep(0.05)
    proxied = user.get(f"/api/render/proxy/{render_id}/download")
    direct = httpx.get(body["output"]["url"])
    assert proxied.status_code == direct.status_code == 200
    assert proxied.content == direct.content
    assert proxied.headers["content-disposition"].endswith(f"{render_id}.mp4")
