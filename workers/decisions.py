"""The pipeline's decisions, as plain functions: no Celery, no database, no network.

A task runs a stage, catches what the upstream did, and asks these functions what to
do next. They take the job's facts and the outcome and return a value; the tasks
only carry it out. That keeps every rule in one place, testable on tables of cases.

- :func:`decide` — an upstream error becomes :class:`Retry` (after how long),
  :class:`Repair` (new token or new session, then retry), :class:`ReadState` (the
  edit's outcome is unknown: never re-send, read the state) or :class:`Fail` (with a
  stable :class:`ErrorCode` and a message a platform can show its customer).
- :func:`backoff_s` — jittered exponential backoff with a cap, honouring Retry-After.
- :func:`recovery_delay_s` — when to read the state again after a broken stream
  (nemo-api.md: after 30 s, then every 60 s, giving up after 5 unchanged reads).
- :func:`compose_instruction` — the instruction sent upstream for a job's prompt and
  options.
- :func:`verify_draft` — what, if anything, the finished draft gets wrong about the
  options the caller asked for.
- :func:`compose_correction` — the one follow-up instruction after a draft that does
  not match the options.
- :func:`next_render` — after a render failed or stalled: a new attempt, or give up.
- :func:`stage_progress` — the job's progress (0-100) at each stage.
- :func:`render_id` — the export's id, derived from the job and its attempt, so that a
  resumed job finds its render instead of starting a second one.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from nemo import (
    CanvasConfig,
    Draft,
    ExportBlocked,
    MediaTooLarge,
    NemoError,
    OutOfCredits,
    RateLimited,
    TrackType,
    UnsupportedMedia,
)
from nemo import (
    Repair as NemoRepair,
)


class ErrorCode(StrEnum):
    """The stable codes a failed job carries (``error_code``), part of the API."""

    OUT_OF_CREDITS = "out_of_credits"
    UNSUPPORTED_MEDIA = "unsupported_media"
    MEDIA_TOO_LARGE = "media_too_large"
    EXPORT_BLOCKED = "export_blocked"
    INVALID_INPUT = "invalid_input"
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    UPSTREAM_AUTH = "upstream_auth"
    EDIT_OUTCOME_UNKNOWN = "edit_outcome_unknown"
    NO_EXPORTABLE_DRAFT = "no_exportable_draft"
    SPEC_MISMATCH = "spec_mismatch"
    RENDER_FAILED = "render_failed"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    INTERNAL_ERROR = "internal_error"
    IMAGE_UNREACHABLE = "image_unreachable"


#: what a platform can tell its customer, per code
MESSAGES: dict[ErrorCode, str] = {
    ErrorCode.OUT_OF_CREDITS: "The video service has no credits left for this account.",
    ErrorCode.UNSUPPORTED_MEDIA: (
        "One of the files is of a type the video service does not accept "
        "(photos: JPG, PNG, GIF, WEBP, HEIC)."
    ),
    ErrorCode.MEDIA_TOO_LARGE: "One of the files is larger than 200 MB; compress it and retry.",
    ErrorCode.EXPORT_BLOCKED: "The video service refused to export on this plan.",
    ErrorCode.INVALID_INPUT: "The request could not be turned into a video.",
    ErrorCode.UPSTREAM_UNAVAILABLE: "The video service kept failing; the job was given up.",
    ErrorCode.UPSTREAM_AUTH: "The video service did not accept any credentials we could get.",
    ErrorCode.EDIT_OUTCOME_UNKNOWN: (
        "The editor's answer was lost and the timeline never changed; the job was given up "
        "rather than paying for the edit twice."
    ),
    ErrorCode.NO_EXPORTABLE_DRAFT: "The editor finished without a timeline that can be rendered.",
    ErrorCode.SPEC_MISMATCH: "The video does not match the options that were asked for.",
    ErrorCode.RENDER_FAILED: "Rendering failed twice.",
    ErrorCode.DEADLINE_EXCEEDED: "The job did not finish before its deadline.",
    ErrorCode.INTERNAL_ERROR: "reelyard failed to process the job; it was given up.",
    ErrorCode.IMAGE_UNREACHABLE: "A photo could not be fetched from its URL.",
}


@dataclass(frozen=True)
class Retry:
    after_s: float
    reason: str


class RepairKind(StrEnum):
    NEW_TOKEN = "new_token"  # noqa: S105 (a kind of repair, not a password)
    NEW_SESSION = "new_session"


@dataclass(frozen=True)
class Repair:
    kind: RepairKind
    reason: str


@dataclass(frozen=True)
class ReadState:
    after_s: float
    reason: str


@dataclass(frozen=True)
class Fail:
    code: ErrorCode
    message: str


Decision = Retry | Repair | ReadState | Fail


@dataclass(frozen=True)
class Policy:
    """How hard to try. Times are seconds (multiplied by ``time_scale`` where it says)."""

    base_s: float = 2.0
    cap_s: float = 300.0
    max_retries: int = 8
    max_token_repairs: int = 3
    max_session_repairs: int = 2
    #: nemo-api.md's recovery after a broken stream: first read, then every
    first_read_s: float = 30.0
    read_every_s: float = 60.0
    unchanged_reads: int = 5
    #: multiplies every delay: 0.01 in tests, 1 in production
    time_scale: float = 1.0


@dataclass(frozen=True)
class Attempts:
    """What the job has spent on its current stage."""

    retries: int = 0
    token_repairs: int = 0
    session_repairs: int = 0


Jitter = Callable[[], float]


def backoff_s(
    retries: int,
    policy: Policy,
    *,
    retry_after_s: float | None = None,
    jitter: Jitter = random.random,
) -> float:
    """The wait before retry number ``retries + 1``.

    "Full jitter" (a random share of an exponentially growing, capped ceiling), so a
    crowd of jobs that failed together does not come back together; never less than
    the upstream's Retry-After, and spread over up to half as long again after it, for
    a crowd that was told the same Retry-After.
    """
    share = jitter()
    ceiling = min(policy.cap_s, policy.base_s * 2.0**retries)
    wait = ceiling * (0.5 + 0.5 * share)
    if retry_after_s is not None:
        wait = max(wait, retry_after_s * (1.0 + 0.5 * share))
    return wait * policy.time_scale


#: errors that no waiting or repair can fix, and the code the job fails with
_FATAL: tuple[tuple[type[NemoError], ErrorCode], ...] = (
    (OutOfCredits, ErrorCode.OUT_OF_CREDITS),
    (UnsupportedMedia, ErrorCode.UNSUPPORTED_MEDIA),
    (MediaTooLarge, ErrorCode.MEDIA_TOO_LARGE),
    (ExportBlocked, ErrorCode.EXPORT_BLOCKED),
)


def decide(
    error: NemoError, attempts: Attempts, policy: Policy, *, jitter: Jitter = random.random
) -> Decision:
    """What to do about an upstream error during a stage."""
    fatal = next((code for kind, code in _FATAL if isinstance(error, kind)), None)
    if fatal is not None:
        return _fail(fatal)
    if error.repair is NemoRepair.READ_STATE:
        return ReadState(policy.first_read_s * policy.time_scale, "the stream broke mid-turn")
    if error.repair in (NemoRepair.NEW_TOKEN, NemoRepair.NEW_SESSION):
        return _repair(error.repair, attempts, policy)
    if error.retryable:
        if attempts.retries >= policy.max_retries:
            return _fail(ErrorCode.UPSTREAM_UNAVAILABLE)
        retry_after = error.retry_after if isinstance(error, RateLimited) else None
        wait = backoff_s(attempts.retries, policy, retry_after_s=retry_after, jitter=jitter)
        return Retry(wait, type(error).__name__)
    return _fail(ErrorCode.INVALID_INPUT)


def _repair(repair: NemoRepair, attempts: Attempts, policy: Policy) -> Decision:
    if repair is NemoRepair.NEW_TOKEN:
        if attempts.token_repairs >= policy.max_token_repairs:
            return _fail(ErrorCode.UPSTREAM_AUTH)
        return Repair(RepairKind.NEW_TOKEN, "the upstream token is no longer valid")
    if attempts.session_repairs >= policy.max_session_repairs:
        return _fail(ErrorCode.UPSTREAM_UNAVAILABLE)
    return Repair(RepairKind.NEW_SESSION, "the upstream session was lost")


def _fail(code: ErrorCode) -> Fail:
    return Fail(code, MESSAGES[code])


def recovery_delay_s(unchanged_reads: int, policy: Policy) -> float | None:
    """When to read the state next after a broken stream; None: give up.

    ``unchanged_reads`` counts the reads so far that found the draft as it was before
    the edit. The first read comes ``first_read_s`` after the break (see :func:`decide`).
    """
    if unchanged_reads >= policy.unchanged_reads:
        return None
    return policy.read_every_s * policy.time_scale


@dataclass(frozen=True)
class EditLanded:
    """The state shows the edit happened: go on as if the stream had closed."""


@dataclass(frozen=True)
class ReadAgain:
    after_s: float


def after_unknown_edit(
    before: Draft | None, now: Draft | None, unchanged_reads: int, policy: Policy
) -> EditLanded | ReadAgain | Fail:
    """A read of the state after a broken stream: did the edit land?

    The draft differs from the one stored before the message was sent: it landed.
    Otherwise read again later, and after ``policy.unchanged_reads`` reads give up
    with :attr:`ErrorCode.EDIT_OUTCOME_UNKNOWN`: the message is never sent twice.
    ``unchanged_reads`` counts this read too.
    """
    if now is not None and now != before and now.is_exportable:
        return EditLanded()
    delay = recovery_delay_s(unchanged_reads, policy)
    if delay is None:
        return _fail(ErrorCode.EDIT_OUTCOME_UNKNOWN)
    return ReadAgain(delay)


# the instruction


@dataclass(frozen=True)
class JobOptions:
    """The options of a job as the API accepts them (all optional)."""

    aspect_ratio: str | None = None  # 16:9, 9:16, 1:1, 4:5
    resolution: str | None = None  # 720p, 1080p
    duration_s: float | None = None
    music: bool | str | None = None  # on/off, or the URL of a track
    title: str | None = None
    language: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobOptions:
        duration = data.get("duration_s")
        return cls(
            aspect_ratio=_text(data.get("aspect_ratio")),
            resolution=_text(data.get("resolution")),
            duration_s=float(duration) if isinstance(duration, int | float) else None,
            music=_music(data.get("music")),
            title=_text(data.get("title")),
            language=_text(data.get("language")),
        )


def _music(value: Any) -> bool | str | None:
    """The API's ``on``/``off``/track URL (or a boolean) as True/False/the URL."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"on", "yes", "true"}:
            return True
        if lowered in {"off", "no", "none", "false"}:
            return False
        return value.strip() or None
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


