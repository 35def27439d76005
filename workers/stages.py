"""The stages: what each one does upstream, and what it checkpoints first.

Each handler takes a :class:`~workers.pipeline.StageRun` (the job as claimed, a
client holding the shared token) and returns the next step. Upstream errors are
left to the engine, except where a stage knows more than the error does (the edit
knows whether its instruction went out).

- authorize: nothing to checkpoint (reading credits is free); a crash runs it again.
- open_session: the session id, right after it is created; a crash before that leaves
  an orphan session (free).
- upload: ``uploaded_media = []`` ("an upload may have happened") before the upload;
  a crash after it reads the session's state and uploads only what is missing.
- edit: the instruction, the draft before and ``edit_sent_at``, before the request;
  a crash after it never re-sends: it reads the state (nemo-api.md's recovery).
- verify: reads only; a correction is a new edit with its own checkpoint.
- export: the render id and attempt, before the POST; a crash after it asks that
  id's status before any POST.
- poll_render: the render's status and progress; a crash polls again.
- finalize: the file is written whole into storage, then the job is marked done in
  one guarded statement with its outbox row; a crash downloads again (idempotent).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import tempfile
from collections import Counter
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from models.jobs import EventType, Job, JobStatus, Stage
from nemo import (
    AgentError,
    ApiError,
    CanvasConfig,
    Draft,
    DuplicateRenderId,
    Heartbeat,
    NemoClient,
    NemoError,
    RenderState,
    RenderStatus,
    Text,
    TransportError,
    diff,
    translate,
)
from reelyard.crash import crash_point
from reelyard.storage import video_key
from workers import upstream as credentials
from workers.decisions import (
    EditLanded,
    ErrorCode,
    Fail,
    JobOptions,
    ReadAgain,
    Retry,
    after_unknown_edit,
    compose_correction,
    compose_instruction,
    next_render,
    render_id,
    stage_progress,
    verify_draft,
)
from workers.pipeline import (
    Advance,
    Finish,
    Handler,
    NoSession,
    Outcome,
    StageRun,
    UploadMode,
    fail,
)
from workers.video import probe_video

RENDER_OUTPUT = {"format": "mp4", "quality": "high"}
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")


def _session_id(run: StageRun) -> str:
    session_id = run.job.upstream_session_id
    if not session_id:  # a checkpoint is missing: start the session over
        raise NoSession
    return session_id


# authorize


def authorize(run: StageRun) -> Outcome:
    """The token is in hand (the engine got it); read the credit balance now and then."""
    upstream = run.deps.upstream
    if run.config.credits_every_s >= 0 and credentials.credits_due(
        run.deps.sessions, upstream, run.config.credits_every_s, run.now()
    ):
        credentials.record_credits(
            run.deps.sessions, upstream, run.client().credits(), now=run.now()
        )
    return Advance(Stage.OPEN_SESSION, message="Connected to the video service.")


# open_session


def open_session(run: StageRun) -> Outcome:
    """A job gets its own upstream session; a revision keeps its parent's."""
    job = run.job
    if job.upstream_session_id:
        return Advance(Stage.UPLOAD)
    language = JobOptions.from_json(job.options).language or "en"
    language = language.lower() if _LANGUAGE.match(language.lower()) else "en"
    session = run.client().create_session(language)
    return Advance(
        Stage.UPLOAD,
        values={"upstream_session_id": session.session_id},
        message="Opened a session with the video editor.",
    )


# upload


def _file_name(url: str) -> str:
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or "download"


def missing_uploads(urls: list[str], present: list[str]) -> list[str]:
    """The URLs whose files are not among ``present`` (file names in the session).

    A file counts once: two URLs with the same name need two files. Where the names
    cannot be matched but the session holds as many files as there are URLs (a
    session holds only this job's uploads), nothing is missing.
    """
    if len(present) >= len(urls):
        return []
    available = Counter(present)
    missing = []
    for url in urls:
        name = _file_name(url)
        if available[name] > 0:
            available[name] -= 1
        else:
            missing.append(url)
    return missing


