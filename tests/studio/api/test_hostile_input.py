"""Hostile input on every endpoint gets a clean JSON error: never a 500, never a traceback
(the module's studio fails its teardown if it logged one)."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest

from tests.studio.api import samples
from tests.studio.api.helpers import APP, GENERATE, chat_body

pytestmark = pytest.mark.slow
STUDIO_ENV = {"STUDIO_MAX_UPLOAD_MB": "1"}
NESTED = b"[" * 100_000 + b"]" * 100_000


def _clean(response, *statuses):
    assert response.status_code in statuses, response.text[:500]
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body.get("code") not in (None, 0, 5000), body
    return body


def _json_calls(session_id):
    return [
        ("/api/tasks/me/with-session/nemo_agent", 400),
        (f"/api/upload-video/{APP}/me/{session_id}", 400),
        ("/run_sse", 400),
        ("/api/render/proxy/lambda", 400),
    ]


@pytest.mark.parametrize(
    "payload",
    [b"{", b"not json", b"\xff\xfe{}", b"null", b"[]", b'"text"', b"12", NESTED, b""],
    ids=["cut", "words", "bad-utf8", "null", "list", "string", "number", "nested", "empty"],
)
def test_a_body_that_is_not_a_json_object_is_400(user, payload):
    session_id = user.session(empty=True)
    for path, status in _json_calls(session_id):
        response = user.post(path, content=payload, headers={"Content-Type": "application/json"})
        _clean(response, status)


def test_an_upload_that_is_neither_multipart_nor_json_is_400(user):
    session_id = user.session(empty=True)
    response = user.upload(
        session_id, content=samples.image_bytes(), headers={"Content-Type": "image/png"}
    )
    _clean(response, 400)


@pytest.mark.parametrize(
    "change",
    [
        {"app_name": "other_agent"},
        {"app_name": 5},
        {"user_id": 5},
        {"user_id": ["me"]},
        {"session_id": 5},
        {"session_id": None},
        {"new_message": "make a video"},
        {"new_message": {"parts": "make a video"}},
        {"new_message": {"parts": [{"text": 5}]}},
        {"new_message": {"parts": [{"text": "   "}]}},
        {"new_message": {"parts": []}},
        {"new_message": {"parts": [{"text": "x" * 20_001}]}},
    ],
)
def test_a_chat_request_of_the_wrong_shape_is_refused_and_not_charged(studio, user, change):
    session_id = user.session()
    body = chat_body(session_id, GENERATE) | change
    _clean(user.post("/run_sse", json=body), 400, 404)
    assert user.balance()["available"] == 100
    assert (
        session_id not in studio.ledger()["sessions"]
        or not studio.ledger()["sessions"][session_id]["messages"]
    )


@pytest.mark.parametrize(
    "change",
    [
        {"id": 5},
        {"id": ""},
        {"id": "../../etc/passwd"},
        {"id": "render/x"},
        {"id": "r" * 200},
        {"sessionId": ["sess"]},
        {"draft": "a draft"},
        {"draft": {"t": 5}},
        {"draft": {"t": "tracks"}},
        {"draft": {"t": [5, None, "x"]}},
        {"draft": {"t": [{"tt": 0, "sg": [{"src": 5, "d": "long"}]}]}},
        {"draft": {"t": [{"tt": 0, "sg": [{"src": "a.png", "d": -1}]}]}},
        {"draft": {"t": [{"tt": 0, "sg": [{"src": "a.png", "d": 1e308}]}]}},
        {"draft": {"t": [{"tt": 0, "sg": [{"src": "a.png", "d": 500}]}], "m": "x"}},
        {"draft": {"t": [{"tt": 0, "sg": "segments"}]}},
        {"draft": {"t": [{"tt": "video", "sg": [{"src": "a.png", "d": 500}]}]}},
        {"draft": {"t": [{"tt": 0, "sg": [{"src": "a.png", "d": 500}]}], "m": {"w": 7, "h": 1}}},
        {"draft": {"t": [{"tt": 0, "sg": [{"src": "a.png", "d": 500}]}], "m": {"fps": "x"}}},
        {"draft": {"t": [{"tt": 0, "sg": [{"src": "a.png", "d": 3e8}]}]}},  # 83 hours
        {"output": "mp4"},
        {"output": {"format": "gif"}},
    ],
)
def test_an_export_request_of_the_wrong_shape_is_400(user, change):
    session_id = user.session()
    draft = {"t": [{"tt": 0, "sg": [{"src": "photo0.png", "d": 1000}]}]}
    response = user.start_render(session_id, draft, changes=change)
    assert response.status_code in (400, 404), response.text
    body = response.json()
    assert body["success"] is False
    assert body["code"] in (400, 1002)


@pytest.mark.parametrize("number", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_numbers_json_cannot_hold_are_refused(user, number):
    session_id = user.session()
    body = (
        b'{"id": "render_nan", "sessionId": "%s", "draft": {"t": [{"tt": 0, "sg": '
        b'[{"src": "photo0.png", "d": %s}]}]}}' % (session_id.encode(), number)
    )
    response = user.post(
        "/api/render/proxy/lambda", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["code"] == 400


def test_a_json_body_over_20_mb_is_400(user):
    session_id = user.session(empty=True)
    huge = b'{"urls": ["' + b"a" * (21 * 1024 * 1024) + b'"]}'
    response = user.upload(session_id, content=huge, headers={"Content-Type": "application/json"})
    _clean(response, 400)


def test_a_chunked_json_body_over_20_mb_is_400(user):
    session_id = user.session(empty=True)

    def pieces():
        yield b'{"urls": ["'
        for _ in range(22):
            yield b"a" * (1024 * 1024)
        yield b'"]}'

    response = user.upload(
        session_id, content=pieces(), headers={"Content-Type": "application/json"}
    )
    _clean(response, 400)


def test_a_multipart_body_over_the_request_limit_is_4002(user):
    session_id = user.session(empty=True)
    big = b"\0" * (25 * 1024 * 1024)  # over four files' worth plus the JSON allowance
    response = user.upload(session_id, files=[("files", ("big.png", big))])
    body = _clean(response, 413)
    assert body["code"] == 4002


def test_too_many_files_at_once_is_400(user):
    session_id = user.session(empty=True)
    photo = samples.image_bytes(8, 8)
    files = [("files", (f"p{i}.png", photo)) for i in range(51)]
    _clean(user.upload(session_id, files=files), 400)


def test_an_overlong_client_id_is_400(client):
    response = client.post("/api/auth/anonymous-token", headers={"X-Client-Id": "c" * 129})
    _clean(response, 400)


def _raw_get(url, path):
    """GET exactly ``path`` (no client-side normalisation of dots or escapes)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as connection:
        connection.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode()
        )
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), head.decode("latin-1"), body


