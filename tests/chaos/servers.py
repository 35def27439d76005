"""Private PostgreSQL and Redis servers for the chaos harness (issue 10).

The chaos run kills, restarts and flushes its database and broker, so it must never
touch the machine's shared servers: :class:`PrivatePostgres` runs ``initdb`` in a
directory of its own and serves it on a free loopback port, :class:`PrivateRedis` runs
``redis-server`` on another. Each server is a child process in a session of its own
(``start_new_session``), so that a crash is ``SIGKILL`` of its whole process group.

PostgreSQL
    ``initdb`` with ``trust`` authentication and superuser ``postgres``. PostgreSQL
    refuses to run as root, so when this process is root ``initdb`` and the server run
    as the ``postgres`` OS user (``subprocess``'s ``user=``/``group=``, so the child *is*
    the postmaster, with no ``su``/``runuser`` wrapper between us and it), and the
    cluster lives in a fresh ``postgres``-owned directory under the system temporary
    directory: pytest's ``tmp_path`` sits below a root-only (0700) directory that the
    ``postgres`` user cannot traverse. Otherwise the cluster lives in ``root``. The log
    is always ``root / "postgres.log"``. ``fsync`` stays **on** (the default, and
    ``synchronous_commit`` too): the durability checks must see what a real server
    would keep. ``initdb --no-sync`` only skips flushing the fresh cluster's files to
    disk once, which no test relies on.

Redis
    No persistence at all (``--save ""``, ``--appendonly no``): a restart comes back
    **empty**, as a Redis that lost its memory would, which is the harshest case for
    the broker (every queued message gone).

Both are context managers; :meth:`close` stops the server (SIGKILL if it does not
stop in time) and removes what it created. A server still running when the
interpreter exits is killed by an ``atexit`` hook, so no process is left behind.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psycopg
import redis

from reelyard.standalone import descendants

DATABASE = "reelyard"
SUPERUSER = "postgres"
#: where Debian's packages put each PostgreSQL version's binaries
POSTGRES_ROOT = "/usr/lib/postgresql"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0

_live: weakref.WeakSet[_Server] = weakref.WeakSet()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _stat(pid: str | int) -> tuple[str, int, int] | None:
    """(state, ppid, pgrp) of a process from /proc, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # pid (comm) state ppid pgrp ...; comm may contain spaces and parentheses
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2])


def _processes() -> dict[int, tuple[str, int, int]]:
    """Every live (not zombie) process: pid -> (state, ppid, pgrp)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(entry.name)
            if stat is not None and stat[0] != "Z":
                found[int(entry.name)] = stat
    return found


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process, read from /proc."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def group_pids(pgid: int) -> list[int]:
    """The live processes of process group ``pgid``."""
    return sorted(pid for pid, (_, _, pgrp) in _processes().items() if pgrp == pgid)


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its live descendants, by parent pid.

    PostgreSQL's children each call ``setsid()``, so the postmaster's process group
    holds only the postmaster: its backends are found as its children.
    """
    return [found for found in [pid, *descendants(pid)] if pid_alive(found)]


