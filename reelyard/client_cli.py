"""The client commands of ``reelyard``: submit, jobs, revise, download, webhooks verify.

They drive a running API over HTTP with :mod:`reelyard.client` (docs/cli.md is the
guide). Every command that talks to the API takes ``--api-url`` (``REELYARD_API_URL``),
``--api-key`` (``REELYARD_API_KEY``, else the standalone mode's
``<REELYARD_DATA_DIR>/client.json``) and ``--json``. A failure is one line on stderr,
``error: …``, never a traceback, and the exit status says which (:class:`ExitCode`).

Live progress (``--wait``, ``jobs events --follow``) is a rich progress bar on a
terminal, with the job's messages printed above it as they come (click's bar has no way
to print above itself), and one plain line per event anywhere else.
"""

from __future__ import annotations

import enum
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, NoReturn, Protocol, TypeVar

import click

from reelyard.client import (
    DEFAULT_API_URL,
    STAGES,
    TERMINAL_STATUSES,
    ApiUnreachable,
    AuthFailed,
    BadResponse,
    ClientError,
    Event,
    LocalFileError,
    LocalFiles,
    NotFound,
    ReelyardClient,
    Rejected,
    ServerError,
    connect,
    resolve_config,
)

if TYPE_CHECKING:
    from rich.progress import Progress


class ExitCode(enum.IntEnum):
    """The exit statuses of the client commands (docs/cli.md lists them too)."""

    OK = 0
    #: the job ended failed or canceled; a webhook request that does not verify
    JOB_FAILED = 1
    #: a bad option or argument (click's own status)
    USAGE = 2
    #: the API refused the request: a 4xx other than 401, 403 and 404 (e.g. 422, 409)
    REJECTED = 3
    #: no such job (404)
    NOT_FOUND = 4
    #: the API cannot be reached, answered 5xx, or answered what it never sends
    UNAVAILABLE = 5
    #: no key, or the API refused it (401, 403)
    AUTH = 6
    #: a local file cannot be read, written or served (or exists, without --force)
    LOCAL_FILE = 7
    #: interrupted (Ctrl-C) while waiting; the job goes on
    INTERRUPTED = 130


#: the API's choices (api/schemas.py; a test checks they agree)
ASPECT_RATIOS: Final = ("16:9", "9:16", "1:1", "4:5")
RESOLUTIONS: Final = ("720p", "1080p")
STATUSES: Final = ("queued", "running", "succeeded", "failed", "canceled")
_UPLOAD: Final = STAGES.index("upload")

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, exit_code: ExitCode) -> NoReturn:
    """Say what failed in one line on stderr, ``error: …``, and exit with ``exit_code``."""
    click.echo(f"error: {' '.join(message.split())}", err=True)
    raise click.exceptions.Exit(int(exit_code))


def exit_code_for(error: ClientError) -> ExitCode:
    """The exit status that tells a script what kind of failure ``error`` is."""
    if isinstance(error, AuthFailed):
        return ExitCode.AUTH
    if isinstance(error, NotFound):
        return ExitCode.NOT_FOUND
    if isinstance(error, Rejected):
        return ExitCode.REJECTED
    if isinstance(error, LocalFileError):
        return ExitCode.LOCAL_FILE
    if isinstance(error, ServerError | ApiUnreachable | BadResponse):
        return ExitCode.UNAVAILABLE
    return ExitCode.UNAVAILABLE


def client_options(command: F) -> F:
    """``--api-url``, ``--api-key`` and ``--json``, on every command that calls the API."""
    decorators = [
        click.option(
            "--api-url",
            envvar="REELYARD_API_URL",
            metavar="URL",
            help=f"The API's base URL  [env: REELYARD_API_URL; default: the standalone "
            f"mode's, else {DEFAULT_API_URL}]",
        ),
        click.option(
            "--api-key",
            envvar="REELYARD_API_KEY",
            metavar="KEY",
            help="ry_… key  [env: REELYARD_API_KEY; default: the standalone mode's "
            "<REELYARD_DATA_DIR or .reelyard>/client.json]",
        ),
        json_option,
    ]
    for decorator in reversed(decorators):
        command = decorator(command)
    return command


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the API's objects as JSON instead of text."
)


