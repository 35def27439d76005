"""Reading prompts: phrases, numbers, quotes, negation and context, one rule at a time."""

# ruff: noqa: RUF001 - prompts are typed with full-width forms and curly quotes on purpose

from __future__ import annotations

import pytest

from studio.planner.reading import PHRASES, Caption, Wishes, phrase_keys, read
from studio.render.timeline import Fit, Mood, TransitionType


def asked(prompt: str, **wanted: object) -> None:
    wishes = read(prompt)
    assert {k: getattr(wishes, k) for k in wanted} == wanted


def test_no_phrase_is_listed_for_two_different_rules():
    owner: dict[str, object] = {}
    for rule, phrases in PHRASES:
        for phrase in phrases:
            for key in phrase_keys(phrase):
                assert owner.setdefault(key, rule) == rule, phrase


@pytest.mark.parametrize(
    ("prompt", "ratio"),
    [
        ("vertical", "9:16"),
        ("for TikTok", "9:16"),
        ("Instagram Reels", "9:16"),
        ("YouTube Shorts", "9:16"),
        ("for YouTube", "16:9"),
        ("landscape", "16:9"),
        ("square", "1:1"),
        ("instagram post", "4:5"),
        ("9:16", "9:16"),
        ("９：１６", "9:16"),  # full-width, as typed on a Chinese keyboard
        ("4:3", "16:9"),
        ("1080x1920", "9:16"),
        ("竖版", "9:16"),
        ("横屏", "16:9"),
        ("正方形", "1:1"),
        ("not vertical, square please", "1:1"),
        ("change it from 16:9 to 1:1", "1:1"),
        ("square instead of vertical", "1:1"),
        ("a video from my landscape photos, vertical", "9:16"),
    ],
)
def test_aspect_ratio_words(prompt: str, ratio: str):
    asked(prompt, ratio=ratio)


@pytest.mark.parametrize(
    "prompt", ["portrait photos of my family", "my landscape pictures", "a portrait of mum"]
)
def test_portrait_and_landscape_describing_photos_ask_for_no_ratio(prompt: str):
    asked(prompt, ratio=None)


def test_a_ratio_the_renderer_lacks_is_mapped_and_noted():
    wishes = read("4:3 please")
    assert wishes.ratio == "16:9"
    assert any("4:3" in n for n in wishes.notes)


@pytest.mark.parametrize(
    ("prompt", "res"),
    [("720p", 720), ("in 1080P", 1080), ("full HD", 1080), ("4K", 1080), ("1280x720", 720)],
)
def test_resolution_words(prompt: str, res: int):
    asked(prompt, res=res)


@pytest.mark.parametrize(
    ("prompt", "length_ms"),
    [
        ("15-second video", 15_000),
        ("15 s", 15_000),
        ("30 seconds", 30_000),
        ("one minute", 60_000),
        ("1 minute", 60_000),
        ("a minute long", 60_000),
        ("half a minute", 30_000),
        ("twenty-five seconds", 25_000),
        ("one minute and 30 seconds", 90_000),
        ("1 min 30 s", 90_000),
        ("30秒", 30_000),
        ("做一个十五秒的视频", 15_000),
        ("一分钟", 60_000),
        ("80s music, 20 seconds", 20_000),  # a decade is not a length
        ("from 30 s to 20 s", 20_000),
    ],
)
def test_video_length(prompt: str, length_ms: int):
    asked(prompt, length_ms=length_ms, per_photo_ms=None)


@pytest.mark.parametrize(
    ("prompt", "per_photo_ms"),
    [
        ("2 seconds per photo", 2000),
        ("3s each", 3000),
        ("show each photo for 2 seconds", 2000),
        ("2.5 seconds a picture", 2500),
        ("每张2秒", 2000),
        ("每张照片3秒", 3000),
    ],
)
def test_time_per_photo(prompt: str, per_photo_ms: int):
    asked(prompt, per_photo_ms=per_photo_ms, length_ms=None)


def test_short_is_its_own_wish_and_shorter_is_a_speed():
    asked("make it short", short=True, speed=None)
    asked("make it shorter", short=False, speed=0.7)


@pytest.mark.parametrize(
    ("prompt", "speed"),
    [("faster", 0.7), ("speed it up", 0.7), ("快一点", 0.7), ("slower", 1.4), ("慢一点", 1.4),
     ("2x faster", 0.5), ("twice as slow", 2.0), ("not too fast", None)],
)  # fmt: skip
def test_pace(prompt: str, speed: float | None):
    asked(prompt, speed=speed)


@pytest.mark.parametrize(
    ("prompt", "kind", "style_ms", "ms"),
    [
        ("smooth transitions", TransitionType.CROSSFADE, 800, None),
        ("crossfade", TransitionType.CROSSFADE, None, None),
        ("cross-fades", TransitionType.CROSSFADE, None, None),
        ("dissolve", TransitionType.CROSSFADE, None, None),
        ("fade", TransitionType.FADE_BLACK, None, None),
        ("淡入淡出", TransitionType.FADE_BLACK, None, None),
        ("slide", TransitionType.SLIDE_LEFT, None, None),
        ("wipe", TransitionType.WIPE_LEFT, None, None),
        ("zoom transitions", TransitionType.ZOOM, None, None),
        ("hard cuts", TransitionType.NONE, 0, None),
        ("no transitions", TransitionType.NONE, None, None),
        ("don't use transitions", TransitionType.NONE, None, None),
        ("不要转场", TransitionType.NONE, None, None),
        ("1 second crossfades", TransitionType.CROSSFADE, None, 1000),
        ("crossfade of 0.8 seconds", TransitionType.CROSSFADE, None, 800),
    ],
)
def test_transitions(prompt: str, kind: TransitionType, style_ms: int | None, ms: int | None):
    asked(prompt, transition=kind, transition_style_ms=style_ms, transition_ms=ms)