_RATIO_WORDS = {"16:9": "landscape", "9:16": "vertical", "1:1": "square", "4:5": "portrait"}


def compose_instruction(prompt: str, options: JobOptions) -> str:
    """The caller's prompt, then each option as a plain, unambiguous sentence.

    The options are the contract with the caller, so they are spelled out after the
    prompt and win where the two disagree ("the aspect ratio must be 9:16"). A title
    is quoted exactly; nothing the caller wrote is dropped.
    """
    lines = [prompt.strip()]
    asks = []
    if options.aspect_ratio:
        word = _RATIO_WORDS.get(options.aspect_ratio, "")
        asks.append(f"The aspect ratio must be {options.aspect_ratio} {word}".rstrip() + ".")
    if options.resolution:
        asks.append(f"Export in {options.resolution}.")
    if options.duration_s:
        asks.append(f"The video must be {_seconds(options.duration_s)} seconds long.")
    if options.title:
        asks.append(f"Use the title '{options.title}'.")
    if options.music is False:
        asks.append("No music.")
    elif options.music is True:
        asks.append("Add background music.")
    elif isinstance(options.music, str):
        asks.append("Use the uploaded audio file as the background music.")
    if options.language:
        asks.append(f"Write any text in the language '{options.language}'.")
    if asks:
        lines.append(" ".join(asks))
    return "\n".join(lines)


