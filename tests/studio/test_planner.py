"""The planner: prompts in, drafts the renderer accepts out, with the asked properties.

Every draft a test produces goes through ``parse_timeline``, so a draft whose
declared starts, lengths or transitions the renderer would refuse fails here.
"""

# ruff: noqa: RUF001 - prompts are typed with full-width forms and curly quotes on purpose

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pytest

from studio.planner import MediaItem, Plan, TurnKind, plan
from studio.render import parse_timeline
from studio.render.timeline import TRACK_AUDIO, TRACK_TEXT, TRACK_VIDEO

PHOTOS = tuple(
    MediaItem(
        ref=f"http://127.0.0.1:8600/cdn/sess_{'0' * 32}/{i:024x}.jpg",
        name=f"beach-{i}.jpg",
        kind="image",
        width=4032,
        height=3024,
    )
    for i in range(1, 6)
)
SONG = MediaItem(
    "http://127.0.0.1:8600/cdn/s/song.mp3", "our song.mp3", "audio", duration_ms=95_000
)
CLIP = MediaItem("http://127.0.0.1:8600/cdn/s/clip.mp4", "drone.mp4", "video", 1920, 1080, 8000)

#: the sessions the edits start from: the draft a first request made
BASE = "Make a 15-second vertical video with lo-fi music, titled 'Last Chance'"
PLAIN = "square, no music, 10 seconds, hard cuts"


@cache
def start(prompt: str) -> dict[str, Any]:
    made = plan(prompt, PHOTOS, None)
    assert made.kind is TurnKind.GENERATE
    assert made.draft is not None
    return made.draft


def run(prompt: str, after: str | None = None) -> Plan:
    current = copy.deepcopy(start(after)) if after else None
    return plan(prompt, PHOTOS, current)


# --- reading a draft back ---------------------------------------------------------


def segments(draft: dict[str, Any], kind: int) -> list[dict[str, Any]]:
    return [s for t in draft["t"] if t["tt"] == kind for s in t["sg"]]


def facts(draft: dict[str, Any]) -> dict[str, Any]:
    """What a test checks about a draft, read after the renderer has accepted it."""
    timeline = parse_timeline(draft)
    video = segments(draft, TRACK_VIDEO)
    audio = segments(draft, TRACK_AUDIO)
    texts = segments(draft, TRACK_TEXT)
    total = draft["d"]
    captions = []
    for s in texts:
        if s["m"]["name"] == "Caption":
            when = "all" if s["d"] == total else "end" if s["s"] + s["d"] == total else "start"
            captions.append((s["text"], when))
    return {
        "ms": round(timeline.frames * 1000 / timeline.canvas.fps),
        "ratio": draft["m"].get("ratio"),
        "res": draft["m"].get("res"),
        "photos": len(video),
        "transition": {s["m"]["transition"]["type"] for s in video[:-1]} or None,
        "transition_ms": {s["m"]["transition"]["d"] for s in video[:-1]} or None,
        "motion": draft["m"].get("motion"),
        "music": (audio[0]["m"].get("mood") or audio[0]["m"]["name"]) if audio else None,
        "volume": audio[0]["m"]["volume"] if audio else None,
        "title": next((s["text"] for s in texts if s["m"]["name"] == "Title"), None),
        "captions": captions,
    }


SAME = object()  # the case does not check this property


@dataclass(frozen=True)
class Case:
    prompt: str
    kind: TurnKind
    after: str | None = None  # the first request that made the current draft
    ms: int | None = None
    ratio: object = SAME
    res: object = SAME
    photos: int = 5
    transition: object = SAME  # a type name, or None for no transitions at all
    transition_ms: object = SAME
    motion: object = SAME
    music: object = SAME  # a mood, an uploaded file's name, or None
    volume: object = SAME
    title: object = SAME
    captions: object = SAME
    reply_has: tuple[str, ...] = field(default=())


