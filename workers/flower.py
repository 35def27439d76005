"""``reelyard flower``: the operators' dashboard, Celery Flower, on the service's broker.

Registered on the ``reelyard`` group in ``reelyard/cli.py``. It reads the settings once
(``REELYARD_BROKER_URL``), builds the same Celery app the API publishes with
(:func:`workers.app.create_celery`: Flower needs the broker and the serializers, not the
tasks), and hands over to Flower's own command, as ``reelyard beat`` does to Celery's.

Flower can revoke tasks and shut workers down, so it asks for HTTP basic auth
(``REELYARD_FLOWER_BASIC_AUTH=user:password``, several separated by commas) and refuses
to start without it, unless ``REELYARD_STANDALONE`` is on or ``--no-auth`` is given
(a developer's machine). The credentials reach Flower through its environment
(``FLOWER_BASIC_AUTH``), never its command line, where ``ps`` would show them.

Flower's ``/metrics`` (Prometheus) and ``/healthcheck`` answer *without* auth (Flower
does not guard them), so that a scraper and an orchestrator need no password: keep the
port on a private network (docs/operations.md, "Flower").
"""

from __future__ import annotations

import os

import click

from reelyard.settings import Settings, SettingsError

#: Flower's own variable for basic auth, read when its command starts
FLOWER_AUTH_VARIABLE = "FLOWER_BASIC_AUTH"
NO_AUTH_REFUSAL = (
    "refusing to start Flower without a password: set REELYARD_FLOWER_BASIC_AUTH="
    "user:password (or pass --no-auth on a development machine)"
)


def flower_argv(address: str, port: int, *, loglevel: str) -> list[str]:
    """Celery's command line that runs Flower on ``address:port``."""
    return [
        "flower",
        f"--address={address}",
        f"--port={port}",
        f"--logging={loglevel.lower()}",
        # workers that left are dropped from the table (and /metrics) after an hour
        "--purge_offline_workers=3600",
    ]


@click.command("flower")
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=5555, show_default=True, help="Port."
)
@click.option(
    "--no-auth",
    is_flag=True,
    help="Serve without a password when REELYARD_FLOWER_BASIC_AUTH is unset (development).",
)
@click.option("--loglevel", default="INFO", show_default=True)
def flower_command(address: str, port: int, no_auth: bool, loglevel: str) -> None:
    """Serve Flower, the dashboard of the workers and their tasks (and /metrics)."""
    from workers.app import create_celery  # noqa: PLC0415 (loaded only when it runs)

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    if settings.flower_basic_auth is not None:
        os.environ[FLOWER_AUTH_VARIABLE] = settings.flower_basic_auth
    elif not (no_auth or settings.standalone):
        raise click.ClickException(NO_AUTH_REFUSAL)
    app = create_celery(settings)
    app.start(flower_argv(address, port, loglevel=loglevel))
