"""The studio's state across restarts (``STUDIO_PERSIST``): everything comes back,
unfinished renders finish once, a state file it cannot read stops it, and without the
setting nothing is written."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from dataclasses import fields
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient

from studio import persist, renders
from studio.app import Studio, create_app
from studio.config import ConfigError, StudioConfig
from studio.faults import Faults
from studio.persist import StateFile, StateFileError
from studio.render import EncoderError
from studio.store import Render, Store
from tests.e2e.system import ROOT, STUDIO_READY, Proc, spawn_cli, wait_for
from tests.studio.api import samples
from tests.studio.api.helpers import ATTRIBUTION, GENERATE, chat_body

PAID = "tok_persist_paid"


def _config(tmp_path: Path, **changes: Any) -> StudioConfig:
    settings: dict[str, Any] = {
        "data_dir": tmp_path,
        "state_file": tmp_path / "state.sqlite3",
        "time_scale": 0.005,
        "turn_s": 0.05,
        "seed": 7,
        "silent_close_ratio": 0.0,
        "render_quality": "draft",
        "paid_tokens": {PAID: 1000},
    }
    return StudioConfig(**(settings | changes))


def _studio(app: Flask) -> Studio:
    found: Studio = app.extensions["studio"]
    return found


def _stop(app: Flask) -> None:
    """What stopping the server does, and the file let go, as a process exit would."""
    _studio(app).renders.shutdown()
    _studio(app).store.close()


class Caller:
    """A token holder speaking to an in-process studio."""

    def __init__(self, http: FlaskClient, token: str) -> None:
        self.http = http
        self.token = token

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **ATTRIBUTION}

    def get(self, path: str) -> Any:
        response = self.http.get(path, headers=self.headers)
        assert response.status_code == 200, response.json
        return response.json

    def post(self, path: str, **kwargs: Any) -> Any:
        response = self.http.post(path, headers=self.headers, **kwargs)
        assert response.status_code == 200, response.json
        return response.json


def _anonymous(http: FlaskClient, client_id: str) -> Caller:
    response = http.post("/api/auth/anonymous-token", headers={"X-Client-Id": client_id})
    assert response.status_code == 200, response.json
    return Caller(http, response.json["data"]["token"])


def _photos() -> list[tuple[str, bytes]]:
    return [
        ("red.png", samples.image_bytes(160, 120, (200, 60, 40))),
        ("blue.jpg", samples.image_bytes(160, 120, (40, 60, 200), fmt="JPEG")),
    ]


def _multipart() -> dict[str, Any]:
    """The photos as the Flask test client sends files."""
    return {"files": [(io.BytesIO(data), name) for name, data in _photos()]}


def _wait_render(caller: Caller, render_id: str) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        view: dict[str, Any] = caller.get(f"/api/render/proxy/lambda/{render_id}")["data"]
        return view if view["status"] in ("completed", "failed") else None

    return wait_for(f"render {render_id}", finished, timeout_s=60, every_s=0.02)


def _download(http: FlaskClient, render_id: str) -> bytes:
    with http.get(f"/renders/{render_id}.mp4") as response:
        assert response.status_code == 200
        return response.data


def _render_fields(render: Render) -> dict[str, Any]:
    return {f.name: getattr(render, f.name) for f in fields(render) if f.name != "cancel"}


def _everything(store: Store) -> dict[str, Any]:
    """The whole memory of a store, comparable across two stores."""
    return {
        "accounts": store.accounts,
        "by_client": {client: account.token for client, account in store.by_client.items()},
        "issued_by_ip": store.issued_by_ip,
        "sessions": store.sessions,
        "renders": {rid: _render_fields(r) for rid, r in store.renders.items()},
        "ledger": store.ledger.as_json(),
    }


def test_a_restarted_studio_has_everything_it_had(tmp_path):
    config = _config(tmp_path)
    app = create_app(config)
    http = app.test_client()
    anonymous = _anonymous(http, "client-1")
    paid = Caller(http, PAID)
    session_id = paid.post("/api/tasks/me/with-session/nemo_agent", json={"language": "en"})[
        "data"
    ]["session_id"]
    paid.post(f"/api/upload-video/nemo_agent/me/{session_id}", data=_multipart())
    for text in (GENERATE, "make the title 'Goodbye'"):
        turn = http.post("/run_sse", json=chat_body(session_id, text), headers=paid.headers)
        assert turn.status_code == 200
        assert b"error" not in turn.data, turn.data
    state = paid.get(f"/api/state/nemo_agent/me/{session_id}/latest")["data"]["state"]
    render_id = f"render_{uuid.uuid4().hex}"
    body = {"id": render_id, "sessionId": session_id, "draft": state["draft"]}
    paid.post("/api/render/proxy/lambda", json=body)
    assert _wait_render(paid, render_id)["status"] == "completed"
    video = _download(http, render_id)
    expired = _anonymous(http, "client-0")
    _studio(app).store.faults.update({"token_expiry": {"count": 1}})
    assert http.get("/api/credits/balance/simple", headers=expired.headers).status_code != 200
    before = _everything(_studio(app).store)
    _stop(app)

    again = create_app(config)
    assert _everything(_studio(again).store) == before
    http = again.test_client()
    paid = Caller(http, PAID)
    assert paid.get(f"/api/state/nemo_agent/me/{session_id}/latest")["data"]["state"] == state
    assert paid.get(f"/api/render/proxy/lambda/{render_id}")["data"]["status"] == "completed"
    assert _download(http, render_id) == video
    spent = 1000 - 100 - 50  # a generation and an edit
    assert paid.get("/api/credits/balance/simple")["data"]["available"] == spent
    assert anonymous.get("/api/credits/balance/simple")["data"]["available"] == 100
    # the client already holds a live token: a new one is still refused
    refused = http.post("/api/auth/anonymous-token", headers={"X-Client-Id": "client-1"})
    assert refused.status_code == 429
    ledger = http.get("/_studio/ledger").json
    assert ledger["renders"] == {render_id: {"submissions": 1, "status": "completed"}}
    assert ledger["tokens_revoked"] == {"client-0": 1}
    assert [m["text"] for m in ledger["sessions"][session_id]["messages"]] == [
        GENERATE,
        "make the title 'Goodbye'",
    ]
    _stop(again)


def test_credits_frozen_with_no_turn_to_account_for_them_are_released(tmp_path):
    config = _config(tmp_path)
    store = Store(config, Faults(seed=1))
    account = store.accounts[PAID]
    store.reserve(account, 100, turn=False)  # an export cut before it was accepted
    assert (account.available, account.frozen) == (900, 100)
    store.close()

    again = Store(config, Faults(seed=1))
    assert (again.accounts[PAID].available, again.accounts[PAID].frozen) == (1000, 0)
    again.close()


def test_a_turn_the_restart_cut_is_finished_on_load_once(tmp_path):
    config = _config(tmp_path)
    store = Store(config, Faults(seed=1))
    account = store.accounts[PAID]
    session = store.create_session(account, "en")
    store.reserve(account, 100)
    store.record_message(session, GENERATE, "generate", 100)
    store.begin_turn(account, session, 100, {"tracks": ["the turn's draft"]})
    store.close()  # the process dies mid-turn: the draft was never applied

    again = Store(config, Faults(seed=1))
    finished = again.sessions[session.session_id]
    assert finished.draft == {"tracks": ["the turn's draft"]}
    assert (again.accounts[PAID].available, again.accounts[PAID].frozen) == (900, 0)
    assert again.ledger.credits[session.session_id] == 100
    assert again.turns == {}
    again.close()

    third = Store(config, Faults(seed=1))  # finished once: a second load changes nothing
    assert (third.accounts[PAID].available, third.accounts[PAID].frozen) == (900, 0)
    assert third.ledger.credits[session.session_id] == 100
    third.close()


def test_a_finished_turn_leaves_nothing_to_finish(tmp_path):
    config = _config(tmp_path)
    store = Store(config, Faults(seed=1))
    account = store.accounts[PAID]
    session = store.create_session(account, "en")
    store.reserve(account, 50)
    turn_id = store.begin_turn(account, session, 50, None)
    store.settle(account, session.session_id, 50, turn_id=turn_id)
    store.close()

    again = Store(config, Faults(seed=1))
    assert again.turns == {}
    assert again.ledger.credits[session.session_id] == 50
    assert (again.accounts[PAID].available, again.accounts[PAID].frozen) == (950, 0)
    again.close()


def test_a_reset_empties_the_state_file_too(tmp_path):
    config = _config(tmp_path)
    store = Store(config, Faults(seed=1))
    store.issue_anonymous("client-1", "127.0.0.1")
    store.create_session(store.accounts[PAID], "en")
    store.reset()
    store.close()

    again = Store(config, Faults(seed=1))
    assert list(again.accounts) == [PAID]
    assert (again.sessions, again.by_client, again.ledger.as_json()["tokens"]) == ({}, {}, {})
    again.close()


def test_a_cancel_outlives_a_restart(tmp_path):
    config = _config(tmp_path)
    app = create_app(config)
    studio = _studio(app)
    session = studio.store.create_session(studio.store.accounts[PAID], "en")
    render = Render("render_x", session.session_id, session.user_id, {}, {}, created_at=1.0)
    studio.store.count_submission(render.render_id)
    studio.store.add_render(render)
    # the cancel is recorded; the studio stops before the render ever runs
    studio.store.update_render(render, cancel_requested=True)
    _stop(app)

    again = _studio(create_app(config))
    view = wait_for(
        "the cancelled render to fail",
        lambda: again.store.renders["render_x"].finished or None,
        timeout_s=10,
        every_s=0.02,
    )
    assert view is True
    assert again.store.renders["render_x"].error == "the render was cancelled"
    assert again.store.ledger.renders["render_x"] == {"submissions": 1, "status": "failed"}
    again.renders.shutdown()
    again.store.close()


# the settings


def test_persistence_is_off_by_default_and_writes_no_file(tmp_path):
    config = StudioConfig.from_env({"STUDIO_DATA_DIR": str(tmp_path)})
    assert config.state_file is None
    app = create_app(config)
    http = app.test_client()
    caller = _anonymous(http, "client-1")
    session_id = caller.post("/api/tasks/me/with-session/nemo_agent", json={})["data"]["session_id"]
    caller.post(f"/api/upload-video/nemo_agent/me/{session_id}", data=_multipart())
    written = {path.name for path in tmp_path.rglob("*") if path.is_file()}
    assert written, "the upload is on disk"
    assert not [name for name in written if "state" in name or "sqlite" in name], written


def test_the_settings_name_the_state_file(tmp_path):
    on = StudioConfig.from_env({"STUDIO_DATA_DIR": str(tmp_path), "STUDIO_PERSIST": "1"})
    assert on.state_file == tmp_path / "state.sqlite3"
    elsewhere = tmp_path / "elsewhere.db"
    named = StudioConfig.from_env({"STUDIO_STATE_FILE": str(elsewhere)})
    assert named.state_file == elsewhere
    with pytest.raises(ConfigError, match="STUDIO_PERSIST is 0"):
        StudioConfig.from_env({"STUDIO_STATE_FILE": str(elsewhere), "STUDIO_PERSIST": "0"})


# a state file the studio cannot use


def test_a_state_file_that_is_not_one_is_refused_naming_it(tmp_path):
    path = tmp_path / "state.sqlite3"
    path.write_bytes(b"not a database at all " * 100)
    with pytest.raises(StateFileError) as refused:
        create_app(_config(tmp_path))
    assert str(path) in str(refused.value)
    assert "\n" not in str(refused.value)
    assert path.read_bytes() == b"not a database at all " * 100  # left as it was


def test_a_record_that_does_not_fit_refuses_the_whole_file(tmp_path):
    config = _config(tmp_path)
    Store(config, Faults(seed=1)).close()
    with sqlite3.connect(config.state_file or "") as db:
        db.execute("INSERT INTO record VALUES ('session', 'sess_1', '{\"nonsense\": 1}')")
    db.close()
    with pytest.raises(StateFileError, match="does not fit"):
        Store(config, Faults(seed=1))


def test_a_state_file_in_use_by_another_studio_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(persist, "BUSY_TIMEOUT_S", 0.05)
    holder = StateFile(tmp_path / "state.sqlite3")
    try:
        with pytest.raises(StateFileError, match="locked"):
            StateFile(tmp_path / "state.sqlite3")
    finally:
        holder.close()


def test_the_command_refuses_a_corrupt_state_file_in_one_line(tmp_path):
    path = tmp_path / "state.sqlite3"
    path.write_bytes(b"\x00garbage" * 512)
    env = {**os.environ, "STUDIO_DATA_DIR": str(tmp_path), "STUDIO_PERSIST": "1"}
    finished = subprocess.run(
        [sys.executable, "-m", "reelyard.cli", "studio", "--port", "0"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode != 0
    assert finished.stdout == ""
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1, finished.stderr
    assert str(path) in lines[0]


# a real studio, stopped in the middle of a render


def _start(tmp_path: Path, run: int) -> tuple[Proc, str]:
    env = {
        **os.environ,
        "STUDIO_DATA_DIR": str(tmp_path / "data"),
        "STUDIO_PERSIST": "1",
        # a render lasts 1.5-3 s at the least: long enough to stop it in the middle
        "STUDIO_TIME_SCALE": "0.05",
        "STUDIO_RENDER_QUALITY": "draft",
        "STUDIO_PAID_TOKENS": f"{PAID}:1000",
        "STUDIO_SEED": "11",
    }
    proc = spawn_cli("studio", ["studio", "--port", "0"], env, tmp_path / f"studio-{run}.log")

    def ready() -> str | None:
        for line in proc.output().splitlines():
            if line.startswith(STUDIO_READY):
                return line[len(STUDIO_READY) :].strip()
        assert proc.alive, proc.output()
        return None

    return proc, wait_for("the studio to listen", ready, timeout_s=60)


PAID_HEADERS = {"Authorization": f"Bearer {PAID}", **ATTRIBUTION}


def _render_under_way(url: str, render_id: str) -> None:
    """Export two photos as a 10-second video, and return while its frames are being
    rendered (progress below 90: ffmpeg is running, not the pacing that follows)."""
    with httpx.Client(base_url=url, timeout=30, headers=PAID_HEADERS) as http:
        created = http.post("/api/tasks/me/with-session/nemo_agent", json={"language": "en"})
        session_id = created.json()["data"]["session_id"]
        uploaded = http.post(
            f"/api/upload-video/nemo_agent/me/{session_id}",
            files=[("files", photo) for photo in _photos()],
        )
        stored = [f["cdn_url"].rsplit("/", 1)[-1] for f in uploaded.json()["data"]["files"]]
        draft = {
            "m": {"w": 640, "h": 480, "fps": 25},
            "t": [{"tt": 0, "sg": [{"src": name, "d": 5000} for name in stored]}],
        }
        body = {"id": render_id, "sessionId": session_id, "draft": draft}
        assert http.post("/api/render/proxy/lambda", json=body).is_success

        def rendering() -> bool:
            view = http.get(f"/api/render/proxy/lambda/{render_id}").json()["data"]
            assert view["status"] in ("pending", "processing"), view
            return bool(view["status"] == "processing" and 0 < view["progress"] < 90)

        wait_for("the render to be under way", rendering, timeout_s=30, every_s=0.01)


def _finished_render(url: str, render_id: str) -> tuple[dict[str, Any], bytes, dict[str, Any]]:
    """The render's final status, its video and the studio's ledger."""
    with httpx.Client(base_url=url, timeout=30, headers=PAID_HEADERS) as http:

        def finished() -> dict[str, Any] | None:
            view: dict[str, Any] = http.get(f"/api/render/proxy/lambda/{render_id}").json()["data"]
            return view if view["status"] in ("completed", "failed") else None

        view = wait_for("the resumed render", finished, timeout_s=60, every_s=0.02)
        video = http.get(f"/renders/{render_id}.mp4")
        return view, video.content, http.get("/_studio/ledger").json()


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["SIGKILL", "SIGTERM"])
def test_a_render_cut_by_a_stop_finishes_after_the_restart_counted_once(tmp_path, stop):
    proc, url = _start(tmp_path, 1)
    render_id = f"render_{uuid.uuid4().hex}"
    try:
        _render_under_way(url, render_id)
        if stop == "SIGKILL":
            proc.kill()
        else:
            assert proc.stop() == 0, proc.output()
    finally:
        proc.stop()
    # what a render cut short may leave behind
    outputs = tmp_path / "data" / "renders"
    outputs.mkdir(parents=True, exist_ok=True)
    partial = outputs / f".{render_id}.mp4.0badf00d.partial"
    partial.write_bytes(b"half a video")
    (outputs / f"{render_id}.mp4").write_bytes(b"half a video")

    proc, url = _start(tmp_path, 2)
    try:
        view, video, ledger = _finished_render(url, render_id)
    finally:
        assert proc.stop() == 0, proc.output()
    assert view["status"] == "completed", view
    assert ledger["renders"] == {render_id: {"submissions": 1, "status": "completed"}}
    assert not partial.exists()
    target = tmp_path / "video.mp4"
    target.write_bytes(video)
    with av.open(str(target)) as container:
        assert container.duration / av.time_base == pytest.approx(10.0, abs=0.1)
    assert "Traceback" not in proc.output(), proc.output()


def test_stopping_the_pool_leaves_a_render_to_resume_not_failed(tmp_path):
    """The unit under the SIGTERM case: a render interrupted by shutdown stays unfinished."""
    config = _config(tmp_path, time_scale=1.0)  # held 30-60 s: it is running when stopped
    app = create_app(config)
    studio = _studio(app)
    session = studio.store.create_session(studio.store.accounts[PAID], "en")
    media = studio.media_dir(session.session_id)
    media.mkdir(parents=True)
    (media / "a.png").write_bytes(samples.image_bytes(160, 120))
    draft = {"m": {"w": 160, "h": 120}, "t": [{"tt": 0, "sg": [{"src": "a.png", "d": 500}]}]}
    render = Render("render_y", session.session_id, session.user_id, draft, {}, created_at=1.0)
    studio.store.count_submission(render.render_id)
    studio.store.add_render(render)
    studio.renders.submit(render, media)
    wait_for("the render to run", lambda: render.status.value == "processing", timeout_s=30)
    _stop(app)
    assert (render.status.value, render.error) == ("processing", None)

    again = Store(config, Faults(seed=1))
    assert [r.render_id for r in again.unfinished_renders()] == ["render_y"]
    again.close()


# ffmpeg failing on its own: killed with the studio's process group, or crashed


def _render_with(tmp_path: Path, encoder: Any, monkeypatch: pytest.MonkeyPatch) -> Studio:
    """A studio whose renderer is ``encoder(real_render_draft, studio, render, *args)``,
    one render submitted to it."""
    app = create_app(_config(tmp_path))
    studio = _studio(app)
    session = studio.store.create_session(studio.store.accounts[PAID], "en")
    media = studio.media_dir(session.session_id)
    media.mkdir(parents=True)
    (media / "a.png").write_bytes(samples.image_bytes(160, 120))
    draft = {"m": {"w": 160, "h": 120}, "t": [{"tt": 0, "sg": [{"src": "a.png", "d": 500}]}]}
    render = Render("render_z", session.session_id, session.user_id, draft, {}, created_at=1.0)
    real = renders.render_draft
    monkeypatch.setattr(renders, "render_draft", lambda *args: encoder(real, studio, render, *args))
    studio.store.count_submission(render.render_id)
    studio.store.add_render(render)
    studio.renders.submit(render, media)
    return studio


def test_an_encoder_that_dies_once_is_started_again(tmp_path, monkeypatch):
    calls = []

    def dies_once(real: Any, studio: Studio, render: Render, *args: Any) -> None:
        calls.append(render.render_id)
        if len(calls) == 1:
            raise EncoderError("ffmpeg exited with status 255")
        real(*args)

    studio = _render_with(tmp_path, dies_once, monkeypatch)
    render = studio.store.renders["render_z"]
    wait_for("the render", lambda: render.finished, timeout_s=30, every_s=0.02)
    assert (render.status.value, render.error, len(calls)) == ("completed", None, 2)
    studio.renders.shutdown()
    studio.store.close()


def test_an_encoder_that_keeps_dying_fails_the_render(tmp_path, monkeypatch):
    def dies(real: Any, studio: Studio, render: Render, *args: Any) -> None:
        raise EncoderError("ffmpeg exited with status 255")

    studio = _render_with(tmp_path, dies, monkeypatch)
    render = studio.store.renders["render_z"]
    wait_for("the render", lambda: render.finished, timeout_s=30, every_s=0.02)
    assert (render.status.value, render.error) == (
        "failed",
        "render failed: ffmpeg exited with status 255",
    )
    studio.renders.shutdown()
    studio.store.close()


def test_an_encoder_killed_as_the_studio_stops_leaves_the_render_to_resume(tmp_path, monkeypatch):
    stopping: list[threading.Thread] = []

    def killed_with_the_studio(real: Any, studio: Studio, render: Render, *args: Any) -> None:
        stop = threading.Thread(target=studio.renders.shutdown)
        stop.start()
        stopping.append(stop)
        wait_for("the stop", render.cancel.is_set, timeout_s=10, every_s=0.01)
        raise EncoderError("ffmpeg stopped reading frames")

    monkeypatch.setattr(renders, "ENCODER_ATTEMPTS", 1)  # no retry to hide behind
    studio = _render_with(tmp_path, killed_with_the_studio, monkeypatch)
    render = studio.store.renders["render_z"]
    wait_for("the studio to stop", lambda: bool(stopping), timeout_s=30, every_s=0.01)
    stopping[0].join(timeout=30)
    assert (render.status.value, render.error) == ("processing", None)
    studio.store.close()