def upload(run: StageRun) -> Outcome:
    job = run.job
    if job.parent_id and job.session_repairs == 0:
        return Advance(Stage.EDIT, message="Working on the photos of the job this one revises.")
    session_id = _session_id(run)
    urls = [str(url) for url in job.image_urls]
    client = run.client()
    done: list[dict[str, Any]] = []
    if job.uploaded_media:  # finished before the crash
        return Advance(Stage.EDIT)
    if job.uploaded_media is not None:  # started before a crash: upload what is missing
        state = client.state(session_id)
        present = [str(info.get("filename", "")) for info in state.video_infos]
        todo = missing_uploads(urls, present)
        done = [{"filename": name} for name in present]
    else:
        run.checkpoint({"uploaded_media": []})
        todo = urls
    if todo:
        if run.config.upload_mode is UploadMode.FILE:
            from workers.files import upload_as_files  # noqa: PLC0415 (file mode only)

            answer = upload_as_files(
                client, session_id, todo, run.config, keep_alive=run.keep_alive
            )
        else:
            answer = client.upload_urls(session_id, todo)
        done += [
            {"url": url, "filename": file.filename, "cdn_url": file.cdn_url}
            for url, file in zip(todo, answer.files, strict=False)
        ]
    count = len(urls)
    return Advance(
        Stage.EDIT,
        values={"uploaded_media": done},
        message=f"Uploaded {count} photo{'' if count == 1 else 's'}.",
    )


# edit


def _instruction(run: StageRun) -> str:
    job = run.job
    if job.instruction:
        return job.instruction
    prompt = job.prompt
    if job.parent_id and job.session_repairs > 0:  # a new session lost the parent's work
        with run.deps.sessions() as session:
            parent = session.get(Job, job.parent_id)
            if parent is not None:
                prompt = f"{parent.prompt}\n{prompt}"
    return compose_instruction(prompt, JobOptions.from_json(job.options))


def edit(run: StageRun) -> Outcome:
    """Send the instruction once, read the stream, record what changed.

    A resumed edit whose instruction may have gone out never sends it again: it
    reads the state until the draft shows the edit (or gives up, nemo-api.md).
    """
    job = run.job
    session_id = _session_id(run)
    client = run.client()
    if job.edit_sent_at is not None:
        return _recover(run, session_id)
    # a session this job opened and never sent an instruction to holds no draft yet
    fresh = job.parent_id is None and job.edits_sent == 0
    before = None if fresh else client.state(session_id).draft
    instruction = _instruction(run)
    sent_before = job.edits_sent
    run.checkpoint(
        {
            "instruction": instruction,
            "edit_sent_at": run.now(),
            "edit_reads": 0,
            "edits_sent": sent_before + 1,
            "draft_before": before.to_json() if before is not None else None,
        },
        message="Sent the instruction to the video editor.",
        event=EventType.MESSAGE,
        data={"instruction": instruction},
    )
    crash_point("edit_marked_sent")
    last_words = ""
    try:
        with contextlib.closing(client.chat(session_id, instruction)) as events:
            last_words = _read_stream(run, events)
    except (ApiError, TransportError):
        # refused or never delivered: the instruction was not acted on
        run.checkpoint({"edit_sent_at": None, "edits_sent": sent_before})
        raise
    return _edit_done(run, session_id, before, last_words)


def _read_stream(run: StageRun, events: Any) -> str:
    last_words = ""
    quiet_since = run.now()
    for event in events:
        crash_point("edit_request_sent")  # the request went out; its stream is not read
        if isinstance(event, Text) and not event.partial and event.content.strip():
            words = translate(event.content).text.strip()
            if words:
                last_words = words
                run.event(EventType.MESSAGE, words)
                quiet_since = run.now()
                continue
        elif isinstance(event, AgentError):
            last_words = event.message
            run.event(EventType.ERROR, f"The editor reported: {event.message}")
            continue
        elif isinstance(event, Heartbeat):
            every = timedelta(seconds=run.config.still_working_every_s)
            if run.now() - quiet_since >= every:
                run.event(EventType.PROGRESS, "The editor is still working.")
                quiet_since = run.now()
                continue
        run.keep_alive()
    return last_words


