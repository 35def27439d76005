"""``reelyard standalone``: the whole system on one machine, with nothing to install.

The same processes as production, started by one supervisor: the studio, the API,
the three kinds of worker, beat and Flower, each the ``reelyard …`` command the
end-to-end tests and ``docker-compose.yml`` run. What changes is where state lives,
all of it under one data directory (``./.reelyard`` by default):

- the database is SQLite (``reelyard.db``, WAL), migrated at every start by the same
  migrations;
- the broker is kombu's filesystem transport (``broker/``): a message is a file, a
  queue a directory; a producer writes a message in ``broker/staging`` and renames it
  into the queue when whole (:mod:`workers.filesystem_broker`: kombu's own writes it
  in place, where a consumer could take it empty), and a consumer takes a message by
  renaming it into ``broker/processed`` (atomic: one consumer gets it). Chosen over
  kombu's SQLAlchemy transport on SQLite, which polls a database from every worker
  process and writes a row per message: measured side by side (``make bench-broker``,
  500 messages, three consumers), the filesystem carried 2.9 times the messages per
  second end to end (414 against 143), published 22 times faster, with half the
  latency (p50 69 ms against 146), neither losing nor duplicating any; the filesystem
  needs no connection and survives a restart as files. Like every broker here it may
  lose a message (one taken by a process that is then killed): the rows decide, and
  the reconciler re-sends what is due (design.md "Durability"). The supervisor prunes
  taken messages (and any a producer died writing) after :data:`PROCESSED_KEEP_S`;
- rate limits are kept in each API process's memory; videos in ``videos/``; the
  studio's uploads, renders and its memory (``STUDIO_PERSIST``) in ``studio/``.

So a standalone stopped mid-job, even by SIGKILL of its whole process group, finds
its jobs in the database when it starts again, and carries them on.

The first start creates a tenant and an API key and keeps them in ``client.json``
(mode 0600) for the CLI's client commands, which read it when no key is given.

Stopping: the first Ctrl-C (SIGINT) or SIGTERM asks every child to stop (SIGTERM;
workers finish or hand back what they run), a second one kills them (SIGKILL, their
own children included). Each child also gets SIGTERM from the kernel if the
supervisor dies first (``PR_SET_PDEATHSIG``), so none is left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

import click
import httpx

from reelyard.client import CLIENT_FILE

#: how long the supervisor waits for every process to be ready
START_TIMEOUT_S: Final = 120.0
#: how long a stop waits for the children before it kills them
STOP_TIMEOUT_S: Final = 45.0
#: taken broker messages are kept this long (for a look at what ran), then removed
PROCESSED_KEEP_S: Final = 600.0
#: the log lines a failure shows from the process that failed
TAIL_LINES: Final = 20
PR_SET_PDEATHSIG: Final = 1
#: the studio's pace unless ``STUDIO_TIME_SCALE`` says otherwise (see :func:`environment`)
STUDIO_TIME_SCALE: Final = "0.2"


@dataclass(frozen=True)
class Ports:
    api: int = 8000
    studio: int = 8600
    flower: int = 5555


@dataclass(frozen=True)
class Layout:
    """Where a standalone keeps everything, under one directory."""

    root: Path

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.root / 'reelyard.db'}"

    @property
    def broker_url(self) -> str:
        return f"filesystem://{self.root / 'broker'}"

    @property
    def processed(self) -> Path:
        return self.root / "broker" / "processed"

    @property
    def staging(self) -> Path:
        return self.root / "broker" / "staging"

    @property
    def client_file(self) -> Path:
        return self.root / CLIENT_FILE

    @property
    def logs(self) -> Path:
        return self.root / "logs"


def commands(ports: Ports, host: str, *, flower: bool) -> dict[str, list[str]]:
    """Each process and its ``reelyard`` command line (after ``reelyard``)."""
    found = {
        "studio": ["studio", "--host", host, "--port", str(ports.studio)],
        "api": ["api", "--host", host, "--port", str(ports.api), "--workers", "2"],
        "pipeline": ["worker", "-Q", "pipeline", "-c", "2", "-n", "pipeline@%h"],
        "edit": ["worker", "-Q", "edit", "-c", "50", "-n", "edit@%h"],
        "webhooks": ["worker", "-Q", "webhooks", "-c", "10", "-n", "webhooks@%h"],
        "beat": ["beat"],
    }
    if flower:
        found["flower"] = ["flower", "--address", host, "--port", str(ports.flower)]
    return found


def environment(layout: Layout, ports: Ports, host: str) -> dict[str, str]:
    """The settings every child reads: the embedded defaults, over the caller's own."""
    root = layout.root
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "REELYARD_STANDALONE": "1",
        "REELYARD_DATA_DIR": str(root),
        "REELYARD_DATABASE_URL": layout.database_url,
        "REELYARD_BROKER_URL": layout.broker_url,
        "REELYARD_REDIS_URL": "memory://",
        "REELYARD_STORAGE_DIR": str(root / "videos"),
        "REELYARD_PUBLIC_URL": f"http://{host}:{ports.api}",
        # the demo's photos and webhook receiver are on this machine
        "REELYARD_ALLOW_PRIVATE_URLS": "1",
        # one machine, whose processes stop and start together: a job a stopped worker
        # held is taken up again within seconds of the restart, not minutes
        "REELYARD_LEASE_S": os.environ.get("REELYARD_LEASE_S", "20"),
        "REELYARD_RECONCILE_EVERY_S": os.environ.get("REELYARD_RECONCILE_EVERY_S", "5"),
        # the studio here renders a video in seconds: look every 2 s, not every 30 s
        "REELYARD_RENDER_POLL_S": os.environ.get("REELYARD_RENDER_POLL_S", "2"),
        "NEMO_API_BASE": f"http://{host}:{ports.studio}",
        "STUDIO_DATA_DIR": str(root / "studio"),
        "STUDIO_PERSIST": "1",
        "STUDIO_ALLOW_PRIVATE_URLS": "1",
        "STUDIO_FREE_CREDITS": os.environ.get("STUDIO_FREE_CREDITS", "100000"),
        # the editor's turns at a fifth of the real service's (a first video in about
        # 10-20 s of "thinking" rather than 30-90 s); renders are ffmpeg's real time
        "STUDIO_TIME_SCALE": os.environ.get("STUDIO_TIME_SCALE", STUDIO_TIME_SCALE),
    }


