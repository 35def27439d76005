"""Media files: find them, check them, and turn each photo into planes ready to move.

A photo is decoded and scaled once, before any frame is made, to the canvas size
times the motion headroom (:data:`HEADROOM`), and converted once to the output's
colour space (BT.709, limited range, 4:2:0). Every frame after that is a cheap
warp of those planes, so the cost of a render does not grow with the photo's pixel
count.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import av
import cv2
import numpy as np
import numpy.typing as npt
import pillow_heif
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from studio.render.errors import MediaError
from studio.render.timeline import Fit, media_name

#: the photo is prepared this much larger than the canvas, the room Ken Burns moves in
HEADROOM = 1.15
#: refuse photos above this many pixels (a decompression bomb, or no photo at all)
MAX_PIXELS = 120_000_000
PHOTO_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "HEIF", "MPO"}
AUDIO_FORMATS = {"mp3", "wav", "aac", "mov,mp4,m4a,3gp,3g2,mj2"}

Plane = npt.NDArray[np.uint8]

pillow_heif.register_heif_opener()


@dataclass(frozen=True)
class Planes:
    """A picture in limited-range BT.709 YUV 4:2:0: full-size Y, half-size U and V."""

    y: Plane
    u: Plane
    v: Plane

    @property
    def width(self) -> int:
        return int(self.y.shape[1])

    @property
    def height(self) -> int:
        return int(self.y.shape[0])


def resolve(media_dir: Path, src: str, where: str) -> Path:
    """The file in ``media_dir`` that a draft's ``src`` names."""
    name = media_name(src)
    path = media_dir / name
    if not path.is_file():
        raise MediaError("no such file in the media directory", file=name, where=where)
    return path


def check_photo(path: Path, where: str) -> None:
    """Fail early, before any encoding starts, on a file that is not a photo we read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                fmt = image.format or "unknown"
                pixels = image.width * image.height
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise MediaError(
            "not an image we can read (accepted: JPEG, PNG, WEBP, GIF, HEIC)",
            file=path.name,
            where=where,
        ) from None
    except OSError as exc:
        raise MediaError(f"cannot be read: {exc}", file=path.name, where=where) from None
    if fmt not in PHOTO_FORMATS:
        raise MediaError(
            f"unsupported image type {fmt} (accepted: JPEG, PNG, WEBP, GIF, HEIC)",
            file=path.name,
            where=where,
        )
    if pixels > MAX_PIXELS:
        raise MediaError(f"{pixels} pixels is more than {MAX_PIXELS}", file=path.name, where=where)


def check_audio(path: Path, where: str) -> None:
    """Fail early on a file that is not audio ffmpeg will play."""
    try:
        with av.open(str(path)) as container:
            if container.format.name not in AUDIO_FORMATS or not container.streams.audio:
                raise MediaError(
                    "not a supported audio file (accepted: mp3, wav, m4a, aac)",
                    file=path.name,
                    where=where,
                )
            stream = container.streams.audio[0]
            for _frame in container.decode(stream):
                break
            else:
                raise MediaError("holds no audio", file=path.name, where=where)
    except av.FFmpegError as exc:
        raise MediaError(f"cannot be read as audio: {exc}", file=path.name, where=where) from None


def load_photo(path: Path, width: int, height: int, fit: Fit, where: str) -> Planes:
    """Decode, orient and fit a photo to ``width`` x ``height``, then convert it to planes."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                # JPEG can decode at 1/2, 1/4 or 1/8 scale for free: ask for no more than needed.
                scale = max(width / image.width, height / image.height)
                if fit is Fit.CONTAIN:
                    scale = min(width / image.width, height / image.height)
                    scale = max(scale, 0.5 * max(width / image.width, height / image.height))
                image.draft("RGB", (int(image.width * scale) + 1, int(image.height * scale) + 1))
                image.load()
                # in place: a photo stored upright is not copied (a tenth of its decode time)
                ImageOps.exif_transpose(image, in_place=True)
                picture = _to_rgb(image)
                # fitted while the file is open: closing it releases an image not copied
                if fit is Fit.COVER:
                    fitted = _cover(picture, width, height)
                else:
                    fitted = _contain(picture, width, height)
    except (UnidentifiedImageError, Image.DecompressionBombWarning) as exc:
        raise MediaError(f"cannot be decoded: {exc}", file=path.name, where=where) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise MediaError(f"is corrupt: {exc}", file=path.name, where=where) from None
    return to_planes(np.asarray(fitted, dtype=np.uint8))


