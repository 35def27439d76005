"""One chat turn: read the prompt, decide what kind of turn it is, and plan it.

- No draft with a video track yet (or "start over"): GENERATE from the session's
  images, in upload order; without images, ANSWER asking for photos.
- A draft exists and the prompt asks for changes: EDIT; if none of them changes
  anything ("make it square" on a square video), ANSWER saying so.
- A question ("what's in my timeline?") or a prompt with nothing the rules
  understand ("hello"): ANSWER describing the timeline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from studio.planner.describe import (
    MOOD_LABELS,
    MOTION_WORDS,
    listing,
    quoted,
    seconds,
    summary,
    transition_words,
)
from studio.planner.drafts import (
    Generated,
    draft_fps,
    edit,
    generate,
    joint,
    length_of,
    video_segments,
)
from studio.planner.plans import MediaItem, Plan, TurnKind
from studio.planner.reading import Wishes, read
from studio.render.timeline import TRACK_AUDIO, TRACK_TEXT, Mood

_EXAMPLES = "for example 'make it vertical', 'add lo-fi music' or 'change the title to …'"


def plan(prompt: str, media: Sequence[MediaItem], current: Mapping[str, Any] | None) -> Plan:
    """Plan the turn ``prompt`` asks for, given the session's media and current draft.

    A pure function of its arguments: no I/O, no randomness, and ``current`` is
    never changed (an edit works on a deep copy). No prompt text makes it raise.
    """
    wishes = read(prompt)
    images = [m for m in media if m.kind == "image"]
    segments = video_segments(current) if current is not None else None
    if current is None or segments is None or wishes.start_over:
        if not images:
            return _ask_for_photos(media)
        return _generated(wishes, media, images, started_over=segments is not None)
    if wishes.question or not wishes.understood:
        return _answer(current, wishes)
    outcome = edit(current, wishes, media)
    if not outcome.changes:
        reply = f"Nothing to change: {'; '.join(outcome.assumptions) or 'it is already so'}."
        return Plan(
            TurnKind.ANSWER, None, None, f"{reply} {_describe(current)}", (), outcome.assumptions
        )
    length = length_of(video_segments(outcome.draft) or [], draft_fps(outcome.draft))
    reply = f"Done: {'; '.join(outcome.changes)}. The video is now {seconds(length)} long."
    return Plan(
        TurnKind.EDIT,
        None,
        outcome.draft,
        reply + _notes(" Note: ", outcome.assumptions),
        outcome.changes,
        outcome.assumptions,
    )


def _notes(lead: str, notes: Sequence[str]) -> str:
    return f"{lead}{'; '.join(notes)}." if notes else ""


def _ask_for_photos(media: Sequence[MediaItem]) -> Plan:
    videos = [m.name for m in media if m.kind == "video"]
    audio = [m.name for m in media if m.kind == "audio"]
    reply = (
        "Please upload some photos first: the video is made from the session's images "
        "(jpg, png, gif, webp or heic)."
    )
    if videos:
        reply += (
            f" The video files ({listing(videos)}) can't be used: the studio shows photos only."
        )
    if audio:
        reply += f" The audio file {quoted(audio[-1])} will be used as the music."
    return Plan(TurnKind.ANSWER, None, None, reply, (), ())


def _generated(
    wishes: Wishes, media: Sequence[MediaItem], images: Sequence[MediaItem], *, started_over: bool
) -> Plan:
    videos = [m.name for m in media if m.kind == "video"]
    made: Generated = generate(wishes, images, [m for m in media if m.kind == "audio"])
    assumptions = list(made.final.assumptions)
    if videos:
        assumptions.append(
            f"left out the video file{'s' * (len(videos) != 1)} {listing(videos)}: "
            "the studio's renderer shows photos only"
        )
    if not wishes.understood:
        assumptions.insert(0, "found no instructions in the message: made a plain slideshow")
    if started_over:
        assumptions.insert(0, "started over from the uploaded photos, as asked")
    reply = _generated_reply(made.final.draft, len(images)) + _notes(" Assumed: ", assumptions)
    return Plan(
        TurnKind.GENERATE,
        made.raw,
        made.final.draft,
        reply,
        made.final.changes,
        tuple(assumptions),
    )


def _generated_reply(draft: Mapping[str, Any], count: int) -> str:
    meta = draft["m"]
    segments = video_segments(draft) or []
    total = draft["d"]
    parts = []
    if count > 1:
        kind, ms = joint(segments[0])
        parts.append(transition_words(kind, ms))
    parts.append(MOTION_WORDS.get(meta["motion"], str(meta["motion"])))
    for track in draft["t"]:
        for segment in track["sg"]:
            parts.extend(_extra_words(track["tt"], segment))
    per_photo = seconds(total / count)
    return (
        f"Made a {seconds(total)} {meta['ratio']} video at {meta['res']}p from {count} "
        f"photo{'s' * (count != 1)} (about {per_photo} each), with {listing(parts)}."
    )


def _extra_words(kind: int, segment: Mapping[str, Any]) -> list[str]:
    meta = segment["m"]
    if kind == TRACK_AUDIO:
        if "src" in segment:
            return [f"your audio {quoted(meta['name'])} as the music"]
        mood = MOOD_LABELS[Mood(meta["mood"])].lower()
        return [f"{mood} background music at {meta['volume']:.0%} volume"]
    if kind == TRACK_TEXT:
        return [f"the {meta['name'].lower()} {quoted(segment['text'])}"]
    return []


def _describe(current: Mapping[str, Any]) -> str:
    segments = video_segments(current) or []
    return summary(current, length_of(segments, draft_fps(current)))


def _answer(current: Mapping[str, Any], wishes: Wishes) -> Plan:
    if wishes.question:
        return Plan(TurnKind.ANSWER, None, None, _describe(current), (), wishes.notes)
    assumptions = (
        *wishes.notes,
        "found no change to make in the message: the timeline is unchanged",
    )
    reply = f"{_describe(current)} Tell me what to change, {_EXAMPLES}."
    return Plan(TurnKind.ANSWER, None, None, reply, (), assumptions)
