"""How fast reelyard renders a slideshow, against MoviePy and against x264 alone.

``make bench-render`` makes 10 photos of 4000x3000 (deterministic from a seed: gradients,
soft blotches, shapes and grain, saved as JPEG quality 90), a music bed and a draft,
then renders 30 s of 1920x1080 at 30 fps: each photo 3.45 s with Ken Burns motion
(``"auto"``), 0.5 s crossfades, the music at volume 0.35 and a title over the first 3 s.
It measures, in the same run:

(a) reelyard: the wall time of ``render_draft``, from the JPEG files to the finished MP4;
(b) MoviePy 2.x making the same video from the same photos and music
    (``benchmarks/moviepy_slideshow.py``, run with the interpreter of ``.venv-moviepy``):
    the wall time of that process and its peak RSS, written twice: plainly, as a user
    writes it from MoviePy's documentation (``moviepy_s``, the headline comparison),
    and tuned (each photo scaled once, opaque composites: ``moviepy_tuned_s``);
(c) the encode-only floor: x264 with the same settings (ffmpeg's command line) encoding
    the very frames that (a) hands to x264, written beforehand (untimed) to a raw yuv420p
    file by ``studio.render.draft_frames``, so it includes no decoding, scaling or
    compositing at all; and, once, (c') the same encode of (a)'s output decoded to raw
    frames (the floor's definition before issue 11: a second generation, whose grain
    the first encode has already removed, costs x264 a little less: ``floor_decoded_s``).

With ``--runs N``, (a) and (c) run N times, alternating, and the medians are reported;
MoviePy runs once. Outputs are probed with PyAV (h264 + aac, the canvas size, 30 s), and
any failure exits non-zero. The last line of stdout is one JSON object:
``reelyard_s, moviepy_s, floor_s, speedup_vs_moviepy, ratio_to_floor`` (the speedup is
``moviepy_s / reelyard_s``, the ratio ``reelyard_s / floor_s``), then
``ssim`` (of (a) against a reference render of the same draft: the same motion,
resampled with Lanczos, x264 near-lossless), ``moviepy_peak_rss_mb``, ``moviepy_tuned_s``,
``speedup_vs_moviepy_tuned``, ``floor_decoded_s``, ``size_mb`` (of (a)) and ``runs``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from PIL import Image, ImageDraw

from studio.render import (
    Quality,
    RenderError,
    RenderOptions,
    draft_frames,
    parse_timeline,
    render_draft,
)
from studio.render.encode import (
    QUALITY_PRESETS,
    TAG_BT709,
    default_ffmpeg,
    raw_input_args,
    x264_args,
)
from studio.render.frames import PAN_ZOOM
from studio.render.media import HEADROOM
from studio.render.music import synthesize, write_wav
from studio.render.text import font_path
from studio.render.timeline import Canvas

WIDTH, HEIGHT, FPS = 1920, 1080, 30
PHOTO_COUNT = 10
PHOTO_SIZE = (4000, 3000)
JPEG_QUALITY = 90
#: each photo's time on screen, transitions included: 10 * 3450 - 9 * 500 = 30 000 ms
SEGMENT_MS = 3450
CROSSFADE_MS = 500
DURATION_S = (PHOTO_COUNT * SEGMENT_MS - (PHOTO_COUNT - 1) * CROSSFADE_MS) / 1000
TITLE = "Ten Photos, Thirty Seconds"
TITLE_MS = 3000
#: reelyard's defaults for a text, mirrored in the MoviePy version
TITLE_SIZE = 0.07
TITLE_FADE_MS = 300
MUSIC_VOLUME = 0.35
MUSIC_FADE_OUT_MS = 1500
DURATION_TOLERANCE_S = 0.1
MOVIEPY_SCRIPT = Path(__file__).with_name("moviepy_slideshow.py")


class BenchmarkError(Exception):
    """A step failed or an output is wrong: the benchmark's numbers would mean nothing."""


@dataclass(frozen=True)
class Probe:
    video_codec: str
    audio_codec: str | None
    width: int
    height: int
    frames: int
    duration_s: float
    size_mb: float


