"""Exports through the HTTP API with the real renderer: the MP4 matches the draft; renders
start in the order they were submitted; a render can be cancelled while queued (it never
starts) or running; an id is used once."""

from __future__ import annotations

import uuid

import av
import numpy as np
import pytest

from nemo import DuplicateRenderId, NemoClient, NemoConfig, Secret, Token, build_http_client
from tests.studio.api.helpers import GENERATE, User, wait_for

pytestmark = pytest.mark.slow
PAID = "tok_render_paid"
#: one render at a time, whatever the default: the queue is what these tests watch
STUDIO_ENV = {
    "STUDIO_PAID_TOKENS": f"{PAID}:100000",
    "STUDIO_SILENT_CLOSE_RATIO": "0",
    "STUDIO_RENDER_WORKERS": "1",
}


def _new_id():
    return f"render_{uuid.uuid4().hex}"


def _probe(data, tmp_path):
    path = tmp_path / f"{uuid.uuid4().hex}.mp4"
    path.write_bytes(data)
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        found = {
            "size": (video.codec_context.width, video.codec_context.height),
            "codec": video.codec_context.name,
            "fps": float(video.average_rate),
            "duration_s": container.duration / av.time_base,
            "audio_streams": len(container.streams.audio),
        }
        peak = 0.0
        for frame in container.decode(audio=0):
            peak = max(peak, float(np.abs(frame.to_ndarray()).max()))
        found["audio_peak"] = peak
    return found


def _draft_length_s(draft):
    video = next(track for track in draft["t"] if track["tt"] == 0)
    last = video["sg"][-1]
    return (last["s"] + last["d"]) / 1000


def test_a_render_is_the_mp4_the_draft_describes(studio, client, paid, tmp_path):
    session_id = paid.session()
    paid.chat(session_id, GENERATE)
    state = paid.state(session_id)
    draft, canvas = state["draft"], state["canvas_config"]
    render_id = _new_id()
    started = paid.start_render(session_id, draft, render_id)
    assert started.status_code == 200
    assert started.json()["success"] is True
    assert started.json()["data"]["status"] in ("pending", "processing")
    seen = []
    view = paid.wait_render(render_id, seen=seen)
    assert view["status"] == "completed", view
    assert view["progress"] == 100.0
    assert view["completedAt"] >= view["createdAt"]
    progress = [v["progress"] for v in seen]
    assert progress == sorted(progress)  # it only rises
    assert "processing" in {v["status"] for v in seen}
    # the download endpoint and the output URL serve the same file
    proxied = paid.get(f"/api/render/proxy/{render_id}/download")
    direct = client.get(view["outputUrl"])
    assert proxied.status_code == direct.status_code == 200
    assert proxied.headers["content-type"] == "video/mp4"
    assert proxied.content == direct.content
    found = _probe(proxied.content, tmp_path)
    assert found["size"] == (canvas["width"], canvas["height"]) == (720, 720)
    assert found["codec"] == "h264"
    assert found["fps"] == canvas["fps"]
    assert found["duration_s"] == pytest.approx(_draft_length_s(draft), abs=0.1)
    assert found["duration_s"] == pytest.approx(3.0, abs=0.1)
    assert any(track["tt"] == 1 for track in draft["t"])
    assert found["audio_streams"] == 1
    assert found["audio_peak"] > 0.01  # the music is there


def test_a_draft_without_music_renders_a_silent_track(paid, tmp_path):
    session_id = paid.session()
    paid.chat(session_id, "a 2-second vertical 720p video with no music")
    draft = paid.draft(session_id)
    assert not any(track["tt"] == 1 for track in draft["t"])
    render_id = _new_id()
    paid.start_render(session_id, draft, render_id)
    assert paid.wait_render(render_id)["status"] == "completed"
    found = _probe(paid.get(f"/api/render/proxy/{render_id}/download").content, tmp_path)
    assert found["size"] == (720, 1280)
    assert found["duration_s"] == pytest.approx(2.0, abs=0.1)
    assert found["audio_streams"] == 1  # players expect one
    assert found["audio_peak"] == 0.0


def test_a_draft_with_sandbox_paths_renders_from_the_session_media(paid, tmp_path):
    session_id = paid.session()
    stored = [m["cdn_url"].rsplit("/", 1)[-1] for m in paid.state(session_id)["video_infos"]]
    draft = {
        "m": {"w": 160, "h": 120, "fps": 10},
        "t": [{"tt": 0, "sg": [{"src": f"/mnt/userdata/{name}", "d": 500} for name in stored]}],
    }
    render_id = _new_id()
    assert paid.start_render(session_id, draft, render_id).status_code == 200
    assert paid.wait_render(render_id)["status"] == "completed"
    found = _probe(paid.get(f"/api/render/proxy/{render_id}/download").content, tmp_path)
    assert (found["size"], found["duration_s"]) == ((160, 120), pytest.approx(1.0, abs=0.15))


def test_a_draft_naming_media_the_session_lacks_fails(paid):
    session_id = paid.session()
    draft = {"m": {"w": 160, "h": 120}, "t": [{"tt": 0, "sg": [{"src": "nowhere.png", "d": 500}]}]}
    render_id = _new_id()
    assert paid.start_render(session_id, draft, render_id).status_code == 200
    view = paid.wait_render(render_id)
    assert view["status"] == "failed"
    assert "nowhere.png" in view["error"]


def _long_draft(user, session_id):
    """A ten-minute draft: minutes of work, so it is still running when cancelled."""
    name = user.state(session_id)["video_infos"][0]["cdn_url"]
    return {
        "m": {"ratio": "16:9", "res": 720},
        "t": [{"tt": 0, "sg": [{"src": name, "d": 600_000}]}],
    }