CASES = [
    # first requests, English
    Case(BASE, TurnKind.GENERATE, ms=15_000, ratio="9:16", res=1080, transition={"crossfade"},
         transition_ms={500}, music="lofi", volume=0.35, title="Last Chance", captions=[]),
    Case("turn these photos into a smooth slideshow video with transitions", TurnKind.GENERATE,
         ms=15_000, ratio="16:9", transition={"crossfade"}, transition_ms={800}, music="upbeat"),
    Case("convert these photos into a 720p MP4 for TikTok", TurnKind.GENERATE, ratio="9:16",
         res=720, ms=15_000),
    Case("square video, 30 seconds, hard cuts", TurnKind.GENERATE, ratio="1:1", ms=30_000,
         transition={"none"}),
    Case("Instagram Reels, 3s each, fade transitions, no music", TurnKind.GENERATE,
         ratio="9:16", ms=15_000, transition={"fade_black"}, music=None),
    Case("YouTube video, one minute, calm music, with the title Summer in Lisbon",
         TurnKind.GENERATE, ratio="16:9", ms=60_000, music="calm", title="Summer in Lisbon"),
    Case("a short landscape video with slide transitions and relaxing BGM", TurnKind.GENERATE,
         ratio="16:9", ms=15_000, transition={"slide_left"}, music="calm"),
    Case("4:5 please, 2 seconds per photo, wipe", TurnKind.GENERATE, ratio="4:5", ms=10_000,
         transition={"wipe_left"}),
    Case("portrait, 1 minute, zoom transitions, energetic music", TurnKind.GENERATE,
         ratio="9:16", ms=60_000, transition={"zoom"}, music="upbeat"),
    Case("1080p 16:9, 20 s, dissolve, “Café ☕ 2024”", TurnKind.GENERATE, ratio="16:9",
         res=1080, ms=20_000, transition={"crossfade"}, title="Café ☕ 2024"),
    Case("static photos, no transitions, 10 seconds", TurnKind.GENERATE, ms=10_000,
         transition={"none"}, motion="none"),
    Case("make the video faster", TurnKind.GENERATE, ms=10_500),
    Case("slow zoom in, 1.5 seconds per photo", TurnKind.GENERATE, ms=7_500, motion="zoom_in"),
    Case("no music, no title, square", TurnKind.GENERATE, ratio="1:1", music=None, title=None),
    # first requests the rules do not understand: a default slideshow
    Case("", TurnKind.GENERATE, ms=15_000, ratio="16:9", res=1080, transition={"crossfade"},
         transition_ms={500}, motion="auto", music="upbeat", volume=0.35, title=None,
         reply_has=("no instructions",)),
    Case("🎉🎉🎉 !!!", TurnKind.GENERATE, ms=15_000, ratio="16:9", music="upbeat"),
    # first requests, Chinese
    Case("做一个30秒的竖屏视频，配上背景音乐，标题是「夏日」", TurnKind.GENERATE, ratio="9:16",
         ms=30_000, music="upbeat", title="夏日"),
    Case("横屏，每张2秒，淡入淡出，不要音乐", TurnKind.GENERATE, ratio="16:9", ms=10_000,
         transition={"fade_black"}, music=None),
    Case("正方形 15秒 舒缓的音乐", TurnKind.GENERATE, ratio="1:1", ms=15_000, music="calm"),
    Case("YouTube Shorts with the title: 夏天的回忆", TurnKind.GENERATE, ratio="9:16",
         title="夏天的回忆"),
    # edits of BASE (9:16, 15 s, crossfades, lo-fi, title 'Last Chance')
    Case("make it faster", TurnKind.EDIT, BASE, ms=10_500, ratio="9:16", music="lofi",
         title="Last Chance", transition={"crossfade"}),
    Case("slower please", TurnKind.EDIT, BASE, ms=21_000, ratio="9:16"),
    Case("change the title to 'Golden Hour'", TurnKind.EDIT, BASE, ms=15_000,
         title="Golden Hour", music="lofi", ratio="9:16"),
    Case("remove the title", TurnKind.EDIT, BASE, title=None, music="lofi", ms=15_000),
    Case("remove the music", TurnKind.EDIT, BASE, music=None, title="Last Chance"),
    Case("use upbeat music instead", TurnKind.EDIT, BASE, music="upbeat", volume=0.35),
    Case("make it square", TurnKind.EDIT, BASE, ratio="1:1", res=1080, ms=15_000),
    Case("720p", TurnKind.EDIT, BASE, res=720, ratio="9:16"),
    Case("make it 20 seconds", TurnKind.EDIT, BASE, ms=20_000, transition_ms={500}),
    Case("use wipe transitions", TurnKind.EDIT, BASE, ms=15_000, transition={"wipe_left"}),
    Case("add a caption 'See you soon' at the end", TurnKind.EDIT, BASE,
         captions=[("See you soon", "end")], title="Last Chance"),
    Case("add a caption 'Hello'", TurnKind.EDIT, BASE, captions=[("Hello", "all")]),
    Case("remove the title and the music, make it 16:9 and 720p", TurnKind.EDIT, BASE,
         title=None, music=None, ratio="16:9", res=720, ms=15_000),
    Case("turn the music down", TurnKind.EDIT, BASE, volume=0.2, music="lofi"),
    Case("2 seconds per photo, no motion", TurnKind.EDIT, BASE, ms=10_000, motion="none"),
    Case("start over as a square video", TurnKind.GENERATE, BASE, ratio="1:1", title=None),
    # edits in Chinese
    Case("改成横屏，快一点", TurnKind.EDIT, BASE, ratio="16:9", ms=10_500),
    Case("去掉音乐", TurnKind.EDIT, BASE, music=None),
    Case("慢一点", TurnKind.EDIT, BASE, ms=21_000),
    Case("标题改成“新年快乐”", TurnKind.EDIT, BASE, title="新年快乐"),
    Case("用硬切转场", TurnKind.EDIT, BASE, transition={"none"}, ms=15_000),
    # edits of PLAIN (1:1, 10 s, hard cuts, no music, no title)
    Case("add lo-fi music", TurnKind.EDIT, PLAIN, music="lofi", volume=0.35, ms=10_000),
    Case("add smooth transitions", TurnKind.EDIT, PLAIN, transition={"crossfade"},
         transition_ms={800}, ms=10_000),
    Case("加上背景音乐和标题“旅行”", TurnKind.EDIT, PLAIN, music="upbeat", title="旅行"),
    # questions and requests with nothing to do
    Case("what's in my timeline?", TurnKind.ANSWER, BASE, reply_has=("5 photos", "Lo-fi")),
    Case("hello", TurnKind.ANSWER, BASE, reply_has=("Last Chance",)),
    Case("make it vertical", TurnKind.ANSWER, BASE, reply_has=("already 9:16",)),
    Case("有没有背景音乐？", TurnKind.ANSWER, BASE, reply_has=("Music",)),
]  # fmt: skip