@dataclass(frozen=True)
class MoviePyRun:
    wall_s: float
    peak_rss_mb: float
    details: dict[str, Any]
    probe: Probe


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--moviepy-python", type=Path, help="the interpreter of .venv-moviepy")
    parser.add_argument("--skip-moviepy", action="store_true", help="measure (a) and (c) only")
    parser.add_argument("--runs", type=int, default=1, help="runs of (a) and (c), alternating")
    parser.add_argument("--quality", choices=[q.value for q in Quality], default="high")
    parser.add_argument("--seed", type=int, default=2024, help="of the photos' content")
    parser.add_argument("--workdir", type=Path, help="where the temporary directory goes")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if not args.skip_moviepy:
        if args.moviepy_python is None:
            parser.error("--moviepy-python is required unless --skip-moviepy")
        if not args.moviepy_python.is_file():
            parser.error(f"--moviepy-python: no such file: {args.moviepy_python}")
        # absolute, not resolved: a venv's python is a symlink that must stay in the venv
        args.moviepy_python = args.moviepy_python.absolute()
    return args


# --- inputs -----------------------------------------------------------------------------


def make_photo(path: Path, seed: int) -> None:
    """A photo-like JPEG: a tilted two-colour gradient, soft blotches, shapes and grain."""
    rng = np.random.default_rng(seed)
    width, height = PHOTO_SIZE
    x = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    angle = rng.uniform(0.0, np.pi)
    ramp = np.cos(angle) * x + np.sin(angle) * y
    ramp = (ramp - ramp.min()) / (ramp.max() - ramp.min())
    start, end = rng.uniform(20, 235, size=(2, 3)).astype(np.float32)
    image = start + (end - start) * ramp[..., None]
    # soft blotches (clouds, foliage out of focus), then finer texture (leaves, gravel)
    for cells, amplitude in ((9, 45.0), (150, 14.0)):
        field = rng.uniform(-amplitude, amplitude, size=(cells, cells * 4 // 3, 3))
        image += cv2.resize(
            field.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC
        )
    picture = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))

    draw = ImageDraw.Draw(picture, "RGBA")
    for _ in range(int(rng.integers(25, 45))):
        colour = (*(int(c) for c in rng.integers(0, 256, size=3)), int(rng.integers(90, 256)))
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        radius = rng.uniform(60, 900)
        kind = rng.integers(0, 4)
        if kind == 0:
            box = (cx - radius, cy - radius * rng.uniform(0.4, 1.0), cx + radius, cy + radius)
            draw.ellipse(box, fill=colour)
        elif kind == 1:
            draw.rectangle((cx, cy, cx + radius, cy + radius * rng.uniform(0.3, 2.0)), fill=colour)
        elif kind == 2:
            corners = int(rng.integers(3, 7))
            angles = np.sort(rng.uniform(0, 2 * np.pi, corners))
            points = [(cx + radius * np.cos(a), cy + radius * np.sin(a)) for a in angles]
            draw.polygon(points, fill=colour)
        else:
            end_x, end_y = rng.uniform(0, width), rng.uniform(0, height)
            draw.line((cx, cy, end_x, end_y), fill=colour, width=int(rng.integers(4, 40)))

    grain = rng.standard_normal((height, width, 3), dtype=np.float32) * 2.5
    grain += rng.standard_normal((height, width, 1), dtype=np.float32) * 5.0
    pixels = np.asarray(picture, dtype=np.float32) + grain
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
        path, "JPEG", quality=JPEG_QUALITY
    )


def make_photos(folder: Path, count: int, seed: int) -> list[Path]:
    """``count`` photos (:func:`make_photo`, seeds ``seed``, ``seed + 1``...) in ``folder``."""
    photos = [folder / f"photo-{index + 1:02d}.jpg" for index in range(count)]
    for index, photo in enumerate(photos):
        make_photo(photo, seed + index)
    return photos