def _edit_done(run: StageRun, session_id: str, before: Draft | None, last_words: str) -> Outcome:
    state = run.client().state(session_id)
    after = state.draft
    if after is None or not after.is_exportable:
        said = f" The editor said: {last_words}" if last_words else ""
        return fail(ErrorCode.NO_EXPORTABLE_DRAFT, f"The editor finished without a video.{said}")
    changes = diff(before if before and before.tracks else None, after)
    return Advance(
        Stage.VERIFY,
        values={
            "draft_after": after.to_json(),
            "timeline": {"summary": after.summary(), "duration_s": _seconds(after)},
        },
        message=f"The editor finished. {changes}",
        data={"summary": after.summary()},
    )


def _seconds(draft: Draft) -> float | None:
    return round(draft.duration_ms / 1000, 3) if draft.duration_ms is not None else None


def _recover(run: StageRun, session_id: str) -> Outcome:
    job = run.job
    before = Draft(job.draft_before) if job.draft_before is not None else None
    now = run.client().state(session_id).draft
    reads = job.edit_reads + 1
    match after_unknown_edit(before, now, reads, run.config.policy):
        case EditLanded():
            run.event(EventType.MESSAGE, "The state shows the edit went through.")
            return _edit_done(run, session_id, before, "")
        case ReadAgain(after_s=after_s):
            return Advance(
                Stage.EDIT,
                after_s,
                values={"edit_reads": reads},
                message=f"The edit does not show yet; looking again in {after_s:.0f} s.",
                event=EventType.RETRY,
            )
        case Fail(code=code, message=message):
            given_up = fail(code, message)
            return Finish(
                given_up.status, given_up.message, {**given_up.values, "edit_reads": reads}
            )
    raise AssertionError("after_unknown_edit answered something else")  # pragma: no cover


# verify


def verify(run: StageRun) -> Outcome:
    """Does the draft match the options? One correction at most, then ``spec_mismatch``."""
    job = run.job
    state = run.client().state(_session_id(run))
    draft = state.draft if state.draft is not None else Draft(job.draft_after or {})
    options = JobOptions.from_json(job.options)
    mismatches = verify_draft(draft, state.canvas_config or CanvasConfig(), options)
    if not mismatches:
        return Advance(
            Stage.EXPORT,
            values={"draft_after": draft.to_json()},
            message="The timeline matches the options asked for.",
        )
    listed = "; ".join(mismatches)
    if job.corrections < run.config.max_corrections:
        return Advance(
            Stage.EDIT,
            values={
                "instruction": compose_correction(mismatches, options),
                "corrections": job.corrections + 1,
                "edit_sent_at": None,
                "edit_reads": 0,
            },
            message=f"The timeline does not match the options ({listed}); asking for a correction.",
            event=EventType.RETRY,
        )
    return fail(ErrorCode.SPEC_MISMATCH, f"The video does not match the options: {listed}.")


# export


def export(run: StageRun) -> Outcome:
    """Start the render under an id stored first; a resumed job finds its render."""
    job = run.job
    client = run.client()
    if job.render_id is not None:
        try:
            status = client.render_status(job.render_id)
        except ApiError as error:
            if not _render_gone(error):
                raise
        else:  # the render exists: never a second one for this attempt
            return _polling(run, status, "Rendering (resumed).")
    else:
        attempt = job.render_attempt + 1
        run.checkpoint(
            {
                "render_attempt": attempt,
                "render_id": render_id(job.id, attempt),
                "render_status": None,
                "render_started_at": None,
            }
        )
    assert run.job.render_id is not None  # noqa: S101 (just checkpointed)
    draft = Draft(job.draft_after or {})
    try:
        status = client.start_render(
            run.job.render_id, _session_id(run), draft, output=RENDER_OUTPUT
        )
    except DuplicateRenderId:
        status = client.render_status(run.job.render_id)
    crash_point("render_posted")
    return _polling(run, status, "Rendering started.")