# --- the first start: migrations, a tenant and its key ------------------------------


def prepare(layout: Layout, env: dict[str, str]) -> dict[str, str]:
    """Migrate the database, and on the first start create the local tenant and its
    key; the client file's contents."""
    for folder in (layout.root, layout.logs, layout.root / "videos", layout.root / "studio"):
        folder.mkdir(parents=True, exist_ok=True)
    _cli(env, "migrate")
    if layout.client_file.exists():
        try:
            client: dict[str, str] = json.loads(layout.client_file.read_text())
        except (OSError, ValueError) as exc:
            raise click.ClickException(f"{layout.client_file} is unreadable: {exc}") from None
        return client
    tenant = _cli(env, "tenants", "create", "Local")
    key = _cli(env, "keys", "create", tenant)
    client = {"tenant_id": tenant, "api_key": key}
    _write_private(layout.client_file, client)
    return client


def _cli(env: dict[str, str], *args: str) -> str:
    """``reelyard ARGS`` run to completion; the last line it printed."""
    done = subprocess.run(
        [sys.executable, "-m", "reelyard.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise click.ClickException(f"reelyard {' '.join(args[:2])}: {_last_line(done.stderr)}")
    return _last_line(done.stdout)


def _write_private(path: Path, content: dict[str, str]) -> None:
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(content, out, indent=2)
        out.write("\n")
    temporary.replace(path)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


# --- the children -------------------------------------------------------------------


def die_with_parent() -> None:  # pragma: no cover (runs in the child, before exec)
    """In the child: SIGTERM when the supervisor dies, however it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    args: list[str]
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = TAIL_LINES) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def start_child(name: str, args: list[str], env: dict[str, str], logs: Path) -> Child:
    log = logs / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "reelyard.cli", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,  # noqa: PLW1509 (no threads run here yet)
        )
    return Child(name, args, log, process)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from ``/proc``), children first."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    frontier = [pid]
    while frontier:
        below = parents.get(frontier.pop(), [])
        found += below
        frontier += below
    return found


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)


@dataclass
class Supervisor:
    """Starts the children, watches them, and stops them on a signal."""

    layout: Layout
    env: dict[str, str]
    children: list[Child] = field(default_factory=list)
    stopping: bool = False
    forced: bool = False
    say: Callable[[str], None] = click.echo

    def start(self, name: str, args: list[str]) -> Child:
        child = start_child(name, args, self.env, self.layout.logs)
        self.children.append(child)
        return child

    def on_signal(self, signum: int, _frame: object) -> None:
        if self.stopping:
            self.forced = True
            self.say("stopping at once (SIGKILL)")
            self.kill()
            return
        self.stopping = True
        self.say(f"stopping ({signal.Signals(signum).name}; again to force)")
        for child in self.children:
            if child.alive:
                _signal(child.process.pid, signal.SIGTERM)

    def kill(self) -> None:
        for child in self.children:
            for pid in [*descendants(child.process.pid), child.process.pid]:
                _signal(pid, signal.SIGKILL)

    def failed(self) -> Child | None:
        return next((child for child in self.children if not child.alive), None)

    def wait_stopped(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        ends = time.monotonic() + timeout_s
        while any(child.alive for child in self.children):
            if time.monotonic() >= ends and not self.forced:
                self.say(f"still running after {timeout_s:g} s: killing")
                self.forced = True
                self.kill()
            time.sleep(0.1)
        for child in self.children:
            child.process.wait()

    def prune_processed(self) -> None:
        """Delete taken messages, and messages a producer died writing, once old."""
        cutoff = time.time() - PROCESSED_KEEP_S
        for folder in (self.layout.processed, self.layout.staging):
            with contextlib.suppress(OSError):
                for entry in os.scandir(folder):
                    with contextlib.suppress(OSError):
                        if entry.stat().st_mtime < cutoff:
                            Path(entry.path).unlink()


def _wait_until(supervisor: Supervisor, what: str, ready: Callable[[], bool]) -> None:
    """Until ``ready()`` (or a stop); a child that exits, or the time running out, fails."""
    ends = time.monotonic() + START_TIMEOUT_S
    while not supervisor.stopping:
        broken = supervisor.failed()
        if broken is not None:
            raise _ChildFailed(broken)
        if ready():
            return
        if time.monotonic() >= ends:
            raise click.ClickException(f"{what} was not ready within {START_TIMEOUT_S:g} s")
        time.sleep(0.2)


def _answers(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=2).status_code == 200
    return False


def _logged(child: Child, marker: str) -> Callable[[], bool]:
    return lambda: marker in child.tail(200)


class _ChildFailed(click.ClickException):
    def __init__(self, child: Child) -> None:
        super().__init__(
            f"{child.name} exited ({child.process.returncode}); the end of {child.log}:\n"
            + child.tail()
        )


@contextlib.contextmanager
def _only_one(root: Path) -> Iterator[IO[str]]:
    """A lock on the data directory: two standalones must not share one."""
    lock = (root / "standalone.lock").open("w")
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise click.ClickException(
                f"another reelyard standalone is running on {root}"
            ) from None
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield lock
    finally:
        lock.close()


@click.command("standalone")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="REELYARD_DATA_DIR",
    default=Path(".reelyard"),
    show_default=True,
    help="Where the database, the broker's messages, the videos and the logs live.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--api-port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--studio-port", type=click.IntRange(1, 65535), default=8600, show_default=True)
@click.option("--flower-port", type=click.IntRange(1, 65535), default=5555, show_default=True)
@click.option("--flower/--no-flower", default=True, show_default=True, help="Start Flower.")
def standalone_command(  # noqa: PLR0917 (click passes options by name)
    data_dir: Path, host: str, api_port: int, studio_port: int, flower_port: int, flower: bool
) -> None:
    """Run everything on this machine: studio, API, workers, beat and Flower, on SQLite
    and a broker in files under the data directory. Ctrl-C stops it; again forces."""
    layout = Layout(data_dir.resolve())
    try:
        layout.root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise click.ClickException(
            f"cannot use {layout.root} as the data directory: {exc.strerror}"
        ) from None
    ports = Ports(api=api_port, studio=studio_port, flower=flower_port)
    env = environment(layout, ports, host)
    with _only_one(layout.root):
        client = prepare(layout, env)
        api_url = f"http://{host}:{ports.api}"
        supervisor = Supervisor(layout, env)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, supervisor.on_signal)
        code = 0
        try:
            _run(supervisor, commands(ports, host, flower=flower), api_url)
            if supervisor.stopping:
                return
            client = {
                **client,
                "api_url": api_url,
                "docs_url": f"{api_url}/docs",
                "flower_url": f"http://{host}:{ports.flower}" if flower else "",
            }
            _write_private(layout.client_file, client)
            _banner(layout, client, ports, host)
            code = _watch(supervisor)
        except click.ClickException as exc:
            exc.show()
            code = 1
        finally:
            if not supervisor.stopping:
                supervisor.on_signal(signal.SIGTERM, None)
            supervisor.wait_stopped()
            click.echo("reelyard standalone stopped")
        if code:
            raise SystemExit(code)


def _run(supervisor: Supervisor, lines: dict[str, list[str]], api_url: str) -> None:
    """Start the studio first (the workers' upstream), then the rest, and wait for each."""
    studio = supervisor.start("studio", lines.pop("studio"))
    _wait_until(supervisor, "studio", _logged(studio, "studio listening on "))
    started = {name: supervisor.start(name, args) for name, args in lines.items()}
    _wait_until(supervisor, "the API", lambda: _answers(f"{api_url}/readyz"))
    for name, child in started.items():
        if name in {"pipeline", "edit", "webhooks"}:
            _wait_until(supervisor, name, _logged(child, "ready."))


def _watch(supervisor: Supervisor) -> int:
    """Until a signal stops everything (0) or a child exits on its own (1)."""
    last_prune = 0.0
    while not supervisor.stopping:
        broken = supervisor.failed()
        if broken is not None:
            click.echo(str(_ChildFailed(broken).message), err=True)
            return 1
        if time.monotonic() - last_prune > 60:
            supervisor.prune_processed()
            last_prune = time.monotonic()
        time.sleep(0.2)
    return 0


def _banner(layout: Layout, client: dict[str, str], ports: Ports, host: str) -> None:
    click.echo("reelyard standalone ready")
    click.echo(f"  API      {client['api_url']}")
    click.echo(f"  docs     {client['docs_url']}")
    if client.get("flower_url"):
        click.echo(f"  Flower   {client['flower_url']}")
    click.echo(f"  studio   http://{host}:{ports.studio}")
    click.echo(f"  data     {layout.root} (logs in {layout.logs})")
    click.echo(f"  API key  {client['api_key']}  (kept in {layout.client_file})")
    click.echo("Ctrl-C stops everything.")
    sys.stdout.flush()
