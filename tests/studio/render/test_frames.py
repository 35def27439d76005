"""Motion plans: where the camera looks, and when a pan can be a plain crop."""

from __future__ import annotations

import numpy as np
import pytest

from studio.render.frames import crop_pan, viewport
from studio.render.media import HEADROOM, Planes
from studio.render.timeline import Motion


def planes(width: int, height: int) -> Planes:
    return Planes(
        np.zeros((height, width), np.uint8),
        np.zeros((height // 2, width // 2), np.uint8),
        np.zeros((height // 2, width // 2), np.uint8),
    )


def test_crop_pan_uses_an_even_step_within_the_room_and_centres_the_travel():
    source = planes(2208, 1242)  # a 1080p canvas with its headroom
    pan = crop_pan(Motion.PAN_RIGHT, 103, source, 1920, 1080)
    assert pan is not None
    assert pan.step == 2
    assert pan.left(0) >= 0
    assert pan.left(102) + 1920 <= 2208
    assert pan.left(0) % 2 == pan.top % 2 == 0
    assert abs(pan.left(0) - (2208 - 1920 - pan.left(102))) <= 2


def test_crop_pan_left_runs_the_other_way():
    source = planes(2208, 1242)
    right = crop_pan(Motion.PAN_RIGHT, 60, source, 1920, 1080)
    left = crop_pan(Motion.PAN_LEFT, 60, source, 1920, 1080)
    assert right is not None
    assert left is not None
    assert left.left(0) == right.left(59)
    assert left.left(59) == right.left(0)


@pytest.mark.parametrize("motion", [Motion.ZOOM_IN, Motion.PAN_UP, Motion.NONE])
def test_only_sideways_pans_are_crops(motion):
    assert crop_pan(motion, 100, planes(2208, 1242), 1920, 1080) is None


def test_a_pan_too_slow_for_whole_pixels_is_left_to_the_warp():
    # 400 frames over 288 pixels of room: less than two pixels a frame
    assert crop_pan(Motion.PAN_LEFT, 400, planes(2208, 1242), 1920, 1080) is None


def test_zoom_in_ends_at_the_headroom_and_stays_centred():
    first = viewport(Motion.ZOOM_IN, 0.0, 2208.0, 1242.0)
    last = viewport(Motion.ZOOM_IN, 1.0, 2208.0, 1242.0)
    assert first == (0.0, 0.0, 1.0)
    left, top, zoom = last
    assert zoom == pytest.approx(HEADROOM)
    assert left == pytest.approx((2208 - 2208 / HEADROOM) / 2)
    assert top == pytest.approx((1242 - 1242 / HEADROOM) / 2)
