"""The contract of nemo-api.md over a real socket: every endpoint, its envelope, and
each error code with the trigger the contract documents."""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import UTC, datetime

import pytest

from tests.studio.api import samples
from tests.studio.api.fileserver import serve_files
from tests.studio.api.helpers import APP, ATTRIBUTION, GENERATE, User, chat_body

pytestmark = pytest.mark.slow
STUDIO_ENV = {"STUDIO_MAX_UPLOAD_MB": "1"}
MB = 1024 * 1024


def assert_error(response, http_status, code, *, contains=""):
    """The ``{code, message, data}`` error envelope, with the code's HTTP status."""
    assert response.status_code == http_status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body == {"code": code, "message": body["message"], "data": None}
    assert contains.lower() in body["message"].lower()
    return body


def assert_render_error(response, http_status, code, *, contains=""):
    """The render endpoints' ``{success: false, error}`` envelope (plus the code)."""
    assert response.status_code == http_status, response.text
    body = response.json()
    assert body == {"success": False, "error": body["error"], "code": code}
    assert contains.lower() in body["error"].lower()
    return body


# tokens


def test_an_anonymous_token_carries_100_credits_and_expires_in_7_days(client):
    response = client.post("/api/auth/anonymous-token", headers={"X-Client-Id": "c-1"})
    assert response.status_code == 200
    body = response.json()
    assert (body["code"], body["message"]) == (0, "success")
    data = body["data"]
    assert data["token"].startswith("nmv_usr_")
    assert data["user_id"].startswith("anon_")
    assert data["credits"] == 100
    expires = datetime.fromisoformat(data["expires_at"].replace("Z", "+00:00"))
    assert abs((expires - datetime.now(UTC)).total_seconds() - 7 * 86400) < 60


@pytest.mark.parametrize("headers", [{}, {"X-Client-Id": ""}])
def test_a_token_without_a_client_id_is_400(client, headers):
    response = client.post("/api/auth/anonymous-token", headers=headers)
    assert_error(response, 400, 400, contains="X-Client-Id")


def test_a_second_token_for_the_same_client_id_is_429_with_retry_after(client, studio):
    User.anonymous(client, "same-client")
    response = client.post("/api/auth/anonymous-token", headers={"X-Client-Id": "same-client"})
    assert_error(response, 429, 429, contains="reuse it")
    assert abs(int(response.headers["Retry-After"]) - 7 * 86400) < 60
    assert studio.ledger()["tokens"] == {"same-client": 1}


def test_an_address_gets_ten_tokens_then_429(client, studio):
    for n in range(10):
        User.anonymous(client, f"client-{n}")
    response = client.post("/api/auth/anonymous-token", headers={"X-Client-Id": "client-10"})
    assert_error(response, 429, 429, contains="address")
    assert int(response.headers["Retry-After"]) > 0
    assert len(studio.ledger()["tokens"]) == 10


# 1001


def _authenticated_calls(session_id):
    return [
        ("POST", "/api/tasks/me/with-session/nemo_agent", {"task_name": "project"}),
        ("GET", "/api/credits/balance/simple", None),
        ("GET", f"/api/state/{APP}/me/{session_id}/latest", None),
        ("POST", f"/api/upload-video/{APP}/me/{session_id}", {"urls": ["http://x/a.png"]}),
        ("POST", "/run_sse", chat_body(session_id, "hello")),
        ("GET", "/api/render/proxy/lambda/render_1", None),
        ("POST", "/api/render/proxy/lambda/render_1/cancel", None),
        ("GET", "/api/render/proxy/render_1/download", None),
    ]


@pytest.mark.parametrize(
    "authorization",
    [None, "", "Bearer", "Bearer nmv_usr_unknown", "Basic dXNlcjpwYXNz", "nmv_usr_x"],
)
def test_a_missing_or_unknown_token_is_1001_on_every_call(client, user, authorization):
    session_id = user.session(empty=True)
    headers = dict(ATTRIBUTION)
    if authorization is not None:
        headers["Authorization"] = authorization
    for method, path, body in _authenticated_calls(session_id):
        response = client.request(method, path, json=body, headers=headers)
        if path.startswith("/api/render/"):
            assert_render_error(response, 401, 1001)
        else:
            assert_error(response, 401, 1001)


def test_an_export_with_an_unknown_token_is_1001(client, user):
    session_id = user.session(empty=True)
    stranger = User(client, "nmv_usr_forged", "anon_forged")
    assert_render_error(stranger.start_render(session_id, {"t": []}), 401, 1001)


# sessions and 1002


