"""The ``reelyard`` command: one entry point for every process and tool.

Each subcommand imports what it runs only when it runs, so ``reelyard --help`` stays
fast and a subcommand's dependencies never load for another.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from reelyard import __version__

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
    type=click.Choice(["high", "draft"]),
    default="high",
    show_default=True,
    help="high for delivery, draft for a fast preview.",
)
@click.option(
    "--timeout", "timeout_s", type=click.FloatRange(min=1), help="Seconds before giving up."
)
@click.option(
    "--ffmpeg",
    envvar="STUDIO_FFMPEG",
    help="An ffmpeg binary to use instead of the bundled one.  [env: STUDIO_FFMPEG]",
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


if __name__ == "__main__":  # pragma: no cover
    main()
