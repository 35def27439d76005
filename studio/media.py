"""Uploaded media: what a file is (by its bytes, never its name), and its properties.

Accepted, as nemo-api.md lists: images jpg, png, gif, webp, heic; video mp4, mov,
avi, webm, mkv; audio mp3, wav, m4a, aac. Anything else is 4001; a file over the size
limit is 4002.
"""

from __future__ import annotations

import hashlib
import shutil
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Literal

import av
import filetype
import pillow_heif
from PIL import ExifTags, Image, UnidentifiedImageError

from studio.envelopes import NemoFailure

pillow_heif.register_heif_opener()

Kind = Literal["image", "video", "audio"]
ACCEPTED: dict[str, Kind] = {
    "jpg": "image",
    "png": "image",
    "apng": "image",
    "gif": "image",
    "webp": "image",
    "heic": "image",
    "mp4": "video",
    "mov": "video",
    "avi": "video",
    "webm": "video",
    "mkv": "video",
    "mp3": "audio",
    "wav": "audio",
    "m4a": "audio",
    "aac": "audio",
}
ACCEPTED_TEXT = (
    "images jpg, png, gif, webp, heic; video mp4, mov, avi, webm, mkv; audio mp3, wav, m4a, aac"
)
_IMAGE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    UnidentifiedImageError,
    Image.DecompressionBombWarning,
    Image.DecompressionBombError,
)
_SNIFF_BYTES = 8192
_CHUNK = 1 << 20


@dataclass(frozen=True)
class MediaFile:
    """One file in a session, as the upload answer and the state describe it."""

    filename: str
    file_type: Kind
    extension: str
    stored_name: str
    cdn_url: str
    width: int | None
    height: int | None
    duration: float | None  # seconds
    fps: float | None
    hash: str
    size: int

    def as_json(self) -> dict[str, object]:
        data = asdict(self)
        del data["stored_name"]
        return data


class SizeLimit:
    """Copies a stream to a file, refusing (4002) once it passes ``max_bytes``."""

    def __init__(self, max_bytes: int, name: str) -> None:
        self.max_bytes = max_bytes
        self.name = name

    def copy(self, chunks: Iterable[bytes], target: IO[bytes]) -> tuple[int, str]:
        digest = hashlib.sha256()
        size = 0
        for chunk in chunks:
            size += len(chunk)
            if size > self.max_bytes:
                raise NemoFailure(4002, too_large(self.name, self.max_bytes))
            digest.update(chunk)
            target.write(chunk)
        return size, digest.hexdigest()


def too_large(name: str, max_bytes: int) -> str:
    return (
        f"{name} is larger than {max_bytes // (1024 * 1024)} MB; "
        "compress or trim it and upload it again"
    )


def sniff(path: Path, name: str) -> tuple[str, Kind]:
    """The file's extension and kind, from its first bytes; 4001 if it is none we take."""
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    guess = filetype.guess(head)
    extension = guess.extension if guess else None
    if extension not in ACCEPTED:
        found = f" (it looks like {guess.mime})" if guess else ""
        raise NemoFailure(4001, f"{name}: unsupported file type{found}; accepted: {ACCEPTED_TEXT}")
    return extension, ACCEPTED[extension]


Properties = tuple[int | None, int | None, float | None, float | None]
#: EXIF orientations that turn the picture a quarter: width and height swap
_QUARTER_TURNS = frozenset({5, 6, 7, 8})


def describe(path: Path, name: str, kind: Kind) -> Properties:
    """Width, height, duration (s) and frame rate; 4001 if the file cannot be read."""
    if kind == "image":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    # decodes the whole picture: a file that is cut short fails here
                    image.load()
                    width, height = image.size
                    if image.getexif().get(ExifTags.Base.Orientation) in _QUARTER_TURNS:
                        width, height = height, width
                    return width, height, None, None
        except _IMAGE_ERRORS as exc:
            raise NemoFailure(4001, f"{name}: the image cannot be read ({exc})") from None
    try:
        with av.open(str(path)) as container:
            duration = container.duration / av.time_base if container.duration else None
            if kind == "video":
                if not container.streams.video:
                    raise NemoFailure(4001, f"{name}: holds no video")
                stream = container.streams.video[0]
                rate = float(stream.average_rate) if stream.average_rate else None
                return stream.codec_context.width, stream.codec_context.height, duration, rate
            if not container.streams.audio:
                raise NemoFailure(4001, f"{name}: holds no audio")
            return None, None, duration, None
    except av.FFmpegError as exc:
        raise NemoFailure(4001, f"{name}: cannot be read ({exc})") from None


#: what :func:`describe` found in each file, by content (sha-256): the same photo is
#: uploaded to many sessions, and decoding it again would find the same
_described: dict[str, Properties] = {}
_DESCRIBED_MAX = 4096


def _describe_once(digest: str, path: Path, name: str, kind: Kind) -> Properties:
    found = describe(path, name, kind)
    if len(_described) >= _DESCRIBED_MAX:
        _described.clear()
    _described[digest] = found
    return found


def store(
    scratch: Path,
    *,
    name: str,
    size: int,
    digest: str,
    media_dir: Path,
    url_base: str,
) -> MediaFile:
    """Check a received file and keep it in the session's media directory."""
    extension, kind = sniff(scratch, name)
    width, height, duration, fps = _described.get(digest) or _describe_once(
        digest, scratch, name, kind
    )
    stored_name = f"{digest[:24]}.{extension}"
    media_dir.mkdir(parents=True, exist_ok=True)
    target = media_dir / stored_name
    if not target.exists():
        shutil.move(scratch, target)
    return MediaFile(
        filename=name,
        file_type=kind,
        extension=extension,
        stored_name=stored_name,
        cdn_url=f"{url_base}/{stored_name}",
        width=width,
        height=height,
        duration=round(duration, 3) if duration is not None else None,
        fps=fps,
        hash=digest,
        size=size,
    )


def safe_name(raw: str | None, fallback: str = "upload") -> str:
    """A display name for an upload: its last path part, printable, at most 200 chars."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip()
    return name[:200] or fallback
