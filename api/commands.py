"""The API's commands: ``reelyard api``, ``migrate``, ``tenants`` and ``keys``.

Registered on the ``reelyard`` group in ``reelyard/cli.py``. Every command reads the
settings once from the environment (``REELYARD_*``); a new key is printed once and
never stored.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reelyard.settings import Settings, SettingsError

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

#: gunicorn's production settings; ``benchmarks/api_load.py`` measures the same ones.
#: gthread, because an SSE stream holds a thread, not a process (4 sync processes accept
#: a little more, 640-720 jobs/s against 590-680 on 2 cores, but four open streams would
#: stop them). 4 threads per process: 2 x 4, 2 x 8, 3 x 3 and 4 x 2 all accepted 490-690
#: jobs/s, within the machine's noise of each other; more threads only queue on the GIL.
WORKER_CLASS = "gthread"
THREADS = 4


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def gunicorn_options(
    bind: str, workers: int, threads: int, access_log: bool, worker_class: str = WORKER_CLASS
) -> dict[str, Any]:
    """The production gunicorn configuration."""
    return {
        "bind": bind,
        "workers": workers,
        "worker_class": worker_class,
        "threads": threads,
        # gthread workers heartbeat from their main loop, so a long SSE stream in a
        # thread is not mistaken for a hung worker
        "timeout": 30,
        "graceful_timeout": 30,
        "keepalive": 5,
        "accesslog": "-" if access_log else None,
        "errorlog": "-",
        "forwarded_allow_ips": "127.0.0.1",
        # each worker listens on a socket of its own (SO_REUSEPORT) and the kernel
        # spreads new connections over them; on one shared socket, the worker that
        # wakes first takes most of a burst of keep-alive connections (15 of wrk's 16,
        # or all 16: one process then serves everything on one core, 430 jobs/s
        # against 550-610). The cost: connections still queued on a worker's socket
        # when that worker exits are reset. Port 0 would give each worker a port of
        # its own, so there they share the arbiter's socket.
        "reuse_port": not bind.endswith(":0"),
    }


@click.command("api")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=lambda: os.cpu_count() or 1,
    help="gunicorn worker processes  [default: one per core]",
)
@click.option("--threads", type=click.IntRange(min=1), default=THREADS, show_default=True)
@click.option(
    "--worker-class",
    type=click.Choice(["gthread", "sync"]),
    default=WORKER_CLASS,
    show_default=True,
    help="gthread serves SSE streams without tying up a process each.",
)
@click.option("--access-log/--no-access-log", default=False)
def api_command(
    *, host: str, port: int, workers: int, threads: int, worker_class: str, access_log: bool
) -> None:
    """Serve the REST API with gunicorn."""
    from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]  # noqa: PLC0415

    settings = _settings()
    options = gunicorn_options(f"{host}:{port}", workers, threads, access_log, worker_class)
    # before prometheus_client is first imported (by api.app's modules): it picks its
    # multiprocess mode from the environment then, and the workers inherit it
    metrics_dir, made_here = _metrics_dir()
    options["child_exit"] = _metrics_child_exit

    from api.app import create_app  # noqa: PLC0415

    class Server(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for name, value in options.items():
                self.cfg.set(name, value)

        def load(self) -> Any:
            return create_app(settings)

    try:
        Server().run()
    finally:
        if made_here:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _metrics_dir() -> tuple[Path, bool]:
    """The directory where the API's processes keep their request metrics (api/metrics.py),
    empty, and exported as ``PROMETHEUS_MULTIPROC_DIR``; True when made here (a
    temporary one, removed on exit) rather than given by the operator."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        # the files of a previous run would be added to this one's
        for stale in path.glob("*.db"):
            stale.unlink()
    else:
        path = Path(tempfile.mkdtemp(prefix="reelyard-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)
    return path, not given


def _metrics_child_exit(_server: object, worker: Any) -> None:
    """gunicorn's hook: a worker that exited stops counting in the live gauges (its
    counters and histograms are kept, so totals do not go down)."""
    from prometheus_client import multiprocess  # noqa: PLC0415

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


@click.command("migrate")
@click.option("--revision", default="head", show_default=True)
def migrate_command(revision: str) -> None:
    """Apply the database migrations (alembic upgrade)."""
    from migrations import upgrade  # noqa: PLC0415

    settings = _settings()
    upgrade(settings.database_url, revision)
    click.echo(f"database at {revision}")


@click.group("tenants")
def tenants_group() -> None:
    """Administer tenants."""


@tenants_group.command("create")
@click.argument("name")
@click.option("--rate-limit", help="This tenant's request limits, e.g. '100/second'.")
def tenants_create(name: str, rate_limit: str | None) -> None:
    """Create tenant NAME and print its id."""
    from models.access import create_tenant  # noqa: PLC0415

    if not name.strip():
        raise click.BadParameter("must not be empty", param_hint="NAME")
    with _session() as session:
        tenant = create_tenant(session, name.strip(), rate_limit=rate_limit)
        session.commit()
        click.echo(tenant.id)


@click.group("keys")
def keys_group() -> None:
    """Administer API keys."""


@keys_group.command("create")
@click.argument("tenant")
def keys_create(tenant: str) -> None:
    """Make a key for TENANT (an id) and print it: it is shown only this once."""
    from models import Tenant  # noqa: PLC0415
    from models.access import issue_key  # noqa: PLC0415

    with _session() as session:
        if session.get(Tenant, tenant) is None:
            raise click.ClickException(f"no tenant {tenant}")
        issued = issue_key(session, tenant)
        session.commit()
    click.echo(issued.key)
    if sys.stderr.isatty():
        click.echo("Store it now: it cannot be shown again.", err=True)


@keys_group.command("revoke")
@click.argument("prefix")
def keys_revoke(prefix: str) -> None:
    """Revoke the key whose prefix is PREFIX (the part after ry_)."""
    from models.access import revoke_key  # noqa: PLC0415

    with _session() as session:
        if not revoke_key(session, prefix):
            raise click.ClickException(f"no live key with prefix {prefix}")
        session.commit()
    click.echo(f"revoked {prefix}")


@contextmanager
def _session() -> Iterator[Session]:
    from models.db import make_engine, make_session_factory  # noqa: PLC0415

    engine = make_engine(_settings().database_url, pool_size=1)
    try:
        with make_session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()