def _seconds(value: float) -> str:
    return f"{value:g}"


# verification


DURATION_TOLERANCE = 0.1  # a tenth of the asked length, at least one second


def verify_draft(draft: Draft, canvas: CanvasConfig, options: JobOptions) -> list[str]:
    """Each way the draft differs from the options asked for; empty when it matches."""
    mismatches = []
    if options.aspect_ratio and not _ratio_matches(canvas, options.aspect_ratio):
        found = canvas.aspect_ratio or (
            f"{canvas.width}x{canvas.height}" if canvas.width and canvas.height else "unknown"
        )
        mismatches.append(f"aspect ratio is {found}, {options.aspect_ratio} was asked")
    if options.duration_s:
        length = (draft.duration_ms or 0) / 1000
        tolerance = max(1.0, DURATION_TOLERANCE * options.duration_s)
        if abs(length - options.duration_s) > tolerance:
            mismatches.append(f"length is {length:g} s, {options.duration_s:g} s was asked")
    if options.title and not _has_text(draft, options.title):
        mismatches.append(f"the title '{options.title}' is missing")
    if options.music is False and _has_track(draft, TrackType.AUDIO):
        mismatches.append("there is music, none was asked")
    return mismatches


def _ratio_matches(canvas: CanvasConfig, asked: str) -> bool:
    match = re.fullmatch(r"(\d+):(\d+)", asked)
    if match is None:
        return True  # the API refuses other ratios; nothing to compare
    if canvas.width and canvas.height:
        wanted = int(match[1]) / int(match[2])
        return abs(canvas.width / canvas.height - wanted) <= 0.01 * wanted
    return canvas.aspect_ratio == asked