def slideshow(sources: list[str], segment_ms: int = SEGMENT_MS) -> list[dict[str, Any]]:
    """The photo track's segments: each photo with Ken Burns motion, crossfading into
    the next."""
    segments = []
    for index, source in enumerate(sources):
        meta: dict[str, Any] = {"motion": "auto"}
        if index < len(sources) - 1:
            meta["transition"] = {"type": "crossfade", "d": CROSSFADE_MS}
        segments.append({"src": source, "d": segment_ms, "m": meta})
    return segments


def make_draft(photos: list[Path]) -> dict[str, Any]:
    segments = slideshow([photo.name for photo in photos])
    return {
        "d": round(DURATION_S * 1000),
        "m": {"w": WIDTH, "h": HEIGHT, "fps": FPS, "motion": "auto"},
        "t": [
            {"tt": 0, "sg": segments},
            {"tt": 1, "sg": [{"s": 0, "m": {"volume": MUSIC_VOLUME, "mood": "upbeat"}}]},
            {
                "tt": 7,
                "sg": [
                    {
                        "text": TITLE,
                        "s": 0,
                        "d": TITLE_MS,
                        "m": {"position": "center", "size": TITLE_SIZE, "fade": TITLE_FADE_MS},
                    }
                ],
            },
        ],
    }


# --- measurements -----------------------------------------------------------------------