def _wait_gone(pids: list[int], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while alive := [pid for pid in pids if pid_alive(pid)]:
        if time.monotonic() >= deadline:
            for pid in alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout_s
        time.sleep(0.02)


class ServerError(RuntimeError):
    pass


class _Server(abc.ABC):
    """A server process in a session of its own, with its output in a log file."""

    name = "server"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.log = self.root / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._closed = False
        _live.add(self)

    # -- to override ---------------------------------------------------------------

    @abc.abstractmethod
    def _argv(self) -> list[str]:
        """The server's command line."""

    def _popen_options(self) -> dict[str, Any]:
        return {}

    @abc.abstractmethod
    def _ready(self) -> bool:
        """Whether this server (not another on its port) accepts connections."""

    @abc.abstractmethod
    def _cleanup(self) -> None:
        """Remove what the server created (after it stopped)."""

    # -- life cycle ----------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The server's pid (PostgreSQL: the postmaster), if it is running."""
        return self.process.pid if self.process is not None and self.running else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the server and wait until it accepts connections (bounded)."""
        if self._closed:
            raise ServerError(f"{self.name}: closed")
        if self.running:
            return
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self._argv(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self._popen_options(),
            )
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._ready():
            assert self.process is not None
            if self.process.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            if time.monotonic() >= deadline:
                raise ServerError(
                    f"{self.name}: not ready within {READY_TIMEOUT_S} s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    @abc.abstractmethod
    def _signal_stop(self) -> None:
        """Ask the server to shut down cleanly."""

    def stop(self) -> None:
        """A clean shutdown; SIGKILL of the group if it takes over STOP_TIMEOUT_S."""
        if self.process is None or self.process.poll() is not None:
            return  # (once reaped, its pid may be another process's: never signal it)
        pids = tree_pids(self.process.pid) + group_pids(self.process.pid)
        with contextlib.suppress(ProcessLookupError):
            self._signal_stop()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            return
        _wait_gone(pids)

    def kill(self) -> None:
        """``kill -9`` of the server and every process it started: a crash.

        The server is stopped (SIGSTOP) first so that it forks nothing between the
        listing of its children and their kill.
        """
        if self.process is None or self.process.poll() is not None:
            return  # (once reaped, its pid may be another process's: never signal it)
        pid = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
        pids = tree_pids(pid) + group_pids(pid)
        for victim in [pid, *pids]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        self.process.wait()
        _wait_gone(pids)

    def restart(self) -> None:
        """A clean stop, then start (same port, same data)."""
        self.stop()
        self.start()

    def crash_restart(self) -> None:
        """``kill -9``, then start again (PostgreSQL runs crash recovery)."""
        self.kill()
        self.start()

    def close(self) -> None:
        """Stop the server and remove what it created. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.stop()
        finally:
            _live.discard(self)
            self._cleanup()

    def log_tail(self, lines: int = 30) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_live):
        if not server._closed:
            with contextlib.suppress(Exception):
                server.kill()
            with contextlib.suppress(Exception):
                server._cleanup()


def _postgres_bin() -> Path:
    """The bin directory of the newest installed PostgreSQL (Debian layout)."""
    candidates = []
    for initdb in Path(POSTGRES_ROOT).glob("*/bin/initdb"):
        version = initdb.parent.parent.name
        if version.isdigit():
            candidates.append((int(version), initdb.parent))
    for _, bin_dir in sorted(candidates, reverse=True):
        if all((bin_dir / tool).exists() for tool in ("initdb", "postgres", "pg_ctl")):
            return bin_dir
    raise ServerError(
        "no PostgreSQL server binaries (/usr/lib/postgresql/<version>/bin/initdb, postgres, "
        "pg_ctl): install the postgresql package (see DEVELOPERS.md)"
    )


