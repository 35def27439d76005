"""A read-only, typed view over a Nemo draft (the timeline), and what an edit changed.

The draft is the compact JSON of nemo-api.md: ``t`` tracks, ``tt`` track type (``0``
video, ``1`` audio, ``7`` text), ``sg`` segments, ``d`` duration in milliseconds, ``m``
metadata. Segments may also carry ``s`` (start, ms), ``src`` (a medium), ``text`` (on
text segments), ``m.name`` (a label) and ``m.volume`` (0..1) — the fields the studio
defines. The remote side owns the format, so nothing here assumes more: a key may be
missing or of another type, and every key this view does not know is kept as it came.
:meth:`Draft.to_json` gives back the same JSON, because an export must send the draft
exactly as the state returned it.

Two readings are for people: :meth:`Draft.summary` ("preview in the timeline" for a user
with no GUI) and :func:`diff`, which says what an edit changed; about 30 % of edits end
without a word from the backend, and comparing drafts is then the only answer.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import IntEnum
from itertools import zip_longest
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Draft", "Segment", "Track", "TrackType", "diff"]

ARROW = "\N{RIGHTWARDS ARROW}"
ELLIPSIS = "\N{HORIZONTAL ELLIPSIS}"
# the studio's default transition length when ``m.transition`` names only a type
_DEFAULT_TRANSITION_MS = 500.0
# canvas keys of the draft's ``m``: reported together as one "Canvas" change
_CANVAS_KEYS = ("ratio", "res", "w", "h")
_MAX_LISTED_TEXTS = 3
_MAX_TEXT_CHARS = 40


class TrackType(IntEnum):
    VIDEO = 0
    AUDIO = 1
    TEXT = 7


def _number(value: Any) -> float | None:
    """A JSON number as a float; booleans, strings and the rest are not numbers here."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _seconds(ms: float) -> str:
    """``10000`` → ``10``, ``2500`` → ``2.5``: whole seconds without a decimal point."""
    seconds = round(ms / 1000, 1)
    return f"{seconds:g}" if seconds != int(seconds) else str(int(seconds))


def _basename(src: str) -> str:
    return PurePosixPath(urlsplit(src).path).name or src


def _quoted(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) > _MAX_TEXT_CHARS:
        flat = flat[: _MAX_TEXT_CHARS - 1].rstrip() + ELLIPSIS
    return f'"{flat}"'


@dataclass(frozen=True)
class Segment:
    """One segment of a track; ``raw`` is the segment's JSON object as it is."""

    raw: Mapping[str, Any]

    @property
    def metadata(self) -> Mapping[str, Any]:
        return _mapping(self.raw.get("m"))

    @property
    def start_ms(self) -> float | None:
        return _number(self.raw.get("s"))

    @property
    def duration_ms(self) -> float | None:
        return _number(self.raw.get("d"))

    @property
    def src(self) -> str | None:
        src = self.raw.get("src")
        return src if isinstance(src, str) and src else None

    @property
    def text(self) -> str | None:
        text = self.raw.get("text")
        return text if isinstance(text, str) and text.strip() else None

    @property
    def name(self) -> str | None:
        name = self.metadata.get("name")
        return name if isinstance(name, str) and name.strip() else None

    @property
    def volume(self) -> float | None:
        """``m.volume`` as a fraction; a value above 1 is taken to be a percentage."""
        volume = _number(self.metadata.get("volume"))
        if volume is None:
            return None
        return volume / 100 if volume > 1 else volume

    @property
    def transition_ms(self) -> float:
        """How long this segment overlaps the next (the studio's ``m.transition``)."""
        transition = self.metadata.get("transition")
        if isinstance(transition, Mapping):
            if transition.get("type") == "none":
                return 0.0
            length = _number(transition.get("d"))
            return max(length, 0.0) if length is not None else _DEFAULT_TRANSITION_MS
        if isinstance(transition, str) and transition != "none":
            return _DEFAULT_TRANSITION_MS
        return 0.0

    @property
    def label(self) -> str | None:
        """What a person would call it: its name, else its file's name."""
        if self.name:
            return self.name
        return _basename(self.src) if self.src else None


