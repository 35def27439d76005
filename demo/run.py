"""``make demo``: the main job end to end on this machine, with nothing but Python.

What it does, in order, stopping at the first step that fails:

1. starts ``reelyard standalone`` (SQLite and a broker in files: no PostgreSQL, no
   Redis) on free ports, and while it starts:
2. makes a handful of photos with Pillow (gradients, shapes, "Photo 1" …) in
   ``<output>/photos`` and serves them on a loopback HTTP server;
3. runs a webhook receiver on loopback that verifies every request with the Standard
   Webhooks library (``standardwebhooks``) against the tenant's default secret, which
   it learns from ``POST /v1/webhook-secret/rotate`` once the standalone is ready;
4. through the CLI, submits the photos with the prompt, ``--aspect 9:16`` (the API's
   default, 16:9, would otherwise win over "vertical") and the receiver as the job's
   ``webhook_url``, following it live (``reelyard submit … --wait``), then revises the
   finished job, which makes a new job (``reelyard revise … --wait``);
5. downloads both videos into ``<output>`` (``reelyard download``) and checks them with
   PyAV: a video stream that decodes, the asked size (9:16, then 1:1), the asked length,
   a music track;
6. waits until the ``job.succeeded`` webhook of both jobs arrived and verified;
7. prints what was made and the webhooks received, and stops the standalone with
   SIGINT, as Ctrl-C would.

It exits 0 only if every step passed; otherwise 1 (130 on Ctrl-C or SIGTERM) after one
line ``demo failed: <step>: <why>``. ``--summary FILE`` writes the outcome as JSON.

The studio paces its editor and renders like the real service (a first edit lasts
30-90 s, a render at least 30 s before the real ffmpeg work, which takes about 7 s
for the 15 s 1080x1920 video on two cores); the standalone runs its clock at a fifth
of that (``STUDIO_TIME_SCALE=0.2``), and the demo has the pipeline look at a render
every 2 s instead of every 30 s (``REELYARD_RENDER_POLL_S=2`` unless set): about a
minute on two cores once installed. The videos are 1080p, the API's default.

    python demo/run.py [--data-dir .reelyard] [--output demo-output] [--short]
                       [--summary FILE]
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any, Final, Literal

import av
import click
import httpx
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from reelyard.client_cli import result_line
from reelyard.standalone import die_with_parent

HOST: Final = "127.0.0.1"
#: how long each wait may last before the step fails
STANDALONE_READY_S: Final = 240.0
JOB_TIMEOUT_S: Final = 600.0
WEBHOOKS_TIMEOUT_S: Final = 90.0
STANDALONE_STOP_S: Final = 75.0
#: the standalone's output lines kept for a failure's message
TAIL_LINES: Final = 30
READY_LINE: Final = "reelyard standalone ready"
#: pixel sizes of the renderer's canvases (studio/render/timeline.py)
CANVASES: Final[Mapping[tuple[str, str], tuple[int, int]]] = {
    ("9:16", "1080p"): (1080, 1920),
    ("1:1", "1080p"): (1080, 1080),
    ("9:16", "720p"): (720, 1280),
    ("1:1", "720p"): (720, 720),
}
#: how far a video's length may be from the one asked
DURATION_TOLERANCE_S: Final = 0.5


@dataclass(frozen=True)
class Scenario:
    """The photos, the two instructions and what the videos must be."""

    photos: int
    photo_long_side: int
    prompt: str
    revision_prompt: str
    duration_s: float
    resolution: str
    #: what the studio's simulated waits are multiplied by (unless STUDIO_TIME_SCALE is
    #: set); None: the standalone's own default
    studio_time_scale: str | None
    #: seconds between the pipeline's looks at a render (REELYARD_RENDER_POLL_S, unless
    #: set; 30 s suits the cloud's rate limits, not a studio on this machine)
    render_poll_s: str
    first_aspect: str = "9:16"
    revision_aspect: str = "1:1"


FULL: Final = Scenario(
    photos=5,
    photo_long_side=1600,
    prompt=(
        "turn these photos into a 15-second vertical video with smooth transitions, "
        "upbeat music and the title 'Summer Sale'"
    ),
    revision_prompt="make it square and change the title to 'Last Chance'",
    duration_s=15.0,
    resolution="1080p",
    studio_time_scale=None,
    render_poll_s="2",
)
#: the same flow, smaller: for the end-to-end test
SHORT: Final = Scenario(
    photos=3,
    photo_long_side=800,
    prompt=(
        "turn these photos into a 6-second vertical video with smooth transitions, "
        "upbeat music and the title 'Summer Sale'"
    ),
    revision_prompt="make it square and change the title to 'Last Chance'",
    duration_s=6.0,
    resolution="720p",
    studio_time_scale="0.02",
    render_poll_s="1",
)


class StepFailed(Exception):
    """A step of the demo did not do what it should: why in one line, and details
    (such as the end of the standalone's output) to show above it."""

    def __init__(self, reason: str, details: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.details = details


def say(text: str = "", *, err: bool = False) -> None:
    click.echo(text, err=err)


def heading(text: str) -> None:
    say()
    say(click.style(f"==> {text}", bold=True))


# --- photos ---------------------------------------------------------------------------

#: (top colour, bottom colour, shape colour) of each photo
PALETTES: Final = (
    ((255, 126, 95), (254, 180, 123), (255, 236, 179)),  # sunset
    ((33, 147, 176), (109, 213, 237), (255, 255, 255)),  # sea
    ((86, 171, 47), (168, 224, 99), (250, 250, 210)),  # meadow
    ((142, 45, 226), (74, 0, 224), (255, 196, 255)),  # dusk
    ((247, 151, 30), (255, 210, 0), (255, 255, 240)),  # citrus
    ((238, 9, 121), (255, 106, 0), (255, 230, 240)),  # berry
)


def make_photo(path: Path, index: int, size: tuple[int, int]) -> None:
    """A JPEG: a vertical gradient, soft circles, a stripe, and "Photo N" on it."""
    width, height = size
    top, bottom, accent = PALETTES[(index - 1) % len(PALETTES)]
    mask = Image.linear_gradient("L").resize(size)
    image = Image.composite(Image.new("RGB", size, bottom), Image.new("RGB", size, top), mask)
    shapes = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(shapes)
    unit = min(width, height)
    for n in range(5):
        # places that differ from photo to photo without a random generator
        cx = width * ((0.17 + 0.23 * n + 0.31 * index) % 1.0)
        cy = height * ((0.11 + 0.37 * n + 0.19 * index) % 1.0)
        radius = unit * (0.08 + 0.05 * ((n + index) % 4))
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=(*accent, 70))
    stripe = height * (0.62 + 0.05 * (index % 3))
    draw.polygon(
        [(0, stripe), (width, stripe - unit * 0.15), (width, height), (0, height)],
        fill=(255, 255, 255, 40),
    )
    shapes = shapes.filter(ImageFilter.GaussianBlur(unit / 200))
    image = Image.alpha_composite(image.convert("RGBA"), shapes)
    text = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(24, unit // 9))
    label = f"Photo {index}"
    left, upper, right, lower = text.textbbox((0, 0), label, font=font)
    x = (width - (right - left)) / 2 - left
    y = (height - (lower - upper)) / 2 - upper
    shadow = max(2, unit // 250)
    text.text((x + shadow, y + shadow), label, font=font, fill=(0, 0, 0, 110))
    text.text((x, y), label, font=font, fill=(255, 255, 255, 255))
    image.convert("RGB").save(path, "JPEG", quality=88)


def make_photos(folder: Path, count: int, long_side: int) -> list[Path]:
    """``count`` photos, landscape and portrait in turn (4:3 and 3:4)."""
    folder.mkdir(parents=True, exist_ok=True)
    short_side = long_side * 3 // 4
    paths = []
    for index in range(1, count + 1):
        size = (long_side, short_side) if index % 2 else (short_side, long_side)
        path = folder / f"photo-{index}.jpg"
        make_photo(path, index, size)
        paths.append(path)
    return paths


# --- loopback servers -----------------------------------------------------------------


class _PhotoHandler(SimpleHTTPRequestHandler):
    served: list[str]

    def do_GET(self) -> None:
        self.served.append(self.path)
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_in_thread(server: ThreadingHTTPServer) -> ThreadingHTTPServer:
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="demo-http", daemon=True).start()
    return server


class PhotoServer:
    """Serves one folder on loopback, and remembers what was fetched."""

    def __init__(self, folder: Path) -> None:
        self.served: list[str] = []
        handler = type("PhotoHandler", (_PhotoHandler,), {"served": self.served})
        self.server = serve_in_thread(
            ThreadingHTTPServer((HOST, 0), functools.partial(handler, directory=str(folder)))
        )

    def url(self, path: Path) -> str:
        return f"http://{HOST}:{self.server.server_port}/{path.name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass(frozen=True)
class ReceivedWebhook:
    webhook_id: str
    type: str
    job_id: str
    verified: bool
    error: str | None
    received_at: float


class WebhookReceiver:
    """Answers 204 to each request that verifies against the secret, 401 otherwise,
    and records every one (a receiver deduplicates on ``webhook-id``; this one shows
    them all)."""

    def __init__(self) -> None:
        self.secret: str | None = None
        self.received: list[ReceivedWebhook] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                entry = receiver.check(body, dict(self.headers.items()))
                self.send_response(204 if entry.verified else 401)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = serve_in_thread(ThreadingHTTPServer((HOST, 0), Handler))

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server.server_port}/webhooks"

    def check(self, body: bytes, headers: dict[str, str]) -> ReceivedWebhook:
        lowered = {name.lower(): value for name, value in headers.items()}
        verified, error = False, None
        if self.secret is None:
            error = "no secret to verify with yet"
        else:
            try:
                Webhook(self.secret).verify(body, lowered)
                verified = True
            except (WebhookVerificationError, ValueError) as exc:  # ValueError: garbled
                error = str(exc) or type(exc).__name__
        kind, job_id = "?", "?"
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            payload = json.loads(body)
            kind = str(payload.get("type", "?"))
            job_id = str((payload.get("data") or {}).get("id", "?"))
        entry = ReceivedWebhook(
            lowered.get("webhook-id", "?"), kind, job_id, verified, error, time.time()
        )
        with self._lock:
            self.received.append(entry)
        return entry

    def snapshot(self) -> list[ReceivedWebhook]:
        with self._lock:
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- the standalone -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Standalone:
    """``reelyard standalone`` as a child in a session of its own, its output echoed."""

    data_dir: Path
    env: dict[str, str]
    ports: Mapping[str, int]
    process: subprocess.Popen[str] | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    ready: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        argv = [sys.executable, "-m", "reelyard.cli", "standalone", "--data-dir"]
        argv += [str(self.data_dir)]
        for name, port in self.ports.items():
            argv += [f"--{name}-port", str(port)]
        self.process = subprocess.Popen(
            argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            # its own session: the terminal's Ctrl-C reaches the demo alone, which then
            # stops it with one SIGINT (a second would make it kill its processes)
            start_new_session=True,
            # and SIGTERM from the kernel if the demo dies first, however it dies
            preexec_fn=die_with_parent,  # noqa: PLW1509 (started before any thread)
        )
        threading.Thread(target=self._echo, name="standalone-output", daemon=True).start()

    def _echo(self) -> None:
        assert self.process is not None  # noqa: S101 (started before this thread)
        assert self.process.stdout is not None  # noqa: S101
        for line in self.process.stdout:
            text = line.rstrip("\n")
            self.tail.append(text)
            say(click.style("  standalone | ", dim=True) + text)
            if text.startswith(READY_LINE):
                self.ready.set()

    def output_tail(self) -> str:
        logs = self.data_dir / "logs"
        lines = "\n".join(f"    {line}" for line in self.tail) or "    (no output)"
        return (
            f"  the end of reelyard standalone's output:\n{lines}\n"
            f"  each process's log is in {logs}"
        )

    def wait_ready(self, timeout_s: float) -> None:
        assert self.process is not None  # noqa: S101
        deadline = time.monotonic() + timeout_s
        while not self.ready.wait(0.2):
            if self.process.poll() is not None:
                time.sleep(0.3)  # the last lines of its output
                raise StepFailed(
                    f"reelyard standalone exited ({self.process.returncode}) before it was ready",
                    self.output_tail(),
                )
            if time.monotonic() > deadline:
                raise StepFailed(
                    f"reelyard standalone was not ready within {timeout_s:g} s",
                    self.output_tail(),
                )

    def client_config(self) -> dict[str, str]:
        path = self.data_dir / "client.json"
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise StepFailed(f"{path} is unreadable: {exc}") from None
        if not isinstance(config, dict) or not {"api_url", "api_key"} <= config.keys():
            raise StepFailed(f"{path} has no api_url and api_key")
        return {str(key): str(value) for key, value in config.items()}

    def check_alive(self, doing: str) -> None:
        """Fail the step if it has exited."""
        if self.process is None or self.process.poll() is None:
            return
        time.sleep(0.3)  # the last lines of its output
        raise StepFailed(
            f"reelyard standalone exited ({self.process.returncode}) while {doing}",
            self.output_tail(),
        )

    def stop(self, timeout_s: float) -> None:
        """SIGINT, as Ctrl-C; fails unless it stops in time with status 0."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                # its children are in its process group (it starts them in its session)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
                raise StepFailed(
                    f"it did not stop within {timeout_s:g} s of SIGINT (killed)",
                    self.output_tail(),
                ) from None
        if self.process.returncode != 0:
            raise StepFailed(f"it exited with status {self.process.returncode}", self.output_tail())


# --- the CLI --------------------------------------------------------------------------


Output = Literal["inherit", "pipe", "relay", "capture"]


class Cli:
    """``reelyard …`` client commands, run as a person would, against the standalone.

    Every command is bounded in time, and fails at once if the standalone exits under it.
    """

    def __init__(self, env: dict[str, str], standalone: Standalone) -> None:
        self.env = env
        self.standalone = standalone

    def show(self, args: Sequence[str]) -> None:
        shown = " ".join(_quote(arg) for arg in args)
        say(click.style(f"$ reelyard {shown}", fg="cyan"))

    def call(
        self, args: Sequence[str], *, stdout: Output = "inherit", timeout_s: float = 120.0
    ) -> tuple[int, str, str]:
        """Run ``reelyard ARGS``; its status, and its stdout and stderr where captured.

        ``stdout`` is ``inherit`` (this terminal's), ``pipe`` (returned), ``relay`` (each
        line printed as it comes, indented, and returned) or ``capture`` (returned, and
        stderr too).
        """
        process = subprocess.Popen(
            [sys.executable, "-m", "reelyard.cli", *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=None if stdout == "inherit" else subprocess.PIPE,
            stderr=subprocess.PIPE if stdout == "capture" else None,
            text=True,
            errors="replace",
        )
        out: list[str] = []
        err: list[str] = []
        readers = []
        if process.stdout is not None:
            readers.append(_drain(process.stdout, out, echo=stdout == "relay"))
        if process.stderr is not None:
            readers.append(_drain(process.stderr, err, echo=False))
        deadline = time.monotonic() + timeout_s
        try:
            while process.poll() is None:
                self.standalone.check_alive(f"`reelyard {args[0]}` ran")
                if time.monotonic() > deadline:
                    raise StepFailed(f"`reelyard {args[0]}` did not end within {timeout_s:g} s")
                time.sleep(0.1)
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            for reader in readers:
                reader.join(5)
        return process.returncode, "".join(out), "".join(err)

    def followed(self, args: Sequence[str]) -> dict[str, Any]:
        """Run a command that follows a job (``--wait``) with its progress live on this
        terminal; the job at the end, as ``reelyard jobs show JOB --json`` shows it."""
        if sys.stderr.isatty():
            # the live bar on the terminal (stderr), the job as JSON to the demo
            self.show([*args, "--json"])
            code, out, _ = self.call([*args, "--json"], stdout="pipe", timeout_s=JOB_TIMEOUT_S)
            job_id = _job_id_in_json(out)
            if job_id is not None and code == 0:
                say(result_line(json.loads(out)))
        else:
            # a line per event, passed on as it comes; the first names the job
            self.show(args)
            code, out, _ = self.call(args, stdout="relay", timeout_s=JOB_TIMEOUT_S)
            found = re.match(r"(job_[0-9A-Za-z]+) ", out)
            job_id = found[1] if found else None
        if job_id is None:
            raise StepFailed(f"`reelyard {args[0]}` exited {code} and made no job")
        return self.finished(job_id, code, args[0])

    def finished(self, job_id: str, code: int, command: str) -> dict[str, Any]:
        job = self.json("jobs", "show", job_id)
        if code != 0 or job.get("status") != "succeeded":
            error = job.get("error") or {}
            raise StepFailed(
                f"job {job_id} is {job.get('status')} (`reelyard {command}` exited {code})"
                + (f": {error.get('code')}: {error.get('message')}" if error else "")
            )
        return job

    def revise(self, job_id: str, prompt: str, aspect: str) -> dict[str, Any]:
        """``reelyard revise JOB --prompt … --aspect … --wait``.

        A revision inherits its parent's options, and options win over the prompt
        (``workers.decisions.compose_instruction``): "make it square" on a job made
        with ``aspect_ratio`` 9:16 needs ``aspect_ratio`` 1:1 in the revision's options.
        """
        return self.followed(["revise", job_id, "--prompt", prompt, "--aspect", aspect, "--wait"])

    def json(self, *args: str) -> dict[str, Any]:
        code, out, err = self.call([*args, "--json"], stdout="capture")
        if code != 0:
            raise StepFailed(f"`reelyard {' '.join(args)}` exited {code}: {err.strip()}")
        try:
            document = json.loads(out)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise StepFailed(f"`reelyard {' '.join(args)}` printed no JSON object")
        return document

    def run(self, *args: str) -> None:
        self.show(args)
        code, _, _ = self.call(args)
        if code != 0:
            raise StepFailed(f"`reelyard {args[0]}` exited {code}")


def _drain(stream: IO[str], into: list[str], *, echo: bool) -> threading.Thread:
    def read() -> None:
        for line in stream:
            into.append(line)
            if echo:
                say("  " + line.rstrip("\n"))

    thread = threading.Thread(target=read, name="cli-output", daemon=True)
    thread.start()
    return thread


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


def _job_id_in_json(text: str) -> str | None:
    with contextlib.suppress(ValueError):
        document = json.loads(text)
        job_id = document.get("id") if isinstance(document, dict) else None
        if isinstance(job_id, str):
            return job_id
    return None


def tenant_webhook_secret(api_url: str, api_key: str) -> str:
    """The secret that signs what goes to jobs' own webhook_url (made or rotated: the
    API shows it only then, docs/webhooks.md)."""
    try:
        response = httpx.post(
            f"{api_url}/v1/webhook-secret/rotate",
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=30,
        )
    except httpx.HTTPError as exc:
        raise StepFailed(f"POST /v1/webhook-secret/rotate: {exc}") from None
    if response.status_code != 200:
        raise StepFailed(f"POST /v1/webhook-secret/rotate answered {response.status_code}")
    secret = response.json().get("secret")
    if not isinstance(secret, str) or not secret.startswith("whsec_"):
        raise StepFailed("POST /v1/webhook-secret/rotate answered no secret")
    return secret


# --- checking the videos --------------------------------------------------------------


@dataclass(frozen=True)
class Video:
    name: str
    job_id: str
    path: str
    width: int
    height: int
    duration_s: float
    size_bytes: int
    video_codec: str
    has_audio: bool


def probe(name: str, job_id: str, path: Path) -> Video:
    """What PyAV reads in the file: its first video stream, length, audio."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise StepFailed(f"{path} has no video stream")
            video = container.streams.video[0]
            context = video.codec_context
            if container.duration is not None:
                duration = float(container.duration / av.time_base)
            elif video.duration is not None and video.time_base is not None:
                duration = float(video.duration * video.time_base)
            else:
                duration = 0.0
            next(container.decode(video=0))  # the first frame decodes
            return Video(
                name=name,
                job_id=job_id,
                path=str(path),
                width=context.width,
                height=context.height,
                duration_s=round(duration, 3),
                size_bytes=path.stat().st_size,
                video_codec=context.name,
                has_audio=bool(container.streams.audio),
            )
    except (av.FFmpegError, StopIteration, OSError) as exc:
        raise StepFailed(f"{path} is not a playable video: {exc}") from None