def run_ffmpeg(args: list[str], what: str) -> None:
    command = [default_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BenchmarkError(f"{what}: ffmpeg exited with {result.returncode}\n{result.stderr}")


def time_reelyard(draft: dict[str, Any], media: Path, output: Path, quality: Quality) -> float:
    started = time.perf_counter()
    render_draft(draft, media, output, RenderOptions(quality=quality))
    return time.perf_counter() - started


def frames_to_raw(draft: dict[str, Any], media: Path, raw: Path, quality: Quality) -> None:
    """The frames the renderer hands to x264, as raw yuv420p, in the order it does."""
    with raw.open("wb") as out:
        for planes in draft_frames(draft, media, quality):
            for plane in planes:
                out.write(np.ascontiguousarray(plane))


def settle(raw: Path, frames: int) -> None:
    """Check that ``raw`` holds ``frames`` frames, and write it through to the disk now:
    2.8 GB of dirty pages would otherwise be written back during the next timed run."""
    expected = frames * WIDTH * HEIGHT * 3 // 2
    if raw.stat().st_size != expected:
        raise BenchmarkError(f"{raw} has {raw.stat().st_size} bytes, expected {expected}")
    with raw.open("rb+") as file:
        os.fsync(file.fileno())


def decode_to_raw(video: Path, raw: Path, frames: int) -> None:
    """The video's frames as raw yuv420p, exactly as x264 will take them in."""
    run_ffmpeg(
        ["-i", str(video), "-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "yuv420p", str(raw)],
        "decoding the render to raw frames",
    )
    settle(raw, frames)


def time_floor(raw: Path, output: Path, quality: Quality) -> float:
    canvas = Canvas(WIDTH, HEIGHT, FPS)
    started = time.perf_counter()
    run_ffmpeg(
        # tagged as BT.709, as the renderer's frames are: no colour conversion in the floor
        [
            *raw_input_args(canvas, str(raw)),
            "-vf",
            TAG_BT709,
            *x264_args(quality),
            "-an",
            str(output),
        ],
        "the encode-only floor",
    )
    return time.perf_counter() - started


def measure_ssim(video: Path, reference: Path) -> float:
    """ffmpeg's SSIM of ``video`` against ``reference``, all planes, over every frame."""
    command = [
        default_ffmpeg(), "-hide_banner", "-nostdin", "-i", str(video), "-i", str(reference),
        "-lavfi", "[0:v][1:v]ssim", "-f", "null", "-",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    found = re.search(r"SSIM .* All:([0-9.]+)", result.stderr)
    if result.returncode != 0 or found is None:
        raise BenchmarkError(f"measuring SSIM failed:\n{result.stderr[-2000:]}")
    return float(found[1])


def run_moviepy(
    python: Path, photos: list[Path], music: Path, output: Path, *, quality: Quality, style: str
) -> MoviePyRun:
    settings = QUALITY_PRESETS[quality]
    command = [
        str(python), str(MOVIEPY_SCRIPT),
        "--photos", *map(str, photos),
        "--music", str(music),
        "--font", str(font_path()),
        "--title", TITLE,
        "--output", str(output),
        "--width", str(WIDTH), "--height", str(HEIGHT), "--fps", str(FPS),
        "--photo-seconds", str(SEGMENT_MS / 1000),
        "--crossfade-seconds", str(CROSSFADE_MS / 1000),
        "--preset", settings.preset, "--crf", str(settings.crf),
        "--x264-params", settings.params,
        "--volume", str(MUSIC_VOLUME),
        "--music-fade-out-seconds", str(MUSIC_FADE_OUT_MS / 1000),
        "--title-seconds", str(TITLE_MS / 1000),
        "--title-fade-seconds", str(TITLE_FADE_MS / 1000),
        "--font-size", str(round(TITLE_SIZE * HEIGHT)),
        "--zoom", str(HEADROOM), "--pan-zoom", str(PAN_ZOOM),
        "--threads", "2",
        "--style", style,
    ]  # fmt: skip
    stdout_log, stderr_log = output.with_suffix(".stdout"), output.with_suffix(".stderr")
    with stdout_log.open("wb") as stdout, stderr_log.open("wb") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            stdout=stdout,
            stderr=stderr,
            cwd=output.parent,
            # the same ffmpeg build as reelyard and the floor, whatever MoviePy would pick
            env={**os.environ, "FFMPEG_BINARY": default_ffmpeg()},
        )
        # os.wait4 rather than wait(): the peak RSS of this child alone (and of the ffmpeg
        # it waited for); RUSAGE_CHILDREN would include the ffmpeg of (a) and (c) as well
        _, status, usage = os.wait4(process.pid, 0)
        wall_s = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        errors = stderr_log.read_text("utf-8", "replace")[-4000:]
        raise BenchmarkError(f"MoviePy exited with status {process.returncode}\n{errors}")
    lines = stdout_log.read_text("utf-8", "replace").strip().splitlines()
    try:
        details = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        details = {}
    peak_rss_mb = usage.ru_maxrss / 1024  # KiB on Linux
    return MoviePyRun(wall_s, peak_rss_mb, details, probe(output, audio=True))


def probe(path: Path, *, audio: bool) -> Probe:
    """Check that ``path`` is the video it should be; raise :class:`BenchmarkError` if not."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise BenchmarkError(f"{path} has no video stream")
            video = container.streams.video[0]
            sounds = container.streams.audio
            found = Probe(
                video_codec=video.codec_context.name,
                audio_codec=sounds[0].codec_context.name if sounds else None,
                width=video.codec_context.width,
                height=video.codec_context.height,
                frames=video.frames,
                duration_s=(container.duration or 0) / av.time_base,
                size_mb=path.stat().st_size / 1e6,
            )
    except (OSError, av.FFmpegError) as exc:
        raise BenchmarkError(f"{path} is not a readable video: {exc}") from exc
    problems = []
    if found.video_codec != "h264":
        problems.append(f"video codec {found.video_codec}, not h264")
    if audio and found.audio_codec != "aac":
        problems.append(f"audio codec {found.audio_codec}, not aac")
    if (found.width, found.height) != (WIDTH, HEIGHT):
        problems.append(f"{found.width}x{found.height}, not {WIDTH}x{HEIGHT}")
    if abs(found.duration_s - DURATION_S) > DURATION_TOLERANCE_S:
        problems.append(f"{found.duration_s:.3f} s long, not {DURATION_S:g} s")
    if problems:
        raise BenchmarkError(f"{path}: {'; '.join(problems)}")
    return found


# --- the run ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Results:
    quality: Quality
    reelyard_s: list[float]
    floor_s: list[float]
    reelyard_probe: Probe
    moviepy: MoviePyRun | None
    moviepy_tuned: MoviePyRun | None
    ssim: float
    reference_s: float
    floor_decoded_s: float


def progress(message: str) -> None:
    """Steps as they happen go to stderr; stdout is the table and the JSON line."""
    print(message, file=sys.stderr, flush=True)


def benchmark(args: argparse.Namespace, quality: Quality, workdir: Path, raw: Path) -> Results:
    media = workdir / "media"
    media.mkdir()
    started = time.perf_counter()
    photos = make_photos(media, PHOTO_COUNT, args.seed)
    music = workdir / "music.wav"
    write_wav(music, synthesize(DURATION_S))
    draft = make_draft(photos)
    timeline = parse_timeline(draft)
    if timeline.frames != round(DURATION_S * FPS):
        raise BenchmarkError(f"the draft has {timeline.frames} frames, not {DURATION_S * FPS:g}")
    size_mb = sum(photo.stat().st_size for photo in photos) / 1e6
    progress(
        f"made {PHOTO_COUNT} photos ({size_mb:.0f} MB of JPEG) and the music "
        f"in {time.perf_counter() - started:.1f} s, in {workdir}"
    )

    output = workdir / "reelyard.mp4"
    floor_output = workdir / "floor.mp4"
    reelyard_s: list[float] = []
    floor_s: list[float] = []
    probes: list[Probe] = []
    frames_to_raw(draft, media, raw, quality)
    settle(raw, timeline.frames)
    for run in range(1, args.runs + 1):
        reelyard_s.append(time_reelyard(draft, media, output, quality))
        probes.append(probe(output, audio=True))
        progress(f"run {run}/{args.runs}: (a) reelyard {reelyard_s[-1]:.2f} s")
        floor_s.append(time_floor(raw, floor_output, quality))
        probe(floor_output, audio=False)
        progress(f"run {run}/{args.runs}: (c) encode-only floor {floor_s[-1]:.2f} s")
    decode_to_raw(output, raw, timeline.frames)
    floor_decoded_s = time_floor(raw, floor_output, quality)
    progress(f"(c') the floor on (a)'s decoded output {floor_decoded_s:.2f} s")
    raw.unlink()

    # quality: the same draft, rendered with no shortcut and near-lossless, is the reference
    reference = workdir / "reference.mp4"
    reference_s = time_reelyard(draft, media, reference, Quality.REFERENCE)
    ssim = measure_ssim(output, reference)
    progress(f"reference render {reference_s:.2f} s; SSIM of (a) against it {ssim:.4f}")

    runs: dict[str, MoviePyRun] = {}
    if not args.skip_moviepy:
        for style in ("plain", "tuned"):
            progress(f"(b) MoviePy, {style}: one run, minutes")
            runs[style] = run_moviepy(
                args.moviepy_python,
                photos,
                music,
                workdir / f"moviepy-{style}.mp4",
                quality=quality,
                style=style,
            )
            progress(f"(b) MoviePy, {style}: {runs[style].wall_s:.2f} s")
    return Results(
        quality,
        reelyard_s,
        floor_s,
        probes[-1],
        runs.get("plain"),
        runs.get("tuned"),
        ssim,
        reference_s,
        floor_decoded_s,
    )


def ffmpeg_version() -> str:
    result = subprocess.run(
        [default_ffmpeg(), "-hide_banner", "-version"], capture_output=True, text=True, check=False
    )
    words = result.stdout.split()
    return words[2] if len(words) > 2 else "unknown"


def report(results: Results) -> None:
    settings = QUALITY_PRESETS[results.quality]
    reelyard = statistics.median(results.reelyard_s)
    floor = statistics.median(results.floor_s)
    moviepy = results.moviepy
    width, height = PHOTO_SIZE
    rows: list[tuple[str, float, list[float]]] = [
        ("(a) reelyard render_draft", reelyard, results.reelyard_s)
    ]
    tuned = results.moviepy_tuned
    if moviepy is not None:
        rows.append(
            (f"(b) MoviePy {moviepy.details.get('moviepy', '2.x')}, plain", moviepy.wall_s, [])
        )
    if tuned is not None:
        rows.append(("(b') MoviePy, tuned", tuned.wall_s, []))
    rows.append(("(c) encode-only floor (x264)", floor, results.floor_s))
    rows.append(("(c') the floor on (a), decoded", results.floor_decoded_s, []))

    print()
    print("reelyard render benchmark")
    print(
        f"  video    {DURATION_S:g} s of {WIDTH}x{HEIGHT} at {FPS} fps: {PHOTO_COUNT} photos of "
        f"{width}x{height}, Ken Burns, {CROSSFADE_MS / 1000:g} s crossfades, music, title"
    )
    params = f", {settings.params}" if settings.params else ""
    print(
        f"  x264     preset {settings.preset}, CRF {settings.crf}{params} "
        f"(quality {results.quality})"
    )
    print(
        f"  machine  {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}, ffmpeg {ffmpeg_version()}"
    )
    print()
    print(f"  {'':<32}{'median s':>9}{'x floor':>9}   each run, s")
    for label, seconds, each in rows:
        runs = "  ".join(f"{s:.2f}" for s in each) if each else "(one run)"
        print(f"  {label:<32}{seconds:>9.2f}{seconds / floor:>9.2f}   {runs}")
    print()
    if moviepy is not None:
        print(f"  reelyard is {moviepy.wall_s / reelyard:.2f}x as fast as MoviePy written plainly")
    if tuned is not None:
        print(f"  reelyard is {tuned.wall_s / reelyard:.2f}x as fast as MoviePy tuned")
    print(f"  reelyard takes {reelyard / floor:.2f}x the time of x264 alone")
    print(
        f"  SSIM against a reference render (Lanczos, no shortcuts, CRF "
        f"{QUALITY_PRESETS[Quality.REFERENCE].crf}): {results.ssim:.4f} "
        f"(the reference took {results.reference_s:.1f} s)"
    )
    if moviepy is not None:
        build, write = moviepy.details.get("build_s"), moviepy.details.get("write_s")
        if build is not None and write is not None:
            print(
                f"  MoviePy: {build:.1f} s building clips, {write:.1f} s writing "
                f"(ffmpeg {moviepy.details.get('ffmpeg', 'unknown')})"
            )
        print(f"  MoviePy peak RSS: {moviepy.peak_rss_mb:.0f} MB plain")
    if tuned is not None:
        print(f"  MoviePy peak RSS: {tuned.peak_rss_mb:.0f} MB tuned")
    outputs = [("reelyard", results.reelyard_probe)]
    if moviepy is not None:
        outputs.append(("MoviePy plain", moviepy.probe))
    if tuned is not None:
        outputs.append(("MoviePy tuned", tuned.probe))
    for name, found in outputs:
        print(
            f"  {name} output: {found.video_codec}+{found.audio_codec} "
            f"{found.width}x{found.height}, {found.frames} frames, {found.duration_s:.3f} s, "
            f"{found.size_mb:.1f} MB"
        )
    print(
        json.dumps(
            {
                "reelyard_s": round(reelyard, 3),
                "moviepy_s": round(moviepy.wall_s, 2) if moviepy else None,
                "floor_s": round(floor, 3),
                "speedup_vs_moviepy": round(moviepy.wall_s / reelyard, 2) if moviepy else None,
                "ratio_to_floor": round(reelyard / floor, 3),
                "ssim": round(results.ssim, 4),
                "moviepy_peak_rss_mb": round(moviepy.peak_rss_mb, 1) if moviepy else None,
                "moviepy_tuned_s": round(tuned.wall_s, 2) if tuned else None,
                "speedup_vs_moviepy_tuned": round(tuned.wall_s / reelyard, 2) if tuned else None,
                "floor_decoded_s": round(results.floor_decoded_s, 3),
                "size_mb": round(results.reelyard_probe.size_mb, 1),
                "runs": len(results.reelyard_s),
            }
        )
    )


def main() -> int:
    args = parse_args()
    quality = Quality(args.quality)
    workdir = Path(tempfile.mkdtemp(prefix="reelyard-bench-", dir=args.workdir)).absolute()
    raw = workdir / "frames.yuv"
    try:
        results = benchmark(args, quality, workdir, raw)
    except (BenchmarkError, RenderError) as exc:
        print(f"bench-render failed: {exc}", file=sys.stderr)
        return 1
    finally:
        raw.unlink(missing_ok=True)
        if args.keep:
            progress(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
