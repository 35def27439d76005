"""The drafts the planner writes: a first timeline from photos, or the current one edited.

A generated draft has one video track (a segment per photo, in upload order), one
audio track (the music bed or the uploaded song) and one text track (title and
captions). An edit works on a deep copy of the current draft and touches only
what it was asked to change: unknown keys anywhere are kept, segments are
retimed only when the length or the transitions change, and text and music
that followed the old length (a caption over the last 3 s, music to the end)
follow the new one.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard
from urllib.parse import unquote, urlsplit

from studio.planner.describe import (
    MOOD_LABELS,
    MOTION_WORDS,
    TRANSITION_WORDS,
    quoted,
    seconds,
    transition_words,
)
from studio.planner.plans import MediaItem
from studio.planner.reading import SHORT_MS, Caption, Wishes, nearest_canvas
from studio.planner.timing import (
    MAX_TOTAL_MS,
    lay_out,
    overlap_ms,
    video_length_ms,
)
from studio.render.timeline import (
    DEFAULT_TRANSITION_MS,
    TRACK_AUDIO,
    TRACK_TEXT,
    TRACK_VIDEO,
    Fit,
    Mood,
    TransitionType,
)

Draft = dict[str, Any]
Segment = dict[str, Any]

DEFAULT_RATIO = "16:9"
DEFAULT_RES = 1080
FPS = 30
PER_PHOTO_MS = 3000
TRANSITION_MS = round(DEFAULT_TRANSITION_MS)
MUSIC_VOLUME = 0.35
TEXT_MS = 3000  # a title's or an end caption's time on screen
TITLE_SIZE = 0.08
CAPTION_SIZE = 0.06
TITLE_NAME = "Title"
CAPTION_NAME = "Caption"


@dataclass(frozen=True)
class Outcome:
    draft: Draft
    changes: tuple[str, ...]
    assumptions: tuple[str, ...]


# --- generate -----------------------------------------------------------------


@dataclass(frozen=True)
class Generated:
    raw: Draft  # stage one: the photos alone, hard cuts, no motion
    final: Outcome  # stage two: transitions, motion, music, title


def generate(wishes: Wishes, images: Sequence[MediaItem], audio: Sequence[MediaItem]) -> Generated:
    """The first timeline: every image in order, then music, title and effects."""
    notes = list(wishes.notes)
    count = len(images)
    ratio, res = wishes.ratio or DEFAULT_RATIO, wishes.res or DEFAULT_RES
    if wishes.ratio is None:
        notes.append(_ratio_default_note(images))
    if wishes.res is None:
        notes.append("no resolution asked: 1080p")
    asked = _asked_length(wishes, count, notes)
    kind, ms = _generated_transition(wishes, notes)
    layout = lay_out([1.0] * count, [ms] * (count - 1), asked, FPS)
    _note_layout(
        notes,
        asked=asked,
        total=layout.total_ms,
        joints=[ms] * (count - 1),
        fitted=layout.transitions_ms,
        count=count,
    )
    motion = wishes.motion or "auto"
    segments = [
        _photo_segment(
            image,
            start=layout.starts[i],
            duration=layout.durations[i],
            motion=motion,
            transition=(kind, layout.transitions_ms[i]) if i < count - 1 else None,
            fit=wishes.fit,
        )
        for i, image in enumerate(images)
    ]
    meta = {"ratio": ratio, "res": res, "fps": FPS, "motion": motion}
    tracks: list[dict[str, Any]] = [{"tt": TRACK_VIDEO, "sg": segments}]
    changes = [
        f"{count} photo{'s' * (count != 1)}, {seconds(layout.total_ms)}",
        f"aspect ratio {ratio}, {res}p",
        transition_words(kind, layout.transitions_ms[0])
        if count > 1
        else "one photo, no transitions",
        f"motion {motion}",
    ]
    music = _generated_music(wishes, audio, layout.total_ms, notes)
    if music is not None:
        tracks.append({"tt": TRACK_AUDIO, "sg": [music]})
        changes.append(f"music {music['m']['name']} at {music['m']['volume']:.0%}")
    texts = _generated_texts(wishes, layout.total_ms, changes, notes)
    if texts:
        tracks.append({"tt": TRACK_TEXT, "sg": texts})
    final = {"t": tracks, "d": layout.total_ms, "m": meta}

    cuts = lay_out([1.0] * count, [0] * (count - 1), layout.total_ms, FPS)
    raw_segments = [
        _photo_segment(
            image,
            start=cuts.starts[i],
            duration=cuts.durations[i],
            motion="none",
            transition=None,
            fit=wishes.fit,
        )
        for i, image in enumerate(images)
    ]
    raw = {
        "t": [{"tt": TRACK_VIDEO, "sg": raw_segments}],
        "d": cuts.total_ms,
        "m": {"ratio": ratio, "res": res, "fps": FPS, "motion": "none"},
    }
    return Generated(raw, Outcome(final, tuple(changes), tuple(dict.fromkeys(notes))))


def _ratio_default_note(images: Sequence[MediaItem]) -> str:
    tall = sum(1 for i in images if i.width and i.height and i.height > i.width)
    if tall * 2 > len(images):
        return "no aspect ratio asked: 16:9 (most photos are portrait; say 'vertical' for 9:16)"
    return "no aspect ratio asked: 16:9 landscape"


def _stated_length(wishes: Wishes, count: int) -> int | None:
    """The length the prompt states outright (a length, a time per photo, "short")."""
    if wishes.length_ms is not None:
        return wishes.length_ms
    if wishes.per_photo_ms is not None:
        return wishes.per_photo_ms * count
    if wishes.short:
        return SHORT_MS
    return None


def _asked_length(wishes: Wishes, count: int, notes: list[str]) -> int:
    """The length the prompt asks for a new video, before it is fitted to the photos."""
    asked = _stated_length(wishes, count)
    if asked is None:
        per_photo = PER_PHOTO_MS * (wishes.speed or 1.0)
        asked = round(per_photo * count / 100) * 100
        if wishes.speed is None:
            notes.append(f"no length asked: {seconds(PER_PHOTO_MS)} per photo")
        return _capped(asked, notes)
    if wishes.speed is not None:
        notes.append(_SPEED_IGNORED)
    return _capped(asked, notes)


def _capped(asked: int, notes: list[str]) -> int:
    if asked > MAX_TOTAL_MS:
        notes.append(f"{seconds(asked)} is longer than the {seconds(MAX_TOTAL_MS)} limit")
        return MAX_TOTAL_MS
    return asked


def _generated_transition(wishes: Wishes, notes: list[str]) -> tuple[TransitionType, int]:
    kind = wishes.transition or TransitionType.CROSSFADE
    if kind is TransitionType.NONE:
        return kind, 0
    ms = _transition_length(wishes, TRANSITION_MS)
    if wishes.transition is None:
        notes.append(f"no transition asked: crossfades of {ms} ms")
    return kind, ms


def _transition_length(wishes: Wishes, fallback: int) -> int:
    ms = wishes.transition_ms or wishes.transition_style_ms or fallback
    return max(0, min(ms, 5000))


def _note_layout(
    notes: list[str],
    *,
    asked: int,
    total: int,
    joints: Sequence[float],
    fitted: Sequence[int],
    count: int,
) -> None:
    """Say so where the photos did not fit the asked length as asked."""
    if total > asked:
        notes.append(
            f"{count} photos need at least {seconds(total)}: made it {seconds(total)} "
            f"instead of {seconds(asked)}"
        )
    if any(round(a) != b for a, b in zip(joints, fitted, strict=False)):
        squeezed = f"shortened to {min(fitted)} ms" if min(fitted) else "made hard cuts"
        notes.append(f"transitions {squeezed} so each photo is on screen at least 0.5 s")


def _generated_music(
    wishes: Wishes, audio: Sequence[MediaItem], total: int, notes: list[str]
) -> Segment | None:
    upload = audio[-1] if audio else None
    if wishes.music is False:
        if upload is not None:
            notes.append(f"left out the uploaded audio {quoted(upload.name)}, as asked")
        return None
    if wishes.music is None and upload is None:
        notes.append(
            "no music asked: added an upbeat bed, as the service does "
            "(say 'no music' to leave it out)"
        )
    if len(audio) > 1 and upload is not None:
        notes.append(f"used the last uploaded audio file, {quoted(upload.name)}")
    if wishes.own_audio and upload is None:
        notes.append("no audio file was uploaded: used a music bed instead")
    return _music_segment(total, wishes.mood, upload, wishes.volume or MUSIC_VOLUME)


def _generated_texts(
    wishes: Wishes, total: int, changes: list[str], notes: list[str]
) -> list[Segment]:
    texts = []
    if wishes.title is not None:
        texts.append(_title_segment(wishes.title, total))
        changes.append(f"title → {quoted(wishes.title)}")
    elif wishes.title_without_text:
        notes.append(_NO_TITLE_TEXT)
    for caption in wishes.captions:
        texts.append(_caption_segment(caption, total))
        changes.append(_caption_change(caption))
    return texts


_SPEED_IGNORED = "a length was given, so 'faster'/'slower' was not applied on top of it"
_NO_TITLE_TEXT = "a title was mentioned without its text: put it in quotes, e.g. titled 'Summer'"


# --- segments -------------------------------------------------------------------


def _photo_segment(
    image: MediaItem,
    *,
    start: int,
    duration: int,
    motion: str,
    transition: tuple[TransitionType, int] | None,
    fit: Fit | None,
) -> Segment:
    meta: dict[str, Any] = {"name": image.name, "motion": motion}
    if fit is not None:
        meta["fit"] = fit.value
    if transition is not None:
        kind, ms = transition
        meta["transition"] = {"type": kind.value, "d": 0 if kind is TransitionType.NONE else ms}
    return {"src": image.ref, "s": start, "d": duration, "m": meta}


def _music_segment(
    total: int, mood: Mood | None, upload: MediaItem | None, volume: float
) -> Segment:
    meta: dict[str, Any] = {"volume": volume}
    segment: Segment = {"s": 0, "d": total, "m": meta}
    if upload is not None:
        segment["src"] = upload.ref
        meta["name"] = upload.name
        if mood is not None:
            meta["mood"] = mood.value
    else:
        mood = mood or Mood.UPBEAT
        meta["mood"] = mood.value
        meta["name"] = MOOD_LABELS[mood]
    return segment


def _title_segment(text: str, total: int) -> Segment:
    return {
        "s": 0,
        "d": min(TEXT_MS, total),
        "text": text,
        "m": {"position": "top", "size": TITLE_SIZE, "name": TITLE_NAME},
    }


def _caption_segment(caption: Caption, total: int) -> Segment:
    length = total if caption.when == "all" else min(TEXT_MS, total)
    start = total - length if caption.when == "end" else 0
    return {
        "s": start,
        "d": length,
        "text": caption.text,
        "m": {"position": "bottom", "size": CAPTION_SIZE, "name": CAPTION_NAME},
    }


def _caption_change(caption: Caption) -> str:
    where = {"end": "the last 3 s", "start": "the first 3 s", "all": "the whole video"}
    return f"caption {quoted(caption.text)} over {where[caption.when]}"


# --- reading the current draft ----------------------------------------------------


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _meta(segment: Segment) -> dict[str, Any]:
    """A segment's ``m``, made a dict if it was missing, so it can be written to."""
    if not isinstance(segment.get("m"), dict):
        segment["m"] = {}
    meta: dict[str, Any] = segment["m"]
    return meta


