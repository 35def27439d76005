"""The benchmark's slideshow made with MoviePy 2.x, written the way a Python user would.

``benchmarks/render.py`` runs this with the interpreter of ``.venv-moviepy`` (MoviePy
pins pillow<12, so it cannot share the product's venv); it imports nothing from the
project and takes everything it needs on the command line. The video is the one the
reelyard render makes: the photos back to back, each cropped to cover the canvas and
moving (zoom in, pan right, zoom out, pan left, in turn), crossfading into the next,
a music bed under it all and a title over the first seconds.

Two styles, both measured by the benchmark:

``plain`` (the headline comparison): the script a Python user writes from MoviePy's
documentation. ``ImageClip(path)`` as loaded, Ken Burns as ``resized(lambda t: ...)``
of that clip, composites on MoviePy's default (transparent) background.

``tuned``: what someone who has profiled MoviePy writes. Each photo is scaled once to
cover the canvas before any motion, and composites get ``bg_color=(0, 0, 0)``:
MoviePy 2's default background is transparent, which makes it compute a mask for
every frame and send RGBA frames to ffmpeg.

The MoviePy idioms used in both:

* Ken Burns motion: a zoom is ``resized(lambda t: scale)`` shown
  ``with_position("center")`` in a canvas-sized ``CompositeVideoClip`` (which crops it
  to the canvas; ``cropped`` takes fixed coordinates, so it cannot follow a frame that
  grows); a pan is a still resize moved by ``with_position(lambda t: ...)``.
* Crossfades: each photo after the first starts ``crossfade`` seconds before the
  previous one ends and fades in over it with ``vfx.CrossFadeIn``. The outgoing photo
  is left opaque: ``CrossFadeOut`` on it as well would let the black background show
  through the middle of every transition (a dip, not a crossfade).

Prints one JSON line: the versions of MoviePy and of the ffmpeg it runs, and the seconds
spent building the clips and writing the file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from importlib.metadata import version
from pathlib import Path

from moviepy import AudioFileClip, CompositeVideoClip, ImageClip, TextClip, VideoClip, afx, vfx
from moviepy.config import FFMPEG_BINARY

#: the motions of the photos, in turn (reelyard's ``"auto"``)
MOTIONS = ("zoom_in", "pan_right", "zoom_out", "pan_left")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--photos", type=Path, nargs="+", required=True)
    parser.add_argument("--music", type=Path, required=True, help="a WAV file")
    parser.add_argument("--font", type=Path, required=True, help="the title's font file")
    parser.add_argument("--title", required=True)
    parser.add_argument("--output", type=Path, required=True, help="the MP4 to write")
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--photo-seconds", type=float, default=3.45, help="incl. crossfades")
    parser.add_argument("--crossfade-seconds", type=float, default=0.5)
    parser.add_argument("--preset", default="medium", help="x264 preset")
    parser.add_argument("--crf", type=int, default=20)
    parser.add_argument("--x264-params", default="", help="x264's own options, key=value:...")
    parser.add_argument("--volume", type=float, default=0.35)
    parser.add_argument("--music-fade-out-seconds", type=float, default=1.5)
    parser.add_argument("--title-seconds", type=float, default=3.0)
    parser.add_argument("--title-fade-seconds", type=float, default=0.3)
    parser.add_argument("--font-size", type=int, default=76)
    parser.add_argument("--zoom", type=float, default=1.15, help="scale at the zoom's far end")
    parser.add_argument("--pan-zoom", type=float, default=1.104, help="scale while panning")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--style", choices=["plain", "tuned"], default="plain")
    return parser.parse_args()


def cover(path: Path, width: int, height: int, *, tuned: bool) -> tuple[ImageClip, float]:
    """The photo and the scale at which it just covers ``width`` x ``height``.

    Tuned, the photo is scaled to that once (and the scale left is 1); plain, it is
    used as loaded and every later resize starts from the full photo.
    """
    photo = ImageClip(str(path))
    scale = max(width / photo.w, height / photo.h)
    if not tuned:
        return photo, scale
    return photo.resized((round(photo.w * scale), round(photo.h * scale))), 1.0


def ken_burns(
    photo: ImageClip,
    motion: str,
    *,
    duration: float,
    size: tuple[int, int],
    zoom: float,
    pan_zoom: float,
    base: float,
    background: tuple[int, int, int] | None,
) -> VideoClip:
    """``photo`` (covering the canvas at scale ``base``) moving, cropped to ``size``."""
    photo = photo.with_duration(duration)
    if motion in ("zoom_in", "zoom_out"):
        backwards = motion == "zoom_out"

        def scale(t: float) -> float:
            progress = t / duration
            return base * (1.0 + (zoom - 1.0) * (1.0 - progress if backwards else progress))

        moving = photo.resized(scale).with_position("center")
    else:
        wide = photo.resized(base * pan_zoom)
        room = wide.w - size[0]
        leftwards = motion == "pan_left"

        def position(t: float) -> tuple[float, str]:
            progress = t / duration
            return (-room * (1.0 - progress if leftwards else progress), "center")

        moving = wide.with_position(position)
    return CompositeVideoClip([moving], size=size, bg_color=background).with_duration(duration)


def ffmpeg_version() -> str:
    result = subprocess.run(
        [FFMPEG_BINARY, "-hide_banner", "-version"], capture_output=True, text=True, check=False
    )
    words = result.stdout.split()
    return words[2] if len(words) > 2 else "unknown"


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    size = (args.width, args.height)
    step = args.photo_seconds - args.crossfade_seconds
    total = len(args.photos) * args.photo_seconds - (len(args.photos) - 1) * args.crossfade_seconds

    tuned = args.style == "tuned"
    background = (0, 0, 0) if tuned else None
    layers: list[VideoClip] = []
    for index, path in enumerate(args.photos):
        photo, base = cover(path, *size, tuned=tuned)
        clip = ken_burns(
            photo,
            MOTIONS[index % len(MOTIONS)],
            duration=args.photo_seconds,
            size=size,
            zoom=args.zoom,
            pan_zoom=args.pan_zoom,
            base=base,
            background=background,
        )
        if index > 0:
            clip = clip.with_effects([vfx.CrossFadeIn(args.crossfade_seconds)])
        layers.append(clip.with_start(index * step))

    title = (
        TextClip(
            font=str(args.font),
            text=args.title,
            font_size=args.font_size,
            color="white",
            stroke_color="black",
            stroke_width=max(1, round(args.font_size * 0.04)),
            margin=(args.font_size // 4, args.font_size // 4),
        )
        .with_duration(args.title_seconds)
        .with_start(0)
        .with_position("center")
        .with_effects(
            [vfx.CrossFadeIn(args.title_fade_seconds), vfx.CrossFadeOut(args.title_fade_seconds)]
        )
    )
    layers.append(title)

    music = (
        AudioFileClip(str(args.music))
        .with_duration(total)
        .with_volume_scaled(args.volume)
        .with_effects([afx.AudioFadeOut(args.music_fade_out_seconds)])
    )
    video = (
        CompositeVideoClip(layers, size=size, bg_color=background)
        .with_duration(total)
        .with_audio(music)
    )
    built = time.perf_counter()

    args.output.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg_params = ["-crf", str(args.crf), "-pix_fmt", "yuv420p"]
    if args.x264_params:
        ffmpeg_params += ["-x264-params", args.x264_params]
    video.write_videofile(
        str(args.output),
        fps=args.fps,
        codec="libx264",
        preset=args.preset,
        ffmpeg_params=ffmpeg_params,
        audio_codec="aac",
        audio_fps=48_000,
        audio_bitrate="160k",
        threads=args.threads,
        temp_audiofile_path=str(args.output.parent),
        logger=None,
    )
    written = time.perf_counter()
    video.close()
    music.close()
    print(
        json.dumps(
            {
                "moviepy": version("moviepy"),
                "ffmpeg": ffmpeg_version(),
                "build_s": round(built - started, 3),
                "write_s": round(written - built, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
