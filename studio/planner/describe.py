"""Drafts and changes in plain words, for replies and for "what's in my timeline?"."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from studio.render.timeline import TRACK_AUDIO, TRACK_TEXT, TRACK_VIDEO, Mood, TransitionType

MOOD_LABELS: dict[str, str] = {Mood.LOFI: "Lo-fi", Mood.UPBEAT: "Upbeat", Mood.CALM: "Calm"}
TRANSITION_WORDS = {
    TransitionType.CROSSFADE: "crossfades",
    TransitionType.FADE_BLACK: "fades through black",
    TransitionType.SLIDE_LEFT: "slides to the left",
    TransitionType.SLIDE_RIGHT: "slides to the right",
    TransitionType.WIPE_LEFT: "wipes to the left",
    TransitionType.WIPE_RIGHT: "wipes to the right",
    TransitionType.ZOOM: "zoom transitions",
    TransitionType.NONE: "hard cuts",
}
MOTION_WORDS = {
    "auto": "gentle Ken Burns motion",
    "none": "no motion",
    "zoom_in": "a slow zoom in",
    "zoom_out": "a slow zoom out",
    "pan_left": "a pan to the left",
    "pan_right": "a pan to the right",
    "pan_up": "a pan upwards",
    "pan_down": "a pan downwards",
}
_LISTED_NAMES = 4


def seconds(ms: float) -> str:
    """``15 s``, ``10.5 s``, ``1 min 30 s``."""
    whole = round(ms / 10) / 100
    if whole < 60:
        return f"{whole:g} s"
    minutes, rest = divmod(round(whole), 60)
    return f"{minutes} min" + (f" {rest} s" if rest else "")


def transition_words(kind: str, ms: float) -> str:
    try:
        words = TRANSITION_WORDS[TransitionType(kind)]
    except ValueError:
        return f"'{kind}' transitions"
    return words if kind == TransitionType.NONE else f"{words} ({round(ms)} ms)"


def listing(items: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def quoted(text: str) -> str:
    return f"'{text}'"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: Any, default: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


def summary(draft: Mapping[str, Any], total_ms: float) -> str:
    """The timeline in a few sentences: photos, length, canvas, transitions, music, text."""
    meta = _mapping(draft.get("m"))
    tracks = (
        [t for t in draft.get("t", []) if isinstance(t, Mapping)]
        if isinstance(draft.get("t"), list)
        else []
    )
    segments: dict[int, list[Mapping[str, Any]]] = {
        TRACK_VIDEO: [],
        TRACK_AUDIO: [],
        TRACK_TEXT: [],
    }
    for track in tracks:
        kind = track.get("tt")
        if kind in segments and isinstance(track.get("sg"), list):
            segments[kind].extend(s for s in track["sg"] if isinstance(s, Mapping))
    photos = segments[TRACK_VIDEO]
    names = [str(_mapping(s.get("m")).get("name") or s.get("src") or "?") for s in photos]
    shown = names[:_LISTED_NAMES] + (["…"] if len(names) > _LISTED_NAMES else [])
    if "w" in meta or "h" in meta:
        canvas = f"{meta.get('w')}x{meta.get('h')}"
    else:
        canvas = f"{meta.get('ratio', '16:9')} at {meta.get('res', 1080)}p"
    parts = [
        (
            f"Your timeline has {len(photos)} photo{'s' * (len(photos) != 1)} "
            f"({', '.join(shown)}), {seconds(total_ms)} long, {canvas}, {meta.get('fps', 30)} fps."
        ),
        _transitions_sentence(photos),
        _music_sentence(segments[TRACK_AUDIO]),
        _text_sentence(segments[TRACK_TEXT]),
    ]
    return " ".join(p for p in parts if p)


def _transitions_sentence(photos: Sequence[Mapping[str, Any]]) -> str:
    kinds: list[str] = []
    for seg in photos[:-1]:
        value = _mapping(seg.get("m")).get("transition")
        if isinstance(value, str):
            kinds.append(transition_words(value, 500))
        elif isinstance(value, Mapping):
            kinds.append(transition_words(str(value.get("type")), _number(value.get("d"), 500)))
        else:
            kinds.append(TRANSITION_WORDS[TransitionType.NONE])
    if not kinds:
        return ""
    distinct = list(dict.fromkeys(kinds))
    if len(distinct) == 1:
        return f"Between photos: {distinct[0]}."
    return f"Between photos: {listing(distinct)}."


def _music_sentence(audio: Sequence[Mapping[str, Any]]) -> str:
    if not audio:
        return "No music."
    described = []
    for seg in audio:
        meta = _mapping(seg.get("m"))
        name = meta.get("name") or seg.get("src") or MOOD_LABELS.get(str(meta.get("mood")), "music")
        described.append(f"{name} at {_number(meta.get('volume'), 1.0):.0%} volume")
    return f"Music: {listing(described)}."


def _text_sentence(texts: Sequence[Mapping[str, Any]]) -> str:
    if not texts:
        return "No text on screen."
    described = []
    for seg in texts:
        meta = _mapping(seg.get("m"))
        role = str(meta.get("name") or "text").lower()
        start = _number(seg.get("s"))
        end = start + _number(seg.get("d"))
        described.append(f"{role} {quoted(str(seg.get('text')))} ({seconds(start)}-{seconds(end)})")
    return f"On screen: {listing(described)}."