def test_a_session_belongs_to_the_token_user(user):
    response = user.post(
        "/api/tasks/me/with-session/nemo_agent", json={"task_name": "project", "language": "en"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["code"] == 0
    data = body["data"]
    assert data["session_id"].startswith("sess_")
    assert data["task_id"]
    assert data["user_id"] == user.user_id


@pytest.mark.parametrize("body", [None, [], "project", {"language": 5}, {"language": "x" * 17}])
def test_a_session_request_that_is_not_an_object_with_a_language_is_400(user, body):
    response = user.post("/api/tasks/me/with-session/nemo_agent", json=body)
    assert_error(response, 400, 400)


def test_an_unknown_session_is_1002_on_every_call_naming_one(user):
    unknown = f"sess_{uuid.uuid4().hex}"
    assert_error(user.state_response(unknown), 404, 1002)
    assert_error(user.upload(unknown, json={"urls": ["http://x/a.png"]}), 404, 1002)
    assert_error(user.post("/run_sse", json=chat_body(unknown, "hi")), 404, 1002)
    assert_render_error(user.start_render(unknown, {"t": []}), 404, 1002)


def test_a_session_of_another_user_is_1002(client, user):
    session_id = user.session(empty=True)
    other = User.anonymous(client)
    assert_error(other.state_response(session_id), 404, 1002)
    assert_error(other.post("/run_sse", json=chat_body(session_id, "hi")), 404, 1002)
    # even naming its owner in the path
    assert_error(other.state_response(session_id, user=user.user_id), 404, 1002)
    assert user.state_response(session_id).status_code == 200  # still there for its owner


def test_paths_accept_me_or_the_user_id_and_nothing_else(client, user):
    session_id = user.session(empty=True)
    for name in ("me", user.user_id):
        assert user.state_response(session_id, user=name).json()["code"] == 0
        photo = [("files", ("a.png", samples.image_bytes()))]
        assert user.upload(session_id, user=name, files=photo).json()["code"] == 0
    other = User.anonymous(client)
    assert_error(user.state_response(session_id, user=other.user_id), 404, 1002)
    assert_error(user.state_response(session_id, user="you"), 404, 1002)


def test_the_chat_accepts_me_or_the_user_id(user):
    session_id = user.session()
    stream = user.chat(session_id, "make a slideshow", user=user.user_id)
    assert stream.status == 200
    assert stream.of_type("tool_call")
    response = user.post("/run_sse", json=chat_body(session_id, "hi", user="anon_someone_else"))
    assert_error(response, 404, 1002)


# uploads


def test_a_multipart_upload_answers_each_file_and_serves_it(client, user):
    session_id = user.session(empty=True)
    png, jpeg = samples.image_bytes(64, 48), samples.image_bytes(30, 20, fmt="JPEG")
    response = user.upload(
        session_id, files=[("files", ("one.png", png)), ("files", ("two.jpg", jpeg))]
    )
    assert response.status_code == 200
    body = response.json()
    assert body["code"] == 0
    assert body["data"]["session_state_applied"] is True
    first, second = body["data"]["files"]
    assert set(first) >= {
        "filename", "file_type", "cdn_url", "width", "height", "duration", "fps", "hash"
    }  # fmt: skip
    assert (first["filename"], first["file_type"], first["width"], first["height"]) == (
        "one.png", "image", 64, 48
    )  # fmt: skip
    assert (second["width"], second["height"]) == (30, 20)
    assert first["duration"] is None
    assert first["hash"] == hashlib.sha256(png).hexdigest()
    for data, item in ((png, first), (jpeg, second)):
        served = client.get(item["cdn_url"])
        assert served.status_code == 200
        assert served.content == data
    assert [m["filename"] for m in user.state(session_id)["video_infos"]] == ["one.png", "two.jpg"]


def test_clips_and_sounds_are_described(user):
    session_id = user.session(empty=True)
    files = [
        ("files", ("clip.mp4", samples.mp4_bytes(96, 64, fps=10, frames=20))),
        ("files", ("tune.mp3", samples.mp3_bytes(1.0))),
    ]
    clip, tune = user.upload(session_id, files=files).json()["data"]["files"]
    assert (clip["file_type"], clip["width"], clip["height"], clip["fps"]) == ("video", 96, 64, 10)
    assert clip["duration"] == pytest.approx(2.0, abs=0.2)
    assert (tune["file_type"], tune["width"]) == ("audio", None)
    assert tune["duration"] == pytest.approx(1.0, abs=0.1)


def test_a_png_named_mp3_is_accepted_as_an_image(user):
    session_id = user.session(empty=True)
    response = user.upload(session_id, files=[("files", ("song.mp3", samples.image_bytes()))])
    (item,) = response.json()["data"]["files"]
    assert (item["filename"], item["file_type"]) == ("song.mp3", "image")
    assert item["cdn_url"].endswith(".png")


def test_a_text_file_named_jpg_is_4001(user):
    session_id = user.session(empty=True)
    response = user.upload(session_id, files=[("files", ("photo.jpg", samples.TEXT))])
    assert_error(response, 415, 4001, contains="accepted: images jpg")
    assert user.state(session_id)["video_infos"] == []


def test_one_bad_file_refuses_the_whole_upload(studio, user):
    session_id = user.session(empty=True)
    files = [("files", ("good.png", samples.image_bytes())), ("files", ("bad.jpg", samples.ZIP))]
    assert_error(user.upload(session_id, files=files), 415, 4001, contains="bad.jpg")
    assert user.state(session_id)["video_infos"] == []
    assert session_id not in studio.ledger()["sessions"]


def test_a_file_over_the_size_limit_is_4002(user):
    session_id = user.session(empty=True)
    big = samples.noisy_png(MB + 1000)
    response = user.upload(session_id, files=[("files", ("big.png", big))])
    assert_error(response, 413, 4002, contains="larger than 1 MB")
    assert user.state(session_id)["video_infos"] == []


def test_a_file_just_under_the_size_limit_is_taken(user):
    session_id = user.session(empty=True)
    photo = samples.noisy_png(MB - 200_000)
    assert len(photo) < MB
    response = user.upload(session_id, files=[("files", ("fine.png", photo))])
    assert response.json()["code"] == 0


def test_a_multipart_upload_without_files_is_400(user):
    session_id = user.session(empty=True)
    response = user.upload(session_id, files=[("photos", ("a.png", samples.image_bytes()))])
    assert_error(response, 400, 400, contains="'files'")


def test_urls_are_fetched_and_described(client, user):
    session_id = user.session(empty=True)
    photo = samples.image_bytes(50, 40)
    with serve_files(**{"beach.png": photo}) as files:
        response = user.upload(
            session_id, json={"urls": [files.url("/files/beach.png")], "source_type": "url"}
        )
    assert response.status_code == 200, response.text
    (item,) = response.json()["data"]["files"]
    assert (item["filename"], item["width"], item["height"]) == ("beach.png", 50, 40)
    assert item["hash"] == hashlib.sha256(photo).hexdigest()
    assert client.get(item["cdn_url"]).content == photo


def test_a_url_to_text_is_4001(user):
    session_id = user.session(empty=True)
    with serve_files(**{"photo.jpg": samples.TEXT}) as files:
        response = user.upload(session_id, json={"urls": [files.url("/files/photo.jpg")]})
    assert_error(response, 415, 4001)


@pytest.mark.parametrize("route", ["files", "chunked"])
def test_a_url_over_the_size_limit_is_4002(user, route):
    session_id = user.session(empty=True)
    with serve_files(**{"big.png": samples.noisy_png(MB + 1000)}) as files:
        response = user.upload(session_id, json={"urls": [files.url(f"/{route}/big.png")]})
    assert_error(response, 413, 4002, contains="big.png")
    assert user.state(session_id)["video_infos"] == []


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"urls": []},
        {"urls": "http://x/a.png"},
        {"urls": [5]},
        {"urls": ["http://x/a.png"], "source_type": "file"},
        {"urls": ["http://x/a.png"] * 51},
    ],
)
def test_a_url_upload_that_is_not_a_list_of_urls_is_400(user, body):
    session_id = user.session(empty=True)
    assert_error(user.upload(session_id, json=body), 400, 400)