@contextmanager
def api_client(api_url: str | None, api_key: str | None) -> Iterator[ReelyardClient]:
    """A connected client; any :class:`ClientError` inside is a :func:`fail`."""
    config = resolve_config(api_url, api_key, os.environ)
    if config.api_key is None:
        fail(
            f"no API key for {config.api_url}: pass --api-key, set REELYARD_API_KEY, or run "
            "the standalone mode (it writes .reelyard/client.json)",
            ExitCode.AUTH,
        )
    try:
        with connect(config) as client:
            yield client
    except ClientError as exc:
        fail(str(exc), exit_code_for(exc))
    except KeyboardInterrupt:  # click would say "Aborted!" with status 1, a failed job's
        fail("interrupted", ExitCode.INTERRUPTED)


def print_json(document: Any) -> None:
    click.echo(json.dumps(document, indent=2, ensure_ascii=False))


def _print_job_or(job: Mapping[str, Any], line: str, *, as_json: bool) -> None:
    if as_json:
        print_json(job)
    else:
        click.echo(line)


# --- live progress ------------------------------------------------------------------


@dataclass
class JobProgress:
    """Where a job is, as its events tell it."""

    stage: str = "queued"
    percent: int = 0

    def update(self, event: Event) -> None:
        if event.stage:
            self.stage = event.stage
        if event.progress is not None:
            self.percent = event.progress
        if event.type == "succeeded":
            self.percent = 100
        if event.terminal:
            self.stage = event.type


def event_line(event: Event, progress: JobProgress) -> str:
    """A plain line for one event: percent, stage, what happened."""
    what = event.message or event.type
    if event.type in {"error", "retry", "repair"}:
        what = f"{event.type}: {what}"
    return f"{progress.percent:>3}%  {progress.stage:<11}  {what}"


class EventView(Protocol):
    def show(self, event: Event) -> None: ...

    def close(self) -> None: ...


class PlainLines:
    """One line per event, for pipes, files and logs."""

    def __init__(self, *, err: bool = False) -> None:
        self._err = err
        self._progress = JobProgress()

    def show(self, event: Event) -> None:
        self._progress.update(event)
        click.echo(event_line(event, self._progress), err=self._err)

    def close(self) -> None:
        pass


class JsonLines:
    """Each event as the API sent it, one JSON document a line."""

    def show(self, event: Event) -> None:
        click.echo(json.dumps(event.raw, ensure_ascii=False))

    def close(self) -> None:
        pass


class Silent:
    def show(self, event: Event) -> None:
        pass

    def close(self) -> None:
        pass


