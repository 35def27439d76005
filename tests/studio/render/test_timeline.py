"""Reading a draft into a timeline: layout in frames, defaults, and every refusal."""

from __future__ import annotations

import pytest

from studio.render import DraftError, parse_timeline
from studio.render.timeline import (
    Fit,
    Mood,
    Motion,
    Position,
    TextStyle,
    TransitionType,
    media_name,
)


def draft(*segments, meta=None, extra=()):
    return {"m": meta or {"w": 320, "h": 180}, "t": [{"tt": 0, "sg": list(segments)}, *extra]}


def seg(d=1000, src="a.jpg", **meta):
    return {"src": src, "d": d, "m": meta}


def test_segments_play_back_to_back_and_transitions_overlap():
    timeline = parse_timeline(
        draft(
            seg(1000, transition={"type": "crossfade", "d": 500}),
            seg(2000, transition="wipe_left"),
            seg(1000),
        )
    )
    starts = [(c.start, c.frames) for c in timeline.photos]
    assert starts == [(0, 30), (15, 60), (60, 30)]
    assert timeline.frames == 90
    assert timeline.duration_s == 3.0
    assert timeline.photos[1].transition_out.type is TransitionType.WIPE_LEFT
    assert timeline.photos[1].transition_out.frames == 15
    assert timeline.photos[2].transition_out is None


def test_declared_starts_that_match_the_layout_are_accepted():
    timeline = parse_timeline(
        draft(
            {"s": 0, **seg(1000, transition={"type": "crossfade", "d": 500})},
            {"s": 500, **seg(1000)},
        )
    )
    assert timeline.frames == 45


def test_declared_start_that_contradicts_the_layout_is_refused():
    with pytest.raises(DraftError, match=r"t\[0\]\.sg\[1\]\.s"):
        parse_timeline(draft(seg(1000), {"s": 2000, **seg(1000)}))


def test_auto_motion_cycles_and_explicit_motion_wins():
    timeline = parse_timeline(draft(seg(), seg(), seg(motion="pan_up"), seg(), seg()))
    assert [c.motion for c in timeline.photos] == [
        Motion.ZOOM_IN,
        Motion.PAN_RIGHT,
        Motion.PAN_UP,
        Motion.PAN_LEFT,
        Motion.ZOOM_IN,
    ]


def test_draft_level_motion_is_the_default_for_its_segments():
    timeline = parse_timeline(draft(seg(), seg(motion="zoom_out"), meta={"motion": "none"}))
    assert [c.motion for c in timeline.photos] == [Motion.NONE, Motion.ZOOM_OUT]


@pytest.mark.parametrize(
    ("meta", "size"),
    [
        ({}, (1920, 1080)),
        ({"ratio": "9:16"}, (1080, 1920)),
        ({"ratio": "1:1"}, (1080, 1080)),
        ({"ratio": "4:5"}, (1080, 1350)),
        ({"ratio": "16:9", "res": 720}, (1280, 720)),
        ({"ratio": "9:16", "res": 720}, (720, 1280)),
        ({"ratio": "1:1", "res": 720}, (720, 720)),
        ({"ratio": "4:5", "res": 720}, (720, 900)),
        ({"w": 640, "h": 360, "ratio": "9:16"}, (640, 360)),
    ],
)
def test_canvas_comes_from_size_or_named_ratio(meta, size):
    canvas = parse_timeline({"m": meta, "t": [{"tt": 0, "sg": [seg()]}]}).canvas
    assert (canvas.width, canvas.height) == size
    assert canvas.fps == 30


@pytest.mark.parametrize(
    ("meta", "where"),
    [
        ({"w": 321, "h": 180}, "m.w"),
        ({"w": 320, "h": 4000}, "m.h"),
        ({"w": 320}, "m.h"),
        ({"w": "320", "h": 180}, "m.w"),
        ({"ratio": "21:9"}, "m.ratio"),
        ({"res": 480}, "m.res"),
        ({"fps": 0}, "m.fps"),
        ({"fps": 29.97}, "m.fps"),
        ({"fps": True}, "m.fps"),
    ],
)
def test_bad_canvas_is_refused_naming_the_field(meta, where):
    with pytest.raises(DraftError) as caught:
        parse_timeline({"m": meta, "t": [{"tt": 0, "sg": [seg()]}]})
    assert caught.value.where == where


