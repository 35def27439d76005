"""Bad input gets a typed error that names the segment or file, and leaves no output."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from studio.render import (
    DraftError,
    MediaError,
    Quality,
    RenderCancelled,
    RenderOptions,
    RenderTimeout,
    render_draft,
)
from tests.studio.render.factory import files_in, photo, small_draft, solid, textured

pytestmark = pytest.mark.slow


def assert_nothing_written(out: Path, before: set[str]) -> None:
    assert not out.exists()
    assert files_in(out.parent) == before


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def test_corrupt_image_names_the_file_and_segment(media, out_dir):
    (media / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg at all")
    out = out_dir / "out.mp4"
    with pytest.raises(MediaError) as caught:
        render_draft(small_draft(photo("red.jpg"), photo("broken.jpg")), media, out)
    assert caught.value.file == "broken.jpg"
    assert caught.value.where == "t[0].sg[1]"
    assert_nothing_written(out, set())


def test_image_truncated_after_its_header_fails_mid_render_and_leaves_nothing(media, out_dir):
    textured(media / "whole.jpg", seed=3, size=(1600, 1200))
    data = (media / "whole.jpg").read_bytes()
    (media / "cut.jpg").write_bytes(data[: len(data) // 3])
    out = out_dir / "out.mp4"
    draft = small_draft(*(photo("red.jpg", 1000) for _ in range(5)), photo("cut.jpg", 1000))
    with pytest.raises(MediaError) as caught:
        render_draft(draft, media, out)
    assert caught.value.file == "cut.jpg"
    assert_nothing_written(out, set())


def test_unsupported_image_type_is_refused(media, out_dir):
    solid(media / "photo.bmp", (1, 2, 3), fmt="BMP")
    out = out_dir / "out.mp4"
    with pytest.raises(MediaError, match="unsupported image type BMP") as caught:
        render_draft(small_draft(photo("photo.bmp")), media, out)
    assert caught.value.file == "photo.bmp"
    assert_nothing_written(out, set())


def test_text_file_named_like_a_photo_is_refused(media, out_dir):
    (media / "notes.png").write_text("hello")
    out = out_dir / "out.mp4"
    with pytest.raises(MediaError, match="not an image"):
        render_draft(small_draft(photo("notes.png")), media, out)
    assert_nothing_written(out, set())


def test_missing_file_names_it(media, out_dir):
    out = out_dir / "out.mp4"
    with pytest.raises(MediaError, match="no such file") as caught:
        render_draft(small_draft(photo("https://cdn.example.com/x/gone.jpg")), media, out)
    assert caught.value.file == "gone.jpg"
    assert_nothing_written(out, set())


def test_path_outside_the_media_directory_is_not_reached(media, out_dir, tmp_path):
    solid(tmp_path / "secret.jpg", (9, 9, 9))
    out = out_dir / "out.mp4"
    with pytest.raises(MediaError, match="no such file"):
        render_draft(small_draft(photo("../secret.jpg")), media, out)


def test_empty_draft_is_refused(media, out_dir):
    out = out_dir / "out.mp4"
    with pytest.raises(DraftError, match="no video segments"):
        render_draft({"t": []}, media, out)
    assert_nothing_written(out, set())


def test_non_positive_duration_names_the_segment(media, out_dir):
    out = out_dir / "out.mp4"
    with pytest.raises(DraftError) as caught:
        render_draft(small_draft(photo("red.jpg"), photo("red.jpg", d=0)), media, out)
    assert caught.value.where == "t[0].sg[1].d"
    assert_nothing_written(out, set())


def test_volume_out_of_range_names_the_segment(media, out_dir):
    out = out_dir / "out.mp4"
    music = {"tt": 1, "sg": [{"m": {"volume": 3}}]}
    with pytest.raises(DraftError) as caught:
        render_draft(small_draft(photo("red.jpg"), extra_tracks=[music]), media, out)
    assert caught.value.where == "t[1].sg[0].m.volume"
    assert_nothing_written(out, set())


def test_unknown_transition_names_the_segment(media, out_dir):
    out = out_dir / "out.mp4"
    draft = small_draft(photo("red.jpg", transition="spin"), photo("blue.png"))
    with pytest.raises(DraftError, match="'spin'") as caught:
        render_draft(draft, media, out)
    assert caught.value.where == "t[0].sg[0].m.transition.type"
    assert_nothing_written(out, set())


def test_audio_file_that_is_not_audio_is_refused(media, out_dir):
    (media / "song.mp3").write_bytes(b"ID3 but nothing after it" * 10)
    out = out_dir / "out.mp4"
    music = {"tt": 1, "sg": [{"src": "song.mp3"}]}
    with pytest.raises(MediaError) as caught:
        render_draft(small_draft(photo("red.jpg"), extra_tracks=[music]), media, out)
    assert caught.value.file == "song.mp3"
    assert caught.value.where == "t[1].sg[0]"
    assert_nothing_written(out, set())


def test_image_given_as_audio_is_refused(media, out_dir):
    out = out_dir / "out.mp4"
    music = {"tt": 1, "sg": [{"src": "red.jpg"}]}
    with pytest.raises(MediaError, match="not a supported audio file"):
        render_draft(small_draft(photo("red.jpg"), extra_tracks=[music]), media, out)
    assert_nothing_written(out, set())


def test_render_past_its_time_limit_is_killed_and_leaves_nothing(media, out_dir):
    out = out_dir / "out.mp4"
    draft = {"m": {"ratio": "16:9"}, "t": [{"tt": 0, "sg": [photo("texture.jpg", 20_000)]}]}
    with pytest.raises(RenderTimeout):
        render_draft(draft, media, out, RenderOptions(quality=Quality.HIGH, timeout_s=0.5))
    assert_nothing_written(out, set())


def test_failed_render_keeps_an_earlier_output_untouched(media, out_dir):
    out = out_dir / "out.mp4"
    out.write_bytes(b"the earlier video")
    with pytest.raises(DraftError):
        render_draft(small_draft(photo("red.jpg", d=-1)), media, out)
    assert out.read_bytes() == b"the earlier video"
    assert files_in(out_dir) == {"out.mp4"}


def test_cancelled_render_stops_and_leaves_nothing(media, out_dir):
    out = out_dir / "out.mp4"
    cancel = threading.Event()
    seen: list[float] = []

    def progress(done: float) -> None:
        seen.append(done)
        if done > 0:
            cancel.set()

    draft = small_draft(photo("texture.jpg", 20_000))
    with pytest.raises(RenderCancelled):
        render_draft(draft, media, out, RenderOptions(progress=progress, cancel=cancel))
    assert max(seen) < 0.5
    assert_nothing_written(out, set())