def check_video(video: Video, aspect: str, resolution: str, duration_s: float) -> None:
    """Each way the video differs from what was asked fails the step."""
    problems = []
    wanted = CANVASES[(aspect, resolution)]
    if (video.width, video.height) != wanted:
        problems.append(f"it is {video.width}x{video.height}, {wanted[0]}x{wanted[1]} was asked")
    if abs(video.duration_s - duration_s) > DURATION_TOLERANCE_S:
        problems.append(f"it lasts {video.duration_s:.2f} s, {duration_s:g} s was asked")
    if video.size_bytes <= 0:
        problems.append("it is empty")
    if not video.has_audio:
        problems.append("it has no music track")
    if problems:
        raise StepFailed(f"{video.path}: " + "; ".join(problems))


# --- the run --------------------------------------------------------------------------


@dataclass
class Outcome:
    ok: bool = False
    failure: dict[str, str] | None = None
    api_url: str | None = None
    jobs: dict[str, str] = field(default_factory=dict)
    videos: list[Video] = field(default_factory=list)
    webhooks: list[ReceivedWebhook] = field(default_factory=list)
    photos_fetched: int = 0
    #: seconds each step took, in order
    steps: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "failure": self.failure,
            "api_url": self.api_url,
            "jobs": self.jobs,
            "videos": [asdict(video) for video in self.videos],
            "webhooks": [asdict(hook) for hook in self.webhooks],
            "photos_fetched": self.photos_fetched,
            "steps": {name: round(seconds, 1) for name, seconds in self.steps.items()},
            "elapsed_s": round(self.elapsed_s, 1),
        }