@pytest.mark.parametrize(
    "bad",
    [None, [], "draft", {}, {"t": {}}, {"t": []}, {"t": [{"tt": 0, "sg": []}]}, {"t": [{"tt": 1}]}],
)
def test_empty_or_shapeless_draft_is_refused(bad):
    with pytest.raises(DraftError):
        parse_timeline(bad)


@pytest.mark.parametrize("d", [0, -500, "1000", None, float("nan"), True, 1e308, 10**400])
def test_non_positive_or_non_numeric_duration_is_refused_naming_the_segment(d):
    with pytest.raises(DraftError) as caught:
        parse_timeline(draft(seg(), {"src": "b.jpg", "d": d}))
    assert caught.value.where == "t[0].sg[1].d"


def test_missing_duration_is_refused():
    with pytest.raises(DraftError, match=r"t\[0\]\.sg\[0\].*no duration"):
        parse_timeline(draft({"src": "a.jpg"}))


@pytest.mark.parametrize("src", [None, "", 5, "https://cdn.example.com/", "/mnt/userdata/.."])
def test_photo_segment_without_a_usable_src_is_refused(src):
    with pytest.raises(DraftError, match=r"t\[0\]\.sg\[0\]"):
        parse_timeline(draft({"src": src, "d": 1000}))


def test_unknown_transition_is_refused_naming_it():
    with pytest.raises(DraftError, match="'spin'") as caught:
        parse_timeline(draft(seg(transition="spin"), seg()))
    assert caught.value.where == "t[0].sg[0].m.transition.type"


def test_transition_longer_than_its_segment_is_refused():
    with pytest.raises(DraftError, match="too short for its transitions"):
        parse_timeline(draft(seg(400, transition={"type": "crossfade", "d": 500}), seg(2000)))


def test_transitions_in_and_out_must_fit_inside_a_segment():
    with pytest.raises(DraftError, match=r"t\[0\]\.sg\[1\]"):
        parse_timeline(
            draft(
                seg(2000, transition={"type": "crossfade", "d": 600}),
                seg(1000, transition={"type": "crossfade", "d": 600}),
                seg(2000),
            )
        )


def test_none_transition_and_zero_length_transition_are_cuts():
    timeline = parse_timeline(
        draft(seg(transition="none"), seg(transition={"type": "crossfade", "d": 0}), seg())
    )
    assert [c.transition_out for c in timeline.photos] == [None, None, None]
    assert timeline.frames == 90


def test_transition_on_the_last_segment_is_ignored():
    timeline = parse_timeline(draft(seg(transition="crossfade")))
    assert timeline.photos[0].transition_out is None
    assert timeline.frames == 30


@pytest.mark.parametrize(("field", "value"), [("motion", "spin"), ("fit", "stretch")])
def test_unknown_motion_or_fit_is_refused(field, value):
    with pytest.raises(DraftError, match=f"t\\[0\\]\\.sg\\[0\\]\\.m\\.{field}"):
        parse_timeline(draft(seg(**{field: value})))


@pytest.mark.parametrize("volume", [1.5, -0.1, "35%", None])
def test_volume_out_of_range_is_refused(volume):
    music = {"tt": 1, "sg": [{"m": {"volume": volume}}]}
    with pytest.raises(DraftError) as caught:
        parse_timeline(draft(seg(), extra=[music]))
    assert caught.value.where == "t[1].sg[0].m.volume"


def test_audio_defaults_to_the_whole_video_with_a_fade_out():
    music = {"tt": 1, "sg": [{"m": {"volume": 0.35, "name": "Lo-fi"}}]}
    (clip,) = parse_timeline(draft(seg(4000), extra=[music])).audio
    assert clip.src is None
    assert (clip.start_s, clip.duration_s, clip.volume) == (0.0, 4.0, 0.35)
    assert clip.loop is True
    assert clip.fade_out_s == 1.5
    assert clip.mood is Mood.UPBEAT


