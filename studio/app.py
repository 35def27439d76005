"""The studio's HTTP face: every endpoint of nemo-api.md, the media it serves, and
``/_studio/*`` for tests and operators (loopback or an admin token only).

``create_app(config)`` builds an independent studio: its own store, faults and render
pool; importing this module starts nothing.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
import secrets
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request, send_file
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from studio.config import ErrorStatus, StatusShape, StudioConfig
from studio.envelopes import NemoFailure, failure_body, ok, render_failure_body, render_ok
from studio.faults import FaultConfigError, Faults
from studio.fetch import fetch
from studio.media import MediaFile, SizeLimit, safe_name, store
from studio.planner import MediaItem, TurnKind, plan
from studio.render import DraftError, Timeline, parse_timeline
from studio.renders import RenderPool
from studio.store import Account, Render, RenderStatus, Session, Store, iso
from studio.turns import DURATIONS, GUI_HINTS, Draws, Step, Turn, script

log = logging.getLogger(__name__)

ATTRIBUTION_HEADERS = ("X-Skill-Source", "X-Skill-Version", "X-Skill-Platform")
RENDER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
MAX_JSON_BYTES = 20 * 1024 * 1024
MAX_URLS = 50
MAX_FILES = 50
MAX_MESSAGE_CHARS = 20_000
#: the longest video the studio exports (the planner makes ten minutes at most)
MAX_EXPORT_S = 30 * 60

nemo = Blueprint("nemo", __name__)
served = Blueprint("served", __name__)
admin = Blueprint("admin", __name__, url_prefix="/_studio")


class Studio:
    """What one studio holds; attached to its Flask app as ``app.extensions["studio"]``."""

    def __init__(self, config: StudioConfig) -> None:
        self.config = config
        self.faults = Faults(seed=config.seed, silent_close_ratio=config.silent_close_ratio)
        self.faults.update_from_text(config.faults)
        self.store = Store(config, self.faults)
        self.renders = RenderPool(config, self.store, self.faults)
        # loaded from a state file: what a stopped studio had not finished goes on
        for render in self.store.unfinished_renders():
            self.renders.resume(render, self.media_dir(render.session_id))

    def media_dir(self, session_id: str) -> Path:
        return self.config.data_dir / "sessions" / session_id / "media"


def create_app(config: StudioConfig | None = None) -> Flask:
    config = config or StudioConfig.from_env()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_upload_bytes * 4 + MAX_JSON_BYTES
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["studio"] = Studio(config)
    app.register_blueprint(nemo)
    app.register_blueprint(served)
    app.register_blueprint(admin)
    app.register_error_handler(NemoFailure, _nemo_failure)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    return app


def studio() -> Studio:
    found: Studio = current_app.extensions["studio"]
    return found


# answers and errors


def _is_render_path() -> bool:
    return request.path.startswith("/api/render/")


def _is_api_path() -> bool:
    return request.path.startswith("/api/") or request.path == "/run_sse"


def _nemo_failure(failure: NemoFailure) -> Response:
    body = render_failure_body(failure) if _is_render_path() else failure_body(failure)
    status = failure.http_status
    # the files the studio serves and /_studio are not the Nemo API: their status is real
    if studio().config.error_status is ErrorStatus.OK and _is_api_path():
        status = 200
    response = jsonify(body)
    response.status_code = status
    if failure.retry_after_s is not None:
        response.headers["Retry-After"] = str(max(1, round(failure.retry_after_s)))
    return response


def _http_error(error: HTTPException) -> Response:
    code = {404: 4004, 405: 400, 413: 4002, 409: 4009}.get(error.code or 500, 400)
    if (error.code or 500) >= 500:
        code = 5000
    failure = NemoFailure(code, error.description)
    failure.http_status = error.code or 500
    return _nemo_failure(failure)


def _unexpected(error: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.path)
    return _nemo_failure(NemoFailure(5000))


def _json_body() -> dict[str, Any]:
    if (request.content_length or 0) > MAX_JSON_BYTES:
        raise NemoFailure(400, "the body is too large")
    # a body without a length (chunked) is cut off at the same size as it is read
    request.max_content_length = MAX_JSON_BYTES
    try:
        body = request.get_json(silent=True)
    except RequestEntityTooLarge:
        raise NemoFailure(400, "the body is too large") from None
    except RecursionError:  # nested deeper than the decoder goes: not JSON we can read
        raise NemoFailure(400, "the body is nested too deeply") from None
    if not isinstance(body, dict):
        raise NemoFailure(400, "the body must be a JSON object")
    return body


# faults that strike any Nemo call


@nemo.before_request
def _misbehave() -> Response | None:
    faults = studio().faults
    latency = faults.number("latency_ms")
    if latency:
        time.sleep(latency / 1000)
    if faults.fires("server_error"):
        page = "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"
        return Response(page, status=503, mimetype="text/html")
    if faults.fires("rate_limit"):
        raise NemoFailure(429, retry_after_s=faults.number("retry_after_s"))
    return None


def _account() -> Account:
    account: Account = studio().store.authenticate(request.headers.get("Authorization"))
    g.account = account
    return account


# 1. tokens


@nemo.post("/api/auth/anonymous-token")
def anonymous_token() -> Response:
    client_id = request.headers.get("X-Client-Id", "").strip()
    if not client_id:
        raise NemoFailure(400, "missing X-Client-Id header")
    if len(client_id) > 128:
        raise NemoFailure(400, "X-Client-Id is too long")
    account = studio().store.issue_anonymous(client_id, request.remote_addr or "unknown")
    return jsonify(
        ok(
            {
                "token": account.token,
                "user_id": account.user_id,
                "expires_at": iso(account.expires_at or 0),
                "credits": account.available,
            }
        )
    )


# 2. sessions


@nemo.post("/api/tasks/me/with-session/nemo_agent")
def create_session() -> Response:
    account = _account()
    body = _json_body()
    language = body.get("language", "en")
    if not isinstance(language, str) or not language or len(language) > 16:
        raise NemoFailure(400, "language is a short language code such as 'en'")
    session = studio().store.create_session(account, language)
    return jsonify(
        ok(
            {
                "task_id": session.task_id,
                "session_id": session.session_id,
                "user_id": session.user_id,
            }
        )
    )


# 3. uploads


@nemo.post("/api/upload-video/nemo_agent/<user>/<session_id>")
def upload(user: str, session_id: str) -> Response:
    account = _account()
    the_studio = studio()
    session = the_studio.store.session(account, session_id, user)
    media_dir = the_studio.media_dir(session.session_id)
    url_base = f"{the_studio.config.base_url}/cdn/{session.session_id}"
    if request.mimetype == "multipart/form-data":
        files = _receive_files(media_dir, url_base)
    else:
        files = _fetch_urls(_json_body(), media_dir, url_base)
    the_studio.store.add_media(session, files)
    return jsonify(
        ok(
            {
                "files": [media.as_json() for media in files],
                "session_state_applied": True,
            },
            message=f"{len(files)} file(s) uploaded",
        )
    )


def _receive_files(media_dir: Path, url_base: str) -> list[MediaFile]:
    uploads = request.files.getlist("files")
    if not uploads:
        raise NemoFailure(400, "no files: send them in the multipart field 'files'")
    if len(uploads) > MAX_FILES:
        raise NemoFailure(400, f"at most {MAX_FILES} files at once")
    limit = studio().config.max_upload_bytes
    received: list[tuple[Path, str, int, str]] = []
    media_dir.mkdir(parents=True, exist_ok=True)
    for upload_file in uploads:
        name = safe_name(upload_file.filename)
        with tempfile.NamedTemporaryFile(dir=media_dir, delete=False, suffix=".part") as scratch:
            scratch_path = Path(scratch.name)
            try:
                size, digest = SizeLimit(limit, name).copy(
                    _read_chunks(upload_file.stream), scratch
                )
            except BaseException:
                scratch_path.unlink(missing_ok=True)
                raise
        received.append((scratch_path, name, size, digest))
    return _keep(received, media_dir, url_base)


def _read_chunks(stream: IO[bytes]) -> Iterator[bytes]:
    while chunk := stream.read(1 << 20):
        yield chunk


def _fetch_urls(body: dict[str, Any], media_dir: Path, url_base: str) -> list[MediaFile]:
    urls = body.get("urls")
    if body.get("source_type", "url") != "url":
        raise NemoFailure(400, "source_type must be 'url' for a JSON upload")
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        raise NemoFailure(400, "urls must be a non-empty list of strings")
    if len(urls) > MAX_URLS:
        raise NemoFailure(400, f"at most {MAX_URLS} urls at once")
    config = studio().config
    media_dir.mkdir(parents=True, exist_ok=True)
    received: list[tuple[Path, str, int, str]] = []
    for url in urls:
        with tempfile.NamedTemporaryFile(dir=media_dir, delete=False, suffix=".part") as scratch:
            scratch_path = Path(scratch.name)
            try:
                fetched = fetch(
                    url,
                    scratch,
                    max_bytes=config.max_upload_bytes,
                    timeout_s=config.url_fetch_timeout_s,
                    allow_private=config.allow_private_urls,
                )
            except BaseException:
                scratch_path.unlink(missing_ok=True)
                _discard(received)
                raise
        received.append(
            (scratch_path, safe_name(fetched.name, "download"), fetched.size, fetched.digest)
        )
    return _keep(received, media_dir, url_base)


def _keep(
    received: list[tuple[Path, str, int, str]], media_dir: Path, url_base: str
) -> list[MediaFile]:
    """Check every received file; all are kept or none (the first bad one is the answer)."""
    kept = []
    try:
        for scratch, name, size, digest in received:
            kept.append(
                store(
                    scratch,
                    name=name,
                    size=size,
                    digest=digest,
                    media_dir=media_dir,
                    url_base=url_base,
                )
            )
    finally:
        _discard(received)
    return kept


def _discard(received: list[tuple[Path, str, int, str]]) -> None:
    for scratch, *_ in received:
        scratch.unlink(missing_ok=True)


# 4. credits


@nemo.get("/api/credits/balance/simple")
def credits() -> Response:
    account = _account()
    return jsonify(ok(studio().store.balance(account)))


# 5. state


@nemo.get("/api/state/nemo_agent/<user>/<session_id>/latest")
def state(user: str, session_id: str) -> Response:
    account = _account()
    session = studio().store.session(account, session_id, user)
    return jsonify(ok({"state": _state(session)}))


def _state(session: Session) -> dict[str, Any]:
    with studio().store.lock:
        draft = json.loads(json.dumps(session.draft)) if session.draft else {}
        media = [m.as_json() for m in session.media]
    canvas: dict[str, Any] = {}
    if draft:
        try:
            timeline = parse_timeline(draft)
            canvas = {
                "width": timeline.canvas.width,
                "height": timeline.canvas.height,
                "aspect_ratio": draft.get("m", {}).get("ratio"),
                "fps": timeline.canvas.fps,
            }
        except DraftError:
            canvas = {}
    return {
        "draft": draft,
        "video_infos": media,
        "canvas_config": canvas,
        "generated_media": list(session.generated_media),
        "video_analyses": [
            {
                "filename": m["filename"],
                "summary": f"{m['file_type']} {m.get('width')}x{m.get('height')}",
            }
            for m in media
        ],
    }


# 6-9. renders


@nemo.post("/api/render/proxy/lambda")
def start_render() -> Response:
    missing = [h for h in ATTRIBUTION_HEADERS if not request.headers.get(h, "").strip()]
    if missing:
        raise NemoFailure(402, f"export refused: missing {', '.join(missing)}")
    account = _account()
    the_studio = studio()
    if not account.paid and not the_studio.config.anonymous_export:
        raise NemoFailure(402, "export is not available on the free plan")
    body = _json_body()
    render_id = body.get("id")
    if not isinstance(render_id, str) or not RENDER_ID.match(render_id):
        raise NemoFailure(400, "id is required: letters, digits, '_', '-' or '.', at most 128")
    the_studio.store.count_submission(render_id)
    session = the_studio.store.session(account, body.get("sessionId"))
    draft = body.get("draft")
    output = body.get("output", {"format": "mp4", "quality": "high"})
    if not isinstance(output, dict) or output.get("format", "mp4") != "mp4":
        raise NemoFailure(400, "output.format must be 'mp4'")
    tracks = draft.get("t") if isinstance(draft, dict) else None
    if (
        not isinstance(draft, dict)
        or not isinstance(tracks, list)
        or not any(isinstance(t, dict) and t.get("sg") for t in tracks)
    ):
        raise NemoFailure(400, "the draft is not ready for export: no track has segments")
    timeline = _checked_timeline(draft)
    if timeline.duration_s > MAX_EXPORT_S:
        raise NemoFailure(400, f"the video is longer than {MAX_EXPORT_S // 60} minutes")
    cost = the_studio.config.cost_export
    the_studio.store.reserve(account, cost, turn=False)
    render = Render(
        render_id=render_id,
        session_id=session.session_id,
        user_id=account.user_id,
        draft=draft,
        output=output,
        created_at=the_studio.store.clock(),
    )
    try:
        the_studio.store.add_render(render)
    except NemoFailure:
        the_studio.store.release(account, cost)
        raise
    the_studio.store.settle(account, session.session_id, cost)
    the_studio.renders.submit(render, the_studio.media_dir(session.session_id))
    return jsonify(render_ok(_render_view(render)))


def _checked_timeline(draft: dict[str, Any]) -> Timeline:
    try:
        return parse_timeline(draft)
    except DraftError as exc:  # out-of-range numbers included: parse_timeline bounds them
        raise NemoFailure(400, f"the draft cannot be rendered: {exc}") from None


@nemo.get("/api/render/proxy/lambda/<render_id>")
def render_status(render_id: str) -> Response:
    account = _account()
    render = studio().store.render(render_id, account)
    view = _render_view(render)
    shape = studio().faults.status_shape or studio().config.status_shape
    if shape is StatusShape.DATA:
        return jsonify(render_ok(view))
    top: dict[str, Any] = {"success": True, "id": render.render_id, "status": view["status"]}
    top["progress"] = view["progress"]
    if view.get("outputUrl"):
        top["output"] = {"url": view["outputUrl"], "format": "mp4"}
    if view.get("error"):
        top["error"] = view["error"]
    top["createdAt"] = view["createdAt"]
    top["completedAt"] = view["completedAt"]
    return jsonify(top)


def _render_view(render: Render) -> dict[str, Any]:
    with studio().store.lock:
        view: dict[str, Any] = {
            "id": render.render_id,
            "status": render.status.value,
            "progress": render.progress,
            "createdAt": int(render.created_at * 1000),
            "completedAt": int(render.completed_at * 1000) if render.completed_at else None,
        }
        if render.status is RenderStatus.COMPLETED:
            view["outputUrl"] = f"{studio().config.base_url}/renders/{render.render_id}.mp4"
        if render.error:
            view["error"] = render.error
    return view


@nemo.post("/api/render/proxy/lambda/<render_id>/cancel")
def cancel_render(render_id: str) -> Response:
    account = _account()
    render = studio().store.render(render_id, account)
    if render.finished:
        raise NemoFailure(4009, f"render {render_id} has already {render.status.value}")
    studio().renders.cancel(render)
    return jsonify(render_ok(_render_view(render)))


@nemo.get("/api/render/proxy/<render_id>/download")
def download(render_id: str) -> Response:
    account = _account()
    render = studio().store.render(render_id, account)
    return _send_render(render)


def _send_render(render: Render) -> Response:
    if render.status is not RenderStatus.COMPLETED:
        raise NemoFailure(
            4009, f"render {render.render_id} is {render.status.value}, not completed"
        )
    path = studio().renders.output_path(render.render_id)
    return send_file(
        path, mimetype="video/mp4", download_name=f"{render.render_id}.mp4", conditional=True
    )


# the chat turn


@nemo.post("/run_sse")
def run_sse() -> Response:
    account = _account()
    the_studio = studio()
    body = _json_body()
    if body.get("app_name") != "nemo_agent":
        raise NemoFailure(400, "app_name must be 'nemo_agent'")
    user = body.get("user_id", "me")
    if not isinstance(user, str):
        raise NemoFailure(400, "user_id is 'me' or the user id that came with the token")
    session = the_studio.store.session(account, body.get("session_id"), user)
    text = _message_text(body.get("new_message"))
    media = [
        MediaItem(
            ref=m.cdn_url,
            name=m.filename,
            kind=m.file_type,
            width=m.width,
            height=m.height,
            duration_ms=round(m.duration * 1000) if m.duration else None,
        )
        for m in session.media
    ]
    with the_studio.store.lock:
        current = json.loads(json.dumps(session.draft)) if session.draft else None
    the_plan = plan(text, media, current)
    cost = {
        TurnKind.GENERATE: the_studio.config.cost_generate,
        TurnKind.EDIT: the_studio.config.cost_edit,
        TurnKind.ANSWER: the_studio.config.cost_answer,
    }[the_plan.kind]
    the_studio.store.reserve(account, cost)
    the_studio.store.record_message(session, text, the_plan.kind.value, cost)
    faults = the_studio.faults
    # a silent close ends a turn that did something, after its tool_result; an answer
    # is nothing but its text
    answer = the_plan.kind is TurnKind.ANSWER
    draws = Draws(
        duration_s=(
            the_studio.config.turn_s
            if the_studio.config.turn_s is not None
            else faults.uniform(*DURATIONS[the_plan.kind])
        ),
        silent=not answer and faults.fires("silent_close"),
        cut=faults.fires("stream_cut"),
        hint=_hint(faults) if not answer else None,
    )
    store_ = the_studio.store
    actions = script(the_plan, draws, heartbeat_s=the_studio.config.heartbeat_s)
    leaves = next(
        (a.draft for a in reversed(actions) if a.step is Step.APPLY and a.draft is not None),
        None,
    )
    turn_id = store_.begin_turn(account, session, cost, leaves)
    turn = Turn(
        actions=actions,
        # a fixed turn length is wall time: it paces the turn on its own
        time_scale=1.0 if the_studio.config.turn_s is not None else the_studio.config.time_scale,
        apply=lambda draft: store_.set_draft(session, draft),
        finish=lambda: store_.settle(account, session.session_id, cost, turn_id=turn_id),
        shape=the_studio.config.event_shape,
    )
    connection = request.environ.get("werkzeug.socket") or request.environ.get("gunicorn.socket")
    turn.start()
    return Response(
        turn.relay(connection),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _hint(faults: Faults) -> str | None:
    if not faults.chance(0.5):
        return None
    return GUI_HINTS[int(faults.uniform(0, len(GUI_HINTS))) % len(GUI_HINTS)]


def _message_text(message: Any) -> str:
    if not isinstance(message, dict) or not isinstance(message.get("parts"), list):
        raise NemoFailure(400, "new_message must be {'parts': [{'text': ...}]}")
    texts = [
        p["text"]
        for p in message["parts"]
        if isinstance(p, dict) and isinstance(p.get("text"), str)
    ]
    text = "\n".join(texts).strip()
    if not text:
        raise NemoFailure(400, "the message has no text")
    if len(text) > MAX_MESSAGE_CHARS:
        raise NemoFailure(400, f"the message is longer than {MAX_MESSAGE_CHARS} characters")
    return text


# files the studio serves: uploads (cdn_url) and finished renders (outputUrl)


@served.get("/cdn/<session_id>/<name>")
def cdn(session_id: str, name: str) -> Response:
    if not re.fullmatch(r"[0-9a-f]{24}\.[a-z0-9]{2,5}", name) or not re.fullmatch(
        r"sess_[0-9a-f]{32}", session_id
    ):
        raise NemoFailure(4004, "no such file")
    path = studio().media_dir(session_id) / name
    if not path.is_file():
        raise NemoFailure(4004, "no such file")
    return send_file(path, conditional=True)


@served.get("/renders/<render_id>.mp4")
def rendered(render_id: str) -> Response:
    render = studio().store.renders.get(render_id)
    if render is None:
        raise NemoFailure(4004, f"no render {render_id}")
    return _send_render(render)


# /_studio: for tests and operators, not part of the contract


@admin.before_request
def _admin_only() -> None:
    expected = studio().config.admin_token
    given = request.headers.get("X-Studio-Admin", "")
    if expected and secrets.compare_digest(given, expected):
        return
    try:
        loopback = ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise NemoFailure(4004, "not found")


@admin.get("/faults")
def get_faults() -> Response:
    return jsonify(studio().faults.as_json())


@admin.post("/faults")
def set_faults() -> Response:
    try:
        studio().faults.update(_json_body())
    except FaultConfigError as exc:
        raise NemoFailure(400, str(exc)) from None
    return jsonify(studio().faults.as_json())


@admin.get("/ledger")
def ledger() -> Response:
    with studio().store.lock:
        return jsonify(studio().store.ledger.as_json())


@admin.post("/reset")
def reset() -> Response:
    the_studio = studio()
    the_studio.store.reset()
    the_studio.faults.clear()
    the_studio.faults.update_from_text(the_studio.config.faults)
    the_studio.faults.reseed()
    return jsonify({"reset": True})