class Demo:
    def __init__(self, data_dir: Path, output: Path, scenario: Scenario) -> None:
        self.data_dir = data_dir.resolve()
        self.output = output.resolve()
        self.scenario = scenario
        self.outcome = Outcome()
        self.step = "start"
        self._standalone: Standalone | None = None
        self._cleanups: list[Callable[[], None]] = []

    @contextlib.contextmanager
    def stage(self, title: str) -> Iterator[None]:
        self.step = title
        heading(title)
        started = time.monotonic()
        yield
        self.outcome.steps[title] = time.monotonic() - started

    def run(self) -> None:
        scenario = self.scenario
        with self.stage(f"starting reelyard standalone in {self.data_dir}"):
            # first, before any thread of the demo runs (see Standalone.start); the
            # photos are made while it starts
            standalone = self._start_standalone()

        with self.stage("making the photos"):
            photos = make_photos(self.output / "photos", scenario.photos, scenario.photo_long_side)
            server = PhotoServer(self.output / "photos")
            self._cleanups.append(server.close)
            for path in photos:
                with Image.open(path) as image:
                    say(f"  {server.url(path)}  {image.width}x{image.height}")

        with self.stage("starting the webhook receiver"):
            receiver = WebhookReceiver()
            self._cleanups.append(receiver.close)
            say(f"  {receiver.url}  (verifies each request with standardwebhooks)")

        with self.stage("waiting for reelyard standalone"):
            standalone.wait_ready(STANDALONE_READY_S)
            config = standalone.client_config()
            self.outcome.api_url = config["api_url"]
            receiver.secret = tenant_webhook_secret(config["api_url"], config["api_key"])
            say(f"  webhook secret {receiver.secret[:12]}… (POST /v1/webhook-secret/rotate)")

        cli_env = {
            **{
                k: v
                for k, v in os.environ.items()
                if k not in {"REELYARD_API_URL", "REELYARD_API_KEY"}
            },
            # the client commands find the API and its key in <data dir>/client.json
            "REELYARD_DATA_DIR": str(self.data_dir),
        }
        cli = Cli(cli_env, standalone)

        with self.stage("submitting the job"):
            first = cli.followed(
                [
                    "submit",
                    *(server.url(path) for path in photos),
                    "--prompt",
                    scenario.prompt,
                    "--aspect",
                    scenario.first_aspect,
                    "--resolution",
                    scenario.resolution,
                    "--webhook-url",
                    receiver.url,
                    "--wait",
                ]
            )
            self.outcome.jobs["summer-sale"] = str(first["id"])
            self.outcome.photos_fetched = len(server.served)

        with self.stage("revising it"):
            revision = cli.revise(
                str(first["id"]), scenario.revision_prompt, scenario.revision_aspect
            )
            self.outcome.jobs["last-chance"] = str(revision["id"])

        with self.stage(f"downloading both videos into {self.output}"):
            for name, job_id in self.outcome.jobs.items():
                cli.run("download", job_id, "-o", str(self.output / f"{name}.mp4"), "--force")

        with self.stage("checking them with PyAV"):
            asked = {
                "summer-sale": scenario.first_aspect,
                "last-chance": scenario.revision_aspect,
            }
            for name, job_id in self.outcome.jobs.items():
                video = probe(name, job_id, self.output / f"{name}.mp4")
                self.outcome.videos.append(video)
                check_video(video, asked[name], scenario.resolution, scenario.duration_s)
                say(
                    f"  {name}.mp4: {video.width}x{video.height}, {video.duration_s:.2f} s, "
                    f"{video.video_codec}, music ✓"
                )

        with self.stage("waiting for the webhooks"):
            self._wait_webhooks(receiver, set(self.outcome.jobs.values()))
            self.outcome.webhooks = receiver.snapshot()

        self.report()

    def fail(self, failure: StepFailed) -> None:
        """Record the first failure, and show its details at once."""
        if self.outcome.failure is not None:
            return
        self.outcome.failure = {
            "step": self.step,
            "reason": failure.reason,
            "details": failure.details,
        }
        if failure.details:
            say(failure.details, err=True)

    def stop(self) -> bool:
        """Stop the standalone (SIGINT, as Ctrl-C) and the servers; False if it failed."""
        stopped = True
        if self._standalone is not None and self._standalone.process is not None:
            self.step = "stopping reelyard standalone"
            heading("stopping reelyard standalone (SIGINT)")
            try:
                self._standalone.stop(STANDALONE_STOP_S)
            except StepFailed as exc:
                self.fail(exc)
                stopped = False
        for cleanup in reversed(self._cleanups):
            cleanup()
        return stopped

    def _start_standalone(self) -> Standalone:
        env = {
            k: v for k, v in os.environ.items() if k not in {"REELYARD_API_URL", "REELYARD_API_KEY"}
        }
        if self.scenario.studio_time_scale is not None:
            env.setdefault("STUDIO_TIME_SCALE", self.scenario.studio_time_scale)
        env.setdefault("REELYARD_RENDER_POLL_S", self.scenario.render_poll_s)
        ports = {"api": free_port(), "studio": free_port(), "flower": free_port()}
        standalone = Standalone(self.data_dir, env, ports)
        self._standalone = standalone
        standalone.start()
        say(f"  ports: api {ports['api']}, studio {ports['studio']}, flower {ports['flower']}")
        return standalone

    def _wait_webhooks(self, receiver: WebhookReceiver, job_ids: set[str]) -> None:
        deadline = time.monotonic() + WEBHOOKS_TIMEOUT_S
        while True:
            received = receiver.snapshot()
            unverified = [hook for hook in received if not hook.verified]
            if unverified:
                hook = unverified[0]
                raise StepFailed(f"webhook {hook.webhook_id} did not verify: {hook.error}")
            done = {hook.job_id for hook in received if hook.type == "job.succeeded"}
            if job_ids <= done:
                return
            if time.monotonic() > deadline:
                missing = ", ".join(sorted(job_ids - done))
                raise StepFailed(
                    f"no job.succeeded webhook for {missing} within {WEBHOOKS_TIMEOUT_S:g} s"
                )
            time.sleep(0.2)

    def report(self) -> None:
        check = "✓" if (sys.stdout.encoding or "").lower().replace("-", "") == "utf8" else "yes"
        heading("what was made")
        _table(
            [
                ("file", "resolution", "duration", "size"),
                *(
                    (
                        _relative(Path(video.path)),
                        f"{video.width}x{video.height}",
                        f"{video.duration_s:.2f} s",
                        _size(video.size_bytes),
                    )
                    for video in self.outcome.videos
                ),
            ]
        )
        heading("webhooks received")
        _table(
            [
                ("webhook-id", "type", "job", "verified"),
                *(
                    (hook.webhook_id, hook.type, hook.job_id, check if hook.verified else "NO")
                    for hook in self.outcome.webhooks
                ),
            ]
        )


