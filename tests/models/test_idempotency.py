"""Idempotency keys: claim, replay, mismatch, in progress, expiry."""

from __future__ import annotations

from datetime import timedelta

import pytest

from models.access import create_tenant
from models.base import utcnow
from models.idempotency import ClaimOutcome, claim, complete, purge_expired, release


@pytest.fixture
def tenant(db_session):
    return create_tenant(db_session, "Acme")


def test_the_first_request_claims_the_key(db_session, tenant):
    assert claim(db_session, tenant.id, "k1", "f" * 64).outcome is ClaimOutcome.CLAIMED


def test_a_second_request_while_the_first_runs_is_in_progress(db_session, tenant):
    claim(db_session, tenant.id, "k1", "f" * 64)
    assert claim(db_session, tenant.id, "k1", "f" * 64).outcome is ClaimOutcome.IN_PROGRESS


def test_a_completed_key_replays_its_response(db_session, tenant):
    record = claim(db_session, tenant.id, "k1", "f" * 64).record
    complete(db_session, record, 202, {"id": "job_x"})
    again = claim(db_session, tenant.id, "k1", "f" * 64)
    assert again.outcome is ClaimOutcome.REPLAY
    assert again.record.response_body == {"id": "job_x"}


def test_another_request_with_the_same_key_is_a_mismatch(db_session, tenant):
    claim(db_session, tenant.id, "k1", "f" * 64)
    assert claim(db_session, tenant.id, "k1", "e" * 64).outcome is ClaimOutcome.MISMATCH


def test_keys_are_per_tenant(db_session, tenant):
    other = create_tenant(db_session, "Other")
    claim(db_session, tenant.id, "k1", "f" * 64)
    assert claim(db_session, other.id, "k1", "e" * 64).outcome is ClaimOutcome.CLAIMED


def test_a_stale_lock_can_be_taken_over(db_session, tenant):
    record = claim(db_session, tenant.id, "k1", "f" * 64).record
    record.locked_until = utcnow() - timedelta(seconds=1)
    db_session.flush()
    assert claim(db_session, tenant.id, "k1", "f" * 64).outcome is ClaimOutcome.CLAIMED


def test_an_expired_key_is_forgotten(db_session, tenant):
    record = claim(db_session, tenant.id, "k1", "f" * 64).record
    complete(db_session, record, 202, {"id": "job_x"})
    record.expires_at = utcnow() - timedelta(seconds=1)
    db_session.flush()
    assert claim(db_session, tenant.id, "k1", "e" * 64).outcome is ClaimOutcome.CLAIMED


def test_a_released_key_can_be_claimed_again(db_session, tenant):
    claim(db_session, tenant.id, "k1", "f" * 64)
    release(db_session, tenant.id, "k1")
    assert claim(db_session, tenant.id, "k1", "e" * 64).outcome is ClaimOutcome.CLAIMED


def test_purge_deletes_only_expired_keys(db_session, tenant):
    old = claim(db_session, tenant.id, "old", "f" * 64).record
    claim(db_session, tenant.id, "new", "f" * 64)
    old.expires_at = utcnow() - timedelta(seconds=1)
    db_session.flush()
    assert purge_expired(db_session) == 1