def test_audio_past_the_video_end_is_cut_or_dropped():
    tracks = {
        "tt": 1,
        "sg": [{"src": "a.mp3", "s": 500, "d": 5000}, {"src": "b.mp3", "s": 3000, "d": 1000}],
    }
    (clip,) = parse_timeline(draft(seg(2000), extra=[tracks])).audio
    assert clip.duration_s == 1.5


def test_text_defaults_and_its_cut_at_the_video_end():
    text = {"tt": 7, "sg": [{"s": 500, "d": 5000, "text": "Summer Sale"}]}
    (clip,) = parse_timeline(draft(seg(2000), extra=[text])).texts
    assert (clip.start, clip.frames) == (15, 45)
    assert clip.position is Position.CENTER
    assert clip.style is TextStyle.SHADOW
    assert clip.color == (255, 255, 255)
    assert clip.fade_frames == 9


@pytest.mark.parametrize(
    ("segment", "where"),
    [
        ({"s": 0, "d": 1000}, "t[1].sg[0]"),
        ({"s": 0, "d": 1000, "text": "  "}, "t[1].sg[0]"),
        ({"s": 0, "d": 1000, "text": "x", "m": {"color": "red"}}, "t[1].sg[0].m.color"),
        ({"s": 0, "d": 1000, "text": "x", "m": {"size": 0.9}}, "t[1].sg[0].m.size"),
        ({"s": 0, "d": 1000, "text": "x", "m": {"position": "left"}}, "t[1].sg[0].m.position"),
        ({"s": 0, "d": 1000, "text": "x", "m": {"style": "neon"}}, "t[1].sg[0].m.style"),
        ({"s": -1, "d": 1000, "text": "x"}, "t[1].sg[0].s"),
        ({"s": 0, "d": 0, "text": "x"}, "t[1].sg[0].d"),
    ],
)
def test_bad_text_segment_is_refused_naming_the_field(segment, where):
    with pytest.raises(DraftError) as caught:
        parse_timeline(draft(seg(), extra=[{"tt": 7, "sg": [segment]}]))
    assert caught.value.where == where


def test_unknown_keys_and_track_types_are_harmless():
    timeline = parse_timeline(
        {
            "m": {"w": 320, "h": 180, "vendor": {"x": 1}},
            "id": "draft_1",
            "t": [
                {
                    "tt": 0,
                    "name": "main",
                    "sg": [{"src": "a.jpg", "d": 1000, "zz": [1], "m": {"q": 2}}],
                },
                {"tt": 3, "sg": [{"sticker": "star"}]},
                {"tt": "video", "sg": "whatever"},
                {"tt": 7, "sg": [{"s": 0, "d": 500, "text": "Hi", "font": "x"}]},
            ],
        }
    )
    assert len(timeline.photos) == 1
    assert len(timeline.texts) == 1


def test_two_video_tracks_with_segments_are_refused():
    with pytest.raises(DraftError, match="only one video track"):
        parse_timeline({"t": [{"tt": 0, "sg": [seg()]}, {"tt": 0, "sg": [seg()]}]})


def test_photo_fit_defaults_to_cover():
    assert parse_timeline(draft(seg())).photos[0].fit is Fit.COVER


@pytest.mark.parametrize(
    ("src", "name"),
    [
        ("photo.jpg", "photo.jpg"),
        ("/mnt/userdata/abc/photo.jpg", "photo.jpg"),
        ("https://cdn.example.com/u/1/summer%20sale.png?sig=abc", "summer sale.png"),
        ("..\\..\\windows\\photo.webp", "photo.webp"),
        ("../../etc/passwd", "passwd"),
    ],
)
def test_media_reference_names_a_file_in_the_media_directory(src, name):
    assert media_name(src) == name