# credits and 2001


def test_the_balance_has_available_frozen_and_total(user):
    response = user.get("/api/credits/balance/simple")
    assert response.json() == {
        "code": 0,
        "message": "success",
        "data": {"available": 100, "frozen": 0, "total": 100},
    }


def test_a_turn_that_cannot_be_paid_for_is_2001_before_any_work(studio, user):
    session_id = user.session()
    user.chat(session_id, GENERATE)  # 100 credits: all of them
    assert user.balance() == {"available": 0, "frozen": 0, "total": 0}
    before = user.draft(session_id)
    response = user.post("/run_sse", json=chat_body(session_id, "make it vertical"))
    assert_error(response, 402, 2001, contains="out of credits")
    time.sleep(0.2)  # an edit takes at least 0.05 s at this time scale
    assert user.draft(session_id) == before
    ledger = studio.ledger()["sessions"][session_id]
    assert [m["text"] for m in ledger["messages"]] == [GENERATE]
    assert ledger["credits_charged"] == 100


# state


def test_the_state_of_a_new_session_is_empty_but_complete(user):
    session_id = user.session(empty=True)
    response = user.state_response(session_id)
    body = response.json()
    assert body["code"] == 0
    assert body["data"]["state"] == {
        "draft": {},
        "video_infos": [],
        "canvas_config": {},
        "generated_media": [],
        "video_analyses": [],
    }


