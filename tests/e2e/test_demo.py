"""``make demo``'s flow, shortened (issue 9): ``demo/run.py --short`` from an empty data
directory, with every PostgreSQL and Redis address it could reach for closed.

The demo starts ``reelyard standalone`` (SQLite and a broker in files), submits and
revises a job through the CLI, downloads both videos and waits for their signed
webhooks; the test then reads its summary and checks the videos itself with PyAV.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from contextlib import suppress
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import av
import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from demo.run import WebhookReceiver

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
#: the demo bounds each of its steps; this bounds the whole run
DEMO_TIMEOUT_S = 360
#: after SIGTERM at the timeout, the demo stops the standalone (up to 75 s) before this
STOP_GRACE_S = 100


def closed_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def without_servers(env: dict[str, str]) -> dict[str, str]:
    """The environment with PostgreSQL and Redis pointed at a closed port: the
    standalone must set its own; any process that used these would fail."""
    port = closed_port()
    nowhere_pg = f"postgresql+psycopg://postgres@127.0.0.1:{port}/nowhere"
    nowhere_redis = f"redis://127.0.0.1:{port}"
    cleaned = {
        name: value
        for name, value in env.items()
        if not name.startswith(("REELYARD_", "NEMO_", "STUDIO_", "PG"))
    }
    return {
        **cleaned,
        "REELYARD_DATABASE_URL": nowhere_pg,
        "REELYARD_BROKER_URL": f"{nowhere_redis}/0",
        "REELYARD_REDIS_URL": f"{nowhere_redis}/0",
        "REELYARD_TEST_ADMIN_DATABASE_URL": nowhere_pg,
        "REELYARD_TEST_REDIS_URL": nowhere_redis,
        "PGHOST": "127.0.0.1",
        "PGPORT": str(port),
        "NEMO_API_BASE": f"http://127.0.0.1:{port}",
    }


def run_demo(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The demo in a session of its own; at the timeout it gets SIGTERM (it stops the
    standalone), then its whole group SIGKILL, and the test fails."""
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = process.communicate(timeout=DEMO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        try:
            out, _ = process.communicate(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            out, _ = process.communicate()
        pytest.fail(f"the demo did not end within {DEMO_TIMEOUT_S} s; its output:\n{out}")
    return subprocess.CompletedProcess(argv, process.returncode, out, "")


def test_demo_makes_both_videos_and_verified_webhooks_without_postgres_or_redis(tmp_path):
    data_dir, output, summary_file = tmp_path / "data", tmp_path / "out", tmp_path / "s.json"
    argv = [sys.executable, str(ROOT / "demo" / "run.py"), "--short"]
    argv += ["--data-dir", str(data_dir), "--output", str(output), "--summary", str(summary_file)]

    done = run_demo(argv, without_servers(dict(os.environ)), tmp_path)

    assert done.returncode == 0, done.stdout
    summary = json.loads(summary_file.read_text())
    assert summary["ok"] is True
    assert summary["failure"] is None
    # the standalone kept its state where it was told, on SQLite
    assert (data_dir / "reelyard.db").is_file()
    assert (data_dir / "client.json").is_file()
    assert summary["photos_fetched"] >= 3

    jobs = summary["jobs"]
    assert set(jobs) == {"summer-sale", "last-chance"}
    assert jobs["summer-sale"] != jobs["last-chance"]
    asked = {"summer-sale": Fraction(9, 16), "last-chance": Fraction(1, 1)}
    for name, ratio in asked.items():
        path = output / f"{name}.mp4"
        with av.open(str(path)) as container:
            video = container.streams.video[0]
            assert Fraction(video.codec_context.width, video.codec_context.height) == ratio
            assert video.codec_context.height == (1280 if name == "summer-sale" else 720)
            assert container.duration is not None
            assert abs(container.duration / av.time_base - 6.0) <= 0.5
            assert container.streams.audio, f"{name} has no music"
            assert next(container.decode(video=0)).width == video.codec_context.width
        assert path.stat().st_size > 0

    webhooks = summary["webhooks"]
    assert webhooks, "no webhook arrived"
    assert all(hook["verified"] for hook in webhooks), webhooks
    succeeded = {hook["job_id"] for hook in webhooks if hook["type"] == "job.succeeded"}
    assert succeeded == set(jobs.values())
    for hook in webhooks:
        assert hook["webhook_id"].startswith("msg_")
        assert hook["webhook_id"] in done.stdout  # the table lists each one
    assert "demo passed" in done.stdout
    # stopped cleanly: the supervisor said so, and its lock is free
    assert "reelyard standalone stopped" in done.stdout


def test_the_demos_receiver_verifies_signatures_and_refuses_a_forged_one():
    # "verified" in the demo's table means something: a request signed with another
    # secret is refused (401) and recorded as not verified
    receiver = WebhookReceiver()
    try:
        receiver.secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        body = '{"type":"job.succeeded","data":{"id":"job_1"}}'
        now = datetime.now(UTC)
        for number, secret in enumerate((receiver.secret, "whsec_" + "b3RoZXIgc2VjcmV0IQ==")):
            signature = Webhook(secret).sign(f"msg_{number}", now, body)
            headers = {
                "webhook-id": f"msg_{number}",
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": signature,
            }
            answer = httpx.post(receiver.url, content=body, headers=headers, timeout=10)
            assert answer.status_code == (204 if number == 0 else 401)
    finally:
        receiver.close()
    received = receiver.snapshot()
    assert [(hook.webhook_id, hook.verified) for hook in received] == [
        ("msg_0", True),
        ("msg_1", False),
    ]
    assert received[0].type == "job.succeeded"
    assert received[0].job_id == "job_1"
