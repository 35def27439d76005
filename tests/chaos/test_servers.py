"""The chaos harness's private PostgreSQL and Redis: crash, restart, refuse, clean up."""

from __future__ import annotations

import time

import psycopg
import pytest
import redis

from tests.chaos import servers
from tests.chaos.servers import PrivatePostgres, PrivateRedis, ServerError, pid_alive, tree_pids

pytestmark = pytest.mark.slow


def _connect(pg: PrivatePostgres) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(pg.dsn, connect_timeout=2, autocommit=True)


def _rows(pg: PrivatePostgres) -> list[tuple[object, ...]]:
    with _connect(pg) as conn:
        return conn.execute("SELECT id, note FROM probe ORDER BY id").fetchall()


def _assert_gone(pids: list[int]) -> None:
    assert pids
    assert [pid for pid in pids if pid_alive(pid)] == []


def test_postgres_committed_row_survives_kill9_and_restart(tmp_path):
    with PrivatePostgres(tmp_path / "pg") as pg:
        assert pg.url == f"postgresql+psycopg://postgres@127.0.0.1:{pg.port}/reelyard"
        with _connect(pg) as conn:
            assert conn.execute("SHOW fsync").fetchone() == ("on",)
            conn.execute("CREATE TABLE probe (id int PRIMARY KEY, note text)")
            conn.execute("INSERT INTO probe VALUES (1, 'committed')")
        conn = _connect(pg)  # a transaction still open at the crash is lost
        conn.autocommit = False
        conn.execute("INSERT INTO probe VALUES (2, 'uncommitted')")
        old = pg.pid
        assert old is not None
        backends = tree_pids(old)
        assert len(backends) > 2  # the postmaster, its helpers, our backend
        pg.kill()
        conn.close()
        for pid in backends:
            assert not pid_alive(pid)
        assert not pg.running
        pg.start()
        assert pg.pid != old
        assert _rows(pg) == [(1, "committed")]
        assert "automatic recovery in progress" in pg.log.read_text()

        pg.restart()  # a clean stop and start keeps it too
        assert _rows(pg) == [(1, "committed")]


def test_postgres_refuse_for_refuses_then_comes_back(tmp_path):
    with PrivatePostgres(tmp_path / "pg") as pg:
        pg.refuse_for(2.0)
        paused = time.monotonic()
        with pytest.raises(psycopg.OperationalError):
            _connect(pg).close()
        pg.wait_back(timeout_s=30)
        assert time.monotonic() - paused >= 1.9  # back only after the pause
        with _connect(pg) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)

        pg.refuse_for(0.5, immediate=True)  # SIGQUIT: comes back through recovery
        pg.wait_back(timeout_s=30)
        with _connect(pg) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_postgres_close_leaves_no_process_and_no_files(tmp_path):
    pg = PrivatePostgres(tmp_path / "pg")
    with pg:
        assert pg.pid is not None
        pids = tree_pids(pg.pid)
        assert len(pids) > 1  # the postmaster and its helpers
        pg.restart()
        pids += tree_pids(pg.pid)
        pg.refuse_for(60)  # close must not wait out the pause, nor let it start again
    _assert_gone(pids)
    assert not pg.home.exists()
    assert not pg.running


def test_postgres_missing_binaries_are_named(tmp_path, monkeypatch):
    monkeypatch.setattr(servers, "POSTGRES_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(ServerError, match=r"/usr/lib/postgresql/<version>/bin/initdb"):
        PrivatePostgres(tmp_path / "pg")


def _client(server: PrivateRedis) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=5)


def test_redis_restart_kill_and_flushall(tmp_path):
    with PrivateRedis(tmp_path / "redis") as server:
        client = _client(server)
        try:
            client.set("job", "queued")
            assert client.get("job") == b"queued"

            server.restart()  # no persistence: it comes back, and empty
            assert client.dbsize() == 0

            client.set("job", "queued")
            assert server.pid is not None
            old = tree_pids(server.pid)
            server.kill()
            _assert_gone(old)
            server.start()
            assert client.ping()
            assert client.dbsize() == 0

            client.set("a", 1)
            client.set("b", 2)
            server.flushall()
            assert client.dbsize() == 0
            assert not list((tmp_path / "redis" / "redis").glob("*.rdb"))
        finally:
            client.close()


def test_redis_context_manager_stops_it_on_exception(tmp_path):
    pids: list[int] = []

    def fail_inside() -> None:
        with PrivateRedis(tmp_path / "redis") as server:
            assert server.pid is not None
            pids.extend(tree_pids(server.pid))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_inside()
    _assert_gone(pids)