class PrivatePostgres(_Server):
    """A PostgreSQL cluster of its own on a free loopback port (see the module doc)."""

    name = "postgres"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.bin = _postgres_bin()
        self._as_root = os.geteuid() == 0
        if self._as_root:
            # tmp_path's ancestors are root-only: the postgres user needs a home it can reach
            self.home = Path(tempfile.mkdtemp(prefix="reelyard-chaos-pg-"))
            account = pwd.getpwnam(SUPERUSER)
            os.chown(self.home, account.pw_uid, account.pw_gid)
        else:
            self.home = self.root / "postgres"
            self.home.mkdir(exist_ok=True)
        self.data = self.home / "data"
        self.sockets = self.home / "sockets"
        self._initialized = False
        self._database_created = False
        self._refusing: threading.Thread | None = None
        self._refuse_error: BaseException | None = None
        self._closing = threading.Event()  # ends a refuse_for pause early, for close

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the ``reelyard`` database."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def dsn(self) -> str:
        """The libpq URL of the ``reelyard`` database (for ``psycopg.connect``)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def _popen_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"cwd": self.home}
        if self._as_root:
            options.update(user=SUPERUSER, group=SUPERUSER, extra_groups=[])
        return options

    def _initdb(self) -> None:
        if self._as_root:
            self.sockets.mkdir(exist_ok=True)
            shutil.chown(self.sockets, SUPERUSER, SUPERUSER)
        else:
            self.sockets.mkdir(exist_ok=True)
        result = subprocess.run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            capture_output=True,
            timeout=120,
            check=False,
            **self._popen_options(),
        )
        if result.returncode != 0:
            raise ServerError(
                f"initdb failed ({result.returncode}):\n"
                f"{result.stdout.decode(errors='replace')}{result.stderr.decode(errors='replace')}"
            )

    def _argv(self) -> list[str]:
        return [
            str(self.bin / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={self.sockets}",
            "-c",
            "fsync=on",
            "-c",
            "synchronous_commit=on",
            "-c",
            "max_connections=200",
        ]

    def _ready(self) -> bool:
        """Whether *this* cluster answers on the port (not some other server on it)."""
        try:
            with psycopg.connect(self._admin_dsn(), connect_timeout=2) as conn:
                row = conn.execute("SHOW data_directory").fetchone()
        except psycopg.Error:
            return False
        return row is not None and Path(row[0]) == self.data

    def _admin_dsn(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        if self._database_created:
            super().start()  # same port as before: the url must not change
            return
        if not self._initialized:
            self._initdb()
            self._initialized = True
        for attempt in range(3):  # the free port may be taken before we bind it
            try:
                super().start()
                break
            except ServerError:
                if attempt == 2 or "could not bind" not in self.log_tail():
                    raise
                self.port = free_port()
        with psycopg.connect(self._admin_dsn(), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')
        self._database_created = True

    def _signal_stop(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGINT)  # "fast" shutdown

    def refuse_for(self, seconds: float, *, immediate: bool = False) -> threading.Thread:
        """Stop the server now and start it again ``seconds`` later, in a thread.

        Connections are refused meanwhile (nothing listens on the port). ``immediate``
        stops it with SIGQUIT (``pg_ctl stop -m immediate``: no checkpoint, so the
        start runs recovery) instead of a fast shutdown. Returns the thread;
        :meth:`wait_back` joins it and re-raises what went wrong in it. Call nothing
        else that starts or stops the server until :meth:`wait_back`; :meth:`close`
        ends the pause at once, without starting it again.
        """
        self.wait_back()
        if immediate and self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGQUIT)
        self.stop()

        def back() -> None:
            try:
                if not self._closing.wait(seconds):
                    self.start()
            except BaseException as error:  # noqa: BLE001 - handed to wait_back
                self._refuse_error = error

        self._refusing = threading.Thread(target=back, name="postgres-refuse", daemon=True)
        self._refusing.start()
        return self._refusing

    def wait_back(self, timeout_s: float | None = None) -> None:
        """Wait for a :meth:`refuse_for` pause to end; raise its failure, if any."""
        thread = self._refusing
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():
                raise ServerError(f"postgres: still refusing after {timeout_s} s")
        self._refusing = None
        error, self._refuse_error = self._refuse_error, None
        if error is not None:
            raise ServerError(f"postgres did not come back: {error}") from error

    def close(self) -> None:
        if self._closed:
            return
        self._closing.set()  # a refuse_for pause ends now, without a start
        if self._refusing is not None:
            self._refusing.join()
        super().close()

    def _cleanup(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)


class PrivateRedis(_Server):
    """``redis-server`` on a free loopback port, without persistence (see the module doc)."""

    name = "redis"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        found = shutil.which("redis-server")
        if found is None:
            raise ServerError("redis-server is not on PATH: install redis (see DEVELOPERS.md)")
        self.binary = found
        self.dir = self.root / "redis"
        self.dir.mkdir(exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def _argv(self) -> list[str]:
        return [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            "--daemonize",
            "no",
        ]

    def _ready(self) -> bool:
        """Whether *this* redis-server answers on the port (not some other server on it)."""
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=2)
        try:
            info = client.info("server")
        except redis.RedisError:
            return False
        finally:
            client.close()
        return self.process is not None and info.get("process_id") == self.process.pid

    def start(self) -> None:
        for attempt in range(3):  # the free port may be taken before we bind it
            try:
                super().start()
            except ServerError:
                if attempt == 2 or self._closed or self.process is None:
                    raise
                if self.process.returncode is None or "Address already in use" not in (
                    self.log_tail()
                ):
                    raise
                self.port = free_port()
            else:
                return

    def _signal_stop(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGTERM)

    def flushall(self) -> None:
        """``FLUSHALL``: every key (every queued message) gone."""
        client = redis.Redis.from_url(self.url, socket_timeout=5)
        try:
            client.flushall()
        finally:
            client.close()

    def _cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