def _has_track(draft: Draft, kind: TrackType) -> bool:
    return any(track.kind == kind and track.segments for track in draft.tracks)


def _has_text(draft: Draft, text: str) -> bool:
    wanted = text.strip().casefold()
    return any(
        (segment.text or "").strip().casefold() == wanted
        for track in draft.tracks
        if track.kind == TrackType.TEXT
        for segment in track.segments
    )


# the export


def render_id(job_id: str, attempt: int) -> str:
    """The render's id for a job's export attempt: the same every time it is asked."""
    safe = re.sub(r"[^A-Za-z0-9_-]", "_", job_id)
    return f"render_{safe}_{attempt}"


MAX_RENDER_ATTEMPTS = 2  # nemo-api.md: one retry with a new id


def next_render(attempt: int, reason: str) -> Retry | Fail:
    """After render ``attempt`` failed (or stalled and was canceled): retry once, then fail."""
    if attempt < MAX_RENDER_ATTEMPTS:
        return Retry(0.0, f"the render failed ({reason}); starting it once more")
    return Fail(ErrorCode.RENDER_FAILED, f"{MESSAGES[ErrorCode.RENDER_FAILED]} Last: {reason}.")


def compose_correction(mismatches: list[str], options: JobOptions) -> str:
    """The follow-up instruction for a draft that differs from the options asked for.

    It names each difference and restates every option, so the editor corrects what
    is wrong without undoing what was right.
    """
    listed = "; ".join(mismatches)
    restated = compose_instruction("", options).strip()
    return f"The video does not match what was asked: {listed}. Please correct it. {restated}"


#: progress shown while a stage runs; rendering moves it from 60 to 95
_STAGE_PROGRESS = {
    "authorize": 2,
    "open_session": 5,
    "upload": 10,
    "edit": 20,
    "verify": 55,
    "export": 60,
    "poll_render": 60,
    "finalize": 96,
}


def stage_progress(stage: str, render_progress: float | None = None) -> int:
    """The job's progress at ``stage`` (and, while rendering, the render's own)."""
    if stage == "poll_render" and render_progress is not None:
        return 60 + round(35 * min(max(render_progress, 0.0), 100.0) / 100)
    return _STAGE_PROGRESS.get(stage, 0)