def _polling(run: StageRun, status: RenderStatus, message: str) -> Outcome:
    return Advance(
        Stage.POLL_RENDER,
        run.config.render_poll_s,
        values={
            "render_status": status.status.value,
            "render_started_at": run.job.render_started_at or run.now(),
        },
        message=message,
        data={"render_id": status.render_id},
    )


# poll_render


def _render_gone(error: ApiError) -> bool:
    """The upstream does not know the render (4004): it never started, or it belongs to
    a user whose token the service no longer has (a new client id, workers/upstream.py)."""
    return error.http_status == 404 or error.code == 4004


def _render_status(run: StageRun, client: NemoClient, render: str) -> RenderStatus | Outcome:
    """The render's status; the next render attempt if the upstream no longer knows it."""
    try:
        return client.render_status(render)
    except ApiError as error:
        if not _render_gone(error):
            raise
        return _render_again(run, "the video service no longer knows the render")


def poll_render(run: StageRun) -> Outcome:
    job = run.job
    assert job.render_id is not None  # noqa: S101 (export stored it)
    client = run.client()
    status = _render_status(run, client, job.render_id)
    if not isinstance(status, RenderStatus):  # gone upstream: rendered again
        return status
    if status.status is RenderState.COMPLETED:
        return Advance(
            Stage.FINALIZE,
            values={"render_status": status.status.value},
            message="The render is finished; storing the video.",
        )
    if status.status is RenderState.FAILED:
        return _render_again(run, status.error or "the render failed")
    started = job.render_started_at or run.now()
    if run.now() - started > timedelta(seconds=run.config.render_timeout_s):
        with contextlib.suppress(NemoError):  # best effort: it may have just finished
            client.cancel_render(job.render_id)
        return _render_again(run, f"no result after {run.config.render_timeout_s:g} s")
    progress = stage_progress(Stage.POLL_RENDER.value, status.progress)
    moved = progress > job.progress
    return Advance(
        Stage.POLL_RENDER,
        run.config.render_poll_s,
        values={"render_status": status.status.value, "progress": progress},
        message=f"Rendering: {status.progress or 0:.0f}%." if moved else None,
        event=EventType.PROGRESS,
    )


def _render_again(run: StageRun, reason: str) -> Outcome:
    match next_render(run.job.render_attempt, reason):
        case Retry(reason=why):
            return Advance(
                Stage.EXPORT,
                values={"render_id": None, "render_status": "failed", "render_started_at": None},
                message=f"The render did not finish: {why}.",
                event=EventType.RETRY,
            )
        case Fail(code=code, message=message):
            return fail(code, message)
    raise AssertionError("next_render answered something else")  # pragma: no cover


# finalize


def finalize(run: StageRun) -> Outcome:
    """Copy the video into reelyard's storage, describe it, and mark the job done."""
    job = run.job
    assert job.render_id is not None  # noqa: S101 (export stored it)
    client = run.client()
    status = _render_status(run, client, job.render_id)
    if not isinstance(status, RenderStatus):  # gone upstream: rendered again
        return status
    storage = run.deps.storage
    with tempfile.TemporaryDirectory(prefix="reelyard-") as scratch:
        local = Path(scratch) / "video.mp4"
        client.download(status, local, render_id=job.render_id)
        facts = probe_video(local)
        digest = _sha256(local)
        size = local.stat().st_size
        storage.put(video_key(job.id), local)
    crash_point("video_stored")
    return Finish(
        JobStatus.SUCCEEDED,
        "The video is ready.",
        {
            "video_url": f"{run.deps.public_url}/v1/jobs/{job.id}/video",
            "video_width": facts.width,
            "video_height": facts.height,
            "video_duration_s": facts.duration_s,
            "video_size_bytes": size,
            "video_sha256": digest,
            "render_status": status.status.value,
        },
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


HANDLERS: Mapping[Stage, Handler] = {
    Stage.AUTHORIZE: authorize,
    Stage.OPEN_SESSION: open_session,
    Stage.UPLOAD: upload,
    Stage.EDIT: edit,
    Stage.VERIFY: verify,
    Stage.EXPORT: export,
    Stage.POLL_RENDER: poll_render,
    Stage.FINALIZE: finalize,
}
