"""The renderer's errors, one tree.

::

    RenderError                 anything that stops a render; no output file is left
    ├── DraftError              the draft is not renderable (names the segment: ``t[0].sg[2]``)
    ├── MediaError              a media file is missing, corrupt or of an unsupported type
    │                           (names the file and the segment that uses it)
    ├── RenderTimeout           the render ran past its time limit and was stopped
    ├── RenderCancelled         the caller asked it to stop
    └── EncoderError            x264, the muxer or the audio's ffmpeg failed (their words attached)

``DraftError`` and ``MediaError`` are the caller's fault and will fail again the same
way; ``RenderTimeout`` and ``EncoderError`` are the renderer's and may succeed on retry.
"""

from __future__ import annotations


class RenderError(Exception):
    """Base of every error the renderer raises."""

    #: whether rendering the same draft again could succeed
    retryable: bool = False


class DraftError(RenderError):
    """The draft cannot be rendered as written."""

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class MediaError(RenderError):
    """A media file the draft refers to cannot be used."""

    def __init__(self, message: str, *, file: str, where: str | None = None) -> None:
        self.file = file
        self.where = where
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}{file}: {message}")


class RenderTimeout(RenderError):
    """The render exceeded its time limit and was stopped."""

    retryable = True


class RenderCancelled(RenderError):
    """The render was cancelled through its ``cancel`` event."""


class EncoderError(RenderError):
    """The encoder failed in a way the draft and media checks did not predict."""

    retryable = True

    def __init__(self, message: str, *, stderr_tail: str = "") -> None:
        self.stderr_tail = stderr_tail
        super().__init__(f"{message}\n{stderr_tail}" if stderr_tail else message)
