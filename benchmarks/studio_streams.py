"""How many chat streams one studio process holds at once, and what they cost it.

``make bench-studio`` starts one studio (``reelyard studio --port 0``, loopback only, a
scaled clock, one paid token so that credits and the per-address token cap stay out of
the way), makes one session per stream with one small photo each, then opens every
stream at once: ``POST /run_sse`` asking for a generated video, read to the end. At
``--time-scale 0.1`` a generation turn lasts 3-9 s, so all the streams are open
together; about 30 % close without text, as the real service does, which is not an
error. A stream is an error if it is refused, breaks, or ends without its two tool
results (both stages of the generation).

It measures the wall time from the first request to the end of the last stream, and
the studio's peak resident memory (``VmHWM`` in ``/proc/<pid>/status``, of its
processes: gunicorn's arbiter and its one worker); a sampler
records the studio's thread count and how many streams were open at once. Details go
to earlier lines; the last line of stdout is one JSON object:
``{"streams", "errors", "wall_s", "peak_rss_mb"}``. It exits non-zero if any stream
failed. Bounded: at most 2000 streams, and the whole run gives up after ``--timeout``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from PIL import Image

READY = "studio listening on "
TOKEN = "tok_bench"  # noqa: S105 (a paid token the benchmark gives its own studio)
PROMPT = "a 6-second vertical video with crossfades and music, titled 'Bench'"
MAX_STREAMS = 2000
ATTRIBUTION = {"X-Skill-Source": "reelyard-bench", "X-Skill-Version": "0", "X-Skill-Platform": "ci"}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--streams", type=int, default=200, help="streams open at once")
    parser.add_argument("--time-scale", type=float, default=0.1, help="STUDIO_TIME_SCALE")
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after (s)")
    args = parser.parse_args()
    if not 1 <= args.streams <= MAX_STREAMS:
        parser.error(f"--streams is from 1 to {MAX_STREAMS}")
    return args


@dataclass
class Studio:
    url: str
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    def status(self, key: str) -> int:
        """A number from /proc/<pid>/status: ``VmHWM``, ``VmRSS`` (kB) or ``Threads``,
        summed over the studio's processes (gunicorn's arbiter and its one worker)."""
        total = 0
        for pid in (self.process.pid, *self._children()):
            try:
                text = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue  # gone meanwhile
            for line in text.splitlines():
                if line.startswith(f"{key}:"):
                    total += int(line.split()[1])
        return total

    def _children(self) -> list[int]:
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in path.read_text().split()]
        except OSError:
            return []

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_studio(data_dir: Path, settings: Mapping[str, str]) -> Studio:
    """``reelyard studio`` on a free loopback port with ``settings`` added to its
    environment; returns once it listens (its output keeps being collected)."""
    env = {
        **os.environ,
        "STUDIO_HOST": "127.0.0.1",
        "STUDIO_DATA_DIR": str(data_dir),
        "STUDIO_SEED": "2024",
        **settings,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "reelyard.cli", "studio", "--host", "127.0.0.1", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    for line in process.stdout or ():
        output.append(line)
        if line.startswith(READY):
            studio = Studio(line[len(READY) :].strip(), process, output)
            threading.Thread(
                target=lambda: output.extend(process.stdout or []), daemon=True
            ).start()
            return studio
    process.wait()
    raise RuntimeError("the studio did not start:\n" + "".join(output))


def photo() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), (60, 120, 180)).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


async def make_session(http: httpx.AsyncClient, picture: bytes, gate: asyncio.Semaphore) -> str:
    async with gate:
        answer = await http.post(
            "/api/tasks/me/with-session/nemo_agent", json={"task_name": "bench", "language": "en"}
        )
        session_id: str = answer.json()["data"]["session_id"]
        uploaded = await http.post(
            f"/api/upload-video/nemo_agent/me/{session_id}",
            files=[("files", ("photo.jpg", picture, "image/jpeg"))],
        )
        if uploaded.json().get("code") != 0:
            raise RuntimeError(f"upload failed: {uploaded.text[:200]}")
        return session_id


@dataclass
class Tally:
    open_now: int = 0
    most_open: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    events: int = 0
    samples: list[str] = field(default_factory=list)


async def one_stream(http: httpx.AsyncClient, session_id: str, tally: Tally) -> None:
    body = {
        "app_name": "nemo_agent",
        "user_id": "me",
        "session_id": session_id,
        "new_message": {"parts": [{"text": PROMPT}]},
    }
    results = 0
    tally.open_now += 1
    tally.most_open = max(tally.most_open, tally.open_now)
    try:
        async with http.stream(
            "POST", "/run_sse", json=body, headers={"Accept": "text/event-stream"}
        ) as response:
            if response.status_code != httpx.codes.OK:
                tally.outcomes[f"http {response.status_code}"] += 1
                return
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    tally.events += 1
                    results += '"tool_result"' in line
    except httpx.HTTPError as exc:
        tally.outcomes[type(exc).__name__] += 1
        if len(tally.samples) < 3:
            tally.samples.append(f"{type(exc).__name__}: {exc!r} after {results} results")
        return
    finally:
        tally.open_now -= 1
    tally.outcomes["ok" if results == 2 else "incomplete"] += 1


async def sample(studio: Studio, tally: Tally, peaks: dict[str, int], done: asyncio.Event) -> None:
    while not done.is_set():
        peaks["threads"] = max(peaks["threads"], studio.status("Threads"))
        peaks["open"] = max(peaks["open"], tally.open_now)
        with contextlib.suppress(TimeoutError):  # time for the next sample
            await asyncio.wait_for(done.wait(), 0.05)


async def run(studio: Studio, streams: int, timeout: float) -> dict[str, float | int]:
    limits = httpx.Limits(max_connections=streams + 20, max_keepalive_connections=0)
    headers = {"Authorization": f"Bearer {TOKEN}", **ATTRIBUTION}
    timeout_config = httpx.Timeout(timeout, connect=30.0)
    async with httpx.AsyncClient(
        base_url=studio.url, headers=headers, limits=limits, timeout=timeout_config
    ) as http:
        picture = photo()
        gate = asyncio.Semaphore(16)
        sessions = await asyncio.gather(
            *(make_session(http, picture, gate) for _ in range(streams))
        )
        baseline_rss = studio.status("VmRSS")
        baseline_threads = studio.status("Threads")
        tally = Tally()
        peaks = {"threads": baseline_threads, "open": 0}
        done = asyncio.Event()
        sampler = asyncio.create_task(sample(studio, tally, peaks, done))
        started = time.monotonic()
        try:
            await asyncio.wait_for(
                asyncio.gather(*(one_stream(http, s, tally) for s in sessions)), timeout
            )
        finally:
            wall = time.monotonic() - started
            done.set()
            await sampler
    errors = sum(n for outcome, n in tally.outcomes.items() if outcome != "ok")
    return {
        "streams": streams,
        "errors": errors,
        "wall_s": round(wall, 2),
        "peak_rss_mb": round(studio.status("VmHWM") / 1024, 1),
        "baseline_rss_mb": round(baseline_rss / 1024, 1),
        "baseline_threads": baseline_threads,
        "peak_threads": peaks["threads"],
        "most_open_at_once": max(peaks["open"], tally.most_open),
        "events": tally.events,
        "outcomes": dict(tally.outcomes),
        "error_samples": tally.samples,
    }


def main() -> int:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="reelyard-bench-studio-") as scratch:
        studio = start_studio(
            Path(scratch),
            {
                "STUDIO_TIME_SCALE": str(args.time_scale),
                "STUDIO_PAID_TOKENS": f"{TOKEN}:{1000 * args.streams}",
            },
        )
        try:
            report = asyncio.run(run(studio, args.streams, args.timeout))
        finally:
            studio.stop()
    if "Traceback" in "".join(studio.output):
        print("".join(studio.output)[-3000:], file=sys.stderr)
        report["errors"] = int(report["errors"]) + 1
    details = {k: v for k, v in report.items() if k not in ("streams", "errors", "wall_s")}
    print(f"time scale {args.time_scale}; details: {json.dumps(details)}")
    summary = {k: report[k] for k in ("streams", "errors", "wall_s", "peak_rss_mb")}
    print(json.dumps(summary))
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
