"""The whole system as real processes on loopback, for the end-to-end tests.

:class:`System` runs what an operator would run, each as its own process, in a session
of its own (``start_new_session``) with its output in a file: the studio, the API, a
worker for the ``pipeline`` queue, one for ``edit``, and beat. It has a PostgreSQL
database of its own (named from the xdist worker and the broker, created fresh,
dropped at the end) and a broker of its own: a logical Redis database, flushed first,
or a RabbitMQ virtual host, created and deleted with ``rabbitmqctl``.

Stopping is SIGTERM to the process group, then SIGKILL after a grace period;
:meth:`System.kill` is ``kill -9`` of a process group, as a crash would do it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import redis
from psycopg import sql

from tests.conftest import ADMIN_DATABASE_URL, REDIS_FIRST_DB, REDIS_TEST_URL, run_tag

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
RABBITMQ_URL = os.environ.get("REELYARD_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672")
#: the e2e systems' Redis databases, below the ones tests/conftest.py hands out
E2E_REDIS_FIRST_DB = REDIS_FIRST_DB - 8
STUDIO_READY = "studio listening on "
#: the processes of a system, and the command each runs (after ``reelyard.cli``)
COMMANDS: dict[str, list[str]] = {
    "pipeline": ["worker", "-Q", "pipeline", "-c", "2"],
    "edit": ["worker", "-Q", "edit", "-c", "20"],
    "webhooks": ["worker", "-Q", "webhooks", "-c", "10"],
    "beat": ["beat"],
}


class Timeout(AssertionError):
    pass


def wait_for(
    what: str, probe: Callable[[], T | None], *, timeout_s: float, every_s: float = 0.1
) -> T:
    """Poll ``probe`` until it returns something other than None/False; its value."""
    deadline = time.monotonic() + timeout_s
    while True:
        last = probe()
        if last is not None and last is not False:
            return last
        if time.monotonic() >= deadline:
            raise Timeout(f"{what}: not within {timeout_s} s")
        time.sleep(every_s)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Proc:
    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def stop(self, grace_s: float = 10.0) -> int:
        """SIGTERM to the group, SIGKILL if it outlives ``grace_s``; the exit code."""
        self.signal_group(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            code = self.process.wait()
        self.signal_group(signal.SIGKILL)  # children that outlived their parent
        return code

    def kill(self) -> None:
        """``kill -9`` of the whole group, as a crash."""
        self.signal_group(signal.SIGKILL)
        self.process.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def spawn_cli(name: str, args: list[str], env: dict[str, str], log: Path) -> Proc:
    """``reelyard <args>`` as a process in a session of its own, its output in ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "reelyard.cli", *args],
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Proc(name, args, log, process)


@dataclass
class Broker:
    kind: str  # "redis" | "amqp"
    url: str
    #: the Redis database of rate limits and pub/sub (the broker's own on Redis)
    redis_url: str
    vhost: str | None = None

    def flush(self) -> None:
        """FLUSHDB of this system's Redis database: on Redis, every message and binding."""
        client = redis.Redis.from_url(self.redis_url)
        try:
            client.flushdb()
        finally:
            client.close()


def _rabbitmqctl(*args: str, check: bool = True) -> None:
    command = shutil.which("rabbitmqctl")
    assert command is not None, "rabbitmqctl is not on PATH (RabbitMQ: see DEVELOPERS.md)"
    subprocess.run([command, "-q", *args], check=check, capture_output=True, timeout=60)


def open_broker(kind: str, worker_index: int) -> Broker:
    if kind == "redis":
        url = f"{REDIS_TEST_URL}/{E2E_REDIS_FIRST_DB - worker_index}"
        broker = Broker(kind, url, url)
        broker.flush()
        return broker
    vhost = f"reelyard_e2e_{run_tag()}_{worker_index}"
    _rabbitmqctl("delete_vhost", vhost, check=False)  # left over by a killed run
    _rabbitmqctl("add_vhost", vhost)
    _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    redis_url = f"{REDIS_TEST_URL}/{E2E_REDIS_FIRST_DB - 4 - worker_index}"
    broker = Broker(kind, f"{RABBITMQ_URL}/{vhost}", redis_url, vhost)
    broker.flush()
    return broker


def close_broker(broker: Broker) -> None:
    broker.flush()
    if broker.vhost is not None:
        _rabbitmqctl("delete_vhost", broker.vhost)