#: the words a change phrase uses for each property: what changed must be said
CHANGE_WORDS = {
    "ratio": ("aspect ratio", "canvas"),
    "res": ("resolution", "canvas"),
    "photos": ("photo",),
    "transition": ("transitions",),
    "transition_ms": ("transitions",),
    "motion": ("motion",),
    "music": ("music",),
    "volume": ("music",),
    "title": ("title",),
    "captions": ("caption",),
}


def _expected(case: Case) -> dict[str, Any]:
    keys = ("ratio", "res", "photos", "transition", "transition_ms", "motion", "music")
    keys += ("volume", "title", "captions")
    wanted = {k: getattr(case, k) for k in keys if getattr(case, k) is not SAME}
    if case.ms is not None:
        wanted["ms"] = case.ms
    return wanted


@pytest.mark.parametrize(
    "case", CASES, ids=[("edit: " if c.after else "") + c.prompt for c in CASES]
)
def test_prompt_gives_a_draft_with_the_asked_properties(case: Case):
    before = copy.deepcopy(start(case.after)) if case.after else None
    made = run(case.prompt, case.after)

    assert made.kind is case.kind, made.reply
    for phrase in case.reply_has:
        assert phrase in made.reply
    if case.kind is TurnKind.ANSWER:
        assert made.draft is None
        assert made.changes == ()
        return
    assert made.draft is not None
    got = facts(made.draft)
    wanted = _expected(case)
    assert {k: got[k] for k in wanted} == wanted
    if case.ms is not None:
        assert made.draft["d"] == case.ms  # declared to the millisecond, played to the frame
    if case.kind is TurnKind.EDIT:
        assert made.changes, "an edit says what it changed"
        assert before is not None
        untouched = {k: v for k, v in facts(before).items() if k not in wanted and k != "ms"}
        changed = {k for k, v in untouched.items() if got[k] != v}
        said = " ".join(made.changes)
        assert all(any(w in said for w in CHANGE_WORDS[k]) for k in changed), changed