@dataclass(frozen=True)
class Track:
    """One track; ``index`` is its position in ``t`` (0-based), ``raw`` its JSON object."""

    index: int
    raw: Mapping[str, Any]

    @property
    def kind(self) -> int | None:
        """``tt`` as an int (a :class:`TrackType` when it is one we know), else None."""
        kind = self.raw.get("tt")
        if isinstance(kind, bool) or not isinstance(kind, int):
            return None
        try:
            return TrackType(kind)
        except ValueError:
            return kind

    @property
    def metadata(self) -> Mapping[str, Any]:
        return _mapping(self.raw.get("m"))

    @property
    def name(self) -> str | None:
        name = self.metadata.get("name")
        return name if isinstance(name, str) and name.strip() else None

    @property
    def segments(self) -> tuple[Segment, ...]:
        segments = self.raw.get("sg")
        if not isinstance(segments, list):
            return ()
        return tuple(Segment(item) for item in segments if isinstance(item, Mapping))

    @property
    def label(self) -> str:
        """The word a summary starts the track with."""
        if self.kind == TrackType.VIDEO:
            return "Video"
        if self.kind == TrackType.AUDIO:
            return "BGM"
        if self.kind == TrackType.TEXT:
            return "Title" if len(self.segments) == 1 else "Text"
        return "Track" if self.kind is None else f"Track (type {self.kind})"