def test_a_length_near_a_transition_word_is_still_the_videos():
    asked("a 15 second video with crossfades", length_ms=15_000, transition_ms=None)


@pytest.mark.parametrize(
    ("prompt", "motion"),
    [("static", "none"), ("no motion", "none"), ("no zoom", "none"), ("zoom in", "zoom_in"),
     ("zoom out", "zoom_out"), ("pan left", "pan_left"), ("Ken Burns", "auto")],
)  # fmt: skip
def test_motion(prompt: str, motion: str):
    asked(prompt, motion=motion, transition=None)


def test_fit():
    asked("don't crop the photos", fit=Fit.CONTAIN)
    asked("fill the screen", fit=Fit.COVER)


@pytest.mark.parametrize(
    ("prompt", "music", "mood"),
    [
        ("with music", True, None),
        ("add BGM", True, None),
        ("background music", True, None),
        ("lo-fi", True, Mood.LOFI),
        ("lofi beats", True, Mood.LOFI),
        ("upbeat", True, Mood.UPBEAT),
        ("energetic", True, Mood.UPBEAT),
        ("calm", True, Mood.CALM),
        ("relaxing", True, Mood.CALM),
        ("chill", True, Mood.CALM),
        ("no music", False, None),
        ("without music", False, None),
        ("remove the background music", False, None),
        ("I don't want music", False, None),
        ("no lo-fi music", False, None),
        ("mute", False, None),
        ("音乐", True, None),
        ("背景音乐", True, None),
        ("不要音乐", False, None),
        ("去掉音乐", False, None),
        ("no lo-fi, calm music instead", True, Mood.CALM),
    ],
)
def test_music(prompt: str, music: bool, mood: Mood | None):
    asked(prompt, music=music, mood=mood)


def test_volume_and_own_audio():
    asked("turn the music down", music=True, volume=0.2)
    asked("louder music", music=True, volume=0.6)
    asked("use my song", music=True, own_audio=True)


@pytest.mark.parametrize(
    ("prompt", "title"),
    [
        ("titled 'Last Chance'", "Last Chance"),
        ('with the title "Last Chance"', "Last Chance"),
        ("title: Last Chance", "Last Chance"),
        ("with the title Last Chance, vertical", "Last Chance"),
        ("change the title to 'Y'", "Y"),
        ("change the title to Golden Hour and make it square", "Golden Hour"),
        ("“Curly”", "Curly"),
        ("‘Single curly’", "Single curly"),
        ("「夏日」", "夏日"),
        ("标题是夏天", "夏天"),
        ("标题：冬天", "冬天"),
        ("'Salt and Pepper'", "Salt and Pepper"),
        ("titled Salt and Pepper", "Salt and Pepper"),
        ("no music and the title 'X'", "X"),
        ("without music and titled 'Summer'", "Summer"),
    ],
)
def test_title_text(prompt: str, title: str):
    asked(prompt, title=title, remove_title=False)


def test_title_removal_and_a_title_without_text():
    asked("remove the title", remove_title=True, title=None)
    asked("no title", remove_title=True)
    asked("不要标题", remove_title=True)
    asked("remove the title 'Old'", remove_title=True, title=None)
    asked("add a title", title=None, title_without_text=True)


def test_negation_reaches_a_list_but_stops_at_an_affirming_word():
    asked("remove the title and the music", remove_title=True, music=False)
    asked("remove the title and add lo-fi music", remove_title=True, music=True, mood=Mood.LOFI)
    asked("add music but no title", remove_title=True, music=True)
    asked("no title, with music", remove_title=True, music=True)


@pytest.mark.parametrize(
    ("prompt", "captions"),
    [
        ("add a caption 'See you' at the end", (Caption("See you", "end"),)),
        ("at the end, add a caption 'See you'", (Caption("See you", "all"),)),  # another clause
        ("add a caption 'Hello'", (Caption("Hello", "all"),)),
        ("add text 'Z' at the beginning", (Caption("Z", "start"),)),
        ("'Bye' at the end", (Caption("Bye", "end"),)),
        ("add a caption saying Goodbye at the end", (Caption("Goodbye", "end"),)),
        ("加个字幕“再见”在结尾", (Caption("再见", "end"),)),
        ("titled 'A' with a caption 'B'", (Caption("B", "all"),)),
    ],
)
def test_captions(prompt: str, captions: tuple[Caption, ...]):
    asked(prompt, captions=captions)


def test_caption_removal():
    asked("remove the captions", remove_captions=True, captions=())
    asked("去掉字幕", remove_captions=True)


def test_a_second_bare_quote_is_ignored_with_a_note():
    wishes = read("'A' and 'B'")
    assert wishes.title == "A"
    assert wishes.captions == ()
    assert any("'B'" in n for n in wishes.notes)


def test_questions_and_requests_phrased_as_questions():
    assert read("what's in my timeline?").question
    assert read("is there music?").question
    assert read("现在的视频有多长").question
    assert not read("can you make it square?").question
    assert not read("Could you add some music please?").question


def test_words_that_only_look_like_instructions_are_not_read_as_any():
    wishes = read("fade out the music")
    assert (wishes.transition, wishes.understood) == (None, False)
    assert read("quick question").speed is None
    assert not read("hello there").understood
    assert read("").understood is False


def test_nothing_asked_is_the_empty_wish():
    wishes = read("hello")
    assert wishes == Wishes()


def test_a_huge_prompt_is_cut_and_noted():
    wishes = read("square " + "x" * 30_000 + " vertical")
    assert wishes.ratio == "1:1"
    assert any("first 20,000 characters" in n for n in wishes.notes)
