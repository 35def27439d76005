"""The draft model on hand-written drafts: round trips, exportability, summary and diff."""

from __future__ import annotations

import copy
import json

import pytest

from nemo import Draft, TrackType, diff

TYPICAL = {
    "t": [
        {
            "tt": 0,
            "m": {"name": "city timelapse"},
            "sg": [{"src": "a.jpg", "d": 5000}, {"src": "b.jpg", "d": 5000}],
        },
        {"tt": 1, "sg": [{"d": 10000, "m": {"name": "Lo-fi", "volume": 0.35}}]},
        {"tt": 7, "sg": [{"text": "Urban Dreams", "s": 0, "d": 3000}]},
    ]
}

WITH_UNKNOWN_KEYS = {
    "zz_first": True,
    "t": [
        {
            "tt": 0,
            "id": "trk_1",
            "sg": [
                {
                    "src": "/mnt/userdata/u1/a.jpg",
                    "d": 4000,
                    "m": {"motion": "zoom_in", "x-effects": [{"blur": 0.2}]},
                    "vendor": None,
                }
            ],
            "locked": False,
        },
        {"tt": 42, "sg": [{"shape": "star"}]},
    ],
    "m": {"ratio": "9:16", "theme": {"palette": ["#fff", "#000"]}},
    "d": 4000,
    "ü-key": "ünïcode",
}


def test_a_draft_round_trips_to_the_same_json_with_unknown_keys_and_order():
    draft = Draft(WITH_UNKNOWN_KEYS)
    assert json.dumps(draft.to_json(), ensure_ascii=False) == json.dumps(
        WITH_UNKNOWN_KEYS, ensure_ascii=False
    )


def test_a_draft_owns_a_copy_of_its_json():
    source = copy.deepcopy(TYPICAL)
    draft = Draft(source)
    source["t"].clear()
    exported = draft.to_json()
    exported["t"][0]["sg"].clear()
    assert draft.to_json() == TYPICAL


def test_drafts_are_equal_by_their_json_and_not_hashable():
    assert Draft(TYPICAL) == Draft(copy.deepcopy(TYPICAL))
    assert Draft(TYPICAL) != Draft(WITH_UNKNOWN_KEYS)
    assert Draft(TYPICAL) != TYPICAL
    with pytest.raises(TypeError):
        hash(Draft(TYPICAL))


def test_a_draft_must_be_a_json_object():
    with pytest.raises(TypeError, match="JSON object"):
        Draft(["t"])  # type: ignore[arg-type]


def test_the_views_read_tracks_segments_and_metadata():
    draft = Draft(WITH_UNKNOWN_KEYS)
    video, other = draft.tracks
    assert video.kind is TrackType.VIDEO
    assert other.kind == 42
    (segment,) = video.segments
    assert (segment.src, segment.start_ms, segment.duration_ms) == (
        "/mnt/userdata/u1/a.jpg",
        None,
        4000,
    )
    assert segment.metadata["x-effects"] == [{"blur": 0.2}]
    assert segment.label == "a.jpg"
    assert draft.metadata["theme"] == {"palette": ["#fff", "#000"]}
    assert draft.duration_ms == 4000
    assert draft.canvas == "9:16"


@pytest.mark.parametrize(
    ("data", "exportable"),
    [
        (TYPICAL, True),
        ({}, False),
        ({"t": []}, False),
        ({"t": [{"tt": 0, "sg": []}]}, False),
        ({"t": [{"tt": 0}]}, False),
        ({"t": [{"tt": 0, "sg": []}, {"tt": 7, "sg": [{"text": "x"}]}]}, True),
        ({"t": "tracks"}, False),
        ({"t": [{"tt": 0, "sg": "segments"}]}, False),
        ({"tracks": [{"tt": 0, "sg": [{"d": 1}]}]}, False),
    ],
    ids=[
        "typical",
        "no-t",
        "no-tracks",
        "empty-sg",
        "no-sg",
        "one-track-with-segments",
        "t-not-a-list",
        "sg-not-a-list",
        "long-key-names",
    ],
)
def test_is_exportable_needs_t_and_a_track_with_segments(data, exportable):
    assert Draft(data).is_exportable is exportable