class LiveBar:
    """A progress bar with the stage and percent; messages are printed above it."""

    def __init__(self, file: IO[str]) -> None:
        from rich.console import Console  # noqa: PLC0415 (only on a terminal)
        from rich.progress import (  # noqa: PLC0415
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        console = Console(file=file, force_terminal=True, highlight=False)
        self._bar: Progress = Progress(
            TextColumn("{task.description:<11}"),
            BarColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=console,
            refresh_per_second=4,
        )
        self._progress = JobProgress()
        self._task = self._bar.add_task(self._progress.stage, total=100)
        self._bar.start()

    def show(self, event: Event) -> None:
        from rich.text import Text  # noqa: PLC0415 (an editor's words are not markup)

        self._progress.update(event)
        self._bar.update(
            self._task, completed=self._progress.percent, description=self._progress.stage
        )
        if event.message and event.type != "progress":
            prefix = f"{event.type}: " if event.type in {"error", "retry", "repair"} else ""
            self._bar.console.print(Text(f"{prefix}{event.message}"))
        self._bar.refresh()

    def close(self) -> None:
        self._bar.stop()


def live_view(as_json: bool) -> EventView:
    """The bar on a terminal, plain lines elsewhere; with ``--json`` stdout stays JSON,
    so progress goes to stderr, and only when that is a terminal."""
    if as_json:
        return LiveBar(sys.stderr) if sys.stderr.isatty() else Silent()
    return LiveBar(sys.stdout) if sys.stdout.isatty() else PlainLines()


def upload_done(event: Event) -> bool:
    """True once the job is past its upload stage (or over): its photos were fetched."""
    if event.terminal:
        return True
    return event.stage in STAGES and STAGES.index(event.stage) > _UPLOAD


def watch(
    client: ReelyardClient,
    job_id: str,
    view: EventView,
    *,
    until: Callable[[Event], bool] = lambda event: event.terminal,
    on_event: Callable[[Event], None] | None = None,
) -> None:
    """Show the job's events as they come, until ``until`` says so."""
    try:
        for event in client.follow_events(job_id):
            view.show(event)
            if on_event is not None:
                on_event(event)
            if until(event):
                return
    except KeyboardInterrupt:
        fail(
            f"stopped waiting; job {job_id} goes on (reelyard jobs events {job_id} --follow)",
            ExitCode.INTERRUPTED,
        )
    finally:
        view.close()


def finish(client: ReelyardClient, job_id: str, *, as_json: bool) -> None:
    """Print the job's outcome; exit 1 if it failed or was canceled."""
    job = client.get_job(job_id)
    if as_json:
        print_json(job)
    status = job.get("status")
    if status == "succeeded":
        if not as_json:
            click.echo(result_line(job))
        return
    if status == "failed":
        error = job.get("error") or {}
        reason = f"{error.get('code', 'failed')}: {error.get('message') or 'no reason given'}"
        fail(f"job {job_id} failed: {reason}", ExitCode.JOB_FAILED)
    if status == "canceled":
        fail(f"job {job_id} was canceled", ExitCode.JOB_FAILED)
    fail(f"job {job_id} is still {status}", ExitCode.UNAVAILABLE)


def result_line(job: Mapping[str, Any]) -> str:
    result = job.get("result") or {}
    parts = [f"{job.get('id')} succeeded", str(result.get("url") or "(no video URL)")]
    if isinstance(result.get("duration_s"), int | float):
        parts.append(f"{result['duration_s']:.1f} s")
    if result.get("width") and result.get("height"):
        parts.append(f"{result['width']}x{result['height']}")
    return "  ".join(parts)


# --- submit and revise --------------------------------------------------------------


def photo_source(value: str) -> str | Path:
    """An http(s) URL as it is, anything else a local file that must exist."""
    if value.lower().startswith(("http://", "https://")):
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        raise click.BadParameter(f"{value}: no such file (nor an http(s) URL)", param_hint="IMAGE")
    return path.resolve()


def parse_metadata(pairs: tuple[str, ...]) -> dict[str, str]:
    metadata: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--metadata")
        metadata[key] = value
    return metadata


def job_options(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


@click.command("submit")
@click.argument("images", nargs=-1, required=True, metavar="IMAGE_URL_OR_FILE...")
@click.option("--prompt", required=True, help="What to make of the photos (1-2000 characters).")
@click.option("--aspect", type=click.Choice(ASPECT_RATIOS), help="Aspect ratio  [API: 16:9]")
@click.option("--resolution", type=click.Choice(RESOLUTIONS), help="[API: 1080p]")
@click.option("--duration", type=click.FloatRange(3, 600), help="Target length in seconds.")
@click.option("--title", help="A title shown in the video.")
@click.option("--music", metavar="on|off|URL", help="Background music  [API: on]")
@click.option("--language", metavar="BCP47", help="Language of titles and captions.")
@click.option("--webhook-url", metavar="URL", help="Where the API calls back when it ends.")
@click.option("--metadata", multiple=True, metavar="KEY=VALUE", help="Repeatable; echoed back.")
@click.option("--idempotency-key", metavar="KEY", help="Submitting again with it is a no-op.")
@click.option("--wait", is_flag=True, help="Show progress until the job ends.")
@click.option(
    "--serve-host",
    default="127.0.0.1",
    show_default=True,
    help="Where local files are served from (the fetcher of the photos must reach it).",
)
@click.option(
    "--serve-port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port for local files (0: any free one).",
)
@client_options
def submit_command(
    *,
    images: tuple[str, ...],
    prompt: str,
    aspect: str | None,
    resolution: str | None,
    duration: float | None,
    title: str | None,
    music: str | None,
    language: str | None,
    webhook_url: str | None,
    metadata: tuple[str, ...],
    idempotency_key: str | None,
    wait: bool,
    serve_host: str,
    serve_port: int,
    api_url: str | None,
    api_key: str | None,
    as_json: bool,
) -> None:
    """Create a job from photos (URLs or local files) and a prompt.

    Local files are served on SERVE_HOST until the job is past its upload stage, so the
    command waits at least that long (docs/cli.md).
    """
    sources = [photo_source(image) for image in images]
    body: dict[str, Any] = {
        "prompt": prompt,
        "options": job_options(
            aspect_ratio=aspect,
            resolution=resolution,
            duration_s=duration,
            music=music,
            title=title,
            language=language,
        ),
        "metadata": parse_metadata(metadata),
    }
    if webhook_url is not None:
        body["webhook_url"] = webhook_url
    local = [source for source in sources if isinstance(source, Path)]
    with api_client(api_url, api_key) as client, ExitStack() as stack:
        served: LocalFiles | None = None
        if local:
            served = stack.enter_context(LocalFiles(local, host=serve_host, port=serve_port))
        served_urls = iter(served.urls if served is not None else [])
        body["images"] = [
            next(served_urls) if isinstance(source, Path) else source for source in sources
        ]
        job = client.create_job(body, idempotency_key=idempotency_key)
        job_id = str(job["id"])
        if served is None and not wait:
            _print_job_or(job, f"{job_id} {job.get('status')}", as_json=as_json)
            return
        if not as_json:
            click.echo(f"{job_id} {job.get('status')}")
        view = live_view(as_json)
        if not wait:
            watch(client, job_id, view, until=upload_done)
            stack.close()
            job = client.get_job(job_id)
            if job.get("status") in TERMINAL_STATUSES:
                finish(client, job_id, as_json=as_json)
            elif as_json:
                print_json(job)
            else:
                click.echo(f"photos uploaded; follow with: reelyard jobs events {job_id} --follow")
            return

        def stop_serving(event: Event) -> None:
            if upload_done(event):
                stack.close()

        watch(client, job_id, view, on_event=stop_serving)
        finish(client, job_id, as_json=as_json)


@click.command("revise")
@click.argument("job_id", metavar="JOB")
@click.option("--prompt", required=True, help="The new instruction for the finished video.")
@click.option("--aspect", type=click.Choice(ASPECT_RATIOS), help="New aspect ratio  [the parent's]")
@click.option("--resolution", type=click.Choice(RESOLUTIONS), help="[the parent's]")
@click.option("--duration", type=click.FloatRange(3, 600), help="New length in seconds.")
@click.option("--title", help="New title.")
@click.option("--music", metavar="on|off|URL", help="[the parent's]")
@click.option("--idempotency-key", metavar="KEY", help="Revising again with it is a no-op.")
@click.option("--wait", is_flag=True, help="Show progress until the new job ends.")
@client_options
def revise_command(
    *,
    job_id: str,
    prompt: str,
    aspect: str | None,
    resolution: str | None,
    duration: float | None,
    title: str | None,
    music: str | None,
    idempotency_key: str | None,
    wait: bool,
    api_url: str | None,
    api_key: str | None,
    as_json: bool,
) -> None:
    """Revise succeeded JOB with a new instruction: a new job on the same editor session.

    The revision keeps the parent's options except those given here; an option
    outweighs the prompt (say "make it square" and pass --aspect 1:1)."""
    changes = job_options(
        aspect_ratio=aspect, resolution=resolution, duration_s=duration, title=title, music=music
    )
    body: dict[str, Any] = {"prompt": prompt}
    if changes:
        body["options"] = changes
    with api_client(api_url, api_key) as client:
        job = client.revise_job(job_id, body, idempotency_key=idempotency_key)
        revision_id = str(job["id"])
        if not wait:
            _print_job_or(job, f"{revision_id} {job.get('status')}", as_json=as_json)
            return
        if not as_json:
            click.echo(f"{revision_id} {job.get('status')} (revises {job_id})")
        watch(client, revision_id, live_view(as_json))
        finish(client, revision_id, as_json=as_json)


# --- jobs ---------------------------------------------------------------------------


@click.group("jobs")
def jobs_group() -> None:
    """List, show, cancel and follow jobs."""


def job_row(job: Mapping[str, Any]) -> str:
    prompt = " ".join(str(job.get("prompt", "")).split())
    if len(prompt) > 40:
        prompt = prompt[:39] + "…"
    return (
        f"{job.get('id')}  {job.get('status', ''):<9}  {job.get('stage', ''):<11}  "
        f"{job.get('progress', 0):>3}%  {str(job.get('created_at', ''))[:19]}  {prompt}"
    )


@jobs_group.command("list")
@click.option("--status", "statuses", multiple=True, type=click.Choice(STATUSES))
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@client_options
def jobs_list(
    *,
    statuses: tuple[str, ...],
    limit: int,
    api_url: str | None,
    api_key: str | None,
    as_json: bool,
) -> None:
    """The newest jobs (the --status ones only, if given)."""
    with api_client(api_url, api_key) as client:
        page = client.list_jobs(statuses=statuses, limit=limit)
    if as_json:
        print_json(page)
        return
    jobs = page.get("data") or []
    for job in jobs:
        click.echo(job_row(job))
    if not jobs:
        click.echo("no jobs")


def job_lines(job: Mapping[str, Any]) -> Iterator[str]:
    yield f"id:        {job.get('id')}"
    yield f"status:    {job.get('status')}"
    yield f"stage:     {job.get('stage')} ({job.get('progress')}%)"
    yield f"prompt:    {job.get('prompt')}"
    for url in job.get("images") or []:
        yield f"image:     {url}"
    yield f"options:   {json.dumps(job.get('options') or {}, ensure_ascii=False)}"
    if job.get("metadata"):
        yield f"metadata:  {json.dumps(job['metadata'], ensure_ascii=False)}"
    for name in ("parent_id", "batch_id", "webhook_url"):
        if job.get(name):
            yield f"{name + ':':<10} {job[name]}"
    if job.get("timeline"):
        yield f"timeline:  {job['timeline'].get('summary')}"
    if job.get("result"):
        yield f"video:     {result_line(job).split('  ', 1)[1]}"
    if job.get("error"):
        yield f"error:     {job['error'].get('code')}: {job['error'].get('message')}"
    yield f"created:   {job.get('created_at')}"
    if job.get("finished_at"):
        yield f"finished:  {job['finished_at']}"


@jobs_group.command("show")
@click.argument("job_id", metavar="JOB")
@client_options
def jobs_show(*, job_id: str, api_url: str | None, api_key: str | None, as_json: bool) -> None:
    """Everything about JOB."""
    with api_client(api_url, api_key) as client:
        job = client.get_job(job_id)
    if as_json:
        print_json(job)
        return
    for line in job_lines(job):
        click.echo(line)


@jobs_group.command("cancel")
@click.argument("job_id", metavar="JOB")
@client_options
def jobs_cancel(*, job_id: str, api_url: str | None, api_key: str | None, as_json: bool) -> None:
    """Cancel JOB (canceling a canceled job is fine; a finished one is refused, exit 3)."""
    with api_client(api_url, api_key) as client:
        job = client.cancel_job(job_id)
    _print_job_or(job, f"{job.get('id')} {job.get('status')}", as_json=as_json)


@jobs_group.command("events")
@click.argument("job_id", metavar="JOB")
@click.option("--follow", is_flag=True, help="Keep showing events live until the job ends.")
@client_options
def jobs_events(
    *, job_id: str, follow: bool, api_url: str | None, api_key: str | None, as_json: bool
) -> None:
    """JOB's event log; with --follow, live until the job ends (exit 1 if it failed).

    With --json: the log as one document, or with --follow one event per line.
    """
    with api_client(api_url, api_key) as client:
        if follow:
            view: EventView = JsonLines() if as_json else live_view(as_json=False)
            watch(client, job_id, view)
            if as_json:
                _exit_for(client, job_id)
            else:
                finish(client, job_id, as_json=False)
            return
        events, status = client.all_events(job_id)
    if as_json:
        print_json({"data": [event.raw for event in events], "job_status": status})
        return
    lines = PlainLines()
    for event in events:
        lines.show(event)


def _exit_for(client: ReelyardClient, job_id: str) -> None:
    """With ``--json --follow`` stdout holds only events: the outcome is the exit status."""
    status = client.get_job(job_id).get("status")
    if status in TERMINAL_STATUSES - {"succeeded"}:
        fail(f"job {job_id} {status}", ExitCode.JOB_FAILED)


# --- download -----------------------------------------------------------------------


@click.command("download")
@click.argument("job_id", metavar="JOB")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The file to write (written whole or not at all).",
)
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@client_options
def download_command(
    *,
    job_id: str,
    output: Path,
    force: bool,
    api_url: str | None,
    api_key: str | None,
    as_json: bool,
) -> None:
    """Download JOB's video (it must have succeeded)."""
    if output.exists() and not force:
        fail(f"{output} exists (--force replaces it)", ExitCode.LOCAL_FILE)
    with api_client(api_url, api_key) as client:
        size = client.download_video(job_id, output, overwrite=force)
    if as_json:
        print_json({"job_id": job_id, "path": str(output), "size_bytes": size})
    else:
        click.echo(f"{output}  {size} bytes")


# --- webhooks -----------------------------------------------------------------------


@dataclass(frozen=True)
class SavedRequest:
    headers: dict[str, str]
    body: bytes
    received_at: float | None = None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise click.BadParameter(f"{path}: cannot be read ({exc.strerror or exc})") from None


def parse_saved_request(raw: bytes) -> SavedRequest:
    """A request saved as JSON (``{"headers", "body", "received_at"}``) or as raw HTTP."""
    if raw.lstrip().startswith(b"{"):
        try:
            document = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"not valid JSON ({exc})") from None
        headers, body = document.get("headers"), document.get("body")
        if not isinstance(headers, dict) or not isinstance(body, str):
            raise ValueError('a saved request is {"headers": {…}, "body": "…"}')
        received_at = document.get("received_at")
        if received_at is not None and not isinstance(received_at, int | float):
            raise ValueError("received_at is Unix seconds")
        return SavedRequest(
            {str(name): str(value) for name, value in headers.items()},
            body.encode(),
            received_at,
        )
    return parse_http_request(raw)


