"""/_studio/* answers on loopback, or anywhere with the admin token; it is no part of the
Nemo contract and hides from everyone else. The remote address is set through the WSGI
environment of Flask's test client, the one place a real socket cannot reach."""

from __future__ import annotations

import pytest

from studio.app import create_app
from studio.config import ErrorStatus, StudioConfig

ADMIN = "s3cret-admin"
STRANGER = {"REMOTE_ADDR": "10.1.2.3"}
CALLS = [("GET", "/_studio/faults"), ("GET", "/_studio/ledger"), ("POST", "/_studio/reset")]


def _client(tmp_path, **settings):
    app = create_app(StudioConfig(data_dir=tmp_path, **settings))
    return app.test_client()


@pytest.mark.parametrize(("method", "path"), CALLS)
def test_a_stranger_without_the_token_gets_a_json_404(tmp_path, method, path):
    client = _client(tmp_path, admin_token=ADMIN)
    for headers in ({}, {"X-Studio-Admin": "wrong"}, {"X-Studio-Admin": ""}):
        response = client.open(path, method=method, headers=headers, environ_base=STRANGER)
        assert response.status_code == 404
        assert response.json == {"code": 4004, "message": "not found", "data": None}


def test_a_stranger_cannot_change_the_faults(tmp_path):
    client = _client(tmp_path, admin_token=ADMIN)
    response = client.post("/_studio/faults", json={"rate_limit": 1.0}, environ_base=STRANGER)
    assert response.status_code == 404
    assert client.get("/_studio/faults").json["rate_limit"]["p"] == 0.0


@pytest.mark.parametrize(("method", "path"), CALLS)
def test_the_admin_token_opens_it_from_anywhere(tmp_path, method, path):
    client = _client(tmp_path, admin_token=ADMIN)
    response = client.open(
        path, method=method, headers={"X-Studio-Admin": ADMIN}, environ_base=STRANGER
    )
    assert response.status_code == 200


@pytest.mark.parametrize("address", ["127.0.0.1", "127.9.9.9", "::1"])
def test_loopback_needs_no_token(tmp_path, address):
    client = _client(tmp_path)
    response = client.get("/_studio/ledger", environ_base={"REMOTE_ADDR": address})
    assert response.status_code == 200
    assert response.json == {"sessions": {}, "renders": {}, "tokens": {}, "tokens_revoked": {}}


@pytest.mark.parametrize("address", ["10.1.2.3", "192.168.0.5", "8.8.8.8", "::ffff:10.0.0.1", ""])
def test_without_an_admin_token_set_only_loopback_gets_in(tmp_path, address):
    client = _client(tmp_path)
    for headers in ({}, {"X-Studio-Admin": "anything"}):
        response = client.get(
            "/_studio/faults", headers=headers, environ_base={"REMOTE_ADDR": address}
        )
        assert response.status_code == 404


def test_the_refusal_is_a_real_404_even_when_errors_answer_200(tmp_path):
    client = _client(tmp_path, error_status=ErrorStatus.OK)
    response = client.get("/_studio/ledger", environ_base=STRANGER)
    assert response.status_code == 404


def test_the_nemo_api_itself_answers_strangers(tmp_path):
    client = _client(tmp_path, admin_token=ADMIN)
    response = client.post(
        "/api/auth/anonymous-token", headers={"X-Client-Id": "far-away"}, environ_base=STRANGER
    )
    assert response.status_code == 200
    assert response.json["data"]["credits"] == 100
