"""The encoder: x264 in-process, the audio mixed by ffmpeg apart, both in one MP4."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from studio.render import (
    EncoderError,
    Quality,
    RenderOptions,
    draft_frames,
    parse_timeline,
    render_draft,
)
from studio.render.encode import TAG_BT709, default_ffmpeg, raw_input_args, x264_args
from tests.studio.render.factory import RED, files_in, frames_rgb, photo, small_draft, wav_tone

pytestmark = pytest.mark.slow


def failing_ffmpeg(folder: Path) -> Path:
    """A stand-in for ffmpeg that complains and fails, as a broken build would."""
    script = folder / "ffmpeg"
    script.write_text("#!/bin/sh\necho 'the audio graph is broken' >&2\nexit 3\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_output_says_bt709_limited_range_as_its_frames_are(media, tmp_path):
    out = tmp_path / "out.mp4"
    render_draft(small_draft(photo("red.jpg", 500)), media, out)
    with av.open(str(out)) as container:
        context = container.streams.video[0].codec_context
        assert (context.color_range, context.colorspace) == (1, 1)  # MPEG (tv), BT.709
        assert (context.color_primaries, context.color_trc) == (1, 1)  # BT.709
    # decoded as BT.709 limited range, the colour is the photo's
    seen = frames_rgb(out, [5])[5].reshape(-1, 3).mean(axis=0)
    assert np.abs(seen - np.array(RED)).max() <= 6


def test_audio_is_interleaved_with_the_video_not_appended(media, tmp_path):
    (media / "tone.wav").write_bytes(wav_tone(tmp_path / "tone.wav", 4.0).read_bytes())
    draft = small_draft(
        photo("texture.jpg", 4000),
        extra_tracks=[{"tt": 1, "sg": [{"src": "tone.wav", "s": 0, "d": 4000}]}],
    )
    out = tmp_path / "out.mp4"
    render_draft(draft, media, out)
    with av.open(str(out)) as container:
        order = [
            packet.stream.type
            for packet in sorted(
                (p for p in container.demux() if p.pos is not None and p.pos >= 0),
                key=lambda p: p.pos or 0,
            )
        ]
    first_audio = order.index("audio")
    last_audio = len(order) - 1 - order[::-1].index("audio")
    videos = [i for i, kind in enumerate(order) if kind == "video"]
    # the audio starts in the first half of the video's data and ends in its second half
    assert first_audio < videos[len(videos) // 2] < last_audio


def test_a_failing_audio_mix_is_an_encoder_error_with_ffmpegs_words(media, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "out.mp4"
    options = RenderOptions(ffmpeg=str(failing_ffmpeg(tmp_path)))
    with pytest.raises(EncoderError) as caught:
        render_draft(small_draft(photo("red.jpg", 500)), media, out, options)
    assert "status 3" in str(caught.value)
    assert "the audio graph is broken" in caught.value.stderr_tail
    assert caught.value.retryable
    assert files_in(out_dir) == set()


def test_a_missing_ffmpeg_is_an_encoder_error(media, tmp_path):
    out = tmp_path / "out.mp4"
    options = RenderOptions(ffmpeg=str(tmp_path / "no-such-ffmpeg"))
    with pytest.raises(EncoderError, match="ffmpeg could not start"):
        render_draft(small_draft(photo("red.jpg", 500)), media, out, options)
    assert not out.exists()


def test_draft_frames_are_every_frame_of_the_render_in_yuv420p(media):
    draft = small_draft(
        photo("red.jpg", 500, transition={"type": "crossfade", "d": 200}),
        photo("blue.png", 500),
    )
    frames = list(draft_frames(draft, media, Quality.DRAFT))
    assert len(frames) == parse_timeline(draft).frames
    for y, u, v in frames:
        assert (y.shape, u.shape, v.shape) == ((180, 320), (90, 160), (90, 160))
        assert y.dtype == u.dtype == v.dtype == np.uint8
    # red first (V, the red difference, high), blue last (U high)
    assert frames[0][2].mean() > 200
    assert frames[-1][1].mean() > 200


def x264_settings(video: Path) -> str:
    """The settings x264 writes into the stream it makes (its SEI: ``options: ...``)."""
    data = video.read_bytes()
    start = data.index(b"options: ")
    return data[start : data.index(b"\x00", start)].decode("ascii")


def test_the_command_line_floor_encodes_with_the_renders_own_x264_settings(media, tmp_path):
    """What bench-render's floor runs (ffmpeg's x264 on the raw frames) is the render's
    encoder, settings and threading alike."""
    draft = small_draft(photo("texture.jpg", 1000, motion="zoom_in"), w=640, h=360)
    render_draft(draft, media, tmp_path / "render.mp4", RenderOptions(quality=Quality.HIGH))
    raw = tmp_path / "frames.yuv"
    with raw.open("wb") as out:
        for planes in draft_frames(draft, media, Quality.HIGH):
            for plane in planes:
                out.write(np.ascontiguousarray(plane))
    floor = tmp_path / "floor.mp4"
    canvas = parse_timeline(draft).canvas
    subprocess.run(
        [
            default_ffmpeg(), "-hide_banner", "-nostdin", "-loglevel", "error",
            *raw_input_args(canvas, str(raw)), "-vf", TAG_BT709,
            *x264_args(Quality.HIGH), "-an", str(floor),
        ],
        check=True,
    )  # fmt: skip
    settings = x264_settings(tmp_path / "render.mp4")
    assert "subme=1" in settings
    assert "mbtree=1" in settings
    assert "sliced_threads=0" in settings  # frame threads, not PyAV's default
    assert settings == x264_settings(floor)
