"""Shared by the webhook API tests: a resolver for the tests' host names, helpers.

Registration resolves an endpoint's host (``reelyard.outbound.check_url``), and this
machine has no DNS: ``hooks.example.com`` answers a public address and
``internal.example.com`` a private one, through a stub of ``socket.getaddrinfo``.
"""

from __future__ import annotations

import socket

import pytest

from tests.reelyard.test_outbound import FakeDns

HOOK = "https://hooks.example.com/reelyard"
PUBLIC_ADDRESS = "93.184.215.14"


@pytest.fixture
def dns(monkeypatch):
    fake = FakeDns(socket.getaddrinfo)
    fake.answer("hooks.example.com", [PUBLIC_ADDRESS])
    fake.answer("internal.example.com", ["10.1.2.3"])
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


def create_endpoint(client, caller, **changes):
    body = {"url": HOOK, **changes}
    response = client.post("/v1/webhook-endpoints", json=body, headers=caller.headers)
    assert response.status_code == 201, response.json
    return response.json