class Draft:
    """A draft, held as its JSON (copied, so the caller's object stays the caller's).

    Equality is equality of the JSON. The view never changes the JSON; the one edit it
    offers, :meth:`replace_sources`, returns a new draft.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        if not isinstance(data, Mapping):
            raise TypeError(f"a draft is a JSON object, not {type(data).__name__}")
        self._data: dict[str, Any] = copy.deepcopy(dict(data))

    def to_json(self) -> dict[str, Any]:
        """The draft's JSON, unknown keys and key order included (a copy)."""
        return copy.deepcopy(self._data)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Draft) and other._data == self._data

    def __hash__(self) -> int:
        raise TypeError("a Draft is not hashable")

    def __repr__(self) -> str:
        return f"<Draft {self.summary()}>"

    @property
    def metadata(self) -> Mapping[str, Any]:
        return _mapping(self._data.get("m"))

    @property
    def duration_ms(self) -> float | None:
        """The draft's own ``d`` (informational), else the end of its last segment."""
        declared = _number(self._data.get("d"))
        if declared is not None:
            return declared
        ends = [end for track in self.tracks for _, end in self._spans(track)]
        return max(ends) if ends else None

    @property
    def tracks(self) -> tuple[Track, ...]:
        tracks = self._data.get("t")
        if not isinstance(tracks, list):
            return ()
        return tuple(
            Track(index, item) for index, item in enumerate(tracks) if isinstance(item, Mapping)
        )

    @property
    def is_exportable(self) -> bool:
        """nemo-api.md: ``t`` exists and at least one track has a non-empty ``sg``."""
        return isinstance(self._data.get("t"), list) and any(
            isinstance(track.raw.get("sg"), list) and track.raw["sg"] for track in self.tracks
        )

    @property
    def canvas(self) -> str | None:
        """The canvas as a person says it (``16:9``, ``1080x1920``), when the draft sets it."""
        meta = self.metadata
        width, height = _number(meta.get("w")), _number(meta.get("h"))
        parts: list[str] = []
        if isinstance(meta.get("ratio"), str):
            parts.append(meta["ratio"])
        if isinstance(meta.get("res"), int | str) and not isinstance(meta.get("res"), bool):
            parts.append(f"{meta['res']}p")
        if width is not None and height is not None:
            parts.append(f"{width:g}x{height:g}")
        return " ".join(parts) or None

    def replace_sources(self, sources: Mapping[str, str]) -> Draft:
        """A copy whose segment ``src`` values are replaced where ``sources`` names them.

        A key matches a ``src`` exactly or by its last path component, so a sandbox path
        (``/mnt/userdata/…/a.jpg``) can be swapped for the uploaded file's ``cdn_url``
        by file name, as the vendor's CLI does before exporting.
        """
        data = self.to_json()
        for track in data.get("t") or ():
            if not isinstance(track, dict) or not isinstance(track.get("sg"), list):
                continue
            for segment in track["sg"]:
                src = segment.get("src") if isinstance(segment, dict) else None
                if not isinstance(src, str):
                    continue
                replacement = sources.get(src, sources.get(_basename(src)))
                if replacement is not None:
                    segment["src"] = replacement
        return Draft(data)

    # -- reading times ------------------------------------------------------------

    def _video_end(self) -> float | None:
        ends = [
            end
            for track in self.tracks
            if track.kind == TrackType.VIDEO
            for _, end in self._segment_spans(track, None)
        ]
        return max(ends) if ends else _number(self._data.get("d"))

    def _segment_spans(
        self, track: Track, video_end: float | None
    ) -> Iterator[tuple[float, float]]:
        """(start, end) in ms of each segment whose times can be read.

        Video segments play back to back, each overlapping the next by its transition;
        audio without ``d`` lasts to the end of the video; others start at 0 by default.
        """
        cursor = 0.0
        for segment in track.segments:
            start = segment.start_ms
            length = segment.duration_ms
            if track.kind == TrackType.VIDEO:
                start = cursor if start is None else start
                if length is None or length <= 0:
                    continue
                cursor = start + length - segment.transition_ms
            else:
                start = 0.0 if start is None else start
                if length is None and track.kind == TrackType.AUDIO and video_end is not None:
                    length = video_end - start
                if length is None or length <= 0:
                    continue
            yield start, start + length

    def _spans(self, track: Track) -> list[tuple[float, float]]:
        return list(self._segment_spans(track, self._video_end()))

    # -- words ----------------------------------------------------------------------

    def _describe(self, track: Track) -> str:
        """The track's summary item without its label: ``Lo-fi (0-10s, 35%)``."""
        segments = track.segments
        if not segments:
            return "empty"
        spans = self._spans(track)
        details: list[str] = []
        if spans:
            start = min(begin for begin, _ in spans)
            end = max(finish for _, finish in spans)
            details.append(f"{_seconds(start)}-{_seconds(end)}s")
        if track.kind == TrackType.TEXT:
            what = _texts(segments)
        else:
            what = track.name or _single_label(segments) or _count(track, len(segments))
        if track.kind == TrackType.AUDIO:
            volume = next((seg.volume for seg in segments if seg.volume is not None), None)
            if volume is not None:
                details.append(f"{round(volume * 100)}%")
        return f"{what} ({', '.join(details)})" if details else what

    def _item(self, track: Track) -> str:
        return f"{track.label}: {self._describe(track)}"

    def summary(self) -> str:
        """The timeline in one line, e.g.
        ``Timeline (2 tracks): 1. Video: city.jpg (0-10s) 2. BGM: Lo-fi (0-10s, 35%)``.
        """
        tracks = self.tracks
        if not tracks:
            return "Timeline: empty"
        plural = "" if len(tracks) == 1 else "s"
        items = " ".join(
            f"{number}. {self._item(track)}" for number, track in enumerate(tracks, start=1)
        )
        return f"Timeline ({len(tracks)} track{plural}): {items}"


def _single_label(segments: tuple[Segment, ...]) -> str | None:
    return segments[0].label if len(segments) == 1 else None


def _count(track: Track, count: int) -> str:
    noun = "clip" if track.kind in (TrackType.VIDEO, TrackType.AUDIO) else "segment"
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _texts(segments: tuple[Segment, ...]) -> str:
    texts = [seg.text for seg in segments if seg.text]
    if not texts:
        return f"{len(segments)} segment{'' if len(segments) == 1 else 's'} without text"
    listed = ", ".join(_quoted(text) for text in texts[:_MAX_LISTED_TEXTS])
    hidden = len(texts) - _MAX_LISTED_TEXTS
    return f"{listed} and {hidden} more" if hidden > 0 else listed


