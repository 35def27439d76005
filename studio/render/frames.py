"""Frames: Ken Burns motion, transitions and text, composed in YUV 4:2:0.

Each frame of a photo is a crop (a sideways pan), a resize of a centred window (a
zoom) or an affine warp (any other pan) of planes prepared once
(:mod:`studio.render.media`); a transition touches only the frames its two photos
overlap; a text is rasterised once and blended only inside its own box. Work is
done directly in the encoder's pixel format, so ffmpeg has nothing left to convert.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from studio.render.media import HEADROOM, Plane, Planes
from studio.render.timeline import Canvas, Motion, PhotoClip, TextClip, Transition, TransitionType

#: the zoom at which a pan travels: a little under the headroom, so every frame is
#: resampled alike (at exactly 1:1, whole-pixel and half-pixel offsets would shimmer)
PAN_ZOOM = HEADROOM * 0.96
#: how far into the outgoing photo a "zoom" transition pushes
ZOOM_TRANSITION_DEPTH = 0.6
BLACK = (16, 128, 128)
#: motions whose view stays centred on the photo, however far it zooms
_CENTRED = frozenset({Motion.ZOOM_IN, Motion.ZOOM_OUT, Motion.NONE})


@dataclass(frozen=True)
class Overlay:
    """A text, rasterised: planes, alphas, and where it sits (even coordinates)."""

    clip: TextClip
    planes: Planes
    alpha: npt.NDArray[np.float32]
    alpha_half: npt.NDArray[np.float32]
    x: int
    y: int

    def strength(self, frame: int) -> float:
        """Opacity at a frame: fades in and out over ``fade_frames``."""
        local = frame - self.clip.start
        fade = self.clip.fade_frames
        if fade <= 0:
            return 1.0
        return float(min(1.0, (local + 1) / (fade + 1), (self.clip.frames - local) / (fade + 1)))


def viewport(
    motion: Motion, progress: float, width: float, height: float
) -> tuple[float, float, float]:
    """Where the camera looks on a source ``width`` x ``height`` at ``progress`` 0..1.

    Returns the top-left corner and the zoom (1.0 shows the whole source).
    """
    zoom = 1.0
    cx, cy = 0.5, 0.5
    if motion is Motion.ZOOM_IN:
        zoom = 1.0 + (HEADROOM - 1.0) * progress
    elif motion is Motion.ZOOM_OUT:
        zoom = HEADROOM - (HEADROOM - 1.0) * progress
    elif motion is not Motion.NONE:
        zoom = PAN_ZOOM
        # the centre travels across all the room the zoom leaves
        room = 0.5 * (1.0 - 1.0 / zoom)
        offset = -room + 2 * room * progress
        if motion is Motion.PAN_RIGHT:
            cx += offset
        elif motion is Motion.PAN_LEFT:
            cx -= offset
        elif motion is Motion.PAN_DOWN:
            cy += offset
        else:
            cy -= offset
    view_w, view_h = width / zoom, height / zoom
    return cx * width - view_w / 2, cy * height - view_h / 2, zoom


@dataclass(frozen=True)
class CropPan:
    """A sideways pan in whole, even pixel steps: each frame is a crop, no resampling."""

    start: int
    step: int  # signed pixels per frame
    top: int

    def left(self, index: int) -> int:
        return self.start + self.step * index


def crop_pan(
    motion: Motion, frames: int, source: Planes, width: int, height: int
) -> CropPan | None:
    """The crop pan for a clip, or None where the room allows no even step per frame.

    A crop is sharper than a resampled frame and costs a copy instead of a warp; an even
    step moves the half-size chroma planes by whole pixels as well, so nothing shimmers.
    """
    if motion not in (Motion.PAN_LEFT, Motion.PAN_RIGHT) or frames < 2:
        return None
    room = source.width - width
    steps = frames - 1
    step = 2 * (room // (2 * steps))
    if step == 0:
        return None
    travel = step * steps
    start = (room - travel) // 2 // 2 * 2
    top = (source.height - height) // 2 // 2 * 2
    if motion is Motion.PAN_RIGHT:
        return CropPan(start, step, top)
    return CropPan(start + travel, -step, top)


class PhotoFrames:
    """Frames of one photo clip: a crop, a resize or a warp of its prepared planes."""

    def __init__(
        self, clip: PhotoClip, planes: Planes, canvas: Canvas, *, reference: bool = False
    ) -> None:
        self.clip = clip
        self.planes = planes
        self.width = canvas.width
        self.height = canvas.height
        self._still: tuple[Plane, Plane, Plane] | None = None
        # the reference render resamples with Lanczos; a crop pan's steps and a zoom's
        # whole-pixel windows are the motion itself (where the camera is at each frame),
        # so both renders share them
        self._interpolation = cv2.INTER_LANCZOS4 if reference else cv2.INTER_LINEAR
        # a separable resize affords bicubic for the luma (on the bench draft: SSIM 0.9988
        # against Lanczos, where bilinear has 0.9966) at half the cost of a bilinear warp;
        # the chroma, half as sharp to begin with, keeps bilinear
        self._zoom_interpolation = cv2.INTER_LANCZOS4 if reference else cv2.INTER_CUBIC
        self._crop = crop_pan(clip.motion, clip.frames, planes, canvas.width, canvas.height)

    def frame(self, index: int, extra_zoom: float = 1.0) -> tuple[Plane, Plane, Plane]:
        """The clip's frame ``index`` (0-based within the clip)."""
        if self._crop is not None and extra_zoom == 1.0:
            return self._cropped(self._crop.left(index), self._crop.top)
        still = self.clip.motion is Motion.NONE and extra_zoom == 1.0
        if still and self._still is not None:
            return self._still
        progress = index / (self.clip.frames - 1) if self.clip.frames > 1 else 0.0
        source = self.planes
        left, top, zoom = viewport(self.clip.motion, progress, source.width, source.height)
        if self.clip.motion in _CENTRED:
            zoom *= extra_zoom
            planes = self._zoomed(source.width / zoom, source.height / zoom)
        else:
            if extra_zoom != 1.0:
                view_w, view_h = source.width / zoom, source.height / zoom
                zoom *= extra_zoom
                left += (view_w - source.width / zoom) / 2
                top += (view_h - source.height / zoom) / 2
            planes = self._warped(left, top, zoom)
        if still:
            self._still = planes
        return planes

    def _warped(self, left: float, top: float, zoom: float) -> tuple[Plane, Plane, Plane]:
        """The view at (``left``, ``top``) and ``zoom``, to the sub-pixel: a pan's frame."""
        source = self.planes
        # output pixel x samples the source at left + (x + 0.5) * ratio - 0.5
        ratio = source.width / zoom / self.width
        warped = [
            _warp(
                plane,
                left / scale,
                top / scale,
                ratio=ratio,
                width=self.width // scale,
                height=self.height // scale,
                interpolation=self._interpolation,
            )
            for plane, scale in ((source.y, 1), (source.u, 2), (source.v, 2))
        ]
        return warped[0], warped[1], warped[2]

    def _zoomed(self, view_w: float, view_h: float) -> tuple[Plane, Plane, Plane]:
        """The centre ``view_w`` x ``view_h`` of the planes, scaled to the canvas.

        The view's edges are rounded to whole pixels, symmetrically, so the centre stays
        exact and an edge is off by half a pixel at most: a zoom's scale wobbles by under
        0.05 %, unseen, where a rounded translation would shimmer. A whole-pixel window
        lets the separable ``cv2.resize`` do the work, a third of a warp's cost.
        """
        out = []
        for plane, scale in ((self.planes.y, 1), (self.planes.u, 2), (self.planes.v, 2)):
            height, width = plane.shape
            half_w = min(width // 2, round(view_w / scale / 2))
            half_h = min(height // 2, round(view_h / scale / 2))
            window = plane[
                height // 2 - half_h : height // 2 + half_h,
                width // 2 - half_w : width // 2 + half_w,
            ]
            size = (self.width // scale, self.height // scale)
            interpolation = self._zoom_interpolation if scale == 1 else self._interpolation
            out.append(cast(Plane, cv2.resize(window, size, interpolation=interpolation)))
        return out[0], out[1], out[2]

    def _cropped(self, left: int, top: int) -> tuple[Plane, Plane, Plane]:
        """Views into the planes, not copies: the encoder copies each frame once anyway."""
        w, h, source = self.width, self.height, self.planes
        return (
            source.y[top : top + h, left : left + w],
            source.u[top // 2 : (top + h) // 2, left // 2 : (left + w) // 2],
            source.v[top // 2 : (top + h) // 2, left // 2 : (left + w) // 2],
        )


def _warp(
    plane: Plane,
    left: float,
    top: float,
    *,
    ratio: float,
    width: int,
    height: int,
    interpolation: int = cv2.INTER_LINEAR,
) -> Plane:
    shift = 0.5 * ratio - 0.5
    matrix = np.array(
        [[ratio, 0.0, left + shift], [0.0, ratio, top + shift]],
        dtype=np.float64,
    )
    warped = cv2.warpAffine(
        plane,
        matrix,
        (width, height),
        flags=interpolation | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return cast(Plane, warped)


def blend_transition(
    transition: Transition,
    progress: float,
    outgoing: tuple[Plane, Plane, Plane],
    incoming: tuple[Plane, Plane, Plane],
) -> tuple[Plane, Plane, Plane]:
    """One frame of ``transition`` at ``progress`` (0..1, exclusive) between two frames."""
    kind = transition.type
    if kind in (TransitionType.CROSSFADE, TransitionType.ZOOM):
        return _mix(outgoing, incoming, progress)
    if kind is TransitionType.FADE_BLACK:
        if progress < 0.5:
            return _towards_black(outgoing, 1.0 - 2.0 * progress)
        return _towards_black(incoming, 2.0 * progress - 1.0)
    width = outgoing[0].shape[1]
    # whole chroma pixels: the luma edge moves in steps of two
    edge = 2 * round(progress * width / 2)
    planes = []
    for index, (old, new) in enumerate(zip(outgoing, incoming, strict=True)):
        x = edge if index == 0 else edge // 2
        w = old.shape[1]
        out = np.empty_like(old)
        if kind is TransitionType.SLIDE_LEFT:  # the new photo pushes in from the right
            out[:, : w - x] = old[:, x:]
            out[:, w - x :] = new[:, :x]
        elif kind is TransitionType.SLIDE_RIGHT:  # ... from the left
            out[:, x:] = old[:, : w - x]
            out[:, :x] = new[:, w - x :]
        elif kind is TransitionType.WIPE_LEFT:  # an edge sweeps from right to left
            out[:, : w - x] = old[:, : w - x]
            out[:, w - x :] = new[:, w - x :]
        else:  # WIPE_RIGHT: an edge sweeps from left to right
            out[:, :x] = new[:, :x]
            out[:, x:] = old[:, x:]
        planes.append(out)
    return planes[0], planes[1], planes[2]


def _mix(
    a: tuple[Plane, Plane, Plane], b: tuple[Plane, Plane, Plane], weight_b: float
) -> tuple[Plane, Plane, Plane]:
    mixed = [
        cv2.addWeighted(pa, 1.0 - weight_b, pb, weight_b, 0.0) for pa, pb in zip(a, b, strict=True)
    ]
    return cast(Plane, mixed[0]), cast(Plane, mixed[1]), cast(Plane, mixed[2])


def _towards_black(frame: tuple[Plane, Plane, Plane], keep: float) -> tuple[Plane, Plane, Plane]:
    faded = [
        cv2.addWeighted(plane, keep, plane, 0.0, black * (1.0 - keep))
        for plane, black in zip(frame, BLACK, strict=True)
    ]
    return cast(Plane, faded[0]), cast(Plane, faded[1]), cast(Plane, faded[2])


def apply_overlay(
    frame: tuple[Plane, Plane, Plane], overlay: Overlay, strength: float
) -> tuple[Plane, Plane, Plane]:
    """Blend a text overlay into a frame (returns new planes; the input may be shared)."""
    out = []
    for index, (plane, patch) in enumerate(
        zip(frame, (overlay.planes.y, overlay.planes.u, overlay.planes.v), strict=True)
    ):
        alpha = overlay.alpha if index == 0 else overlay.alpha_half
        scale = 1 if index == 0 else 2
        x, y = overlay.x // scale, overlay.y // scale
        h, w = patch.shape
        target = plane.copy()
        region = target[y : y + h, x : x + w].astype(np.float32)
        weight = alpha * np.float32(strength)
        region += (patch.astype(np.float32) - region) * weight
        target[y : y + h, x : x + w] = np.rint(region).astype(np.uint8)
        out.append(target)
    return out[0], out[1], out[2]


PhotoLoader = Callable[[int], PhotoFrames]


def compose(
    total_frames: int,
    clips: tuple[PhotoClip, ...],
    overlays: tuple[Overlay, ...],
    photo: PhotoLoader,
) -> Iterator[tuple[Plane, Plane, Plane]]:
    """Every frame of the video in order. ``photo(i)`` gives clip ``i``'s frames."""
    active_from = 0
    for frame in range(total_frames):
        while clips[active_from].end <= frame:
            active_from += 1
        current = clips[active_from]
        planes = photo(active_from).frame(frame - current.start)
        following = active_from + 1
        if following < len(clips) and clips[following].start <= frame:
            transition = current.transition_out
            incoming = clips[following]
            if transition is None:  # parse_timeline overlaps clips only through a transition
                raise RuntimeError(f"{incoming.where} overlaps its predecessor with no transition")
            step = frame - incoming.start + 1
            progress = step / (transition.frames + 1)
            outgoing = planes
            if transition.type is TransitionType.ZOOM:
                outgoing = photo(active_from).frame(
                    frame - current.start, 1.0 + ZOOM_TRANSITION_DEPTH * progress
                )
            planes = blend_transition(
                transition, progress, outgoing, photo(following).frame(frame - incoming.start)
            )
        for overlay in overlays:
            local = frame - overlay.clip.start
            if 0 <= local < overlay.clip.frames:
                planes = apply_overlay(planes, overlay, overlay.strength(frame))
        yield planes
