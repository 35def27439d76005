"""How many videos an hour the studio renders through its HTTP API, by render pool size.

``make bench-studio-render`` makes 5 photos of 4000x3000 (the same kind as
``bench-render``'s, JPEG quality 90) and, for each pool size in turn (the studio's
default, then 1 and 2; ``--rounds`` times, alternating), starts a studio of its own
(``reelyard studio --port 0`` on loopback, ``STUDIO_RENDER_WORKERS`` set to the size,
quality ``high``, a time scale of 0 so that no render is held back to the real service's
minimum length), uploads the photos into one session and posts ``--renders`` exports of
a 15 s 1080x1920 draft at once (``POST /api/render/proxy/lambda``: 5 photos with Ken
Burns motion and 0.5 s crossfades, a synthesised music bed, a title), then polls every
render (``GET /api/render/proxy/lambda/<id>``) until all are finished. Every output is
fetched and probed (h264 + aac, 1080x1920, 15 s).

``videos_per_hour`` is renders / (first POST to last completion) x 3600. A render is an
error if it is refused, fails, or its file is not the video the draft describes. The
per-pool results go to earlier lines and into the last line of stdout, one JSON object:
``{"renders", "videos_per_hour", "pool", "errors", "pools"}``, where ``pool`` is the
studio's default and ``videos_per_hour`` is its rate. It exits non-zero on any error.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import httpx
from render import make_photos, slideshow  # bench-render's photos and photo track
from studio_streams import Studio, start_studio  # its studio process

from studio.config import StudioConfig

TOKEN = "tok_bench_render"  # noqa: S105 (a paid token the benchmark gives its own studio)
ATTRIBUTION = {"X-Skill-Source": "reelyard-bench", "X-Skill-Version": "0", "X-Skill-Platform": "ci"}
APP = "nemo_agent"
PHOTOS = 5
SEGMENT_MS = 3400
#: 5 x 3400 - 4 x 500
DURATION_S = 15.0
WIDTH, HEIGHT = 1080, 1920
POLL_S = 0.2
DURATION_TOLERANCE_S = 0.1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--renders", type=int, default=6, help="exports per pool size")
    parser.add_argument(
        "--pools", default="1,2", help="pool sizes to compare with the default, comma-separated"
    )
    parser.add_argument("--rounds", type=int, default=1, help="runs of each pool size, alternating")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after (s)")
    parser.add_argument("--seed", type=int, default=2024, help="of the photos' content")
    args = parser.parse_args()
    if not 1 <= args.renders <= 100:
        parser.error("--renders is from 1 to 100")
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds is from 1 to 10")
    try:
        args.pools = [int(size) for size in args.pools.split(",") if size.strip()]
    except ValueError:
        parser.error("--pools: whole numbers, comma-separated")
    if not all(1 <= size <= 16 for size in args.pools):
        parser.error("--pools: each from 1 to 16")
    return args


def run_studio(data_dir: Path, pool: int, renders: int) -> Studio:
    return start_studio(
        data_dir,
        {
            "STUDIO_TIME_SCALE": "0",
            "STUDIO_PAID_TOKENS": f"{TOKEN}:{1000 * renders}",
            "STUDIO_RENDER_WORKERS": str(pool),
            "STUDIO_RENDER_QUALITY": "high",
        },
    )


def make_draft(media_urls: list[str]) -> dict[str, Any]:
    segments = slideshow(media_urls, SEGMENT_MS)
    return {
        "d": round(DURATION_S * 1000),
        "m": {"ratio": "9:16", "res": 1080, "fps": 30},
        "t": [
            {"tt": 0, "sg": segments},
            {"tt": 1, "sg": [{"s": 0, "m": {"volume": 0.35, "mood": "upbeat"}}]},
            {"tt": 7, "sg": [{"text": "Five Photos", "s": 0, "d": 3000}]},
        ],
    }


@dataclass(frozen=True)
class PoolResult:
    pool: int
    renders: int
    completed: int
    errors: int
    wall_s: float
    render_s: list[float]

    @property
    def videos_per_hour(self) -> float:
        return self.completed / self.wall_s * 3600 if self.wall_s > 0 else 0.0

    def plus(self, other: PoolResult) -> PoolResult:
        """Two runs of the same pool size, as one."""
        return PoolResult(
            pool=self.pool,
            renders=self.renders + other.renders,
            completed=self.completed + other.completed,
            errors=self.errors + other.errors,
            wall_s=self.wall_s + other.wall_s,
            render_s=self.render_s + other.render_s,
        )

    def as_json(self) -> dict[str, Any]:
        ordered = sorted(self.render_s)
        return {
            "pool": self.pool,
            "renders": self.renders,
            "completed": self.completed,
            "errors": self.errors,
            "wall_s": round(self.wall_s, 2),
            "videos_per_hour": round(self.videos_per_hour, 1),
            "median_render_s": round(ordered[len(ordered) // 2], 2) if ordered else None,
        }


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def check_video(data: bytes, scratch: Path) -> str | None:
    """What is wrong with a rendered file, or None."""
    path = scratch / f"{uuid.uuid4().hex}.mp4"
    path.write_bytes(data)
    try:
        with av.open(str(path)) as container:
            video = container.streams.video[0].codec_context
            audio = container.streams.audio
            duration_s = (container.duration or 0) / av.time_base
            problems = []
            if video.name != "h264" or not audio or audio[0].codec_context.name != "aac":
                problems.append("not h264 + aac")
            if (video.width, video.height) != (WIDTH, HEIGHT):
                problems.append(f"{video.width}x{video.height}")
            if abs(duration_s - DURATION_S) > DURATION_TOLERANCE_S:
                problems.append(f"{duration_s:.3f} s long")
    except (OSError, IndexError, av.FFmpegError) as exc:
        return f"unreadable: {exc}"
    finally:
        path.unlink(missing_ok=True)
    return "; ".join(problems) or None


def run_pool(pool: int, photos: list[Path], args: argparse.Namespace, workdir: Path) -> PoolResult:
    data_dir = workdir / f"studio-{pool}-{uuid.uuid4().hex[:6]}"
    studio = run_studio(data_dir, pool, args.renders)
    headers = {"Authorization": f"Bearer {TOKEN}", **ATTRIBUTION}
    try:
        with httpx.Client(base_url=studio.url, headers=headers, timeout=60) as http:
            created = http.post(
                f"/api/tasks/me/with-session/{APP}", json={"task_name": "bench", "language": "en"}
            )
            created.raise_for_status()
            session_id = created.json()["data"]["session_id"]
            files = [("files", (path.name, path.read_bytes(), "image/jpeg")) for path in photos]
            http.post(f"/api/upload-video/{APP}/me/{session_id}", files=files).raise_for_status()
            state = http.get(f"/api/state/{APP}/me/{session_id}/latest").json()["data"]["state"]
            urls = [info["cdn_url"] for info in state["video_infos"]]
            draft = make_draft(urls)
            return _render_all(
                http, pool=pool, session_id=session_id, draft=draft, args=args, workdir=workdir
            )
    finally:
        studio.stop()


def _render_all(
    http: httpx.Client,
    *,
    pool: int,
    session_id: str,
    draft: dict[str, Any],
    args: argparse.Namespace,
    workdir: Path,
) -> PoolResult:
    errors = 0
    started = time.monotonic()
    submitted: dict[str, float] = {}
    for _ in range(args.renders):
        render_id = f"render_{uuid.uuid4().hex}"
        body = {"id": render_id, "sessionId": session_id, "draft": draft}
        answer = http.post("/api/render/proxy/lambda", json=body)
        if answer.status_code != 200:
            progress(f"pool {pool}: export refused: {answer.status_code} {answer.text[:200]}")
            errors += 1
            continue
        submitted[render_id] = time.monotonic()
    finished: dict[str, float] = {}
    completed: list[str] = []
    deadline = started + args.timeout
    while len(finished) < len(submitted) and time.monotonic() < deadline:
        time.sleep(POLL_S)
        for render_id in submitted.keys() - finished.keys():
            view = http.get(f"/api/render/proxy/lambda/{render_id}").json()["data"]
            if view["status"] in ("completed", "failed"):
                finished[render_id] = time.monotonic()
                if view["status"] == "completed":
                    completed.append(render_id)
                else:
                    progress(f"pool {pool}: {render_id} failed: {view.get('error')}")
                    errors += 1
    wall_s = (max(finished.values()) if finished else time.monotonic()) - started
    errors += len(submitted) - len(finished)  # still running at the deadline
    for render_id in completed:
        response = http.get(f"/api/render/proxy/{render_id}/download")
        problem = (
            f"download answered {response.status_code}"
            if response.status_code != 200
            else check_video(response.content, workdir)
        )
        if problem is not None:
            progress(f"pool {pool}: {render_id}: {problem}")
            errors += 1
    return PoolResult(
        pool=pool,
        renders=args.renders,
        completed=len(completed),
        errors=errors,
        wall_s=wall_s,
        render_s=[finished[r] - submitted[r] for r in completed],
    )


def main() -> int:
    args = parse_args()
    default_pool = StudioConfig().render_workers
    pools = [default_pool, *(size for size in args.pools if size != default_pool)]
    with tempfile.TemporaryDirectory(prefix="reelyard-studio-render-") as scratch:
        workdir = Path(scratch)
        started = time.perf_counter()
        photos = make_photos(workdir, PHOTOS, args.seed)
        progress(f"made {PHOTOS} photos in {time.perf_counter() - started:.1f} s")
        results: dict[int, PoolResult] = {}
        # alternating, so that a busy spell of a shared machine falls on every size alike
        for _ in range(args.rounds):
            for pool in pools:
                progress(
                    f"pool {pool}: {args.renders} renders of {DURATION_S:g} s {WIDTH}x{HEIGHT}"
                )
                found = run_pool(pool, photos, args, workdir)
                progress(
                    f"pool {pool}: {found.completed}/{found.renders} in {found.wall_s:.1f} s, "
                    f"{found.videos_per_hour:.0f} videos/hour, {found.errors} errors"
                )
                results[pool] = results[pool].plus(found) if pool in results else found
    chosen = results[default_pool]
    print()
    print("studio render throughput (videos of 15 s, 1080x1920, quality high)")
    print(f"  {'pool':>4}  {'renders':>7}  {'wall s':>7}  {'median s':>8}  {'videos/hour':>11}")
    for pool in sorted(results):
        row = results[pool].as_json()
        mark = "  (default)" if pool == default_pool else ""
        print(
            f"  {pool:>4}  {row['completed']:>7}  {row['wall_s']:>7.1f}  "
            f"{row['median_render_s'] or 0:>8.1f}  {row['videos_per_hour']:>11.1f}{mark}"
        )
    print(
        json.dumps(
            {
                "renders": chosen.renders,
                "videos_per_hour": round(chosen.videos_per_hour, 1),
                "pool": default_pool,
                "errors": sum(result.errors for result in results.values()),
                "pools": {str(pool): results[pool].as_json() for pool in sorted(results)},
            }
        )
    )
    return 1 if any(result.errors for result in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