def _changed_keys(
    before: Mapping[str, Any], after: Mapping[str, Any], skip: tuple[str, ...]
) -> set[str]:
    """Keys whose values differ, with ``m``'s keys reported by their own names."""
    keys = {
        key
        for key in before.keys() | after.keys()
        if key not in (*skip, "m") and before.get(key) != after.get(key)
    }
    raw_before, raw_after = before.get("m"), after.get("m")
    if raw_before != raw_after and any(
        value is not None and not isinstance(value, Mapping) for value in (raw_before, raw_after)
    ):
        keys.add("m")  # not an object: nothing finer to name
    meta_before, meta_after = _mapping(raw_before), _mapping(raw_after)
    keys.update(
        key
        for key in meta_before.keys() | meta_after.keys()
        if meta_before.get(key) != meta_after.get(key)
    )
    return keys


def _track_settings(before: Track, after: Track) -> set[str]:
    keys = _changed_keys(before.raw, after.raw, ("sg",))
    for old, new in zip_longest(before.segments, after.segments):
        keys |= _changed_keys(old.raw if old else {}, new.raw if new else {}, ())
    return keys


def _pair_tracks(before: Draft, after: Draft) -> Iterator[tuple[Track | None, Track | None]]:
    """Tracks matched by type in order: the k-th video track with the k-th video track.

    Matching by position would call every track after an inserted one "changed".
    """
    kinds: list[int | None] = []
    for track in (*before.tracks, *after.tracks):
        if track.kind not in kinds:
            kinds.append(track.kind)
    for kind in kinds:
        old = [track for track in before.tracks if track.kind == kind]
        new = [track for track in after.tracks if track.kind == kind]
        yield from zip_longest(old, new)


def diff(before: Draft | None, after: Draft | None) -> str:
    """What changed from ``before`` to ``after``, in words; ``No changes.`` if nothing did.

    One sentence per change: the canvas, then each track (added, removed, changed as
    its summary item reads before and after, or — when the summary reads the same — the
    names of the settings that changed), then other settings of the timeline.
    """
    old = before if before is not None else Draft({})
    new = after if after is not None else Draft({})
    if old == new:
        return "No changes."
    sentences: list[str] = []
    if old.canvas != new.canvas:
        sentences.append(f"Canvas: {old.canvas or 'default'} {ARROW} {new.canvas or 'default'}.")
    for was, now in _pair_tracks(old, new):
        if was is None and now is not None:
            sentences.append(f"Added {new._item(now)}.")
        elif now is None and was is not None:
            sentences.append(f"Removed {old._item(was)}.")
        elif was is not None and now is not None and was.raw != now.raw:
            sentences.append(_track_change(old, was, new, now))
    settings = _changed_keys(
        {key: value for key, value in old.to_json().items() if key != "m"} | {"m": _rest(old)},
        {key: value for key, value in new.to_json().items() if key != "m"} | {"m": _rest(new)},
        ("t", "d"),
    )
    if settings:
        sentences.append(f"Changed timeline settings: {', '.join(sorted(settings))}.")
    old_length, new_length = _number(old.to_json().get("d")), _number(new.to_json().get("d"))
    if old_length != new_length:
        sentences.append(f"Duration: {_length(old_length)} {ARROW} {_length(new_length)}.")
    return " ".join(sentences) if sentences else "No visible changes."


def _length(ms: float | None) -> str:
    return "unset" if ms is None else f"{_seconds(ms)}s"


def _rest(draft: Draft) -> dict[str, Any]:
    """The draft's ``m`` without the canvas keys, which are reported on their own."""
    return {key: value for key, value in draft.metadata.items() if key not in _CANVAS_KEYS}


def _track_change(old: Draft, was: Track, new: Draft, now: Track) -> str:
    before, after = old._describe(was), new._describe(now)
    if was.label != now.label:
        return f"Changed {old._item(was)} {ARROW} {new._item(now)}."
    if before != after:
        return f"Changed {was.label}: {before} {ARROW} {after}."
    settings = ", ".join(sorted(_track_settings(was, now)))
    return f"Changed {was.label} settings: {settings}." if settings else f"Changed {was.label}."
