"""The client commands (submit, jobs, revise, download, webhooks verify) against a real API.

The API app runs on the run's PostgreSQL database, served by werkzeug on a loopback
port in a thread; the commands run in-process (CliRunner, so not on a terminal) or, for
the live progress bar, as a process on a pseudo-terminal. No worker runs: a job moves
because the test writes its events and its end through ``models.jobs``.
"""

from __future__ import annotations

import base64
import dataclasses
import fcntl
import hashlib
import json
import os
import pty
import secrets
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select as sql_select
from werkzeug.serving import make_server

from api import schemas as api_schemas
from api.app import create_app
from models import Job, JobStatus
from models.db import make_session_factory
from models.jobs import EventType, Stage, add_event, finish_job
from reelyard.cli import main
from reelyard.client import STAGES, BadResponse, ReelyardClient, ServerError
from reelyard.client_cli import ASPECT_RATIOS, RESOLUTIONS, STATUSES, ExitCode, exit_code_for
from reelyard.settings import Settings
from reelyard.storage import LocalStorage, video_key
from reelyard.webhooks import body_of, headers_for
from tests.api.conftest import make_caller
from tests.models.db_fixtures import engine

__all__ = ["engine"]

ROOT = Path(__file__).resolve().parents[2]
PHOTO = "https://photos.example.com/a.jpg"
VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 64
#: how long a test waits for something another thread or process does
PATIENCE_S = 30.0
SSE = "text/event-stream"
API = "http://api.test"


@dataclasses.dataclass
class Api:
    url: str
    key: str
    tenant_id: str
    factory: object
    storage: LocalStorage
    #: (method, path, Accept) of every request the API received
    requests: list

    @property
    def env(self):
        return {"REELYARD_API_URL": self.url, "REELYARD_API_KEY": self.key}


@pytest.fixture
def stream_s():
    """How long the API keeps an events stream open (a test may parametrize it)."""
    return 5.0


@pytest.fixture
def settings(database_url, redis_url, tmp_path, stream_s):
    return Settings(
        database_url=database_url,
        broker_url=redis_url,
        redis_url=redis_url,
        rate_limit="1000/second",
        auth_cache_s=0,
        events_poll_s=0.02,
        events_stream_s=stream_s,
        storage_dir=tmp_path / "videos",
    )