SUMMARIES = [
    (
        TYPICAL,
        (
            "Timeline (3 tracks): 1. Video: city timelapse (0-10s) 2. BGM: Lo-fi (0-10s, 35%) "
            '3. Title: "Urban Dreams" (0-3s)'
        ),
    ),
    (
        {
            "t": [
                {
                    "tt": 0,
                    "sg": [
                        {
                            "src": "/mnt/userdata/x/a.jpg",
                            "d": 4000,
                            "m": {"transition": "crossfade"},
                        },
                        {
                            "src": "b.jpg",
                            "d": 4000,
                            "m": {"transition": {"type": "fade_black", "d": 1000}},
                        },
                        {"src": "c.jpg", "d": 3500},
                    ],
                }
            ]
        },
        "Timeline (1 track): 1. Video: 3 clips (0-10s)",
    ),
    (
        {"t": [{"tt": 0, "sg": [{"src": "https://cdn.test/p/beach.jpg?sig=1", "d": 2500}]}]},
        "Timeline (1 track): 1. Video: beach.jpg (0-2.5s)",
    ),
    (
        {
            "t": [
                {"tt": 0, "sg": [{"src": "a", "d": 8000}]},
                {"tt": 1, "sg": [{"src": "song.mp3", "s": 2000, "m": {"volume": 80}}]},
            ]
        },
        "Timeline (2 tracks): 1. Video: a (0-8s) 2. BGM: song.mp3 (2-8s, 80%)",
    ),
    (
        {
            "t": [
                {
                    "tt": 7,
                    "sg": [
                        {"text": "One", "s": 0, "d": 1000},
                        {"text": "Two\nlines", "s": 1000, "d": 1000},
                        {"text": "Three", "s": 2000, "d": 1000},
                        {"text": "Four", "s": 3000, "d": 1000},
                    ],
                }
            ]
        },
        'Timeline (1 track): 1. Text: "One", "Two lines", "Three" and 1 more (0-4s)',
    ),
    (
        {
            "t": [
                {
                    "tt": 7,
                    "sg": [{"text": "A really long title that goes on and on forever", "d": 2000}],
                }
            ]
        },
        'Timeline (1 track): 1. Title: "A really long title that goes on and on\u2026" (0-2s)',
    ),
    (
        {
            "t": [
                {"tt": 5, "sg": [{"d": 1000}]},
                {"sg": "nope"},
                "junk",
                {"tt": "0", "sg": [{}]},
                {"tt": 0, "sg": []},
            ],
            "m": "x",
        },
        (
            "Timeline (4 tracks): 1. Track (type 5): 1 segment (0-1s) 2. Track: empty "
            "3. Track: 1 segment 4. Video: empty"
        ),
    ),
    ({}, "Timeline: empty"),
    (
        WITH_UNKNOWN_KEYS,
        "Timeline (2 tracks): 1. Video: a.jpg (0-4s) 2. Track (type 42): 1 segment",
    ),
]


@pytest.mark.parametrize(
    ("data", "summary"),
    SUMMARIES,
    ids=[
        "typical",
        "transitions-overlap",
        "single-photo-by-url",
        "audio-to-the-end-percent-volume",
        "captions",
        "long-title",
        "malformed-tracks",
        "empty",
        "unknown-keys",
    ],
)
def test_summary_reads_the_timeline_in_one_line(data, summary):
    assert Draft(data).summary() == summary


BASE = {
    "t": [
        {
            "tt": 0,
            "m": {"name": "city timelapse"},
            "sg": [
                {"src": "a.jpg", "d": 5000, "m": {"motion": "zoom_in"}},
                {"src": "b.jpg", "d": 5000},
            ],
        },
        {"tt": 7, "sg": [{"text": "Urban Dreams", "s": 0, "d": 3000}]},
    ],
    "m": {"ratio": "16:9", "fps": 30},
    "d": 10000,
    "vendor": {"k": 1},
}
MUSIC = {"tt": 1, "sg": [{"d": 10000, "m": {"name": "Lo-fi", "volume": 0.35}}]}