def _admin_execute(statement: sql.Composed) -> None:
    with psycopg.connect(ADMIN_DATABASE_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(statement)


def create_database(name: str) -> str:
    _admin_execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    _admin_execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return f"{ADMIN_DATABASE_URL.rsplit('/', 1)[0]}/{name}"


def drop_database(name: str) -> None:
    _admin_execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@dataclass
class System:
    """The processes of one reelyard installation, and what a test needs to drive it."""

    root: Path
    broker: Broker
    database_url: str
    studio_env: dict[str, str] = field(default_factory=dict)
    #: settings of the reelyard processes that differ from the tests' (benchmarks)
    env_overrides: dict[str, str] = field(default_factory=dict)
    #: the worker processes and their commands (after ``reelyard.cli``)
    commands: dict[str, list[str]] = field(default_factory=lambda: dict(COMMANDS))
    procs: dict[str, Proc] = field(default_factory=dict)
    studio_url: str = ""
    api_url: str = ""
    key: str = ""
    _starts: int = 0

    # -- processes ---------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "REELYARD_DATABASE_URL": self.database_url,
            "REELYARD_BROKER_URL": self.broker.url,
            "REELYARD_REDIS_URL": self.broker.redis_url,
            "REELYARD_DATA_DIR": str(self.root / "data"),
            "REELYARD_STORAGE_DIR": str(self.root / "data" / "videos"),
            "REELYARD_TIME_SCALE": "0.01",
            "REELYARD_LEASE_S": "5",
            "REELYARD_RECONCILE_EVERY_S": "1",
            "REELYARD_ALLOW_PRIVATE_URLS": "1",
            "REELYARD_PUBLIC_URL": self.api_url,
            "REELYARD_AUTH_CACHE_S": "0",
            "REELYARD_RATE_LIMIT": "100000/second",
            "NEMO_API_BASE": self.studio_url,
            **self.env_overrides,
        }

    def cli(self, *args: str) -> str:
        """``reelyard <args>`` to completion; its standard output, stripped."""
        done = subprocess.run(
            [sys.executable, "-m", "reelyard.cli", *args],
            check=False,
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"reelyard {' '.join(args)} failed:\n{done.stderr}"
        return done.stdout.strip()

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Proc:
        self._starts += 1
        log = self.root / "logs" / f"{self._starts:02d}-{name}.log"
        proc = spawn_cli(name, args, {**self.env, **(env or {})}, log)
        self.procs[name] = proc
        return proc

    def _wait_log(self, proc: Proc, marker: str, timeout_s: float = 60.0) -> str:
        def probe() -> str | None:
            assert proc.alive, f"{proc.name} exited:\n{proc.output()[-4000:]}"
            for line in proc.output().splitlines():
                if marker in line:
                    return line
            return None

        return wait_for(f"{proc.name} to log {marker!r}", probe, timeout_s=timeout_s)

    def start_studio(self) -> None:
        env = {
            "STUDIO_DATA_DIR": str(self.root / "studio"),
            "STUDIO_TIME_SCALE": "0.01",
            "STUDIO_ALLOW_PRIVATE_URLS": "1",
            "STUDIO_SEED": "1234",
            "STUDIO_RENDER_QUALITY": "draft",
            "STUDIO_RENDER_WORKERS": "2",
            # the service's anonymous token, rich enough for every job of the module
            "STUDIO_FREE_CREDITS": "1000000",
            **self.studio_env,
        }
        proc = self.spawn("studio", ["studio", "--port", "0"], env)
        line = self._wait_log(proc, STUDIO_READY)
        self.studio_url = line.split(STUDIO_READY, 1)[1].strip()

    def start_api(self) -> None:
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        self.spawn("api", ["api", "--port", str(port), "--workers", "1"])

        def ready() -> bool:
            assert self.procs["api"].alive, self.procs["api"].output()[-4000:]
            try:
                return httpx.get(f"{self.api_url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for("the API to be ready", ready, timeout_s=60)

    def start_worker(self, name: str, env: dict[str, str] | None = None) -> Proc:
        """Start ``pipeline``, ``edit`` or ``beat`` (again), with ``env`` added to the
        system's settings; returns once it is up."""
        proc = self.spawn(name, self.commands[name], env)
        self._wait_log(proc, "ready." if name != "beat" else "beat: Starting")
        return proc

    def start(self) -> None:
        self.start_studio()
        self.cli("migrate")
        tenant = self.cli("tenants", "create", "E2E").splitlines()[-1]
        self.key = self.cli("keys", "create", tenant).splitlines()[-1]
        assert self.key.startswith("ry_"), self.key
        self.start_api()
        for name in self.commands:
            self.start_worker(name)

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()

    def kill(self, name: str) -> None:
        """``kill -9`` the process group of ``name``."""
        self.procs[name].kill()

    def restart(self, name: str) -> Proc:
        """Kill ``name`` with SIGKILL (if it still runs) and start it again."""
        if self.procs[name].alive:
            self.kill(name)
        return self.start_worker(name)

    def logs(self, tail: int = 3000) -> str:
        """The end of every log of this system, for a failure's message."""
        parts = []
        for path in sorted((self.root / "logs").glob("*.log")):
            text = path.read_text(errors="replace")
            parts.append(f"==== {path.name} ====\n{text[-tail:]}")
        return "\n".join(parts)

    # -- the API -----------------------------------------------------------------------

    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.api_url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30
        )

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.http() as client:
            response = client.post(path, json=body)
        assert response.status_code in (200, 201, 202), (response.status_code, response.text)
        result: dict[str, Any] = response.json()
        return result

    def get(self, path: str) -> dict[str, Any]:
        with self.http() as client:
            response = client.get(path)
        assert response.status_code == 200, (response.status_code, response.text)
        result: dict[str, Any] = response.json()
        return result

    def job(self, job_id: str) -> dict[str, Any]:
        return self.get(f"/v1/jobs/{job_id}")

    def wait_job(
        self, job_id: str, status: str | tuple[str, ...], timeout_s: float = 60.0
    ) -> dict[str, Any]:
        """Poll the job until it ends (or reaches ``status``); fails unless in ``status``."""
        wanted = (status,) if isinstance(status, str) else status
        ends = {"succeeded", "failed", "canceled"}

        def probe() -> dict[str, Any] | None:
            job = self.job(job_id)
            return job if job["status"] in ends or job["status"] in wanted else None

        try:
            job = wait_for(f"job {job_id}", probe, timeout_s=timeout_s, every_s=0.2)
        except Timeout:
            raise AssertionError(
                f"job {job_id} not {wanted} within {timeout_s} s: {self.job(job_id)}\n{self.logs()}"
            ) from None
        assert job["status"] in wanted, f"{job}\n{self.logs()}"
        return job

    def wait_stage(self, job_id: str, stages: tuple[str, ...], timeout_s: float = 30.0) -> str:
        def probe() -> str | None:
            job = self.job(job_id)
            assert job["status"] not in ("succeeded", "failed", "canceled"), job
            return str(job["stage"]) if job["stage"] in stages else None

        return wait_for(f"job {job_id} at {stages}", probe, timeout_s=timeout_s, every_s=0.05)

    def video(self, job_id: str, target: Path) -> Path:
        with self.http() as client:
            response = client.get(f"/v1/jobs/{job_id}/video", follow_redirects=True)
        assert response.status_code == 200, (response.status_code, response.text[:500])
        target.write_bytes(response.content)
        return target

    # -- the studio --------------------------------------------------------------------

    def studio(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, f"{self.studio_url}/_studio/{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def faults(self, **settings: Any) -> Any:
        return self.studio("POST", "faults", settings)

    def clear_faults(self) -> Any:
        return self.studio("POST", "faults", {"clear": True})

    def ledger(self) -> dict[str, Any]:
        result: dict[str, Any] = self.studio("GET", "ledger")
        return result


def run_system(
    root: Path,
    broker_kind: str,
    worker_index: int,
    studio_env: dict[str, str] | None = None,
    *,
    name: str | None = None,
    commands: dict[str, list[str]] | None = None,
    env_overrides: dict[str, str] | None = None,
) -> Iterator[System]:
    """A started system for a fixture; stopped, its database and broker removed after.

    ``name`` tells the database apart (the broker kind by default), ``commands``
    replaces the worker processes (:data:`COMMANDS`), ``env_overrides`` adds settings.
    """
    name = f"reelyard_e2e_{run_tag()}_{worker_index}_{name or broker_kind}"
    broker = open_broker(broker_kind, worker_index)
    system = System(
        root,
        broker,
        create_database(name),
        studio_env or {},
        env_overrides=env_overrides or {},
        commands=dict(commands or COMMANDS),
    )
    try:
        system.start()
        yield system
    finally:
        system.stop()
        drop_database(name)
        close_broker(broker)