def _cover(picture: Image.Image, width: int, height: int) -> Image.Image:
    """Crop the centre to the canvas's shape and scale it to ``width`` x ``height``.

    Pillow crops and scales in one pass, so the full-size photo is never copied into an
    array: 38 ms for a 12-megapixel photo, where the copy and OpenCV's area filter took
    67. Its Hamming filter downscales closest to that area filter (mean difference 0.4
    of 255, as much detail); its box filter would alias (it weighs whole pixels).
    """
    scale = max(width / picture.width, height / picture.height)
    crop_w = min(picture.width, round(width / scale))
    crop_h = min(picture.height, round(height / scale))
    left, top = (picture.width - crop_w) // 2, (picture.height - crop_h) // 2
    resample = Image.Resampling.HAMMING if scale < 1 else Image.Resampling.BICUBIC
    return picture.resize((width, height), resample, box=(left, top, left + crop_w, top + crop_h))


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in {"RGBA", "LA", "PA"} or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (0, 0, 0))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _contain(picture: Image.Image, width: int, height: int) -> Image.Image:
    """The whole photo, centred over a blurred, darkened fill of itself."""
    small = ImageOps.fit(picture, (max(width // 8, 2), max(height // 8, 2)), Image.Resampling.BOX)
    small = small.filter(ImageFilter.GaussianBlur(radius=max(width, height) / 160))
    fill = small.resize((width, height), Image.Resampling.BILINEAR)
    fill = Image.blend(fill, Image.new("RGB", fill.size, (0, 0, 0)), 0.35)
    photo = ImageOps.contain(picture, (width, height), Image.Resampling.LANCZOS)
    fill.paste(photo, ((width - photo.width) // 2, (height - photo.height) // 2))
    return fill


# BT.709 limited range: Y in 16-235, Cb and Cr in 16-240.
_KR, _KB = 0.2126, 0.0722
_KG = 1.0 - _KR - _KB
_TO_YUV = np.array(
    [
        [219 * _KR, 219 * _KG, 219 * _KB],
        [-112 * _KR / (1 - _KB), -112 * _KG / (1 - _KB), 112.0],
        [112.0, -112 * _KG / (1 - _KR), -112 * _KB / (1 - _KR)],
    ],
    dtype=np.float32,
) / np.float32(255)


_AFFINE_YUV = np.hstack([_TO_YUV, np.array([[16.0], [128.0], [128.0]], dtype=np.float32)])


def to_planes(rgb: npt.NDArray[np.uint8]) -> Planes:
    """RGB (height x width x 3, even sides) to BT.709 limited-range YUV 4:2:0 planes."""
    height, width = rgb.shape[:2]
    if height % 2 or width % 2:
        raise ValueError("planes need even sides")
    yuv = cv2.transform(np.ascontiguousarray(rgb), _AFFINE_YUV)
    y, u, v = cv2.split(yuv)
    # 4:2:0: each chroma sample is the mean of a 2x2 block (an exact halving with INTER_AREA)
    half = (width // 2, height // 2)
    return Planes(
        cast(Plane, y),
        cast(Plane, cv2.resize(u, half, interpolation=cv2.INTER_AREA)),
        cast(Plane, cv2.resize(v, half, interpolation=cv2.INTER_AREA)),
    )


def rgba_to_planes(
    rgba: npt.NDArray[np.uint8],
) -> tuple[Planes, npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """An RGBA overlay as planes plus its alpha at full and at half size (0.0-1.0)."""
    planes = to_planes(np.ascontiguousarray(rgba[..., :3]))
    alpha = rgba[..., 3].astype(np.float32) / 255.0
    height, width = alpha.shape
    alpha_half = alpha.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))
    return planes, alpha, alpha_half
