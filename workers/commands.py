"""The workers' commands: ``reelyard worker`` and ``reelyard beat``.

Registered on the ``reelyard`` group in ``reelyard/cli.py``. Both read the settings
(``REELYARD_*``) and the upstream's configuration (``NEMO_*``) once, build the worker
app, and hand over to Celery's own worker and beat.

Pools, by queue (chosen by measurement, benchmarks/pipeline.py and inflight.py):

- ``pipeline`` (short stages): ``prefork``, two processes per core: the stages use
  the CPU (the database driver, SQLAlchemy, JSON, checksums, probing the video), so
  threads in one process queue on its GIL (measured: 28 jobs/s on 8 threads against
  31 on two processes), but each also waits on PostgreSQL's commits and on the
  upstream, so two per core keep the cores busy (33 jobs/s with four; a remote
  upstream answers in tens of milliseconds, not one). Celery's time limits apply.
- ``edit`` (the SSE turns): ``threads``, 1,000 threads: each open stream is an idle
  socket, which a thread holds for a few hundred kilobytes where a process would
  take tens of megabytes; the stream's own limits bound each turn.
- ``webhooks`` (deliveries): ``threads``, 50: each thread runs one delivery loop and
  waits on a receiver most of the time; at most ``REELYARD_WEBHOOK_ENDPOINT_CONCURRENCY``
  of them serve one endpoint, so a slow one never holds the pool
  (``REELYARD_WEBHOOK_PARALLEL`` should match the pool's size). The threads share one
  GIL, so a host runs one such process per core (benchmarks/webhooks.py, 2 cores: 472
  deliveries/s from one process, 683 from two).

``--pool gevent`` serves the edit queue with greenlets instead (the same 1,000 idle
streams for less memory; benchmarks/inflight.py compares the two). The process must
be patched before it imports anything, which ``reelyard/cli.py`` does when its
arguments ask for that pool (reelyard/green.py); the command refuses to run gevent in
a process that was not patched, or where psycopg would still wait in C (blocking
every greenlet during each query).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click
from celery import Celery

from reelyard.settings import Settings, SettingsError

log = logging.getLogger(__name__)

#: the pool and concurrency each queue gets by default
POOLS = {
    "pipeline": ("prefork", 2 * (os.cpu_count() or 2)),
    "edit": ("threads", 1000),
    "webhooks": ("threads", 50),
}
LOG_FORMAT = "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"


def _worker_app() -> Celery:
    from nemo import NemoConfig  # noqa: PLC0415 (loaded only by the commands that need it)
    from workers.tasks import create_worker_app  # noqa: PLC0415

    try:
        settings = Settings.from_env()
        nemo_config = NemoConfig.from_env(os.environ)
    except (SettingsError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    return create_worker_app(settings, nemo_config)


@click.command("worker")
@click.option(
    "-Q",
    "--queues",
    type=click.Choice(["pipeline", "edit", "webhooks", "pipeline,edit", "pipeline,edit,webhooks"]),
    default="pipeline",
    show_default=True,
    help="The queue(s) to serve: the short stages, the edit streams, webhooks, or several.",
)
@click.option(
    "--pool", type=click.Choice(["prefork", "threads", "gevent", "solo"]), help="Worker pool."
)
@click.option("-c", "--concurrency", type=click.IntRange(min=1, max=5000), help="Pool size.")
@click.option("-n", "--hostname", help="Node name (default: <queue>@<host>).")
@click.option("--loglevel", default="INFO", show_default=True)
def worker_command(
    queues: str, pool: str | None, concurrency: int | None, hostname: str | None, loglevel: str
) -> None:
    """Run a Celery worker for the pipeline's queue(s)."""
    logging.basicConfig(level=loglevel.upper(), format=LOG_FORMAT)
    # httpx logs every request at INFO: one line per webhook delivery, a tenth of the
    # delivery worker's CPU (benchmarks/webhooks.py); the attempts are in the database
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    names = queues.split(",")
    default_pool, default_concurrency = POOLS[names[0]] if len(names) == 1 else ("threads", 200)
    if pool == "gevent":
        _check_gevent()
    app = _worker_app()
    argv = [
        "worker",
        "--queues",
        queues,
        "--pool",
        pool or default_pool,
        "--concurrency",
        str(concurrency or default_concurrency),
        "--hostname",
        hostname or f"{names[0] if len(names) == 1 else 'all'}@%h",
        "--loglevel",
        loglevel,
        "--without-mingle",
        "--without-gossip",
    ]
    app.worker_main(argv)


def _check_gevent() -> None:
    """Refuse the gevent pool unless the process is patched and psycopg cooperates."""
    from reelyard.green import patched  # noqa: PLC0415

    if not patched():
        raise click.ClickException(
            "--pool gevent needs the standard library patched before anything is imported:"
            " start the worker as `reelyard worker` or `python -m reelyard.cli worker`"
        )
    import psycopg.waiting  # noqa: PLC0415 (chooses its wait function on first import)

    wait = psycopg.waiting.wait
    if wait is getattr(psycopg.waiting, "wait_c", None):
        # psycopg was imported before the patch: every query would block the whole process
        raise click.ClickException("--pool gevent: psycopg was imported before gevent's patch")
    log.info(
        "gevent pool: standard library patched; psycopg waits with %s",
        getattr(wait, "__name__", wait),
    )


@click.command("beat")
@click.option(
    "--schedule",
    "schedule_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where beat keeps its schedule (default: <data dir>/celerybeat-schedule).",
)
@click.option("--loglevel", default="INFO", show_default=True)
def beat_command(schedule_file: Path | None, loglevel: str) -> None:
    """Run the scheduler: the reconciler every REELYARD_RECONCILE_EVERY_S seconds."""
    logging.basicConfig(level=loglevel.upper(), format=LOG_FORMAT)
    app = _worker_app()
    try:
        data_dir = Settings.from_env().data_dir
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    target = schedule_file or data_dir / "celerybeat-schedule"
    target.parent.mkdir(parents=True, exist_ok=True)
    app.start(["beat", "--schedule", str(target), "--loglevel", loglevel])
