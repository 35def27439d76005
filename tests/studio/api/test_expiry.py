"""Tokens and sessions expire after their configured lifetimes (one second here)."""

from __future__ import annotations

import time

import pytest

from tests.studio.api.helpers import User

pytestmark = pytest.mark.slow
PAID = "tok_forever"
STUDIO_ENV = {
    "STUDIO_TOKEN_TTL_S": "1",
    "STUDIO_SESSION_TTL_S": "1",
    "STUDIO_PAID_TOKENS": f"{PAID}:10",
}
BALANCE = "/api/credits/balance/simple"


def test_an_expired_token_is_1001_and_its_client_id_may_have_another(studio, client):
    user = User.anonymous(client)
    assert user.get(BALANCE).status_code == 200
    time.sleep(1.1)
    response = user.get(BALANCE)
    assert (response.status_code, response.json()["code"]) == (401, 1001)
    fresh = User.anonymous(client, user.client_id)
    assert fresh.get(BALANCE).status_code == 200
    assert studio.ledger()["tokens"] == {user.client_id: 2}


def test_an_expired_session_is_1002_and_a_paid_token_lives_on(client):
    paid = User.paid(client, PAID)
    session_id = paid.session(empty=True)
    assert paid.state_response(session_id).status_code == 200
    time.sleep(1.1)
    response = paid.state_response(session_id)
    assert (response.status_code, response.json()["code"]) == (404, 1002)
    assert paid.get(BALANCE).status_code == 200