@pytest.mark.parametrize(
    "path",
    [
        "/cdn/../../../../etc/passwd",
        "/cdn/{sid}/../../../../etc/passwd",
        "/cdn/{sid}/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/cdn/{sid}/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/cdn/..%2f..%2f/passwd",
        "/cdn/{sid}/..",
        "/cdn/{sid}/.",
        "/cdn/{sid}/0123456789abcdef01234567.png",
        "/cdn/{sid}/%00.png",
        "/cdn/sess_{hex}/0123456789abcdef01234567.png",
        "/renders/..%2f..%2fpremade.mp4",
        "/renders/../premade.mp4",
        "/renders/premade.mp4",
        "/api/upload-video/nemo_agent/me/..%2f..%2fetc",
        "/api/state/nemo_agent/me/..%2f..%2fetc/latest",
        "/api/render/proxy/..%2f..%2fpremade/download",
    ],
)
def test_paths_that_climb_out_are_json_404s(studio, user, path):
    session_id = user.session()
    target = path.format(sid=session_id, hex="0" * 32)
    status, head, body = _raw_get(studio.url, target)
    assert status in (401, 404), (status, body[:300])
    assert "application/json" in head
    assert b"root:" not in body
    assert b"Traceback" not in body


def test_a_stored_file_is_served_but_not_its_neighbours(studio, user):
    session_id = user.session()
    cdn_url = user.state(session_id)["video_infos"][0]["cdn_url"]
    path = urlsplit(cdn_url).path
    assert _raw_get(studio.url, path)[0] == 200
    assert _raw_get(studio.url, path.rsplit("/", 1)[0] + "/")[0] == 404


@pytest.mark.parametrize(
    "settings",
    [b"{", b"[]", b'{"meteor": 1}', b'{"rate_limit": {"p": 3}}', b'{"status_shape": 5}'],
)
def test_bad_fault_settings_are_400_and_change_nothing(client, settings):
    before = client.get("/_studio/faults").json()
    response = client.post(
        "/_studio/faults", content=settings, headers={"Content-Type": "application/json"}
    )
    _clean(response, 400)
    assert client.get("/_studio/faults").json() == before