def parse_http_request(raw: bytes) -> SavedRequest:
    """``POST /path HTTP/1.1``, header lines, a blank line, then the body as it came."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        head, found, body = raw.partition(separator)
        if found:
            break
    else:
        raise ValueError("neither JSON nor an HTTP request (no blank line after the headers)")
    lines = head.decode("latin-1").splitlines()
    if not lines or " " not in lines[0] or ":" in lines[0].split(" ", 1)[0]:
        raise ValueError("an HTTP request starts with its request line (POST /path HTTP/1.1)")
    headers = parse_header_lines(lines[1:])
    length = {name.lower(): value for name, value in headers.items()}.get("content-length")
    if length is not None and length.strip().isdigit():
        body = body[: int(length)]
    return SavedRequest(headers, body)


def parse_header_lines(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"not a header line: {line[:80]!r}")
        headers[name.strip()] = value.strip()
    return headers


def parse_headers_file(raw: bytes) -> dict[str, str]:
    """A JSON object of headers, or ``Name: value`` lines."""
    text = raw.decode("utf-8", errors="replace")
    if text.lstrip().startswith("{"):
        document = json.loads(text)
        if not isinstance(document, dict):
            raise ValueError("headers as JSON are an object")
        return {str(name): str(value) for name, value in document.items()}
    return parse_header_lines(text.splitlines())


@click.group("webhooks")
def webhooks_group() -> None:
    """Tools for receivers of reelyard's webhooks."""


