"""Uploaded media: the type comes from the bytes, never the name; properties are read."""

from __future__ import annotations

import io

import pytest
from PIL import ExifTags, Image

from studio.envelopes import NemoFailure
from studio.media import SizeLimit, describe, safe_name, sniff, store
from tests.studio.api import samples


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("data", "extension", "kind"),
    [
        (samples.image_bytes(), "png", "image"),
        (samples.image_bytes(fmt="JPEG"), "jpg", "image"),
        (samples.image_bytes(fmt="GIF"), "gif", "image"),
        (samples.image_bytes(fmt="WEBP"), "webp", "image"),
        (samples.wav_bytes(0.2), "wav", "audio"),
        (samples.mp3_bytes(0.2), "mp3", "audio"),
        (samples.mp4_bytes(), "mp4", "video"),
    ],
)
def test_the_kind_is_read_from_the_content(tmp_path, data, extension, kind):
    # every file is named as something it is not
    assert sniff(_write(tmp_path, "misleading.txt", data), "misleading.txt") == (extension, kind)


def test_a_png_named_mp3_is_an_image(tmp_path):
    path = _write(tmp_path, "song.mp3", samples.image_bytes())
    assert sniff(path, "song.mp3") == ("png", "image")


@pytest.mark.parametrize(
    ("data", "detail"),
    [(samples.TEXT, "unsupported file type;"), (samples.ZIP, "looks like application/zip")],
)
def test_content_of_no_accepted_type_is_4001(tmp_path, data, detail):
    path = _write(tmp_path, "photo.jpg", data)
    with pytest.raises(NemoFailure) as caught:
        sniff(path, "photo.jpg")
    assert caught.value.code == 4001
    assert detail in caught.value.message
    assert "accepted: images jpg" in caught.value.message


def test_an_image_cut_short_is_4001(tmp_path):
    data = samples.image_bytes(fmt="JPEG", width=400, height=300)
    path = _write(tmp_path, "cut.jpg", data[: len(data) // 2])
    with pytest.raises(NemoFailure) as caught:
        describe(path, "cut.jpg", "image")
    assert caught.value.code == 4001


def test_a_video_header_without_a_video_is_4001(tmp_path):
    data = samples.mp4_bytes()
    path = _write(tmp_path, "clip.mp4", data[:64])
    with pytest.raises(NemoFailure) as caught:
        describe(path, "clip.mp4", "video")
    assert caught.value.code == 4001


def test_properties_of_a_photo_a_clip_and_a_sound(tmp_path):
    photo = describe(_write(tmp_path, "a.png", samples.image_bytes(64, 48)), "a.png", "image")
    assert photo == (64, 48, None, None)
    width, height, duration, fps = describe(
        _write(tmp_path, "b.mp4", samples.mp4_bytes(96, 64, fps=10, frames=20)), "b.mp4", "video"
    )
    assert (width, height, fps) == (96, 64, 10.0)
    assert duration == pytest.approx(2.0, abs=0.15)
    _, _, seconds, _ = describe(_write(tmp_path, "c.wav", samples.wav_bytes(1.5)), "c", "audio")
    assert seconds == pytest.approx(1.5, abs=0.01)


def test_the_size_limit_stops_the_copy_past_the_limit():
    target = io.BytesIO()
    with pytest.raises(NemoFailure) as caught:
        SizeLimit(10, "big.png").copy([b"12345", b"67890", b"x"], target)
    assert caught.value.code == 4002
    assert "big.png is larger than" in caught.value.message
    assert target.getvalue() == b"1234567890"  # nothing past the limit was written


def test_the_size_limit_hashes_what_it_copies():
    target = io.BytesIO()
    size, digest = SizeLimit(10, "ok").copy([b"12345", b"67890"], target)
    assert size == 10
    assert digest == "c775e7b757ede630cd0aa1113bd102661ab38829ca52a6422ab782862f268646"


def test_store_names_the_file_by_its_hash_and_keeps_one_copy(tmp_path):
    media_dir = tmp_path / "media"
    data = samples.image_bytes()
    kept = []
    for attempt in range(2):
        scratch = _write(tmp_path, f"scratch{attempt}", data)
        kept.append(
            store(
                scratch,
                name="../../holiday.png",
                size=len(data),
                digest="ab" * 32,
                media_dir=media_dir,
                url_base="http://studio/cdn/sess_1",
            )
        )
    first, second = kept
    assert first == second
    assert first.stored_name == "ab" * 12 + ".png"
    assert first.cdn_url == "http://studio/cdn/sess_1/" + first.stored_name
    assert [p.name for p in media_dir.iterdir()] == [first.stored_name]
    assert "stored_name" not in first.as_json()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\photo.jpg", "photo.jpg"),
        ("tab\there\x00.png", "tabhere.png"),
        ("", "upload"),
        (None, "upload"),
        ("x" * 500, "x" * 200),
        ("dir/", "upload"),
    ],
)
def test_safe_name_keeps_a_printable_last_part(raw, expected):
    assert safe_name(raw) == expected


@pytest.mark.parametrize(("orientation", "size"), [(1, (64, 48)), (3, (64, 48)), (6, (48, 64))])
def test_a_photo_turned_by_its_exif_orientation_is_described_upright(tmp_path, orientation, size):
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), "teal").save(buffer, format="JPEG", exif=exif)
    path = _write(tmp_path, "turned.jpg", buffer.getvalue())
    assert describe(path, "turned.jpg", "image") == (*size, None, None)


def test_a_file_already_described_is_not_decoded_again(tmp_path, monkeypatch):
    data = samples.image_bytes(32, 24)
    digest = "cd" * 32
    stored = store(
        _write(tmp_path, "one", data), name="a.png", size=len(data), digest=digest,
        media_dir=tmp_path / "m1", url_base="http://studio/cdn/s1",
    )  # fmt: skip

    def decode(*args: object) -> None:
        raise AssertionError("decoded again")

    monkeypatch.setattr("studio.media.describe", decode)
    again = store(
        _write(tmp_path, "two", data), name="a.png", size=len(data), digest=digest,
        media_dir=tmp_path / "m2", url_base="http://studio/cdn/s2",
    )  # fmt: skip
    assert (again.width, again.height) == (stored.width, stored.height) == (32, 24)
