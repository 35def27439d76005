"""The encoder: x264 in-process, the audio mixed by ffmpeg apart, both in one MP4."""

from __future__ import annotations

import stat
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
from studio.render.encode import x264_args, x264_options
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


def test_the_command_line_encoder_is_the_same_x264(tmp_path):
    for quality in Quality:
        args = x264_args(quality)
        for key, value in x264_options(quality).items():
            assert args[args.index(f"-{key}") + 1] == value
    assert "x264-params" in x264_options(Quality.HIGH)
