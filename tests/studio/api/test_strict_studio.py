"""A studio set up as a self-hosted one should be: URL uploads stay off its own network,
anonymous users may not export, exports cost credits, and start-up faults survive a
reset."""

from __future__ import annotations

import json

import pytest

from tests.studio.api import samples
from tests.studio.api.fileserver import serve_files
from tests.studio.api.helpers import User

pytestmark = pytest.mark.slow
RICH, POOR = "tok_rich", "tok_poor"
STUDIO_ENV = {
    "STUDIO_ALLOW_PRIVATE_URLS": "0",
    "STUDIO_ANONYMOUS_EXPORT": "0",
    "STUDIO_PAID_TOKENS": f"{RICH}:1000,{POOR}:5",
    "STUDIO_COST_EXPORT": "10",
    "STUDIO_FAULTS": json.dumps({"retry_after_s": 9}),
    "STUDIO_RENDER_MODE": "none",
}
DRAFT = {"m": {"w": 160, "h": 120}, "t": [{"tt": 0, "sg": [{"src": "photo0.png", "d": 500}]}]}


def test_a_loopback_url_is_refused_before_it_is_fetched(user):
    session_id = user.session(empty=True)
    with serve_files(**{"p.png": samples.image_bytes()}) as files:
        for host in ("127.0.0.1", "localhost"):
            response = user.upload(session_id, json={"urls": [files.url("/files/p.png", host)]})
            assert response.status_code == 400
            assert "non-public address" in response.json()["message"]
        assert files.requests == []


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1]/a.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/a.png",
        "http://192.168.1.1/a.png",
        "https://[fe80::1]/a.png",
        "http://0.0.0.0:8600/_studio/ledger",
    ],
)
def test_private_and_link_local_urls_are_refused(user, url):
    session_id = user.session(empty=True)
    response = user.upload(session_id, json={"urls": [url]})
    assert (response.status_code, response.json()["code"]) == (400, 400)
    assert "non-public" in response.json()["message"]


def test_an_anonymous_export_is_402_here(user):
    session_id = user.session()
    response = user.start_render(session_id, DRAFT, "render_anon")
    assert response.status_code == 402
    assert response.json() == {
        "success": False,
        "error": "export is not available on the free plan",
        "code": 402,
    }


def test_a_paid_export_costs_what_it_is_set_to(studio, client):
    rich = User.paid(client, RICH)
    session_id = rich.session()
    assert rich.start_render(session_id, DRAFT, "render_paid").status_code == 200
    assert rich.balance() == {"available": 990, "frozen": 0, "total": 990}
    assert studio.ledger()["sessions"][session_id]["credits_charged"] == 10
    assert rich.wait_render("render_paid")["status"] == "completed"


def test_an_export_that_cannot_be_paid_for_is_2001_and_keeps_its_id_free(studio, client):
    poor = User.paid(client, POOR)
    session_id = poor.session()
    response = poor.start_render(session_id, DRAFT, "render_poor")
    assert (response.status_code, response.json()["code"]) == (402, 2001)
    assert poor.balance() == {"available": 5, "frozen": 0, "total": 5}
    assert poor.render_status("render_poor").status_code == 404  # never started
    rich = User.paid(client, RICH)
    rich_session = rich.session()
    assert rich.start_render(rich_session, DRAFT, "render_poor").status_code == 200


def test_a_refused_duplicate_export_is_not_charged(client):
    rich = User.paid(client, RICH)
    session_id = rich.session()
    rich.start_render(session_id, DRAFT, "render_once")
    assert rich.start_render(session_id, DRAFT, "render_once").status_code == 409
    assert rich.balance()["available"] == 990


def test_reset_restores_the_faults_set_at_start(studio, user):
    studio.faults(retry_after_s=1)
    studio.reset()
    assert studio.admin("GET", "faults")["retry_after_s"] == 9
    studio.faults(rate_limit={"count": 1})
    response = user.http.post("/api/auth/anonymous-token", headers={"X-Client-Id": "z"})
    assert response.headers["Retry-After"] == "9"
