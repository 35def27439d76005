"""Local video storage: whole files or none, and only well-formed keys."""

from __future__ import annotations

import pytest

from reelyard.storage import LocalStorage, StorageError, video_key


def test_a_stored_video_is_found_by_its_key_and_the_source_is_moved(tmp_path):
    storage = LocalStorage(tmp_path / "videos")
    source = tmp_path / "render.mp4"
    source.write_bytes(b"mp4 bytes")
    storage.put(video_key("job_1"), source)
    stored = storage.path("job_1.mp4")
    assert stored is not None
    assert stored.read_bytes() == b"mp4 bytes"
    assert not source.exists()
    assert [p.name for p in (tmp_path / "videos").iterdir()] == ["job_1.mp4"]


def test_storing_again_replaces_the_file(tmp_path):
    storage = LocalStorage(tmp_path)
    for content in (b"first", b"second"):
        source = tmp_path / "in.mp4"
        source.write_bytes(content)
        storage.put("job_1.mp4", source)
    stored = storage.path("job_1.mp4")
    assert stored is not None
    assert stored.read_bytes() == b"second"


def test_an_unknown_key_has_no_path_and_deleting_it_is_harmless(tmp_path):
    storage = LocalStorage(tmp_path)
    assert storage.path("job_2.mp4") is None
    storage.delete("job_2.mp4")


@pytest.mark.parametrize(
    "key", ["../etc/passwd", "job_1.mov", "", "a/b.mp4", ".mp4", "x" * 90 + ".mp4"]
)
def test_keys_that_could_escape_the_directory_are_refused(tmp_path, key):
    with pytest.raises(StorageError):
        LocalStorage(tmp_path).path(key)


def test_a_failed_move_leaves_no_partial_file(tmp_path):
    storage = LocalStorage(tmp_path / "videos")
    with pytest.raises(FileNotFoundError):
        storage.put("job_1.mp4", tmp_path / "missing.mp4")
    assert list((tmp_path / "videos").iterdir()) == []