@pytest.mark.parametrize("case", [c for c in CASES if c.kind is not TurnKind.ANSWER][:25])
def test_every_segment_carries_what_the_studio_needs(case: Case):
    made = run(case.prompt, case.after)
    assert made.draft is not None
    draft = made.draft
    timeline = parse_timeline(draft)
    video = segments(draft, TRACK_VIDEO)
    assert draft["m"]["fps"] == 30
    assert {"ratio", "res"} <= draft["m"].keys()
    assert [s["src"] for s in video] == [p.ref for p in PHOTOS]
    assert [s["m"]["name"] for s in video] == [p.name for p in PHOTOS]
    assert [c.start for c in timeline.photos] == [round(s["s"] * 30 / 1000) for s in video]
    assert all("motion" in s["m"] for s in video)
    assert all({"type", "d"} == s["m"]["transition"].keys() for s in video[:-1])
    assert "transition" not in video[-1]["m"]
    for music in segments(draft, TRACK_AUDIO):
        assert (music["s"], music["d"]) == (0, draft["d"])
    for text in segments(draft, TRACK_TEXT):
        assert {"s", "d", "text"} <= text.keys()
        assert {"position", "size", "name"} <= text["m"].keys()


def test_title_is_a_top_text_for_the_first_three_seconds():
    draft = start(BASE)
    (title,) = segments(draft, TRACK_TEXT)
    assert (title["s"], title["d"], title["text"]) == (0, 3000, "Last Chance")
    assert title["m"] == {"position": "top", "size": 0.08, "name": "Title"}


def test_end_caption_is_at_the_bottom_over_the_last_three_seconds():
    made = run("add a caption 'Z' at the end", BASE)
    assert made.draft is not None
    (caption,) = [s for s in segments(made.draft, TRACK_TEXT) if s["m"]["name"] == "Caption"]
    assert (caption["s"], caption["d"], caption["m"]["position"]) == (12_000, 3000, "bottom")
    timeline = parse_timeline(made.draft)
    assert timeline.texts[-1].start + timeline.texts[-1].frames == timeline.frames


def test_raw_draft_is_the_video_track_alone_with_the_same_length():
    made = run(BASE)
    assert made.raw_draft is not None
    assert made.draft is not None
    raw = made.raw_draft
    timeline = parse_timeline(raw)
    assert [t["tt"] for t in raw["t"]] == [TRACK_VIDEO]
    assert all(c.transition_out is None for c in timeline.photos)
    assert raw["d"] == made.draft["d"] == 15_000
    assert timeline.duration_s == 15.0


# --- properties of every plan ------------------------------------------------------


def test_the_same_input_gives_the_same_plan():
    for prompt, after in [(BASE, None), ("make it faster and add a caption 'x'", BASE)]:
        first = run(prompt, after)
        second = plan(prompt, list(PHOTOS), copy.deepcopy(start(after)) if after else None)
        assert first == second
        assert json.dumps(first.draft, sort_keys=True) == json.dumps(second.draft, sort_keys=True)


@pytest.mark.parametrize(
    "prompt",
    [
        "make it faster, square and 720p",
        "remove the title and the music",
        "use wipe transitions and add a caption 'bye' at the end",
        "add the new photos",
        "zoom out, don't crop",
    ],
)
def test_an_edit_never_changes_the_draft_it_was_given(prompt: str):
    current = copy.deepcopy(start(BASE))
    current["t"][0]["sg"][0]["m"]["transition"] = "crossfade"  # a short form, to be rewritten
    snapshot = copy.deepcopy(current)
    made = plan(prompt, (*PHOTOS, PHOTOS[0]), current)
    assert current == snapshot
    assert made.draft is not current


def test_an_edit_keeps_unknown_keys_everywhere():
    current = copy.deepcopy(start(BASE))
    current["vendor"] = {"x": [1, 2]}
    current["m"]["canvas_hint"] = "keep"
    current["t"][0]["locked"] = True
    current["t"][0]["sg"][2]["id"] = "seg-3"
    current["t"][0]["sg"][2]["m"]["filter"] = {"name": "warm"}
    current["t"].append({"tt": 99, "sg": [{"anything": 1}]})
    current["t"][2]["sg"][0]["m"]["color"] = "#FFCC00"

    made = plan("make it faster and square, change the title to 'X', remove the music", (), current)

    assert made.kind is TurnKind.EDIT
    assert made.draft is not None
    draft = made.draft
    assert draft["vendor"] == {"x": [1, 2]}
    assert draft["m"]["canvas_hint"] == "keep"
    assert draft["t"][0]["locked"] is True
    assert draft["t"][0]["sg"][2]["id"] == "seg-3"
    assert draft["t"][0]["sg"][2]["m"]["filter"] == {"name": "warm"}
    assert {"tt": 99, "sg": [{"anything": 1}]} in draft["t"]
    (title,) = segments(draft, TRACK_TEXT)
    assert (title["text"], title["m"]["color"]) == ("X", "#FFCC00")
    assert facts(draft)["ms"] == 10_500