@pytest.fixture
def api(settings, engine, redis_client):
    factory = make_session_factory(engine)
    app = create_app(settings, session_factory=factory)
    requests = []

    def logged(environ, start_response):
        request = (environ["REQUEST_METHOD"], environ["PATH_INFO"], environ.get("HTTP_ACCEPT"))
        requests.append(request)
        return app(environ, start_response)

    server = make_server("127.0.0.1", 0, logged, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    with factory() as session:
        caller = make_caller(session, "CLI Co")
    try:
        yield Api(
            url=f"http://127.0.0.1:{server.server_port}",
            key=caller.key,
            tenant_id=caller.tenant_id,
            factory=factory,
            storage=LocalStorage(settings.storage_dir),
            requests=requests,
        )
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.fixture(autouse=True)
def no_client_file(tmp_path, monkeypatch):
    """Keep the developer's own ``.reelyard/client.json`` out of every test."""
    monkeypatch.setenv("REELYARD_DATA_DIR", str(tmp_path / "data"))
    for name in ("REELYARD_API_URL", "REELYARD_API_KEY", "REELYARD_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)


def cli(args, env=None):
    return CliRunner().invoke(main, [str(arg) for arg in args], env=env)


def create_job(api, **changes):
    body = {"images": [PHOTO], "prompt": "A warm, slow slideshow.", **changes}
    response = httpx.post(
        f"{api.url}/v1/jobs", json=body, headers={"Authorization": f"Bearer {api.key}"}
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


def log(api, job_id, *events):
    """Append ``(type, stage, progress, message)`` events to the job's log, committed."""
    with api.factory() as session:
        for type_, stage, progress, message in events:
            add_event(session, job_id, type_, stage=stage, progress=progress, message=message)
        session.commit()


def end(api, job_id, status, **values):
    with api.factory() as session:
        assert finish_job(session, job_id, status, values=values, message=f"Job {status}.")
        session.commit()


def succeed(api, job_id, tmp_path):
    source = tmp_path / f"{job_id}.mp4"
    source.write_bytes(VIDEO)
    api.storage.put(video_key(job_id), source)
    end(
        api,
        job_id,
        JobStatus.SUCCEEDED,
        video_url=f"{api.url}/v1/jobs/{job_id}/video",
        video_sha256=hashlib.sha256(VIDEO).hexdigest(),
        video_size_bytes=len(VIDEO),
        video_duration_s=12.5,
        video_width=1080,
        video_height=1920,
    )


def progress_then(api, job_id, ending, tmp_path):
    """What a worker would log for a job, then its end."""
    log(
        api,
        job_id,
        (EventType.STAGE, Stage.EDIT, 20, "Uploaded 1 photo."),
        (EventType.MESSAGE, Stage.EDIT, None, "I slowed the transitions down."),
        (EventType.PROGRESS, Stage.POLL_RENDER, 77, "Rendering: 50%."),
    )
    if ending is JobStatus.SUCCEEDED:
        succeed(api, job_id, tmp_path)
    else:
        end(api, job_id, ending, error_code="render_failed", error_message="The render failed.")


def newest_job(api, *conditions):
    """The id of the tenant's newest job (matching ``conditions``), once the command under
    test has created it (polled)."""
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        with api.factory() as session:
            job_id = session.scalar(
                sql_select(Job.id)
                .where(Job.tenant_id == api.tenant_id, *conditions)
                .order_by(Job.id.desc())
            )
        if job_id is not None:
            return job_id
        time.sleep(0.02)
    raise AssertionError("the command created no job")


def in_background(function, *args):
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(function, *args)
    pool.shutdown(wait=False)
    return future


def drive(api, step, *conditions):
    """Run ``step(job_id)`` in a thread on the job the command creates; if it fails, the
    job is canceled, so the command stops waiting and the failure is reported."""

    def run():
        job_id = newest_job(api, *conditions)
        try:
            return step(job_id)
        except BaseException:
            with api.factory() as session:
                finish_job(session, job_id, JobStatus.CANCELED)
                session.commit()
            raise

    return in_background(run)


def one_line_error(result):
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


# --- the choices agree with the API -------------------------------------------------


def test_the_clients_choices_are_the_apis():
    assert ASPECT_RATIOS == api_schemas.ASPECT_RATIOS
    assert RESOLUTIONS == api_schemas.RESOLUTIONS
    assert STATUSES == api_schemas.STATUSES
    assert tuple(stage.value for stage in Stage) == STAGES


def test_exit_codes_are_the_documented_ones():
    documented = (ROOT / "docs" / "cli.md").read_text()
    for code in ExitCode:
        assert f"| {code.value} | `{code.name}` |" in documented


# --- submit -------------------------------------------------------------------------


def test_submit_creates_the_job_with_its_options_and_prints_it_as_json(api):
    result = cli(
        ["submit", PHOTO, "https://photos.example.com/b.jpg", "--prompt", "Summer sale",
         "--aspect", "9:16", "--resolution", "720p", "--title", "Summer Sale", "--music", "off",
         "--metadata", "order=42", "--metadata", "team=web", "--json"],
        api.env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["status"] == "queued"
    assert job["images"] == [PHOTO, "https://photos.example.com/b.jpg"]
    assert job["options"]["aspect_ratio"] == "9:16"
    assert job["options"]["resolution"] == "720p"
    assert job["options"]["title"] == "Summer Sale"
    assert job["options"]["music"] == "off"
    assert job["metadata"] == {"order": "42", "team": "web"}
    shown = json.loads(cli(["jobs", "show", job["id"], "--json"], api.env).stdout)
    assert shown["id"] == job["id"]


def test_submit_says_the_job_id_and_status(api):
    result = cli(["submit", PHOTO, "--prompt", "A slideshow"], api.env)
    assert result.exit_code == 0, result.output
    job_id, status = result.stdout.split()
    assert job_id.startswith("job_")
    assert status == "queued"


def test_submit_with_the_same_idempotency_key_gives_the_same_job(api):
    args = ["submit", PHOTO, "--prompt", "A slideshow", "--idempotency-key", "k-1", "--json"]
    first = json.loads(cli(args, api.env).stdout)
    second = json.loads(cli(args, api.env).stdout)
    assert first["id"] == second["id"]


def test_an_option_outside_its_choices_is_a_usage_error(api):
    result = cli(["submit", PHOTO, "--prompt", "x", "--aspect", "2:1"], api.env)
    assert result.exit_code == ExitCode.USAGE == 2
    assert "Traceback" not in result.output


def test_a_missing_local_file_is_a_usage_error(api, tmp_path):
    result = cli(["submit", tmp_path / "nope.jpg", "--prompt", "x"], api.env)
    assert result.exit_code == ExitCode.USAGE
    assert "no such file" in result.output


def test_the_apis_validation_errors_are_one_line_and_exit_3(api):
    result = cli(["submit", PHOTO, "--prompt", "x" * 2001, "--music", "loud"], api.env)
    assert result.exit_code == ExitCode.REJECTED == 3
    line = one_line_error(result)
    assert "validation_failed" in line
    assert "prompt" in line
    assert "options.music" in line


def test_submit_wait_shows_plain_progress_lines_and_ends_with_the_video(api, tmp_path):
    def worker(job_id):
        progress_then(api, job_id, JobStatus.SUCCEEDED, tmp_path)
        return job_id

    background = drive(api, worker)
    result = cli(["submit", PHOTO, "--prompt", "A slideshow", "--wait"], api.env)
    job_id = background.result(timeout=PATIENCE_S)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"{job_id} queued"
    assert " 20%  edit         Uploaded 1 photo." in lines
    assert " 20%  edit         I slowed the transitions down." in lines
    assert " 77%  poll_render  Rendering: 50%." in lines
    assert lines[-1] == (f"{job_id} succeeded  {api.url}/v1/jobs/{job_id}/video  12.5 s  1080x1920")
    assert "\r" not in result.stdout
    assert "\x1b" not in result.stdout


def test_submit_wait_exits_1_with_one_line_when_the_job_fails(api, tmp_path):
    background = drive(api, lambda job_id: progress_then(api, job_id, JobStatus.FAILED, tmp_path))
    result = cli(["submit", PHOTO, "--prompt", "A slideshow", "--wait"], api.env)
    background.result(timeout=PATIENCE_S)
    assert result.exit_code == ExitCode.JOB_FAILED == 1
    assert "failed: render_failed: The render failed." in one_line_error(result)


def test_submit_serves_local_files_until_the_upload_stage_is_past(api, tmp_path):
    photo = tmp_path / "beach house.jpg"
    photo.write_bytes(b"\xff\xd8\xff" + os.urandom(5000))
    fetched = {}

    def upstream(job_id):
        with api.factory() as session:
            urls = session.get(Job, job_id).image_urls
        fetched["urls"] = urls
        fetched["bytes"] = httpx.get(urls[0]).content
        log(api, job_id, (EventType.STAGE, Stage.EDIT, 20, "Uploaded 2 photos."))

    background = drive(api, upstream)
    result = cli(["submit", photo, PHOTO, "--prompt", "A slideshow", "--json"], api.env)
    background.result(timeout=PATIENCE_S)
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    local_url, remote_url = fetched["urls"]
    assert job["images"] == fetched["urls"]
    assert local_url.startswith("http://127.0.0.1:")
    assert local_url.endswith("/beach%20house.jpg")
    assert remote_url == PHOTO
    assert fetched["bytes"] == photo.read_bytes()
    with pytest.raises(httpx.ConnectError):  # no longer served once uploaded
        httpx.get(local_url)


def test_local_files_are_served_only_at_their_own_urls(api, tmp_path):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"photo")
    seen = {}

    def upstream(job_id):
        with api.factory() as session:
            url = session.get(Job, job_id).image_urls[0]
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        seen["own"] = httpx.get(url).status_code
        seen["next index"] = httpx.get(f"{url.rsplit('/', 2)[0]}/1/a.jpg").status_code
        seen["other token"] = httpx.get(f"{origin}/token/0/a.jpg").status_code
        seen["root"] = httpx.get(f"{origin}/").status_code
        log(api, job_id, (EventType.STAGE, Stage.EDIT, 20, "Uploaded 1 photo."))

    background = drive(api, upstream)
    result = cli(["submit", photo, "--prompt", "A slideshow"], api.env)
    background.result(timeout=PATIENCE_S)
    assert result.exit_code == 0, result.output
    assert seen == {"own": 200, "next index": 404, "other token": 404, "root": 404}


# --- jobs ---------------------------------------------------------------------------


def test_jobs_list_shows_the_newest_first_and_filters_by_status(api):
    first, second = create_job(api), create_job(api)
    end(api, first, JobStatus.CANCELED)
    result = cli(["jobs", "list"], api.env)
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()
    assert [row.split()[0] for row in rows] == [second, first]
    assert rows[1].split()[1] == "canceled"
    page = json.loads(cli(["jobs", "list", "--status", "canceled", "--json"], api.env).stdout)
    assert [job["id"] for job in page["data"]] == [first]
    assert page["next_cursor"] is None


def test_jobs_list_limit_out_of_range_is_a_usage_error(api):
    assert cli(["jobs", "list", "--limit", "0"], api.env).exit_code == ExitCode.USAGE


def test_jobs_show_tells_the_job(api):
    job_id = create_job(api, metadata={"order": "42"})
    result = cli(["jobs", "show", job_id], api.env)
    assert result.exit_code == 0, result.output
    assert f"id:        {job_id}" in result.stdout
    assert "status:    queued" in result.stdout
    assert f"image:     {PHOTO}" in result.stdout
    assert 'metadata:  {"order": "42"}' in result.stdout


def test_an_unknown_job_exits_4_with_one_line(api):
    result = cli(["jobs", "show", "job_01JD3Q8X6R9V2M4K7T0B5N8C1W"], api.env)
    assert result.exit_code == ExitCode.NOT_FOUND == 4
    assert "No job job_01JD3Q8X6R9V2M4K7T0B5N8C1W" in one_line_error(result)


def test_another_tenants_job_is_not_found(api):
    job_id = create_job(api)
    with api.factory() as session:
        other = make_caller(session, "Other")
    result = cli(["jobs", "cancel", job_id], {**api.env, "REELYARD_API_KEY": other.key})
    assert result.exit_code == ExitCode.NOT_FOUND


def test_a_bad_key_exits_6_with_one_line(api):
    result = cli(["jobs", "list"], {**api.env, "REELYARD_API_KEY": "ry_nope_nope"})
    assert result.exit_code == ExitCode.AUTH == 6
    assert "401" in one_line_error(result)


def test_no_key_at_all_exits_6(api):
    result = cli(["jobs", "list", "--api-url", api.url])
    assert result.exit_code == ExitCode.AUTH
    assert "no API key" in one_line_error(result)


def test_the_standalone_modes_client_file_gives_url_and_key(api, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "client.json").write_text(json.dumps({"api_url": api.url, "api_key": api.key}))
    job_id = create_job(api)
    result = cli(["jobs", "show", job_id, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["id"] == job_id


def test_the_client_files_key_is_not_sent_to_another_url(api, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "client.json").write_text(json.dumps({"api_url": api.url, "api_key": api.key}))
    result = cli(["jobs", "list", "--api-url", "http://127.0.0.1:9"])
    assert result.exit_code == ExitCode.AUTH


def test_an_api_that_is_down_exits_5_with_one_line():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"REELYARD_API_URL": f"http://127.0.0.1:{port}", "REELYARD_API_KEY": "ry_a_b"}
    for args in (["jobs", "list"], ["jobs", "events", "job_x", "--follow"]):
        result = cli(args, env)
        assert result.exit_code == ExitCode.UNAVAILABLE == 5
        assert "cannot be reached" in one_line_error(result)


def test_jobs_cancel_cancels_and_refuses_a_finished_job(api, tmp_path):
    job_id = create_job(api)
    result = cli(["jobs", "cancel", job_id, "--json"], api.env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "canceled"
    done = create_job(api)
    succeed(api, done, tmp_path)
    refused = cli(["jobs", "cancel", done], api.env)
    assert refused.exit_code == ExitCode.REJECTED
    assert "job_terminal" in one_line_error(refused)


def test_jobs_events_prints_the_log(api):
    job_id = create_job(api)
    log(api, job_id, (EventType.MESSAGE, Stage.EDIT, None, "I slowed the transitions down."))
    result = cli(["jobs", "events", job_id], api.env)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "  0%  edit         I slowed the transitions down."
    document = json.loads(cli(["jobs", "events", job_id, "--json"], api.env).stdout)
    assert [event["type"] for event in document["data"]] == ["created", "message"]
    assert document["job_status"] == "queued"


def test_jobs_events_follow_shows_events_as_they_come_until_the_end(api, tmp_path):
    job_id = create_job(api)
    background = drive(
        api,
        lambda job_id: progress_then(api, job_id, JobStatus.SUCCEEDED, tmp_path),
        Job.id == job_id,
    )
    result = cli(["jobs", "events", job_id, "--follow", "--json"], api.env)
    background.result(timeout=PATIENCE_S)
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [event["type"] for event in events] == [
        "created", "stage", "message", "progress", "succeeded",
    ]  # fmt: skip


def streams_opened(api, job_id):
    path = f"/v1/jobs/{job_id}/events"
    return sum(1 for _m, p, accept in list(api.requests) if p == path and accept == SSE)


@pytest.mark.parametrize("stream_s", [0.1])
def test_follow_reconnects_when_the_api_ends_the_stream_and_misses_nothing(api, tmp_path):
    job_id = create_job(api)

    def worker(job_id):
        log(api, job_id, (EventType.STAGE, Stage.EDIT, 20, "Uploaded 1 photo."))
        deadline = time.monotonic() + PATIENCE_S
        while streams_opened(api, job_id) < 3:  # polled: the stream ends every 0.1 s
            assert time.monotonic() < deadline, "the command did not reconnect"
            time.sleep(0.02)
        progress_then(api, job_id, JobStatus.SUCCEEDED, tmp_path)

    background = drive(api, worker, Job.id == job_id)
    result = cli(["jobs", "events", job_id, "--follow", "--json"], api.env)
    background.result(timeout=PATIENCE_S)
    assert result.exit_code == 0, result.output
    ids = [json.loads(line)["id"] for line in result.stdout.splitlines()]
    assert ids == sorted(set(ids))
    assert len(ids) == 6  # created, the first stage, then progress_then's four


def test_jobs_events_follow_of_a_canceled_job_exits_1(api):
    job_id = create_job(api)
    end(api, job_id, JobStatus.CANCELED)
    result = cli(["jobs", "events", job_id, "--follow"], api.env)
    assert result.exit_code == ExitCode.JOB_FAILED
    assert f"job {job_id} was canceled" in one_line_error(result)


# --- revise -------------------------------------------------------------------------


def test_revise_makes_a_new_job_and_waits_for_it(api, tmp_path):
    parent = create_job(api)
    succeed(api, parent, tmp_path)

    def worker(child):
        progress_then(api, child, JobStatus.SUCCEEDED, tmp_path)
        return child

    background = drive(api, worker, Job.parent_id == parent)
    result = cli(["revise", parent, "--prompt", "Slower, please", "--wait"], api.env)
    child = background.result(timeout=PATIENCE_S)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"{child} queued (revises {parent})"
    assert result.stdout.splitlines()[-1].startswith(f"{child} succeeded")


def test_revise_changes_only_the_options_given(api, tmp_path):
    parent = create_job(api)
    succeed(api, parent, tmp_path)
    result = cli(
        ["revise", parent, "--prompt", "Make it square", "--aspect", "1:1", "--json"], api.env
    )
    assert result.exit_code == 0, result.output
    child = json.loads(result.stdout)
    parent_options = json.loads(cli(["jobs", "show", parent, "--json"], api.env).stdout)["options"]
    assert child["options"] == {**parent_options, "aspect_ratio": "1:1"}


def test_revising_a_job_that_did_not_succeed_is_rejected(api):
    job_id = create_job(api)
    result = cli(["revise", job_id, "--prompt", "Slower", "--json"], api.env)
    assert result.exit_code == ExitCode.REJECTED
    assert "parent_not_succeeded" in one_line_error(result)


# --- download -----------------------------------------------------------------------


def test_download_writes_the_video(api, tmp_path):
    job_id = create_job(api)
    succeed(api, job_id, tmp_path)
    out = tmp_path / "out" / "video.mp4"
    out.parent.mkdir()
    result = cli(["download", job_id, "-o", out, "--json"], api.env)
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == VIDEO
    assert json.loads(result.stdout)["size_bytes"] == len(VIDEO)
    assert [path.name for path in out.parent.iterdir()] == ["video.mp4"]


def test_download_refuses_to_overwrite_without_force(api, tmp_path):
    job_id = create_job(api)
    succeed(api, job_id, tmp_path)
    out = tmp_path / "video.mp4"
    out.write_bytes(b"mine")
    result = cli(["download", job_id, "-o", out], api.env)
    assert result.exit_code == ExitCode.LOCAL_FILE == 7
    assert "exists" in one_line_error(result)
    assert out.read_bytes() == b"mine"
    forced = cli(["download", job_id, "-o", out, "--force"], api.env)
    assert forced.exit_code == 0, forced.output
    assert out.read_bytes() == VIDEO


def test_download_of_an_unfinished_job_is_rejected_and_writes_nothing(api, tmp_path):
    job_id = create_job(api)
    out = tmp_path / "video.mp4"
    result = cli(["download", job_id, "-o", out], api.env)
    assert result.exit_code == ExitCode.REJECTED
    assert "video_not_ready" in one_line_error(result)
    assert list(tmp_path.iterdir()) == []


# --- webhooks verify ----------------------------------------------------------------


SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
PAYLOAD = {"type": "job.succeeded", "timestamp": "2026-11-24T12:00:00Z", "data": {"id": "job_1"}}


def saved_request(tmp_path, *, body=None, timestamp=None, secret=SECRET, received_at=None):
    raw = body_of(PAYLOAD)
    headers = headers_for("msg_1", raw, [secret], timestamp=timestamp)
    document = {"headers": headers, "body": (body or raw).decode()}
    if received_at is not None:
        document["received_at"] = received_at
    path = tmp_path / "request.json"
    path.write_text(json.dumps(document))
    return path


def verify(*args):
    return cli(["webhooks", "verify", "--secret", SECRET, *args])


def test_webhooks_verify_accepts_a_good_request(tmp_path):
    result = verify("--request", saved_request(tmp_path))
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["ok", "msg_1", "job.succeeded"]
    as_json = json.loads(verify("--request", saved_request(tmp_path), "--json").stdout)
    assert as_json == {"ok": True, "webhook_id": "msg_1", "type": "job.succeeded"}


def test_webhooks_verify_rejects_a_tampered_body(tmp_path):
    tampered = body_of({**PAYLOAD, "type": "job.failed"})
    result = verify("--request", saved_request(tmp_path, body=tampered))
    assert result.exit_code == ExitCode.JOB_FAILED
    assert "no signature matches the secret" in one_line_error(result)


def test_webhooks_verify_rejects_another_secret(tmp_path):
    other = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    result = verify("--request", saved_request(tmp_path, secret=other))
    assert result.exit_code == ExitCode.JOB_FAILED


def test_webhooks_verify_rejects_an_expired_request_unless_judged_when_received(tmp_path):
    old = int(time.time()) - 3600
    result = verify("--request", saved_request(tmp_path, timestamp=old), "--json")
    assert result.exit_code == ExitCode.JOB_FAILED
    assert json.loads(result.stdout) == {
        "ok": False,
        "reason": "webhook-timestamp is too far from now",
    }
    received = verify("--request", saved_request(tmp_path, timestamp=old, received_at=old + 2))
    assert received.exit_code == 0, received.output
    at = verify("--request", saved_request(tmp_path, timestamp=old), "--at", old + 5)
    assert at.exit_code == 0, at.output


def test_webhooks_verify_reads_a_raw_http_request(tmp_path):
    raw = body_of(PAYLOAD)
    headers = headers_for("msg_1", raw, [SECRET])
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    request = (
        f"POST /hooks HTTP/1.1\r\nHost: example.com\r\n{head}Content-Length: {len(raw)}\r\n\r\n"
    ).encode() + raw
    path = tmp_path / "request.http"
    path.write_bytes(request)
    result = verify("--request", path)
    assert result.exit_code == 0, result.output
    path.write_bytes(request.replace(b"job.succeeded", b"job.succeedeD"))
    assert verify("--request", path).exit_code == ExitCode.JOB_FAILED


def test_webhooks_verify_reads_headers_and_body_files(tmp_path):
    raw = body_of(PAYLOAD)
    headers = tmp_path / "headers.txt"
    headers.write_text(
        "".join(f"{k}: {v}\n" for k, v in headers_for("msg_1", raw, [SECRET]).items())
    )
    body = tmp_path / "body.json"
    body.write_bytes(raw)
    result = verify("--headers", headers, "--body", body)
    assert result.exit_code == 0, result.output


def test_webhooks_verify_needs_one_way_of_giving_the_request(tmp_path):
    assert verify().exit_code == ExitCode.USAGE
    assert verify("--headers", tmp_path / "h").exit_code == ExitCode.USAGE
    bad = cli(["webhooks", "verify", "--secret", "whsec_!!", "--request", tmp_path / "r"])
    assert bad.exit_code == ExitCode.USAGE


# --- live progress on a terminal ----------------------------------------------------


def read_until(fd, wanted, deadline):
    """What the process wrote to the terminal, up to ``wanted`` (or its end)."""
    output = b""
    while wanted is None or wanted not in output:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"waited for {wanted!r}; got {output!r}"
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the process closed the terminal
            chunk = b""
        if not chunk:
            assert wanted is None, f"ended before {wanted!r}; got {output!r}"
            return output
        output += chunk
    return output


def test_follow_on_a_terminal_shows_a_progress_bar_and_messages_as_they_come(api, tmp_path):
    job_id = create_job(api)
    log(api, job_id, (EventType.MESSAGE, Stage.EDIT, 20, "I slowed the transitions down."))
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    env = {**os.environ, **api.env, "TERM": "xterm-256color"}
    env.pop("COLUMNS", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "reelyard.cli", "jobs", "events", job_id, "--follow"],
        stdin=follower, stdout=follower, stderr=follower, env=env, cwd=ROOT, close_fds=True,
    )  # fmt: skip
    os.close(follower)
    try:
        deadline = time.monotonic() + PATIENCE_S
        # the message is on the terminal while the job is still running: live
        before = read_until(leader, b"I slowed the transitions down.", deadline)
        log(api, job_id, (EventType.PROGRESS, Stage.POLL_RENDER, 77, "Rendering: 50%."))
        middle = read_until(leader, b"77%", deadline)
        succeed(api, job_id, tmp_path)
        after = read_until(leader, None, deadline)
        assert process.wait(timeout=PATIENCE_S) == 0
    finally:
        process.kill()
        process.wait()
        os.close(leader)
    screen = (before + middle + after).decode()
    assert "━" in screen  # rich's bar
    assert "edit" in screen
    assert " 20%" in screen
    assert "poll_render" in screen
    assert "100%" in after.decode()
    assert f"{job_id} succeeded" in after.decode()
    assert "\x1b[" in screen  # drawn in place, not line by line


def test_ctrl_c_while_following_stops_waiting_with_exit_130(api):
    job_id = create_job(api)
    leader, follower = pty.openpty()
    env = {**os.environ, **api.env}
    process = subprocess.Popen(
        [sys.executable, "-m", "reelyard.cli", "jobs", "events", job_id, "--follow"],
        stdin=follower, stdout=follower, stderr=follower, env=env, cwd=ROOT, close_fds=True,
    )  # fmt: skip
    os.close(follower)
    try:
        deadline = time.monotonic() + PATIENCE_S
        while streams_opened(api, job_id) < 1:  # polled: the command is following
            assert time.monotonic() < deadline, "the command did not open the stream"
            time.sleep(0.02)
        process.send_signal(signal.SIGINT)
        rest = read_until(leader, None, deadline)
        assert process.wait(timeout=PATIENCE_S) == ExitCode.INTERRUPTED == 130
    finally:
        process.kill()
        process.wait()
        os.close(leader)
    assert f"error: stopped waiting; job {job_id} goes on" in rest.decode()
    assert "Traceback" not in rest.decode()


# --- odd answers, with httpx.MockTransport ------------------------------------------


def mock_client(handler):
    return ReelyardClient(httpx.Client(transport=httpx.MockTransport(handler), base_url=API))


def test_a_5xx_is_a_server_error_and_exits_5():
    problem = {"code": "not_ready", "status": 503, "message": "Not ready.", "errors": []}
    client = mock_client(lambda request: httpx.Response(503, json=problem))
    with pytest.raises(ServerError) as raised:
        client.get_job("job_1")
    assert str(raised.value) == "Not ready. (503 not_ready)"
    assert exit_code_for(raised.value) is ExitCode.UNAVAILABLE


def test_an_answer_the_api_never_sends_is_a_bad_response():
    client = mock_client(lambda request: httpx.Response(200, text="<html>proxy</html>"))
    with pytest.raises(BadResponse):
        client.get_job("job_1")


def test_a_video_that_does_not_match_its_etag_is_not_kept(tmp_path):
    etag = hashlib.sha256(b"something else").hexdigest()
    client = mock_client(
        lambda request: httpx.Response(200, content=VIDEO, headers={"ETag": f'"{etag}"'})
    )
    with pytest.raises(BadResponse):
        client.download_video("job_1", tmp_path / "video.mp4")
    assert list(tmp_path.iterdir()) == []