def _relative(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def _size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / 1024 / 1024:.1f} MB"
    return f"{math.ceil(size / 1024)} KB"


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for number, row in enumerate(rows):
        line = "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        say(click.style(line.rstrip(), bold=True) if number == 0 else line.rstrip())


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".reelyard"),
    show_default=True,
    help="The standalone's data directory (its database, videos and logs).",
)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-output"),
    show_default=True,
    help="Where the photos and the two videos are written.",
)
@click.option("--short", is_flag=True, help="Fewer, smaller photos and a 6 s video (the tests).")
@click.option(
    "--summary",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the outcome here as JSON.",
)
def main(data_dir: Path, output: Path, short: bool, summary: Path | None) -> None:
    """Photos to two videos through reelyard standalone, the CLI and signed webhooks."""
    started = time.monotonic()
    # SIGTERM stops the demo as Ctrl-C does: the standalone is stopped first
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    demo = Demo(data_dir, output, SHORT if short else FULL)
    code = 0
    try:
        demo.run()
    except StepFailed as exc:
        demo.fail(exc)
        code = 1
    except KeyboardInterrupt:
        demo.fail(StepFailed("interrupted (SIGINT or SIGTERM)"))
        code = 130
    finally:
        if not demo.stop() and code == 0:
            code = 1
    demo.outcome.ok = code == 0
    demo.outcome.elapsed_s = time.monotonic() - started
    if summary is not None:
        summary.parent.mkdir(parents=True, exist_ok=True)
        summary.write_text(json.dumps(demo.outcome.as_json(), indent=2) + "\n")
    say()
    if code == 0:
        say(click.style(f"demo passed in {demo.outcome.elapsed_s:.0f} s", fg="green", bold=True))
    else:
        failure = demo.outcome.failure or {}
        say(
            click.style(f"demo failed: {failure.get('step')}: ", fg="red", bold=True)
            + str(failure.get("reason")),
            err=True,
        )
    sys.exit(code)


if __name__ == "__main__":
    main()