GARBAGE = [
    "",
    " ",
    "\x00\x01\x02",
    "?!.,;:'\"“”‘’「」《》",
    "'",
    '"unterminated',
    "🎬" * 500,
    "\ud800\udfff lone surrogates \udc80",
    "a" * 100_000,
    "no no no no not not from from remove",
    "titled",
    "title: ",
    "0 seconds, 0s per photo, 99999999999 minutes, -5 s, 1e9s",
    "9:16 16:9 1:1 4:5 4:3 1:30 1920x1080 720x1280 0x0",
    "\u202eRTL override\u202c قصير 竖屏!!",
    "\u200b\ufeff zero width",
    "make it " + "faster " * 2000,
    "each photo for 0.001 seconds",
    "one minute per photo",
    "add a caption '' at the end",
    "'x' 'y' 'z' \"w\"",
]


@pytest.mark.parametrize("prompt", GARBAGE, ids=range(len(GARBAGE)))
def test_no_prompt_makes_the_planner_fail(prompt: str):
    for after in (None, BASE, PLAIN):
        made = run(prompt, after)
        assert isinstance(made.reply, str)
        assert made.reply
        assert (made.draft is None) == (made.kind is TurnKind.ANSWER)
        if made.draft is not None:
            parse_timeline(made.draft)
            json.dumps(made.draft)
        if made.raw_draft is not None:
            parse_timeline(made.raw_draft)


def test_random_prompts_always_give_a_draft_the_renderer_accepts():
    rng = random.Random(20240601)
    words = [
        "make", "it", "no", "music", "square", "9:16", "title", "'Hi'", "faster", "3s",
        "each", "fade", "at the end", "caption", "“x”", "30 seconds", "remove", "lo-fi",
        "竖屏", "去掉", "标题", "快一点", "not", "from", "per photo", "smooth", "2x faster",
        "zoom", ",", ".", "and", "720p", "hard cuts", "louder", "add the new photos",
    ]  # fmt: skip
    for _ in range(300):
        prompt = " ".join(rng.choices(words, k=rng.randint(1, 12)))
        made = run(prompt, rng.choice([None, BASE, PLAIN]))
        if made.draft is not None:
            parse_timeline(made.draft)


def test_without_photos_the_answer_asks_for_them():
    made = plan("make a video with music", [SONG, CLIP], None)
    assert made.kind is TurnKind.ANSWER
    assert made.draft is None
    assert made.raw_draft is None
    assert "upload some photos" in made.reply
    assert "drone.mp4" in made.reply


def test_an_uploaded_audio_file_becomes_the_music():
    made = plan("a vertical video", (*PHOTOS, SONG), None)
    assert made.draft is not None
    (music,) = segments(made.draft, TRACK_AUDIO)
    assert music["src"] == SONG.ref
    assert music["m"]["name"] == "our song.mp3"
    assert music["m"]["volume"] == 0.35
    assert parse_timeline(made.draft).audio[0].src == SONG.ref
    assert "our song.mp3" in made.reply


def test_no_music_leaves_the_uploaded_audio_out_and_says_so():
    made = plan("no music", (*PHOTOS, SONG), None)
    assert made.draft is not None
    assert segments(made.draft, TRACK_AUDIO) == []
    assert any("our song.mp3" in a for a in made.assumptions)


def test_an_edit_can_switch_to_the_uploaded_song():
    made = plan("use my song", (*PHOTOS, SONG), copy.deepcopy(start(BASE)))
    assert made.draft is not None
    (music,) = segments(made.draft, TRACK_AUDIO)
    assert (music["src"], music["m"]["name"]) == (SONG.ref, SONG.name)


def test_videos_are_left_out_and_the_reply_says_so():
    made = plan("", (*PHOTOS, CLIP), None)
    assert made.draft is not None
    assert CLIP.ref not in json.dumps(made.draft)
    assert "drone.mp4" in made.reply
    assert len(segments(made.draft, TRACK_VIDEO)) == 5


def test_defaults_are_named_in_the_assumptions():
    made = run("")
    joined = " ".join(made.assumptions)
    for default in ("16:9", "1080p", "3 s per photo", "crossfade", "upbeat"):
        assert default in joined