@webhooks_group.command("verify")
@click.option(
    "--secret",
    envvar="REELYARD_WEBHOOK_SECRET",
    required=True,
    metavar="whsec_…",
    help="The endpoint's secret  [env: REELYARD_WEBHOOK_SECRET]",
)
@click.option(
    "--request",
    "request_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help='A saved request: JSON {"headers", "body", "received_at"} or raw HTTP.',
)
@click.option(
    "--headers",
    "headers_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The request's headers: a JSON object or Name: value lines (with --body).",
)
@click.option(
    "--body",
    "body_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The request's body, byte for byte (with --headers).",
)
@click.option(
    "--at",
    "checked_at",
    type=float,
    metavar="UNIX_SECONDS",
    help="Judge the timestamp as of this time  [default: the file's received_at, else now]",
)
@json_option
def webhooks_verify(
    *,
    secret: str,
    request_file: Path | None,
    headers_file: Path | None,
    body_file: Path | None,
    checked_at: float | None,
    as_json: bool,
) -> None:
    """Check a saved webhook request's signature (Standard Webhooks) against SECRET."""
    from reelyard.webhooks import SignatureInvalid, secret_bytes, verify  # noqa: PLC0415

    try:
        secret_bytes(secret)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--secret") from None
    saved = _saved_request(request_file, headers_file, body_file)
    now = checked_at if checked_at is not None else saved.received_at
    try:
        verify(secret, saved.body, saved.headers, now=now)
    except SignatureInvalid as exc:
        _refuse_webhook(str(exc), as_json=as_json)
    headers = {name.lower(): value for name, value in saved.headers.items()}
    event_type = _payload_type(saved.body)
    if as_json:
        print_json({"ok": True, "webhook_id": headers["webhook-id"], "type": event_type})
    else:
        click.echo(f"ok  {headers['webhook-id']}  {event_type}")


def _saved_request(
    request_file: Path | None, headers_file: Path | None, body_file: Path | None
) -> SavedRequest:
    if (request_file is None) == (headers_file is None and body_file is None):
        raise click.UsageError("give either --request FILE or --headers FILE --body FILE")
    try:
        if request_file is not None:
            return parse_saved_request(_read(request_file))
        if headers_file is None or body_file is None:
            raise click.UsageError("--headers and --body go together")
        return SavedRequest(parse_headers_file(_read(headers_file)), _read(body_file))
    except ValueError as exc:  # json.JSONDecodeError included
        raise click.BadParameter(str(exc)) from None


def _payload_type(body: bytes) -> str:
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "(body is not JSON)"
    kind = document.get("type") if isinstance(document, dict) else None
    return str(kind) if kind else "(no type)"


def _refuse_webhook(reason: str, *, as_json: bool) -> NoReturn:
    if as_json:
        print_json({"ok": False, "reason": reason})
    fail(f"the webhook does not verify: {reason}", ExitCode.JOB_FAILED)
