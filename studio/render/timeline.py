"""A Nemo draft, read and checked into a timeline the renderer can play.

The draft is the compact timeline of nemo-api.md: ``t`` tracks, ``tt`` track type,
``sg`` segments, ``d`` duration in milliseconds, ``m`` metadata. The contract names
only those keys; the fields below are the ones the studio defines and renders.
Every other key, anywhere, is left alone: it is kept in the draft and ignored here.
Times are integers or floats in milliseconds.

Draft
    ``t``      list of tracks (required, at least one video segment in all)
    ``m.w``, ``m.h``
               canvas size in pixels, even, 64-1920 each; or, when absent,
    ``m.ratio`` ``"16:9"`` | ``"9:16"`` | ``"1:1"`` | ``"4:5"`` (default ``"16:9"``) with
    ``m.res``  ``1080`` (default) or ``720``: 1920x1080, 1080x1920, 1080x1080, 1080x1350
               and their 720p variants 1280x720, 720x1280, 720x720, 720x900
    ``m.fps``  frames per second, 1-60 (default 30)
    ``m.motion`` the default Ken Burns motion of photo segments (default ``"auto"``)
    ``d``      informational; the video track's length is the video's length

Track
    ``tt``     ``0`` video, ``1`` audio, ``7`` text; other types are kept and not drawn
    ``sg``     its segments

Video segment (``tt`` 0), one photo each, played back to back in order
    ``src``    the photo: a file name, URL or path (``/mnt/userdata/…``) whose last
               component names a file in the media directory (required)
    ``d``      time on screen, including the transitions into and out of it (> 0)
    ``s``      optional start; if given it must match where the segment falls
               (previous start + previous ``d`` - the transition between them)
    ``m.motion`` ``"zoom_in"`` | ``"zoom_out"`` | ``"pan_left"`` | ``"pan_right"`` |
               ``"pan_up"`` | ``"pan_down"`` | ``"none"`` | ``"auto"`` (cycles zoom in,
               pan right, zoom out, pan left by position)
    ``m.fit``  ``"cover"`` (crop to fill, default) | ``"contain"`` (whole photo over a
               blurred fill of itself)
    ``m.transition``
               into the next segment: ``{"type": T, "d": ms}`` or just ``T`` (500 ms),
               ``T`` one of ``"crossfade"``, ``"fade_black"``, ``"slide_left"``,
               ``"slide_right"``, ``"wipe_left"``, ``"wipe_right"``, ``"zoom"``, ``"none"``.
               The two segments overlap by ``d``; a segment must be longer than the
               transitions into and out of it together. Ignored on the last segment.

Audio segment (``tt`` 1)
    ``src``    an audio file (mp3, wav, m4a, aac) in the media directory; absent: the
               studio synthesises a music bed (``m.mood``)
    ``s``      start (default 0); ``d`` length (default: to the end of the video)
    ``m.volume`` 0.0-1.0 (default 1.0)
    ``m.loop`` repeat a shorter file to fill ``d`` (default true)
    ``m.fade_in``, ``m.fade_out`` ms (default 0 and 1500, capped at half of ``d``)
    ``m.mood`` ``"upbeat"`` | ``"calm"`` | ``"lofi"`` for the synthesised bed
    ``m.name`` a label ("Lo-fi"); informational

Text segment (``tt`` 7)
    ``text``   the text, non-empty; ``\\n`` breaks lines (required)
    ``s``, ``d`` start and length (``d`` > 0 required)
    ``m.position`` ``"top"`` | ``"center"`` (default) | ``"bottom"``
    ``m.size`` line height as a fraction of the canvas height, 0.02-0.25 (default 0.07)
    ``m.color`` ``"#RRGGBB"`` (default ``"#FFFFFF"``)
    ``m.style`` ``"shadow"`` (default) | ``"box"`` (a translucent dark box behind it)
    ``m.fade`` fade in and out, ms (default 300, capped at half of ``d``)

Anything outside the video's length (text or audio past its end) is cut at the end.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from studio.render.errors import DraftError

TRACK_VIDEO = 0
TRACK_AUDIO = 1
TRACK_TEXT = 7

NAMED_CANVASES: dict[str, tuple[int, int]] = {
    "16:9": (1920, 1080),
    "9:16": (1080, 1920),
    "1:1": (1080, 1080),
    "4:5": (1080, 1350),
}
MIN_SIDE, MAX_SIDE = 64, 1920
#: no number in a draft is larger: a day in milliseconds (a video is far shorter)
MAX_NUMBER = 86_400_000.0
DEFAULT_TRANSITION_MS = 500.0
DEFAULT_FADE_OUT_MS = 1500.0
DEFAULT_TEXT_FADE_MS = 300.0
E = TypeVar("E", bound=StrEnum)
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


class Motion(StrEnum):
    ZOOM_IN = "zoom_in"
    ZOOM_OUT = "zoom_out"
    PAN_LEFT = "pan_left"
    PAN_RIGHT = "pan_right"
    PAN_UP = "pan_up"
    PAN_DOWN = "pan_down"
    NONE = "none"


AUTO_MOTIONS = (Motion.ZOOM_IN, Motion.PAN_RIGHT, Motion.ZOOM_OUT, Motion.PAN_LEFT)


class Fit(StrEnum):
    COVER = "cover"
    CONTAIN = "contain"


class TransitionType(StrEnum):
    CROSSFADE = "crossfade"
    FADE_BLACK = "fade_black"
    SLIDE_LEFT = "slide_left"
    SLIDE_RIGHT = "slide_right"
    WIPE_LEFT = "wipe_left"
    WIPE_RIGHT = "wipe_right"
    ZOOM = "zoom"
    NONE = "none"


class Position(StrEnum):
    TOP = "top"
    CENTER = "center"
    BOTTOM = "bottom"


class TextStyle(StrEnum):
    SHADOW = "shadow"
    BOX = "box"


class Mood(StrEnum):
    UPBEAT = "upbeat"
    CALM = "calm"
    LOFI = "lofi"


@dataclass(frozen=True)
class Canvas:
    width: int
    height: int
    fps: int


@dataclass(frozen=True)
class Transition:
    """The change from one photo to the next, over ``frames`` overlapping frames."""

    type: TransitionType
    frames: int


@dataclass(frozen=True)
class PhotoClip:
    where: str
    src: str
    start: int  # first frame
    frames: int
    motion: Motion
    fit: Fit
    transition_out: Transition | None  # into the next clip

    @property
    def end(self) -> int:
        return self.start + self.frames


@dataclass(frozen=True)
class AudioClip:
    where: str
    src: str | None  # None: the synthesised bed
    start_s: float
    duration_s: float
    volume: float
    loop: bool
    fade_in_s: float
    fade_out_s: float
    mood: Mood


@dataclass(frozen=True)
class TextClip:
    where: str
    text: str
    start: int
    frames: int
    position: Position
    size: float
    color: tuple[int, int, int]
    style: TextStyle
    fade_frames: int


@dataclass(frozen=True)
class Timeline:
    canvas: Canvas
    frames: int
    photos: tuple[PhotoClip, ...]
    audio: tuple[AudioClip, ...]
    texts: tuple[TextClip, ...]

    @property
    def duration_s(self) -> float:
        return self.frames / self.canvas.fps


def media_name(src: str) -> str:
    """The file name a media reference points at: the last part of a name, path or URL."""
    path = urlsplit(src).path if "://" in src else src
    name = PurePosixPath(unquote(path).replace("\\", "/")).name
    if name in {"", ".", ".."}:
        raise ValueError(f"{src!r} names no file")
    return name


def parse_timeline(draft: Any) -> Timeline:
    """Check a draft and lay it out in frames; raise :class:`DraftError` naming the fault."""
    if not isinstance(draft, Mapping):
        raise DraftError("a draft is a JSON object with a 't' list of tracks")
    tracks = draft.get("t")
    if not isinstance(tracks, list):
        raise DraftError("the draft has no 't' list of tracks")
    meta = _mapping(draft.get("m"), "m")
    canvas = _canvas(meta)

    video, audio, text = _segments_by_kind(tracks)
    default_motion = _motion(meta.get("motion", "auto"), "m.motion")
    photos = _photos(video, canvas, default_motion)
    total = photos[-1].end
    return Timeline(
        canvas=canvas,
        frames=total,
        photos=photos,
        audio=tuple(a for a in (_audio(w, s, canvas, total) for w, s in audio) if a is not None),
        texts=tuple(t for t in (_text(w, s, canvas, total) for w, s in text) if t is not None),
    )


Located = list[tuple[str, Mapping[str, Any]]]


def _segments_by_kind(tracks: list[Any]) -> tuple[Located, Located, Located]:
    """The video, audio and text segments, each with where it stands in the draft."""
    found: dict[int, Located] = {TRACK_VIDEO: [], TRACK_AUDIO: [], TRACK_TEXT: []}
    video_tracks = 0
    for ti, track in enumerate(tracks):
        where = f"t[{ti}]"
        if not isinstance(track, Mapping):
            raise DraftError("a track is an object", where=where)
        kind = track.get("tt")
        if kind not in found or isinstance(kind, bool):
            continue  # another kind of track: kept in the draft, not drawn
        segments = track.get("sg", [])
        if not isinstance(segments, list):
            raise DraftError("'sg' is a list of segments", where=where)
        for si, segment in enumerate(segments):
            if not isinstance(segment, Mapping):
                raise DraftError("a segment is an object", where=f"{where}.sg[{si}]")
            found[kind].append((f"{where}.sg[{si}]", segment))
        video_tracks += kind == TRACK_VIDEO and bool(segments)
    if not found[TRACK_VIDEO]:
        raise DraftError("the draft has no video segments to render")
    if video_tracks > 1:
        raise DraftError("only one video track with segments can be rendered")
    return found[TRACK_VIDEO], found[TRACK_AUDIO], found[TRACK_TEXT]


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise DraftError("expected an object", where=where)
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DraftError(f"expected a number, got {value!r}", where=where)
    if isinstance(value, float) and not math.isfinite(value):
        raise DraftError(f"expected a finite number, got {value!r}", where=where)
    if abs(value) > MAX_NUMBER:  # an int this large would not even convert to a float
        raise DraftError(f"out of range (at most {MAX_NUMBER:g})", where=where)
    return float(value)


def _duration(segment: Mapping[str, Any], where: str, *, default: float | None = None) -> float:
    if "d" not in segment and default is not None:
        return default
    if "d" not in segment:
        raise DraftError("the segment has no duration 'd'", where=where)
    d = _number(segment["d"], f"{where}.d")
    if d <= 0:
        raise DraftError(f"duration must be positive, got {d:g} ms", where=f"{where}.d")
    return d


def _start(segment: Mapping[str, Any], where: str) -> float:
    s = _number(segment.get("s", 0), f"{where}.s")
    if s < 0:
        raise DraftError(f"start must not be negative, got {s:g} ms", where=f"{where}.s")
    return s


def _choice(value: Any, enum: type[E], where: str) -> E:
    try:
        return enum(value)
    except ValueError:
        options = ", ".join(repr(e.value) for e in enum)
        raise DraftError(
            f"unknown value {value!r}; expected one of {options}", where=where
        ) from None


def _motion(value: Any, where: str) -> Motion | None:
    """A motion name, or None for ``"auto"``."""
    if value == "auto":
        return None
    try:
        return Motion(value)
    except ValueError:
        options = ", ".join(repr(e.value) for e in Motion)
        raise DraftError(
            f"unknown value {value!r}; expected one of {options}, 'auto'", where=where
        ) from None


def _canvas(meta: Mapping[str, Any]) -> Canvas:
    fps_value = _number(meta.get("fps", 30), "m.fps")
    if not fps_value.is_integer() or not 1 <= fps_value <= 60:
        raise DraftError(
            f"fps must be a whole number from 1 to 60, got {fps_value:g}", where="m.fps"
        )
    fps = int(fps_value)
    if "w" in meta or "h" in meta:
        sides = []
        for key in ("w", "h"):
            value = _number(meta.get(key), f"m.{key}")
            if not value.is_integer() or value % 2 or not MIN_SIDE <= value <= MAX_SIDE:
                raise DraftError(
                    f"canvas sides are even whole numbers from {MIN_SIDE} to {MAX_SIDE}, "
                    f"got {value:g}",
                    where=f"m.{key}",
                )
            sides.append(int(value))
        return Canvas(sides[0], sides[1], fps)
    ratio = meta.get("ratio", "16:9")
    if ratio not in NAMED_CANVASES:
        options = ", ".join(repr(r) for r in NAMED_CANVASES)
        raise DraftError(
            f"unknown aspect ratio {ratio!r}; expected one of {options}", where="m.ratio"
        )
    res = meta.get("res", 1080)
    if res not in (720, 1080) or isinstance(res, bool):
        raise DraftError(f"resolution is 720 or 1080, got {res!r}", where="m.res")
    w, h = NAMED_CANVASES[ratio]
    if res == 720:
        w, h = w * 2 // 3, h * 2 // 3
    return Canvas(w, h, fps)


def _frames(ms: float, fps: int) -> int:
    return round(ms * fps / 1000)


def _transition(value: Any, where: str, fps: int) -> Transition | None:
    if value is None:
        return None
    kind: Any
    if isinstance(value, str):
        kind, ms = value, DEFAULT_TRANSITION_MS
    elif isinstance(value, Mapping):
        kind = value.get("type")
        ms = _number(value.get("d", DEFAULT_TRANSITION_MS), f"{where}.d")
        if ms < 0:
            raise DraftError(
                f"transition length must not be negative, got {ms:g}", where=f"{where}.d"
            )
    else:
        raise DraftError("a transition is a type name or {'type', 'd'}", where=where)
    transition_type = _choice(kind, TransitionType, f"{where}.type")
    frames = _frames(ms, fps)
    if transition_type is TransitionType.NONE or frames == 0:
        return None
    return Transition(transition_type, frames)


def _photos(
    items: Sequence[tuple[str, Mapping[str, Any]]], canvas: Canvas, default_motion: Motion | None
) -> tuple[PhotoClip, ...]:
    fps = canvas.fps
    durations = [_duration(seg, where) for where, seg in items]
    transitions: list[Transition | None] = []
    for i, (where, seg) in enumerate(items):
        meta = _mapping(seg.get("m"), f"{where}.m")
        last = i == len(items) - 1
        transitions.append(
            None if last else _transition(meta.get("transition"), f"{where}.m.transition", fps)
        )

    clips: list[PhotoClip] = []
    start_ms = 0.0
    for i, (where, seg) in enumerate(items):
        meta = _mapping(seg.get("m"), f"{where}.m")
        src = seg.get("src")
        if not isinstance(src, str) or not src.strip():
            raise DraftError("a photo segment needs 'src', the file it shows", where=where)
        try:
            media_name(src)
        except ValueError as exc:
            raise DraftError(str(exc), where=f"{where}.src") from None
        if "s" in seg:
            declared = _number(seg["s"], f"{where}.s")
            if abs(declared - start_ms) > 1000 / fps:
                raise DraftError(
                    f"starts at {declared:g} ms, but follows the previous segment at "
                    f"{start_ms:g} ms",
                    where=f"{where}.s",
                )
        motion = _motion(meta.get("motion", "auto"), f"{where}.m.motion")
        if motion is None:
            motion = default_motion or AUTO_MOTIONS[i % len(AUTO_MOTIONS)]
        fit = _choice(meta.get("fit", "cover"), Fit, f"{where}.m.fit")
        first = _frames(start_ms, fps)
        end = _frames(start_ms + durations[i], fps)
        before = transitions[i - 1] if i else None
        overlap_in = before.frames if before else 0
        out = transitions[i]
        overlap_out = out.frames if out else 0
        if end - first <= overlap_in + overlap_out:
            raise DraftError(
                f"{durations[i]:g} ms is too short for its transitions "
                f"({(overlap_in + overlap_out) * 1000 / fps:g} ms)",
                where=where,
            )
        clips.append(PhotoClip(where, src, first, end - first, motion, fit, out))
        start_ms += durations[i] - (out.frames * 1000 / fps if out else 0)
    return tuple(clips)


def _audio(
    where: str, seg: Mapping[str, Any], canvas: Canvas, total_frames: int
) -> AudioClip | None:
    meta = _mapping(seg.get("m"), f"{where}.m")
    total_s = total_frames / canvas.fps
    start_s = _start(seg, where) / 1000
    if start_s >= total_s:
        return None
    duration_s = min(
        _duration(seg, where, default=(total_s - start_s) * 1000) / 1000, total_s - start_s
    )
    src = seg.get("src")
    if src is not None:
        if not isinstance(src, str) or not src.strip():
            raise DraftError("'src' names an audio file", where=f"{where}.src")
        try:
            media_name(src)
        except ValueError as exc:
            raise DraftError(str(exc), where=f"{where}.src") from None
    volume = _number(meta.get("volume", 1.0), f"{where}.m.volume")
    if not 0.0 <= volume <= 1.0:
        raise DraftError(f"volume is from 0.0 to 1.0, got {volume:g}", where=f"{where}.m.volume")
    loop = meta.get("loop", True)
    if not isinstance(loop, bool):
        raise DraftError("loop is true or false", where=f"{where}.m.loop")
    fades = []
    for key, default in (("fade_in", 0.0), ("fade_out", DEFAULT_FADE_OUT_MS)):
        ms = _number(meta.get(key, default), f"{where}.m.{key}")
        if ms < 0:
            raise DraftError(f"{key} must not be negative", where=f"{where}.m.{key}")
        fades.append(min(ms / 1000, duration_s / 2))
    mood = _choice(meta.get("mood", "upbeat"), Mood, f"{where}.m.mood")
    return AudioClip(where, src, start_s, duration_s, volume, loop, fades[0], fades[1], mood)


def _text(where: str, seg: Mapping[str, Any], canvas: Canvas, total_frames: int) -> TextClip | None:
    meta = _mapping(seg.get("m"), f"{where}.m")
    content = seg.get("text")
    if not isinstance(content, str) or not content.strip():
        raise DraftError("a text segment needs non-empty 'text'", where=where)
    start_ms = _start(seg, where)
    duration_ms = _duration(seg, where)
    first = _frames(start_ms, canvas.fps)
    end = min(_frames(start_ms + duration_ms, canvas.fps), total_frames)
    if end <= first:
        return None
    position = _choice(meta.get("position", "center"), Position, f"{where}.m.position")
    style = _choice(meta.get("style", "shadow"), TextStyle, f"{where}.m.style")
    size = _number(meta.get("size", 0.07), f"{where}.m.size")
    if not 0.02 <= size <= 0.25:
        raise DraftError(
            f"size is from 0.02 to 0.25 of the height, got {size:g}", where=f"{where}.m.size"
        )
    color = meta.get("color", "#FFFFFF")
    if not isinstance(color, str) or not _COLOR.match(color):
        raise DraftError(f"color is '#RRGGBB', got {color!r}", where=f"{where}.m.color")
    fade_ms = _number(meta.get("fade", DEFAULT_TEXT_FADE_MS), f"{where}.m.fade")
    if fade_ms < 0:
        raise DraftError("fade must not be negative", where=f"{where}.m.fade")
    frames = end - first
    return TextClip(
        where=where,
        text=content,
        start=first,
        frames=frames,
        position=position,
        size=size,
        color=(int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)),
        style=style,
        fade_frames=min(_frames(fade_ms, canvas.fps), frames // 2),
    )