@pytest.mark.parametrize(
    ("prompt", "text"),
    [
        ("titled ‘Anna’s Day’", "Anna’s Day"),
        ("it's Tom's birthday, titled 'Tom's 30th'", "Tom's 30th"),
        ('title: "Ünïcödé  spaced"', "Ünïcödé  spaced"),
        ("标题：『东京之夜』", "东京之夜"),
        ("《春节》", "春节"),
        ("“Calm Before the Storm”", "Calm Before the Storm"),
        ("call it Last Chance", "Last Chance"),
        ("'مرحبا 👋🏽'", "مرحبا 👋🏽"),
    ],
)
def test_title_text_is_kept_exactly(prompt: str, text: str):
    made = run(prompt)
    assert made.draft is not None
    assert facts(made.draft)["title"] == text


def test_words_inside_a_title_are_not_instructions():
    made = run("“Calm Before the Storm”, vertical")
    assert made.draft is not None
    assert facts(made.draft)["music"] == "upbeat"  # not calm
    assert facts(made.draft)["ratio"] == "9:16"


def test_too_short_a_length_is_raised_to_fit_the_photos_and_said():
    photos = [MediaItem(f"http://h/cdn/s/{i}.jpg", f"{i}.jpg", "image") for i in range(20)]
    made = plan("5 seconds", photos, None)
    assert made.draft is not None
    assert facts(made.draft)["ms"] == 10_000
    assert any("at least 10 s" in a for a in made.assumptions)
    assert any("hard cuts" in a for a in made.assumptions)


def test_long_transitions_are_shortened_to_leave_each_photo_on_screen():
    made = run("3 second crossfades, 10 seconds")
    assert made.draft is not None
    got = facts(made.draft)
    assert got["ms"] == 10_000
    (ms,) = got["transition_ms"]
    assert 0 < ms < 3000
    assert any("shortened" in a for a in made.assumptions)


def test_text_and_music_follow_a_new_length():
    captioned = run("add a caption 'bye' at the end", BASE).draft
    assert captioned is not None
    made = plan("make it faster", PHOTOS, captioned)
    assert made.draft is not None
    draft = made.draft
    (music,) = segments(draft, TRACK_AUDIO)
    title, caption = segments(draft, TRACK_TEXT)
    assert music["d"] == draft["d"] == 10_500
    assert (title["s"], title["d"]) == (0, 3000)
    assert (caption["s"], caption["d"]) == (7_500, 3000)


def test_new_photos_are_appended_and_the_length_grows_with_them():
    current = copy.deepcopy(start(BASE))
    extra = [MediaItem(f"http://h/cdn/s/new{i}.jpg", f"new{i}.jpg", "image") for i in range(2)]
    made = plan("add the new photos", (*PHOTOS, *extra), current)
    assert made.kind is TurnKind.EDIT
    assert made.draft is not None
    video = segments(made.draft, TRACK_VIDEO)
    assert [s["src"] for s in video[-2:]] == [e.ref for e in extra]
    assert facts(made.draft)["ms"] == 21_000
    assert "2 photos added" in made.changes


def test_a_question_answers_with_the_timeline_in_words():
    made = run("how long is it?", BASE)
    assert made.kind is TurnKind.ANSWER
    assert "15 s" in made.reply
    assert "9:16" in made.reply
    assert "Last Chance" in made.reply


def test_a_draft_without_video_segments_is_generated_afresh():
    made = plan("square", PHOTOS, {"t": [{"tt": 0, "sg": []}], "m": {}})
    assert made.kind is TurnKind.GENERATE
    assert made.draft is not None
    assert facts(made.draft)["ratio"] == "1:1"


def test_an_edit_on_a_custom_canvas_replaces_it_with_the_named_one():
    current = copy.deepcopy(start(PLAIN))
    current["m"] = {"w": 1280, "h": 720, "fps": 25}
    made = plan("make it vertical", PHOTOS, current)
    assert made.draft is not None
    assert made.draft["m"] == {"ratio": "9:16", "res": 720, "fps": 25}
    assert parse_timeline(made.draft).canvas.width == 720


def test_retiming_at_another_frame_rate_keeps_the_starts_the_renderer_computes():
    current = copy.deepcopy(start(BASE))
    current["m"]["fps"] = 24
    for seg in current["t"][0]["sg"][:-1]:
        seg["m"]["transition"] = {"type": "crossfade", "d": 450}  # not whole frames at 24 fps
    for seg in current["t"][0]["sg"]:
        seg.pop("s")
    made = plan("make it 12 seconds", PHOTOS, current)
    assert made.draft is not None
    timeline = parse_timeline(made.draft)
    assert abs(timeline.frames / 24 - 12) <= 1 / 24