def edited(change):
    data = copy.deepcopy(BASE)
    change(data)
    return data


DIFFS = [
    ("same", BASE, "No changes."),
    ("add-music", edited(lambda d: d["t"].insert(1, MUSIC)), "Added BGM: Lo-fi (0-10s, 35%)."),
    ("remove-title", edited(lambda d: d["t"].pop(1)), 'Removed Title: "Urban Dreams" (0-3s).'),
    (
        "retitle",
        edited(lambda d: d["t"][1]["sg"][0].update(text="City Nights")),
        'Changed Title: "Urban Dreams" (0-3s) \u2192 "City Nights" (0-3s).',
    ),
    ("ratio", edited(lambda d: d["m"].update(ratio="9:16")), "Canvas: 16:9 \u2192 9:16."),
    (
        "motion-only",
        edited(lambda d: d["t"][0]["sg"][0]["m"].update(motion="pan_left")),
        "Changed Video settings: motion.",
    ),
    (
        "longer",
        edited(lambda d: (d["t"][0]["sg"].append({"src": "c.jpg", "d": 5000}), d.update(d=15000))),
        (
            "Changed Video: city timelapse (0-10s) \u2192 city timelapse (0-15s). "
            "Duration: 10s \u2192 15s."
        ),
    ),
    (
        "unknown-settings",
        edited(lambda d: (d["m"].update(fps=24), d.update(vendor={"k": 2}))),
        "Changed timeline settings: fps, vendor.",
    ),
    (
        "title-becomes-captions",
        edited(lambda d: d["t"][1]["sg"].append({"text": "The End", "s": 7000, "d": 3000})),
        'Changed Title: "Urban Dreams" (0-3s) \u2192 Text: "Urban Dreams", "The End" (0-10s).',
    ),
    (
        "music-and-ratio",
        edited(lambda d: (d["t"].append(MUSIC), d["m"].update(ratio="1:1"))),
        "Canvas: 16:9 \u2192 1:1. Added BGM: Lo-fi (0-10s, 35%).",
    ),
]


@pytest.mark.parametrize(
    ("after", "words"), [row[1:] for row in DIFFS], ids=[row[0] for row in DIFFS]
)
def test_diff_says_what_an_edit_changed(after, words):
    assert diff(Draft(BASE), Draft(after)) == words


def test_diff_from_no_draft_lists_everything_as_added():
    after = Draft({"t": [{"tt": 0, "sg": [{"src": "a.jpg", "d": 3000}]}]})
    assert diff(None, after) == "Added Video: a.jpg (0-3s)."


def test_diff_of_two_missing_drafts_is_no_change():
    assert diff(None, None) == "No changes."


def test_diff_matches_tracks_by_type_so_an_inserted_track_changes_nothing_else():
    after = edited(lambda d: d["t"].insert(0, MUSIC))
    assert diff(Draft(BASE), Draft(after)) == "Added BGM: Lo-fi (0-10s, 35%)."


def test_replace_sources_swaps_sandbox_paths_for_cdn_urls_by_file_name():
    draft = Draft(WITH_UNKNOWN_KEYS)
    replaced = draft.replace_sources({"a.jpg": "https://cdn.test/a.jpg"})
    assert replaced.tracks[0].segments[0].src == "https://cdn.test/a.jpg"
    assert draft.tracks[0].segments[0].src == "/mnt/userdata/u1/a.jpg"  # the original stays
    expected = copy.deepcopy(WITH_UNKNOWN_KEYS)
    expected["t"][0]["sg"][0]["src"] = "https://cdn.test/a.jpg"
    assert replaced.to_json() == expected


def test_replace_sources_prefers_an_exact_match_and_leaves_the_rest():
    draft = Draft({"t": [{"tt": 0, "sg": [{"src": "/x/a.jpg"}, {"src": "b.jpg"}, {"d": 1}]}]})
    replaced = draft.replace_sources({"/x/a.jpg": "exact", "a.jpg": "by-name"})
    assert [seg.src for seg in replaced.tracks[0].segments] == ["exact", "b.jpg", None]


def test_the_repr_is_the_summary():
    assert repr(Draft({})) == "<Draft Timeline: empty>"
