"""``reelyard render``: a real process for the main path, CliRunner for the refusals."""

from __future__ import annotations

import json
import subprocess
import sys

import av
import pytest
from click.testing import CliRunner

from reelyard import __version__
from reelyard.cli import MAX_DRAFT_BYTES, main
from tests.studio.render.factory import photo, small_draft, solid


@pytest.fixture
def workspace(tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    solid(media / "a.jpg", (200, 30, 30))
    solid(media / "b.png", (30, 30, 200))
    draft = tmp_path / "draft.json"
    draft.write_text(
        json.dumps(small_draft(photo("a.jpg", 600, transition="crossfade"), photo("b.png", 600)))
    )
    return tmp_path


@pytest.mark.slow
def test_render_command_writes_the_video_and_says_what_it_made(workspace):
    out = workspace / "out" / "video.mp4"
    done = subprocess.run(
        [sys.executable, "-m", "reelyard.cli", "render", str(workspace / "draft.json"),
         "--media", str(workspace / "media"), "-o", str(out), "--quality", "draft"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "320x180" in done.stdout
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "h264"


def test_version_is_printed():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def run(args):
    return CliRunner().invoke(main, ["render", *map(str, args)])


def test_missing_draft_file_exits_2_with_a_message(workspace):
    result = run([workspace / "nope.json", "-o", workspace / "o.mp4"])
    assert result.exit_code == 2
    assert "nope.json: cannot be read" in result.output
    assert "Traceback" not in result.output


def test_malformed_json_draft_exits_2(workspace):
    (workspace / "bad.json").write_text("{not json")
    result = run([workspace / "bad.json", "-o", workspace / "o.mp4"])
    assert result.exit_code == 2
    assert "not valid JSON" in result.output


def test_binary_draft_exits_2(workspace):
    (workspace / "bin.json").write_bytes(b"\xff\xfe\x00garbage")
    result = run([workspace / "bin.json", "-o", workspace / "o.mp4"])
    assert result.exit_code == 2
    assert "not valid JSON" in result.output


def test_oversized_draft_exits_2_without_being_read(workspace):
    big = workspace / "big.json"
    with big.open("wb") as handle:
        handle.truncate(MAX_DRAFT_BYTES + 1)
    result = run([big, "-o", workspace / "o.mp4"])
    assert result.exit_code == 2
    assert "too large for a draft" in result.output


def test_invalid_draft_exits_2_naming_the_segment(workspace):
    (workspace / "zero.json").write_text(json.dumps(small_draft(photo("a.jpg", 0))))
    result = run(
        [workspace / "zero.json", "--media", workspace / "media", "-o", workspace / "o.mp4"]
    )
    assert result.exit_code == 2
    assert "t[0].sg[0].d" in result.output
    assert not (workspace / "o.mp4").exists()


def test_missing_media_exits_2_naming_the_file(workspace):
    (workspace / "gone.json").write_text(json.dumps(small_draft(photo("gone.jpg"))))
    result = run(
        [workspace / "gone.json", "--media", workspace / "media", "-o", workspace / "o.mp4"]
    )
    assert result.exit_code == 2
    assert "gone.jpg" in result.output


def test_unknown_quality_is_a_usage_error(workspace):
    result = run([workspace / "draft.json", "-o", workspace / "o.mp4", "--quality", "ultra"])
    assert result.exit_code == 2
    assert "ultra" in result.output
