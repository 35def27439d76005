"""Real renders, probed with PyAV: format, size, timing, pixels and sound."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from studio.render import Quality, RenderOptions, render_draft
from tests.studio.render.factory import (
    BLUE,
    RED,
    audio_rms,
    frames_rgb,
    halves,
    photo,
    probe,
    small_draft,
    solid,
    wav_tone,
)

pytestmark = pytest.mark.slow

DRAFT_QUALITY = RenderOptions(quality=Quality.DRAFT)


def mean_rgb(frame: np.ndarray, box=None) -> np.ndarray:
    if box:
        x0, y0, x1, y1 = box
        frame = frame[y0:y1, x0:x1]
    return frame.reshape(-1, 3).mean(axis=0)


def bright_pixels(frame: np.ndarray) -> int:
    return int((frame.min(axis=2) > 128).sum())


def test_output_is_h264_and_aac_mp4_of_the_drafts_size_rate_and_length(media, tmp_path):
    draft = small_draft(
        photo("red.jpg", 1500, transition={"type": "crossfade", "d": 500}),
        photo("blue.png", 1500),
        fps=25,
    )
    out = tmp_path / "out.mp4"
    result = render_draft(draft, media, out)

    info = probe(out)
    assert (info.video_codec, info.audio_codec, info.pix_fmt) == ("h264", "aac", "yuv420p")
    assert (info.width, info.height) == (320, 180)
    assert info.fps == 25
    # 1.5 s + 1.5 s - 0.5 s of overlap
    assert abs(info.duration_s - 2.5) <= 1 / 25
    assert info.audio_duration_s is not None
    assert abs(info.audio_duration_s - 2.5) <= 1 / 25
    assert result.frames == info.frames
    assert out.read_bytes()[4:8] == b"ftyp"


def test_output_has_moov_before_mdat_for_streaming(media, tmp_path):
    out = tmp_path / "out.mp4"
    render_draft(small_draft(photo("red.jpg", 500)), media, out, DRAFT_QUALITY)
    data = out.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")


def test_vertical_named_canvas_comes_out_1080_by_1920(media, tmp_path):
    draft = {"m": {"ratio": "9:16"}, "t": [{"tt": 0, "sg": [photo("texture.jpg", 400)]}]}
    out = tmp_path / "out.mp4"
    render_draft(draft, media, out, DRAFT_QUALITY)
    info = probe(out)
    assert (info.width, info.height) == (1080, 1920)


@pytest.mark.parametrize(
    ("ratio", "res", "size"),
    [("1:1", 720, (720, 720)), ("4:5", 720, (720, 900)), ("16:9", 720, (1280, 720))],
)
def test_named_720p_canvases_have_their_sizes(media, tmp_path, ratio, res, size):
    draft = {"m": {"ratio": ratio, "res": res}, "t": [{"tt": 0, "sg": [photo("red.jpg", 200)]}]}
    out = tmp_path / "out.mp4"
    render_draft(draft, media, out, DRAFT_QUALITY)
    info = probe(out)
    assert (info.width, info.height) == size


def test_mid_crossfade_frame_is_a_blend_of_its_two_photos(media, tmp_path):
    draft = small_draft(
        photo("red.jpg", 1000, transition={"type": "crossfade", "d": 600}),
        photo("blue.png", 1000),
    )
    out = tmp_path / "out.mp4"
    render_draft(draft, media, out)
    # the crossfade spans frames 12..29 (0.4 s to 1.0 s at 30 fps); 20 is its middle
    frames = frames_rgb(out, [5, 20, 38])
    before, middle, after = (mean_rgb(frames[i]) for i in (5, 20, 38))
    assert np.allclose(before, RED, atol=8)
    assert np.allclose(after, BLUE, atol=8)
    expected = (np.array(RED) + np.array(BLUE)) / 2
    assert np.allclose(middle, expected, atol=20)


@pytest.mark.parametrize("kind", ["slide_left", "slide_right", "wipe_left", "wipe_right"])
def test_sliding_and_wiping_transitions_show_both_photos_side_by_side(media, tmp_path, kind):
    draft = small_draft(
        photo("red.jpg", 1000, transition={"type": kind, "d": 600}),
        photo("blue.png", 1000),
    )
    out = tmp_path / "out.mp4"
    render_draft(draft, media, out)
    middle = frames_rgb(out, [21])[21]
    left, right = mean_rgb(middle[:, :60]), mean_rgb(middle[:, -60:])
    red, blue = np.array(RED), np.array(BLUE)
    red_first = kind in ("slide_left", "wipe_left")
    assert np.allclose(left, red if red_first else blue, atol=15)
    assert np.allclose(right, blue if red_first else red, atol=15)


def test_fade_through_black_is_black_at_its_middle(media, tmp_path):
    draft = small_draft(
        photo("red.jpg", 1000, transition={"type": "fade_black", "d": 600}),
        photo("blue.png", 1000),
    )
    out = tmp_path / "out.mp4"
    render_draft(draft, media, out)
    frames = frames_rgb(out, [20])
    assert mean_rgb(frames[20]).max() < 20


def test_zoom_transition_blends_the_photos(media, tmp_path):
    draft = small_draft(
        photo("red.jpg", 1000, transition={"type": "zoom", "d": 600}),
        photo("blue.png", 1000),
    )
    out = tmp_path / "out.mp4"
    render_draft(draft, media, out)
    middle = mean_rgb(frames_rgb(out, [20])[20])
    assert middle[0] > 70
    assert middle[2] > 70


def test_ken_burns_zoom_in_enlarges_the_picture_over_the_segment(tmp_path):
    folder = tmp_path / "media"
    folder.mkdir()
    # a white square in the middle of a black photo: zooming in makes it bigger
    pixels = np.zeros((360, 640, 3), dtype=np.uint8)
    pixels[150:210, 290:350] = 255
    from PIL import Image  # noqa: PLC0415

    Image.fromarray(pixels).save(folder / "square.png")
    draft = small_draft({"src": "square.png", "d": 2000, "m": {"motion": "zoom_in"}})
    out = tmp_path / "out.mp4"
    render_draft(draft, folder, out)
    frames = frames_rgb(out, [0, 59])
    first = (frames[0].mean(axis=2) > 128).sum()
    last = (frames[59].mean(axis=2) > 128).sum()
    assert last > first * 1.2


def test_pan_right_moves_the_picture_to_the_left(tmp_path):
    folder = tmp_path / "media"
    folder.mkdir()
    pixels = np.zeros((360, 640, 3), dtype=np.uint8)
    pixels[:, 310:330] = 255  # a vertical white bar in the middle
    from PIL import Image  # noqa: PLC0415

    Image.fromarray(pixels).save(folder / "bar.png")
    draft = small_draft({"src": "bar.png", "d": 2000, "m": {"motion": "pan_right"}})
    out = tmp_path / "out.mp4"
    render_draft(draft, folder, out)
    frames = frames_rgb(out, [0, 59])
    columns = {i: np.argmax(frames[i].mean(axis=(0, 2))) for i in frames}
    assert columns[59] < columns[0] - 10


def test_title_is_visible_inside_its_range_and_absent_outside(media, tmp_path):
    title = {"tt": 7, "sg": [{"s": 1000, "d": 1000, "text": "SALE", "m": {"fade": 0, "size": 0.2}}]}
    draft = small_draft(photo("dark.jpg", 3000), extra_tracks=[title])
    out = tmp_path / "out.mp4"
    render_draft(draft, media, out)
    frames = frames_rgb(out, [15, 45, 75])
    assert bright_pixels(frames[45]) > 500
    assert bright_pixels(frames[15]) == 0
    assert bright_pixels(frames[75]) == 0


def test_title_fades_in(media, tmp_path):
    title = {"tt": 7, "sg": [{"s": 0, "d": 2000, "text": "SALE", "m": {"fade": 500, "size": 0.2}}]}
    draft = small_draft(photo("dark.jpg", 2000), extra_tracks=[title])
    out = tmp_path / "out.mp4"
    render_draft(draft, media, out)
    frames = frames_rgb(out, [2, 30])
    fading, shown = frames[2].max(axis=2), frames[30].max(axis=2)
    text = shown > 128
    assert fading[text].mean() < shown[text].mean() - 60


@pytest.mark.parametrize(("position", "band"), [("top", (0, 60)), ("bottom", (120, 180))])
def test_title_position_puts_it_in_its_band(media, tmp_path, position, band):
    title = {
        "tt": 7,
        "sg": [{"s": 0, "d": 1000, "text": "SALE", "m": {"fade": 0, "position": position}}],
    }
    draft = small_draft(photo("dark.jpg", 1000), extra_tracks=[title])
    out = tmp_path / "out.mp4"
    render_draft(draft, media, out)
    frame = frames_rgb(out, [15])[15]
    bright_rows = np.nonzero(frame.mean(axis=(1, 2)) > 30)[0]
    assert bright_rows.size
    assert bright_rows.min() >= band[0]
    assert bright_rows.max() < band[1]


def test_cjk_title_is_drawn(media, tmp_path):
    title = {"tt": 7, "sg": [{"s": 0, "d": 1000, "text": "夏季促销 Café", "m": {"fade": 0}}]}
    with_title, without = tmp_path / "with.mp4", tmp_path / "without.mp4"
    render_draft(small_draft(photo("dark.jpg", 1000), extra_tracks=[title]), media, with_title)
    render_draft(small_draft(photo("dark.jpg", 1000)), media, without)
    a, b = frames_rgb(with_title, [15])[15], frames_rgb(without, [15])[15]
    assert bright_pixels(a) > 300
    assert bright_pixels(b) == 0


def test_rotated_exif_photo_comes_out_upright(tmp_path):
    folder = tmp_path / "media"
    folder.mkdir()
    # stored landscape, left half red; EXIF orientation 6 turns it 90° clockwise:
    # upright, the red half is on top
    from PIL import Image  # noqa: PLC0415

    exif = Image.Exif()
    exif[0x0112] = 6
    halves(folder / "turned.jpg", RED, BLUE, (640, 360), vertical=False, quality=95, exif=exif)
    draft = small_draft(photo("turned.jpg", 500), w=180, h=320)
    out = tmp_path / "out.mp4"
    render_draft(draft, folder, out)
    frame = frames_rgb(out, [5])[5]
    assert np.allclose(mean_rgb(frame[:100]), RED, atol=15)
    assert np.allclose(mean_rgb(frame[-100:]), BLUE, atol=15)


def test_heic_photo_is_read_upright(tmp_path):
    folder = tmp_path / "media"
    folder.mkdir()
    halves(folder / "photo.heic", RED, BLUE, (180, 320), vertical=True, fmt="HEIF", quality=90)
    draft = small_draft(photo("photo.heic", 500), w=180, h=320)
    out = tmp_path / "out.mp4"
    render_draft(draft, folder, out)
    frame = frames_rgb(out, [5])[5]
    assert np.allclose(mean_rgb(frame[:100]), RED, atol=20)
    assert np.allclose(mean_rgb(frame[-100:]), BLUE, atol=20)


@pytest.mark.parametrize(("name", "fmt"), [("p.webp", "WEBP"), ("p.gif", "GIF"), ("p.png", "PNG")])
def test_webp_gif_and_png_photos_render(tmp_path, name, fmt):
    folder = tmp_path / "media"
    folder.mkdir()
    solid(folder / name, RED, fmt=fmt)
    out = tmp_path / "out.mp4"
    render_draft(small_draft(photo(name, 300)), folder, out, DRAFT_QUALITY)
    assert np.allclose(mean_rgb(frames_rgb(out, [3])[3]), RED, atol=20)


def test_contain_shows_the_whole_photo_over_a_blurred_fill(tmp_path):
    folder = tmp_path / "media"
    folder.mkdir()
    halves(folder / "wide.png", RED, BLUE, (640, 160), vertical=False)
    contain = small_draft(photo("wide.png", 300, fit="contain"), w=320, h=320)
    cover = small_draft(photo("wide.png", 300, fit="cover"), w=320, h=320)
    out_contain, out_cover = tmp_path / "contain.mp4", tmp_path / "cover.mp4"
    render_draft(contain, folder, out_contain)
    render_draft(cover, folder, out_cover)
    framed, cropped = frames_rgb(out_contain, [3])[3], frames_rgb(out_cover, [3])[3]
    # contain: the whole photo across the middle, left red and right blue
    assert np.allclose(mean_rgb(framed[150:170, :40]), RED, atol=20)
    assert np.allclose(mean_rgb(framed[150:170, -40:]), BLUE, atol=20)
    # ...and above it a darker fill, not the photo itself
    assert mean_rgb(framed[:30]).mean() < mean_rgb(framed[150:170]).mean()
    # cover fills the canvas with the photo: its top-left corner is the photo's red
    assert np.allclose(mean_rgb(cropped[:30, :40]), RED, atol=20)
    assert not np.allclose(mean_rgb(framed[:30, :40]), RED, atol=40)


def test_large_photo_renders_without_its_pixel_count_in_the_frames(tmp_path):
    folder = tmp_path / "media"
    folder.mkdir()
    solid(folder / "big.jpg", RED, size=(4000, 3000), quality=85)
    out = tmp_path / "out.mp4"
    result = render_draft(small_draft(photo("big.jpg", 500)), folder, out, DRAFT_QUALITY)
    assert result.frames == 15
    assert np.allclose(mean_rgb(frames_rgb(out, [7])[7]), RED, atol=15)


def test_video_without_music_carries_a_silent_aac_track(media, tmp_path):
    out = tmp_path / "out.mp4"
    render_draft(small_draft(photo("red.jpg", 1000)), media, out, DRAFT_QUALITY)
    info = probe(out)
    assert info.audio_codec == "aac"
    assert audio_rms(out, 0.0, 1.0) < 1e-4


def test_music_bed_is_synthesised_when_no_file_is_named(media, tmp_path):
    music = {"tt": 1, "sg": [{"m": {"volume": 0.35, "mood": "calm"}}]}
    out = tmp_path / "out.mp4"
    render_draft(
        small_draft(photo("red.jpg", 3000), extra_tracks=[music]), media, out, DRAFT_QUALITY
    )
    assert audio_rms(out, 0.2, 1.0) > 0.01


def test_audio_file_plays_at_its_volume_looped_and_fades_out(media, tmp_path):
    wav_tone(media / "tone.wav", seconds=1.0)
    loud = {"tt": 1, "sg": [{"src": "tone.wav", "m": {"volume": 1.0, "fade_out": 1000}}]}
    quiet = {"tt": 1, "sg": [{"src": "tone.wav", "m": {"volume": 0.35, "fade_out": 1000}}]}
    out_loud, out_quiet = tmp_path / "loud.mp4", tmp_path / "quiet.mp4"
    render_draft(
        small_draft(photo("red.jpg", 4000), extra_tracks=[loud]), media, out_loud, DRAFT_QUALITY
    )
    render_draft(
        small_draft(photo("red.jpg", 4000), extra_tracks=[quiet]), media, out_quiet, DRAFT_QUALITY
    )
    # the one-second tone is looped: still sounding at 2 s
    loud_rms = audio_rms(out_loud, 2.0, 2.8)
    assert loud_rms > 0.2
    assert audio_rms(out_quiet, 2.0, 2.8) == pytest.approx(loud_rms * 0.35, rel=0.1)
    # the last tenth of a second is almost silent after the fade-out
    assert audio_rms(out_loud, 3.9, 4.0) < loud_rms * 0.2


def test_unlooped_audio_is_silent_after_its_end(media, tmp_path):
    wav_tone(media / "tone.wav", seconds=1.0)
    track = {"tt": 1, "sg": [{"src": "tone.wav", "m": {"loop": False, "fade_out": 0}}]}
    out = tmp_path / "out.mp4"
    render_draft(
        small_draft(photo("red.jpg", 3000), extra_tracks=[track]), media, out, DRAFT_QUALITY
    )
    assert audio_rms(out, 0.2, 0.8) > 0.2
    assert audio_rms(out, 1.5, 2.5) < 1e-3


def test_audio_segment_starts_at_its_offset(media, tmp_path):
    wav_tone(media / "tone.wav", seconds=1.0)
    track = {"tt": 1, "sg": [{"src": "tone.wav", "s": 1500, "d": 1000, "m": {"fade_out": 0}}]}
    out = tmp_path / "out.mp4"
    render_draft(
        small_draft(photo("red.jpg", 3000), extra_tracks=[track]), media, out, DRAFT_QUALITY
    )
    assert audio_rms(out, 0.2, 1.3) < 1e-3
    assert audio_rms(out, 1.7, 2.3) > 0.2


def test_progress_is_reported_up_to_done(media, tmp_path):
    seen: list[float] = []
    options = RenderOptions(quality=Quality.DRAFT, progress=seen.append)
    render_draft(small_draft(photo("red.jpg", 2000)), media, tmp_path / "out.mp4", options)
    assert seen[0] == 0.0
    assert seen[-1] == 1.0
    assert seen == sorted(seen)
    assert len(seen) >= 3


def test_pan_left_moves_by_whole_even_pixels_per_frame_where_there_is_room(tmp_path):
    folder = tmp_path / "media"
    folder.mkdir()
    pixels = np.zeros((720, 1280, 3), dtype=np.uint8)
    pixels[:, 630:650] = 255
    from PIL import Image  # noqa: PLC0415

    Image.fromarray(pixels).save(folder / "bar.png")
    draft = small_draft({"src": "bar.png", "d": 500, "m": {"motion": "pan_left"}}, w=640, h=360)
    out = tmp_path / "out.mp4"
    render_draft(draft, folder, out)
    frames = frames_rgb(out, list(range(15)))
    edges = [int(np.argmax(frames[i].mean(axis=(0, 2)) > 128)) for i in range(15)]
    steps = {b - a for a, b in itertools.pairwise(edges)}
    # the picture moves right (the camera pans left), the same even step every frame
    assert len(steps) == 1
    (step,) = steps
    assert step > 0
    assert step % 2 == 0