def _read_meta(segment: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = segment.get("m")
    return meta if isinstance(meta, Mapping) else {}


def video_segments(draft: Mapping[str, Any] | None) -> list[Segment] | None:
    """The segments of the draft's video track, or None if it has none to edit."""
    if draft is None or not isinstance(draft.get("t"), list):
        return None
    for track in draft["t"]:
        if isinstance(track, dict) and track.get("tt") == TRACK_VIDEO:
            segments = track.get("sg")
            if isinstance(segments, list) and segments:
                if all(isinstance(s, dict) for s in segments):
                    return segments
                return None
    return None


def draft_fps(draft: Mapping[str, Any]) -> int:
    meta = draft.get("m")
    fps = meta.get("fps", FPS) if isinstance(meta, Mapping) else FPS
    if _is_number(fps) and float(fps).is_integer() and 1 <= fps <= 60:
        return int(fps)
    return FPS


def joint(segment: Mapping[str, Any]) -> tuple[str, float]:
    """The transition out of a segment as the renderer reads it: its type and length."""
    meta = segment.get("m")
    value = meta.get("transition") if isinstance(meta, Mapping) else None
    if isinstance(value, str):
        return value, DEFAULT_TRANSITION_MS
    if isinstance(value, Mapping) and isinstance(value.get("type"), str):
        ms = value.get("d", DEFAULT_TRANSITION_MS)
        return value["type"], float(ms) if _is_number(ms) else DEFAULT_TRANSITION_MS
    return TransitionType.NONE.value, 0.0


def _joint_ms(segment: Mapping[str, Any]) -> float:
    kind, ms = joint(segment)
    return 0.0 if kind == TransitionType.NONE else max(ms, 0.0)


def _duration(segment: Mapping[str, Any]) -> float:
    d = segment.get("d")
    return float(d) if _is_number(d) and d > 0 else float(PER_PHOTO_MS)


def length_of(segments: Sequence[Mapping[str, Any]], fps: int) -> int:
    """The video's length: its segments minus the overlaps of their transitions."""
    return video_length_ms(
        [_duration(s) for s in segments], [_joint_ms(s) for s in segments[:-1]], fps
    )


def _file_name(src: Any) -> str:
    if not isinstance(src, str):
        return ""
    path = urlsplit(src).path if "://" in src else src
    return unquote(path).replace("\\", "/").rsplit("/", 1)[-1]


# --- edit -----------------------------------------------------------------------


@dataclass
class _Edit:
    """An edit in progress: the copy being changed and what has been said about it."""

    draft: Draft
    meta: dict[str, Any]
    segments: list[Segment]
    fps: int
    total_ms: int
    changes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    retime: bool = False  # the segments' timing must be laid out again
    stretch: float = 1.0  # the length grows by this much (photos were added)

    def tracks(self, kind: int) -> list[dict[str, Any]]:
        return [t for t in self.draft["t"] if isinstance(t, dict) and t.get("tt") == kind]

    def segments_of(self, kind: int) -> list[Segment]:
        return [
            s
            for t in self.tracks(kind)
            if isinstance(t.get("sg"), list)
            for s in t["sg"]
            if isinstance(s, dict)
        ]


def edit(current: Mapping[str, Any], wishes: Wishes, media: Sequence[MediaItem]) -> Outcome:
    """The current draft with what ``wishes`` asks changed, and nothing else."""
    draft: Draft = copy.deepcopy(dict(current))
    if not isinstance(draft.get("m"), dict):
        draft["m"] = {}
    segments = video_segments(draft) or []
    fps = draft_fps(draft)
    work = _Edit(
        draft, draft["m"], segments, fps, length_of(segments, fps), notes=list(wishes.notes)
    )
    images = [m for m in media if m.kind == "image"]
    audio = [m for m in media if m.kind == "audio"]
    _edit_canvas(work, wishes)
    if wishes.add_photos:
        _add_photos(work, images)
    _edit_transitions(work, wishes)
    _edit_motion(work, wishes)
    _edit_fit(work, wishes)
    _edit_timing(work, wishes)
    _edit_music(work, wishes, audio)
    _edit_title(work, wishes)
    _edit_captions(work, wishes)
    return Outcome(draft, tuple(work.changes), tuple(dict.fromkeys(work.notes)))


def _edit_canvas(work: _Edit, wishes: Wishes) -> None:
    if wishes.ratio is None and wishes.res is None:
        return
    meta = work.meta
    if "w" in meta or "h" in meta:
        width, height = meta.get("w"), meta.get("h")
        if _is_number(width) and _is_number(height):
            guess_ratio, guess_res, _ = nearest_canvas(int(width), int(height))
        else:
            guess_ratio, guess_res = DEFAULT_RATIO, DEFAULT_RES
        meta.pop("w", None)
        meta.pop("h", None)
        meta["ratio"] = wishes.ratio or guess_ratio
        meta["res"] = wishes.res or guess_res
        work.changes.append(f"canvas {width}x{height} → {meta['ratio']} at {meta['res']}p")
        return
    old_ratio, old_res = meta.get("ratio", DEFAULT_RATIO), meta.get("res", DEFAULT_RES)
    if wishes.ratio is not None:
        if wishes.ratio == old_ratio:
            work.notes.append(f"the aspect ratio is already {old_ratio}")
        else:
            meta["ratio"] = wishes.ratio
            work.changes.append(f"aspect ratio {old_ratio} → {wishes.ratio}")
    if wishes.res is not None:
        if wishes.res == old_res:
            work.notes.append(f"the resolution is already {old_res}p")
        else:
            meta["res"] = wishes.res
            work.changes.append(f"resolution {old_res}p → {wishes.res}p")


def _prevailing_joint(segments: Sequence[Segment]) -> tuple[str, float]:
    """The transition most joints use (the first such, on a tie); none if there are none."""
    joints = [joint(s) for s in segments[:-1]]
    if not joints:
        return TransitionType.NONE.value, 0.0
    return max(joints, key=joints.count)


def _add_photos(work: _Edit, images: Sequence[MediaItem]) -> None:
    present = {s.get("src") for s in work.segments} | {
        _file_name(s.get("src")) for s in work.segments
    }
    new = [i for i in images if i.ref not in present and _file_name(i.ref) not in present]
    if not new:
        work.notes.append("every uploaded photo is already in the video")
        return
    kind, ms = _prevailing_joint(work.segments)
    if kind == TransitionType.NONE and len(work.segments) == 1:
        kind, ms = TransitionType.CROSSFADE.value, DEFAULT_TRANSITION_MS
    motion = work.meta.get("motion", "auto")
    last = _meta(work.segments[-1])
    if "transition" not in last:
        last["transition"] = {"type": kind, "d": round(ms)}
    before = len(work.segments)
    for image in new:
        segment = _photo_segment(
            image, start=0, duration=PER_PHOTO_MS, motion=str(motion), transition=None, fit=None
        )
        segment["m"]["transition"] = {"type": kind, "d": round(ms)}
        work.segments.append(segment)
    work.segments[-1]["m"].pop("transition")
    work.stretch = len(work.segments) / before
    work.retime = True
    work.changes.append(f"{len(new)} photo{'s' * (len(new) != 1)} added")


def _edit_transitions(work: _Edit, wishes: Wishes) -> None:
    asked = wishes.transition is not None or wishes.transition_ms is not None
    if not asked and not wishes.transitions_mentioned:
        return
    if len(work.segments) < 2:
        work.notes.append("with a single photo there is nothing to transition between")
        return
    old_kind, old_ms = _prevailing_joint(work.segments)
    if wishes.transition is not None:
        kind = wishes.transition
    elif old_kind == TransitionType.NONE or old_kind not in TRANSITION_WORDS:
        kind = TransitionType.CROSSFADE
    else:
        kind = TransitionType(old_kind)
    if not asked and old_kind != TransitionType.NONE:
        work.notes.append(f"it already has {transition_words(old_kind, old_ms)}")
        return
    fallback = round(old_ms) if kind == old_kind and old_ms > 0 else TRANSITION_MS
    ms = 0 if kind is TransitionType.NONE else _transition_length(wishes, fallback)
    joints = [joint(s) for s in work.segments[:-1]]
    if all(j == (kind.value, float(ms)) for j in joints):
        work.notes.append(f"it already has {transition_words(kind, ms)}")
        return
    for segment in work.segments[:-1]:
        _meta(segment)["transition"] = {"type": kind.value, "d": ms}
    work.retime = True
    before = transition_words(old_kind, old_ms) if joints else "none"
    work.changes.append(f"transitions {before} → {transition_words(kind, ms)}")


def _edit_motion(work: _Edit, wishes: Wishes) -> None:
    if wishes.motion is None:
        return
    old = work.meta.get("motion", "auto")
    moving = [_read_meta(s).get("motion", old) for s in work.segments]
    if old == wishes.motion and all(m == wishes.motion for m in moving):
        work.notes.append(f"the photos already have {MOTION_WORDS[wishes.motion]}")
        return
    work.meta["motion"] = wishes.motion
    for segment in work.segments:
        _meta(segment)["motion"] = wishes.motion
    work.changes.append(f"motion {old} → {wishes.motion}")


def _edit_fit(work: _Edit, wishes: Wishes) -> None:
    if wishes.fit is None:
        return
    fits = [_read_meta(s).get("fit", Fit.COVER.value) for s in work.segments]
    if all(f == wishes.fit.value for f in fits):
        work.notes.append(f"the photos are already shown as '{wishes.fit.value}'")
        return
    for segment in work.segments:
        _meta(segment)["fit"] = wishes.fit.value
    work.changes.append(f"photo fit {fits[0]} → {wishes.fit.value}")


def _edit_timing(work: _Edit, wishes: Wishes) -> None:
    count = len(work.segments)
    old = work.total_ms
    stated = _stated_length(wishes, count)
    if stated is not None:
        asked = stated
    elif wishes.speed is not None:
        asked = max(round(old * work.stretch * wishes.speed / 100) * 100, 100)
    elif work.retime:
        asked = round(old * work.stretch / 100) * 100 if work.stretch != 1 else old
    else:
        return
    if wishes.speed is not None and stated is not None:
        work.notes.append(_SPEED_IGNORED)
    asked = _capped(asked, work.notes)
    if asked == old and not work.retime:
        work.notes.append(f"it is already {seconds(old)} long")
        return
    joints = [_joint_ms(s) for s in work.segments[:-1]]
    weights = _solo_times(work.segments, work.fps) if work.stretch == 1 else [1.0] * count
    layout = lay_out(weights, joints, asked, work.fps)
    _note_layout(
        work.notes,
        asked=asked,
        total=layout.total_ms,
        joints=joints,
        fitted=layout.transitions_ms,
        count=count,
    )
    for i, segment in enumerate(work.segments):
        segment["s"], segment["d"] = layout.starts[i], layout.durations[i]
        if i < count - 1 and layout.transitions_ms[i] != round(joints[i]):
            kind, _ = joint(segment)
            _meta(segment)["transition"] = {"type": kind, "d": layout.transitions_ms[i]}
    work.draft["d"] = layout.total_ms
    if layout.total_ms != old:
        work.changes.append(f"length {seconds(old)} → {seconds(layout.total_ms)}")
        for segment in work.segments_of(TRACK_AUDIO) + work.segments_of(TRACK_TEXT):
            _follow_length(segment, old, layout.total_ms)
    work.total_ms = layout.total_ms


def _solo_times(segments: Sequence[Segment], fps: int) -> list[float]:
    """Each photo's time on screen outside transitions: what a retiming keeps in proportion."""
    overlaps = [overlap_ms(_joint_ms(s), fps) for s in segments[:-1]]
    solos = [
        _duration(s) - (overlaps[i - 1] if i else 0.0) - (overlaps[i] if i < len(overlaps) else 0.0)
        for i, s in enumerate(segments)
    ]
    return solos if min(solos) > 0 else [1.0] * len(segments)


def _follow_length(segment: Segment, old: int, new: int) -> None:
    """Keep text and music where they were relative to the video's ends.

    Whole length stays whole length, "the last 3 s" stays the last 3 s, a title
    at the start stays at the start; anything else moves in proportion.
    """
    start = segment.get("s", 0)
    length = segment.get("d")
    if not _is_number(start) or not _is_number(length) or old <= 0:
        return  # no length: audio that runs to the end already follows it
    if start <= 0 and length >= old - 1:
        segment["d"] = new
    elif abs(start + length - old) <= 1:
        segment["d"] = min(length, new)
        segment["s"] = new - segment["d"]
    elif start <= 0:
        segment["d"] = min(length, new)
    else:
        scale = new / old
        segment["s"], segment["d"] = round(start * scale), max(round(length * scale), 1)


def _edit_music(work: _Edit, wishes: Wishes, audio: Sequence[MediaItem]) -> None:
    tracks = work.tracks(TRACK_AUDIO)
    present = work.segments_of(TRACK_AUDIO)
    if wishes.music is False:
        if not tracks:
            work.notes.append("there was no music to remove")
            return
        dropped = {id(t) for t in tracks}
        work.draft["t"] = [t for t in work.draft["t"] if id(t) not in dropped]
        work.changes.append("music removed")
        return
    if not wishes.music:
        return
    upload = audio[-1] if audio else None
    if wishes.own_audio and upload is None:
        work.notes.append("no audio file was uploaded: kept to the music beds")
    if not present:
        use_upload = upload if (wishes.own_audio or wishes.mood is None) else None
        volume = wishes.volume or MUSIC_VOLUME
        segment = _music_segment(work.total_ms, wishes.mood, use_upload, volume)
        work.draft["t"].append({"tt": TRACK_AUDIO, "sg": [segment]})
        work.changes.append(f"music added ({segment['m']['name']}, {volume:.0%})")
        return
    before = len(work.changes)
    if wishes.own_audio and upload is not None:
        _use_upload(work, present, upload)
    elif wishes.mood is not None:
        _use_mood(work, present, wishes.mood)
    if wishes.volume is not None:
        _change_volume(work, present, louder=wishes.volume > MUSIC_VOLUME)
    if len(work.changes) == before and not (wishes.own_audio and upload is None):
        work.notes.append(f"it already has music ({_music_label(present[0])})")


def _music_label(segment: Segment) -> str:
    meta = _read_meta(segment)
    name = meta.get("name") or _file_name(segment.get("src"))
    return str(name or MOOD_LABELS.get(str(meta.get("mood")), "music"))


def _use_upload(work: _Edit, present: list[Segment], upload: MediaItem) -> None:
    for segment in present:
        if segment.get("src") != upload.ref:
            old = _music_label(segment)
            segment["src"] = upload.ref
            _meta(segment)["name"] = upload.name
            work.changes.append(f"music {old} → {upload.name}")


def _use_mood(work: _Edit, present: list[Segment], mood: Mood) -> None:
    for segment in present:
        meta = _meta(segment)
        if "src" in segment or meta.get("mood") != mood.value:
            old = _music_label(segment)
            segment.pop("src", None)
            meta["mood"], meta["name"] = mood.value, MOOD_LABELS[mood]
            work.changes.append(f"music {old} → {MOOD_LABELS[mood]}")


def _change_volume(work: _Edit, present: list[Segment], *, louder: bool) -> None:
    """Louder: to 60 % or 20 points up; quieter: to 20 % or 10 points down."""
    for segment in present:
        meta = _meta(segment)
        old = meta.get("volume", 1.0)
        old = float(old) if _is_number(old) else 1.0
        if louder:
            new = 0.6 if old < 0.6 else min(round(old + 0.2, 2), 1.0)
        else:
            new = 0.2 if old > 0.2 else max(round(old - 0.1, 2), 0.05)
        if new != old:
            meta["volume"] = new
            work.changes.append(f"music volume {old:.0%} → {new:.0%}")


def _named_texts(work: _Edit, name: str) -> list[tuple[dict[str, Any], Segment]]:
    return [
        (track, s)
        for track in work.tracks(TRACK_TEXT)
        if isinstance(track.get("sg"), list)
        for s in track["sg"]
        if isinstance(s, dict) and isinstance(s.get("m"), dict) and s["m"].get("name") == name
    ]


def _remove_texts(work: _Edit, found: list[tuple[dict[str, Any], Segment]]) -> None:
    for track, segment in found:
        track["sg"] = [s for s in track["sg"] if s is not segment]
    emptied = {id(track) for track, _ in found if not track["sg"]}
    work.draft["t"] = [t for t in work.draft["t"] if id(t) not in emptied]


def _text_track(work: _Edit) -> list[Any]:
    for track in work.tracks(TRACK_TEXT):
        segments = track.get("sg")
        if isinstance(segments, list):
            return segments
    created: list[Any] = []
    work.draft["t"].append({"tt": TRACK_TEXT, "sg": created})
    return created


def _edit_title(work: _Edit, wishes: Wishes) -> None:
    titles = _named_texts(work, TITLE_NAME)
    if wishes.remove_title and wishes.title is None:
        if not titles:
            work.notes.append("there was no title to remove")
            return
        _remove_texts(work, titles)
        work.changes.append(f"title {quoted(str(titles[0][1].get('text')))} removed")
        return
    if wishes.title is None:
        if wishes.title_without_text:
            work.notes.append(_NO_TITLE_TEXT)
        return
    if not titles:
        _text_track(work).insert(0, _title_segment(wishes.title, work.total_ms))
        work.changes.append(f"title → {quoted(wishes.title)}")
        return
    segment = titles[0][1]
    if segment.get("text") == wishes.title:
        work.notes.append(f"the title is already {quoted(wishes.title)}")
        return
    old = segment.get("text")
    segment["text"] = wishes.title
    work.changes.append(f"title {quoted(str(old))} → {quoted(wishes.title)}")


def _edit_captions(work: _Edit, wishes: Wishes) -> None:
    if wishes.remove_captions:
        captions = _named_texts(work, CAPTION_NAME)
        if captions:
            _remove_texts(work, captions)
            count = len(captions)
            work.changes.append(f"{count} caption{'s' * (count != 1)} removed")
        else:
            work.notes.append("there were no captions to remove")
    for caption in wishes.captions:
        _text_track(work).append(_caption_segment(caption, work.total_ms))
        work.changes.append(_caption_change(caption))


__all__ = [
    "TRANSITION_WORDS",
    "Generated",
    "Outcome",
    "draft_fps",
    "edit",
    "generate",
    "joint",
    "length_of",
    "video_segments",
]