def test_the_state_after_a_turn_holds_the_draft_and_canvas(user):
    session_id = user.session()
    user.chat(session_id, GENERATE)
    state = user.state(session_id)
    draft = state["draft"]
    assert any(track.get("sg") for track in draft["t"])
    assert {"tt": 0}.items() <= draft["t"][0].items()
    assert state["canvas_config"]["width"] == state["canvas_config"]["height"] == 720
    assert len(state["video_infos"]) == len(state["video_analyses"]) == 2


# exports: attribution and envelopes


@pytest.mark.parametrize("missing", sorted(ATTRIBUTION))
def test_an_export_without_an_attribution_header_is_402(user, missing):
    session_id = user.session()
    user.chat(session_id, GENERATE)
    headers = {"Authorization": f"Bearer {user.token}"} | {
        k: v for k, v in ATTRIBUTION.items() if k != missing
    }
    body = {"id": "render_attr", "sessionId": session_id, "draft": user.draft(session_id)}
    response = user.http.post("/api/render/proxy/lambda", json=body, headers=headers)
    assert_render_error(response, 402, 402, contains=missing)
    assert_render_error(user.render_status("render_attr"), 404, 4004)


def test_an_export_with_blank_attribution_is_402(user):
    session_id = user.session(empty=True)
    headers = user.headers | {"X-Skill-Platform": ""}
    response = user.http.post(
        "/api/render/proxy/lambda",
        json={"id": "render_b", "sessionId": session_id},
        headers=headers,
    )
    assert_render_error(response, 402, 402)


def test_other_calls_do_not_need_attribution(client, user):
    session_id = user.session(empty=True)
    bare = {"Authorization": f"Bearer {user.token}"}
    response = client.get(f"/api/state/{APP}/me/{session_id}/latest", headers=bare)
    assert response.json()["code"] == 0


# the rest of the address space


def test_an_unknown_path_is_a_json_404(client):
    response = client.get("/api/nothing/here")
    assert_error(response, 404, 4004)


def test_a_wrong_method_is_a_json_405(client):
    response = client.get("/api/auth/anonymous-token")
    assert response.status_code == 405
    assert response.json()["code"] == 400


# URL uploads: where the studio will go (this studio allows loopback, as tests need)


def test_a_redirect_within_the_host_is_followed(user):
    session_id = user.session(empty=True)
    photo = samples.image_bytes(20, 10)
    with serve_files(**{"p.png": photo}) as files:
        url = files.url("/redirect/1?to=/files/p.png")
        response = user.upload(session_id, json={"urls": [url]})
        assert [path for path, _ in files.requests] == [
            "/redirect/1?to=/files/p.png",
            "/files/p.png",
        ]
    assert response.json()["code"] == 0
    assert response.json()["data"]["files"][0]["width"] == 20


def test_a_redirect_to_another_host_is_refused(user):
    session_id = user.session(empty=True)
    with serve_files(**{"p.png": samples.image_bytes()}) as files:
        elsewhere = files.url("/files/p.png", host="localhost")
        response = user.upload(
            session_id, json={"urls": [files.url(f"/redirect/1?to={elsewhere}")]}
        )
        assert len(files.requests) == 1  # the other host was never asked
    assert_error(response, 400, 400, contains="another host")


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://127.0.0.1/a.png", "gopher://127.0.0.1/", "/etc/passwd"]
)
def test_a_url_that_is_not_http_is_refused(user, url):
    session_id = user.session(empty=True)
    assert_error(user.upload(session_id, json={"urls": [url]}), 400, 400, contains="http")


def test_one_bad_url_refuses_them_all(user):
    session_id = user.session(empty=True)
    with serve_files(**{"p.png": samples.image_bytes()}) as files:
        urls = [files.url("/files/p.png"), files.url("/files/missing.png")]
        response = user.upload(session_id, json={"urls": urls})
    assert_error(response, 400, 400, contains="404")
    assert user.state(session_id)["video_infos"] == []
