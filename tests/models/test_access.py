"""Tenants and API keys: the key is shown once and stored only as a hash."""

from __future__ import annotations

from sqlalchemy import select

from models import ApiKey
from models.access import authenticate, create_tenant, hash_key, issue_key, revoke_key, split_key


def test_issued_key_has_the_documented_shape(db_session):
    tenant = create_tenant(db_session, "Acme")
    issued = issue_key(db_session, tenant.id)
    assert issued.key.startswith(f"ry_{issued.prefix}_")
    assert split_key(issued.key) == (issued.prefix, issued.key.split("_", 2)[2])


def test_only_the_hash_and_prefix_are_stored(db_session):
    tenant = create_tenant(db_session, "Acme")
    issued = issue_key(db_session, tenant.id)
    row = db_session.scalar(select(ApiKey).where(ApiKey.tenant_id == tenant.id))
    assert row.prefix == issued.prefix
    assert row.key_hash == hash_key(issued.key)
    stored = {str(value) for value in vars(row).values()}
    assert issued.key not in stored


def test_authenticate_finds_the_key_and_its_tenant(db_session):
    tenant = create_tenant(db_session, "Acme")
    issued = issue_key(db_session, tenant.id)
    found = authenticate(db_session, issued.key)
    assert found is not None
    assert found.tenant.id == tenant.id


def test_a_wrong_secret_with_a_real_prefix_is_refused(db_session):
    tenant = create_tenant(db_session, "Acme")
    issued = issue_key(db_session, tenant.id)
    assert authenticate(db_session, issued.key[:-2] + "xx") is None


def test_malformed_keys_are_refused(db_session):
    for key in ["", "ry_", "ry_short_secret", "xx_0123456789ab_secret", "ry_0123456789ab_"]:
        assert authenticate(db_session, key) is None


def test_a_revoked_key_no_longer_authenticates(db_session):
    tenant = create_tenant(db_session, "Acme")
    issued = issue_key(db_session, tenant.id)
    assert revoke_key(db_session, issued.prefix) is True
    assert authenticate(db_session, issued.key) is None
    assert revoke_key(db_session, issued.prefix) is False
