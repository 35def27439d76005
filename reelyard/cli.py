"""The ``reelyard`` command: one entry point for every process and tool.

Each subcommand imports what it runs only when it runs, so ``reelyard --help`` stays
fast and a subcommand's dependencies never load for another.
"""

from __future__ import annotations

import sys

from reelyard.green import patch_if_asked

# ``reelyard worker --pool gevent``: the standard library is patched before anything
# below imports it (reelyard/green.py says why); any other command is left alone
patch_if_asked(sys.argv)

import json  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import click  # noqa: E402

from api.commands import api_command, keys_group, migrate_command, tenants_group  # noqa: E402
from reelyard import __version__  # noqa: E402
from reelyard.standalone import standalone_command  # noqa: E402
from workers.commands import beat_command, worker_command  # noqa: E402
from workers.flower import flower_command  # noqa: E402

#: a draft is a small JSON document; anything larger is not one
MAX_DRAFT_BYTES = 10 * 1024 * 1024

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1


class BadInput(click.ClickException):
    """Input the command cannot use: exits with status 2, the message and no traceback."""

    exit_code = EXIT_BAD_INPUT


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reelyard")
def main() -> None:
    """reelyard: photos and a prompt in, a finished video out."""


def _read_draft(path: Path) -> Any:
    try:
        size = path.stat().st_size
        if size > MAX_DRAFT_BYTES:
            raise BadInput(
                f"{path}: {size} bytes is too large for a draft (at most {MAX_DRAFT_BYTES})"
            )
        return json.loads(path.read_bytes())
    except OSError as exc:
        raise BadInput(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: not valid JSON ({exc})") from None


@main.command()
@click.argument("draft", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--media",
    "media_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=Path(),
    show_default=True,
    help="Directory holding the files the draft names.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Where to write the MP4.",
)
@click.option(
    "--quality",
    type=click.Choice(["high", "draft", "reference"]),
    default="high",
    show_default=True,
    help="high for delivery, draft for a fast preview, reference to measure the others by.",
)
@click.option(
    "--timeout", "timeout_s", type=click.FloatRange(min=1), help="Seconds before giving up."
)
@click.option(
    "--ffmpeg",
    envvar="STUDIO_FFMPEG",
    help="An ffmpeg binary to mix the audio with instead of the bundled one.  [env: STUDIO_FFMPEG]",
)
@click.option("--progress/--no-progress", default=None, help="Show progress (default: on a tty).")
def render(  # click passes options by name
    *,
    draft: Path,
    media_dir: Path,
    output: Path,
    quality: str,
    timeout_s: float | None,
    ffmpeg: str | None,
    progress: bool | None,
) -> None:
    """Render a Nemo DRAFT (JSON) and its media into an MP4."""
    from studio.render import (  # noqa: PLC0415 (loaded only for this command)
        DraftError,
        MediaError,
        Quality,
        RenderError,
        RenderOptions,
        render_draft,
    )

    document = _read_draft(draft)
    show = sys.stderr.isatty() if progress is None else progress

    def report(done: float) -> None:
        click.echo(f"\rrendering {done:4.0%}", nl=False, err=True)

    options = RenderOptions(
        quality=Quality(quality),
        timeout_s=timeout_s,
        ffmpeg=ffmpeg,
        progress=report if show else None,
    )
    try:
        result = render_draft(document, media_dir, output, options)
    except (DraftError, MediaError) as exc:
        click.echo(f"\nerror: {exc}" if show else f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except RenderError as exc:
        click.echo(f"\nrender failed: {exc}" if show else f"render failed: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    if show:
        click.echo(err=True)
    click.echo(
        f"{result.path}  {result.width}x{result.height}  {result.fps} fps  "
        f"{result.duration_s:.2f} s  {result.size_bytes / 1e6:.1f} MB  "
        f"rendered in {result.elapsed_s:.1f} s"
    )


@main.command()
@click.option("--host", envvar="STUDIO_HOST", default="127.0.0.1", show_default=True)
@click.option(
    "--port", envvar="STUDIO_PORT", type=click.IntRange(0, 65535), default=8600, show_default=True
)
@click.option(
    "--time-scale",
    envvar="STUDIO_TIME_SCALE",
    type=click.FloatRange(min=0),
    help="Multiplies simulated durations.  [env: STUDIO_TIME_SCALE]",
)
@click.option(
    "--faults", envvar="STUDIO_FAULTS", help="Faults from the start, JSON.  [env: STUDIO_FAULTS]"
)
@click.option("--access-log/--no-access-log", default=False, help="A line per request.")
def studio(
    *, host: str, port: int, time_scale: float | None, faults: str | None, access_log: bool
) -> None:
    """Serve the studio, the Nemo-compatible backend (every setting: studio/config.py)."""
    import dataclasses  # noqa: PLC0415
    import logging  # noqa: PLC0415

    from studio.config import ConfigError, StudioConfig  # noqa: PLC0415
    from studio.faults import FaultConfigError  # noqa: PLC0415
    from studio.server import serve  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO if access_log else logging.WARNING)
    try:
        config = StudioConfig.from_env()
        changes: dict[str, Any] = {"host": host, "port": port}
        if time_scale is not None:
            changes["time_scale"] = time_scale
        if faults is not None:
            changes["faults"] = faults
        config = dataclasses.replace(config, **changes)
        serve(config, access_log=access_log)
    except (ConfigError, FaultConfigError) as exc:
        raise BadInput(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {host}:{port}: {exc}") from None


# the service's processes and its administration (each loads its dependencies when run)
main.add_command(api_command)  # reelyard api
main.add_command(migrate_command)  # reelyard migrate
main.add_command(tenants_group)  # reelyard tenants create NAME
main.add_command(keys_group)  # reelyard keys create TENANT / revoke PREFIX
main.add_command(worker_command)  # reelyard worker [-Q pipeline|edit]
main.add_command(beat_command)  # reelyard beat

# the client of a running API (docs/cli.md)
from reelyard import client_cli  # noqa: E402

main.add_command(client_cli.submit_command)  # reelyard submit IMAGE... --prompt TEXT
main.add_command(client_cli.jobs_group)  # reelyard jobs list / show / cancel / events
main.add_command(client_cli.revise_command)  # reelyard revise JOB --prompt TEXT
main.add_command(client_cli.download_command)  # reelyard download JOB -o FILE
main.add_command(client_cli.webhooks_group)  # reelyard webhooks verify
main.add_command(flower_command)  # reelyard flower
main.add_command(standalone_command)  # reelyard standalone


if __name__ == "__main__":  # pragma: no cover
    main()
