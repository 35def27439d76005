"""``reelyard migrate``, ``tenants create``, ``keys create`` / ``revoke``."""

from __future__ import annotations

from click.testing import CliRunner
from sqlalchemy import inspect, select

from api.commands import gunicorn_options, keys_group, migrate_command, tenants_group
from models import ApiKey, Tenant
from models.access import authenticate
from models.db import make_engine, make_session_factory


def run(command, args, database_url):
    return CliRunner().invoke(command, args, env={"REELYARD_DATABASE_URL": database_url})


def test_migrate_builds_an_empty_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    result = run(migrate_command, [], url)
    assert result.exit_code == 0, result.output
    engine = make_engine(url)
    try:
        assert "jobs" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_tenant_then_key_then_revoke(engine, database_url):
    created = run(tenants_group, ["create", "Acme Media"], database_url)
    assert created.exit_code == 0, created.output
    tenant_id = created.output.strip()
    issued = run(keys_group, ["create", tenant_id], database_url)
    assert issued.exit_code == 0, issued.output
    key = issued.output.strip().splitlines()[0]
    with make_session_factory(engine)() as session:
        assert session.get(Tenant, tenant_id).name == "Acme Media"
        assert authenticate(session, key).tenant_id == tenant_id
        prefix = key.split("_")[1]
        assert session.scalar(select(ApiKey.key_hash).where(ApiKey.prefix == prefix)) != key
    revoked = run(keys_group, ["revoke", prefix], database_url)
    assert revoked.exit_code == 0, revoked.output
    with make_session_factory(engine)() as session:
        assert authenticate(session, key) is None
    again = run(keys_group, ["revoke", prefix], database_url)
    assert again.exit_code == 1
    assert "no live key" in again.output


def test_a_key_for_an_unknown_tenant_is_refused(engine, database_url):
    result = run(keys_group, ["create", "ten_nobody"], database_url)
    assert result.exit_code == 1
    assert "no tenant" in result.output


def test_an_empty_tenant_name_is_refused(engine, database_url):
    result = run(tenants_group, ["create", "  "], database_url)
    assert result.exit_code == 2


def test_each_gunicorn_worker_listens_on_a_socket_of_its_own():
    # one shared socket lets the first worker to wake take a burst of keep-alive clients
    assert gunicorn_options("127.0.0.1:8000", 2, 4, False)["reuse_port"] is True


def test_on_port_0_the_workers_share_one_socket_and_so_one_port():
    assert gunicorn_options("127.0.0.1:0", 2, 4, False)["reuse_port"] is False