def test_cancel_stops_a_pending_and_a_processing_render(studio, paid):
    session_id = paid.session()
    running, queued = _new_id(), _new_id()
    assert paid.start_render(session_id, _long_draft(paid, session_id), running).status_code == 200
    assert paid.start_render(session_id, _long_draft(paid, session_id), queued).status_code == 200
    wait_for(
        lambda: paid.render_status(running).json()["data"]["progress"] > 0,
        what="the first render making progress",
    )
    assert paid.render_status(queued).json()["data"]["status"] == "pending"  # one worker
    cancelled = paid.post(f"/api/render/proxy/lambda/{queued}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["data"]["status"] == "failed"  # at once: it never started
    paid.post(f"/api/render/proxy/lambda/{running}/cancel")
    view = paid.wait_render(running, timeout_s=15)
    assert (view["status"], view["error"]) == ("failed", "the render was cancelled")
    assert view["progress"] < 50
    renders = studio.ledger()["renders"]
    assert renders[queued]["status"] == renders[running]["status"] == "failed"


def _short_draft(user, session_id):
    """Half a second of a small canvas: a render of well under a second."""
    name = user.state(session_id)["video_infos"][0]["cdn_url"]
    return {"m": {"w": 160, "h": 120, "fps": 10}, "t": [{"tt": 0, "sg": [{"src": name, "d": 500}]}]}


def test_queued_renders_run_in_the_order_they_were_submitted(paid):
    session_id = paid.session()
    draft = _short_draft(paid, session_id)
    render_ids = [_new_id() for _ in range(4)]
    for render_id in render_ids:
        assert paid.start_render(session_id, draft, render_id).status_code == 200
    views = [paid.wait_render(render_id) for render_id in render_ids]
    assert [view["status"] for view in views] == ["completed"] * len(render_ids)
    # one worker: each finishes before the next starts, so finishing order is start order
    finished = [view["completedAt"] for view in views]
    assert finished == sorted(finished)
    assert len(set(finished)) == len(finished)


def test_a_render_cancelled_in_the_queue_never_starts_and_the_next_one_runs(studio, paid):
    session_id = paid.session()
    running, cancelled, following = _new_id(), _new_id(), _new_id()
    assert paid.start_render(session_id, _long_draft(paid, session_id), running).status_code == 200
    for render_id in (cancelled, following):
        draft = _short_draft(paid, session_id)
        assert paid.start_render(session_id, draft, render_id).status_code == 200
    wait_for(
        lambda: paid.render_status(running).json()["data"]["progress"] > 0,
        what="the first render making progress",
    )
    answer = paid.post(f"/api/render/proxy/lambda/{cancelled}/cancel")
    assert answer.json()["data"]["status"] == "failed"
    paid.post(f"/api/render/proxy/lambda/{running}/cancel")
    assert paid.wait_render(following, timeout_s=30)["status"] == "completed"
    view = paid.render_status(cancelled).json()["data"]
    assert (view["status"], view["progress"]) == ("failed", 0.0)
    assert view["error"] == "the render was cancelled"
    # it never started: nothing of it was ever written
    assert list((studio.data_dir / "renders").glob(f"*{cancelled}*")) == []


def test_a_finished_render_cannot_be_cancelled(paid):
    session_id = paid.session()
    paid.chat(session_id, "a 1-second 720p video")
    render_id = _new_id()
    paid.start_render(session_id, paid.draft(session_id), render_id)
    paid.wait_render(render_id)
    response = paid.post(f"/api/render/proxy/lambda/{render_id}/cancel")
    assert response.status_code == 409
    assert response.json()["success"] is False
    assert response.json()["code"] == 4009


def test_a_render_id_is_used_once(studio, paid):
    session_id = paid.session()
    paid.chat(session_id, "a 1-second 720p video")
    draft = paid.draft(session_id)
    render_id = _new_id()
    assert paid.start_render(session_id, draft, render_id).status_code == 200
    reused = paid.start_render(session_id, draft, render_id)
    assert reused.status_code == 409
    assert reused.json()["code"] == 4009
    assert "already exists" in reused.json()["error"]
    config = NemoConfig(base_url=studio.url)
    with build_http_client(config) as http:
        client = NemoClient(http, config, token=Token(Secret(PAID), paid.user_id))
        with pytest.raises(DuplicateRenderId):
            client.start_render(render_id, session_id, draft)
    assert paid.wait_render(render_id)["status"] == "completed"  # the first one goes on
    assert studio.ledger()["renders"][render_id] == {"submissions": 3, "status": "completed"}


def test_a_render_is_only_its_owners(client, paid):
    session_id = paid.session()
    paid.chat(session_id, "a 1-second 720p video")
    render_id = _new_id()
    paid.start_render(session_id, paid.draft(session_id), render_id)
    paid.wait_render(render_id)
    stranger = User.anonymous(client)
    for response in (
        stranger.render_status(render_id),
        stranger.post(f"/api/render/proxy/lambda/{render_id}/cancel"),
        stranger.get(f"/api/render/proxy/{render_id}/download"),
    ):
        assert response.status_code == 404
        assert response.json()["code"] == 4004


def test_a_download_before_completion_is_refused(studio, paid):
    session_id = paid.session()
    studio.faults(render_stuck={"count": 1})
    render_id = _new_id()
    draft = {"m": {"w": 160, "h": 120}, "t": [{"tt": 0, "sg": [{"src": "x.png", "d": 500}]}]}
    paid.start_render(session_id, draft, render_id)
    response = paid.get(f"/api/render/proxy/{render_id}/download")
    assert response.status_code == 409
    assert response.json()["code"] == 4009
    assert paid.http.get(f"/renders/{render_id}.mp4").status_code == 409
