"""``GET /metrics``: request metrics by route template, job metrics read from the
database, queue depths read from the broker, the token, and multiprocess mode under the
real ``reelyard api``.

The database is shared with the run's other tests (whose committed rows stay), so the
job metrics are asserted as differences between a scrape before and one after the rows
a test adds; a tenant made by the test is asserted absolutely.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from datetime import timedelta

import httpx
import pytest
from kombu import Connection, Producer, Queue
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from api.app import create_app
from models import Job
from models.access import create_tenant
from models.base import utcnow
from models.db import make_session_factory
from models.jobs import EventType, JobStatus, Stage, add_event, new_job_id
from models.outbox import OutboxType, add_outbox_event
from models.webhooks import MessageStatus, WebhookAttempt, WebhookMessage
from tests.conftest import run_tag
from tests.e2e.system import RABBITMQ_URL, ROOT, Proc, free_port, spawn_cli, wait_for

DOWN_REDIS = "redis://127.0.0.1:1/0"
SECRET_TOKEN = "s3cret-scraper-token"  # noqa: S105 (a test's token)


def scrape(client, headers=None):
    """Every sample of a scrape, by (name, sorted label items)."""
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.data
    assert response.mimetype == "text/plain"
    return samples_of(response.get_data(as_text=True))


def samples_of(text):
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def delta(before, after, name, **labels):
    return value(after, name, **labels) - value(before, name, **labels)


def add_job(session, tenant_id, status, stage, error_code=None):
    terminal = JobStatus(status).terminal
    job = Job(
        id=new_job_id(),
        tenant_id=tenant_id,
        status=status,
        stage=stage,
        image_urls=["https://photos.example.com/a.jpg"],
        prompt="a calm slideshow",
        options={},
        caller_metadata={},
        finished_at=utcnow() if terminal else None,
        video_url="https://videos.example.com/a.mp4" if status == JobStatus.SUCCEEDED else None,
        error_code=error_code,
        next_run_at=None if terminal else utcnow() + timedelta(hours=1),
    )
    session.add(job)
    session.flush()
    return job


# --- job metrics --------------------------------------------------------------------


def test_jobs_are_counted_by_status_and_stage_outcome_error_code_and_tenant(client, db_session):
    before = scrape(client)
    tenant = create_tenant(db_session, "Metrics Jobs")
    add_job(db_session, tenant.id, JobStatus.QUEUED, Stage.AUTHORIZE)
    add_job(db_session, tenant.id, JobStatus.RUNNING, Stage.EDIT)
    add_job(db_session, tenant.id, JobStatus.RUNNING, Stage.EDIT)
    add_job(db_session, tenant.id, JobStatus.SUCCEEDED, Stage.FINALIZE)
    add_job(db_session, tenant.id, JobStatus.FAILED, Stage.POLL_RENDER, "render_failed")
    add_job(db_session, tenant.id, JobStatus.FAILED, Stage.EDIT, "out_of_credits")
    add_job(db_session, tenant.id, JobStatus.CANCELED, Stage.UPLOAD)
    db_session.commit()

    after = scrape(client)

    assert delta(before, after, "reelyard_jobs", status="queued", stage="authorize") == 1
    assert delta(before, after, "reelyard_jobs", status="running", stage="edit") == 2
    assert delta(before, after, "reelyard_jobs", status="succeeded", stage="finalize") == 1
    assert delta(before, after, "reelyard_jobs", status="failed", stage="poll_render") == 1
    assert delta(before, after, "reelyard_jobs", status="canceled", stage="upload") == 1
    assert delta(before, after, "reelyard_jobs_finished_total", status="succeeded") == 1
    assert delta(before, after, "reelyard_jobs_finished_total", status="failed") == 2
    assert delta(before, after, "reelyard_jobs_finished_total", status="canceled") == 1
    assert delta(before, after, "reelyard_jobs_failed_total", error_code="render_failed") == 1
    assert delta(before, after, "reelyard_jobs_failed_total", error_code="out_of_credits") == 1
    assert value(after, "reelyard_jobs_created_total", tenant=tenant.id) == 7
    assert value(after, "reelyard_up", component="database") == 1


def test_the_oldest_due_job_without_a_worker_is_reported(client, db_session):
    tenant = create_tenant(db_session, "Metrics Due")
    job = add_job(db_session, tenant.id, JobStatus.QUEUED, Stage.AUTHORIZE)
    job.next_run_at = utcnow() - timedelta(days=3650)  # older than anything else in the run
    db_session.commit()

    age = value(scrape(client), "reelyard_job_oldest_due_seconds")

    assert 3650 * 86400 - 60 < age < 3650 * 86400 + 3600


def test_retries_are_counted_by_stage_and_reason_and_upstream_errors_by_name(client, db_session):
    before = scrape(client)
    tenant = create_tenant(db_session, "Metrics Retries")
    job = add_job(db_session, tenant.id, JobStatus.RUNNING, Stage.EDIT)
    rate_limited = {"error": "RateLimited", "detail": "429"}
    add_event(db_session, job.id, EventType.RETRY, stage=Stage.EDIT, data=rate_limited)
    add_event(db_session, job.id, EventType.RETRY, stage=Stage.EDIT, data=rate_limited)
    add_event(db_session, job.id, EventType.RETRY, stage=Stage.EXPORT)  # a render again
    add_event(db_session, job.id, EventType.RETRY, stage=Stage.UPLOAD, data={"error": "KeyError"})
    token = {"error": "TokenInvalid", "detail": "1001"}
    add_event(db_session, job.id, EventType.REPAIR, stage=Stage.UPLOAD, data=token)
    add_event(db_session, job.id, EventType.MESSAGE, stage=Stage.EDIT, data=rate_limited)
    db_session.commit()

    after = scrape(client)

    retries = "reelyard_job_retries_total"
    assert delta(before, after, retries, stage="edit", reason="RateLimited") == 2
    assert delta(before, after, retries, stage="export", reason="pipeline") == 1
    assert delta(before, after, retries, stage="upload", reason="KeyError") == 1
    assert delta(before, after, retries, stage="upload", reason="TokenInvalid") == 0
    errors = "reelyard_upstream_errors_total"
    assert delta(before, after, errors, error="RateLimited") == 2
    assert delta(before, after, errors, error="TokenInvalid") == 1
    assert delta(before, after, errors, error="KeyError") == 0


def test_stage_durations_are_read_from_the_event_log(client, db_session):
    before = scrape(client)
    tenant = create_tenant(db_session, "Metrics Stages")
    job = add_job(db_session, tenant.id, JobStatus.SUCCEEDED, Stage.FINALIZE)
    start = utcnow() - timedelta(minutes=5)
    timeline = [
        (EventType.CREATED, Stage.AUTHORIZE, 0),
        (EventType.STAGE, Stage.OPEN_SESSION, 2),
        (EventType.MESSAGE, Stage.OPEN_SESSION, 3),  # not a move: the stage goes on
        (EventType.STAGE, Stage.UPLOAD, 5),
        (EventType.RETRY, Stage.UPLOAD, 6),  # the same stage again: still one run
        (EventType.STAGE, Stage.EDIT, 9),
        (EventType.SUCCEEDED, None, 13),
    ]
    for type_, stage, at_s in timeline:
        add_event(db_session, job.id, type_, stage=stage)
        backdate_newest_event(db_session, job.id, start + timedelta(seconds=at_s))
    db_session.commit()

    after = scrape(client)

    runs, seconds = "reelyard_job_stage_runs_recent", "reelyard_job_stage_seconds_recent"
    for stage, took_s in (("authorize", 2), ("open_session", 3), ("upload", 4), ("edit", 4)):
        assert delta(before, after, runs, stage=stage) == 1, stage
        assert delta(before, after, seconds, stage=stage) == pytest.approx(took_s), stage
    assert delta(before, after, runs, stage="finalize") == 0
    p50 = value(after, "reelyard_job_stage_duration_seconds", stage="edit", percentile="50")
    p99 = value(after, "reelyard_job_stage_duration_seconds", stage="edit", percentile="99")
    assert 0 < p50 <= p99


def backdate_newest_event(session, job_id, at):
    """Events are stamped with the clock; the test sets when each happened."""
    session.execute(
        text(
            "UPDATE job_events SET created_at = :at"
            " WHERE id = (SELECT max(id) FROM job_events WHERE job_id = :job_id)"
        ),
        {"at": at, "job_id": job_id},
    )


def test_webhook_attempts_are_counted_by_result_and_messages_by_status(client, db_session):
    before = scrape(client)
    tenant = create_tenant(db_session, "Metrics Webhooks")
    message = add_message(db_session, tenant.id, MessageStatus.PENDING)
    add_message(db_session, tenant.id, MessageStatus.DELIVERED)
    add_message(db_session, tenant.id, MessageStatus.FAILED)
    for status_code, error in ((200, None), (204, None), (503, None), (410, None)):
        db_session.add(WebhookAttempt(message_id=message.id, status_code=status_code, error=error))
    db_session.add(WebhookAttempt(message_id=message.id, error="timeout"))
    db_session.add(WebhookAttempt(message_id=message.id))  # under way: no result yet
    db_session.commit()

    after = scrape(client)

    attempts = "reelyard_webhook_attempts_total"
    assert delta(before, after, attempts, result="2xx") == 2
    assert delta(before, after, attempts, result="4xx") == 1
    assert delta(before, after, attempts, result="5xx") == 1
    assert delta(before, after, attempts, result="no_response") == 1
    for status in MessageStatus:
        assert delta(before, after, "reelyard_webhook_messages", status=status.value) == 1
    assert value(after, "reelyard_webhook_oldest_due_seconds") >= 60


def add_message(session, tenant_id, status):
    now = utcnow()
    message = WebhookMessage(
        id=f"msg_{new_job_id()[4:]}",
        tenant_id=tenant_id,
        event_id=add_outbox_event(session, tenant_id, OutboxType.JOB_SUCCEEDED),
        url="https://hooks.example.com/reelyard",
        event_type=OutboxType.JOB_SUCCEEDED,
        payload={},
        status=status,
        next_attempt_at=now - timedelta(minutes=2) if status is MessageStatus.PENDING else None,
        delivered_at=now if status is MessageStatus.DELIVERED else None,
    )
    session.add(message)
    session.flush()
    return message


# --- request metrics ----------------------------------------------------------------


def test_requests_are_counted_by_route_template_never_by_raw_path(client, alice):
    for _ in range(2):
        missing = client.get(f"/v1/jobs/{new_job_id()}", headers=alice.headers)
        assert missing.status_code == 404
    assert client.get("/v1/jobs").status_code == 401  # refused before the view
    assert client.get("/no/such/page/42").status_code == 404

    response = client.get("/metrics")
    samples = samples_of(response.get_data(as_text=True))

    requests = "reelyard_http_requests_total"
    route = "/v1/jobs/<job_id>"
    assert value(samples, requests, method="GET", route=route, status="404") == 2
    assert value(samples, requests, method="GET", route="/v1/jobs", status="401") == 1
    assert value(samples, requests, method="GET", route="<unmatched>", status="404") == 1
    count = "reelyard_http_request_duration_seconds_count"
    assert value(samples, count, method="GET", route=route) == 2
    assert "job_0" not in response.get_data(as_text=True)
    assert "/no/such" not in response.get_data(as_text=True)


# --- the token ----------------------------------------------------------------------


@pytest.fixture
def guarded_client(settings, session_factory, redis_client):
    guarded = dataclasses.replace(settings, metrics_token=SECRET_TOKEN)
    return create_app(guarded, session_factory=session_factory).test_client()


def test_a_set_token_is_required(guarded_client):
    bare = guarded_client.get("/metrics")
    wrong = guarded_client.get("/metrics", headers={"Authorization": "Bearer nope"})

    for refused in (bare, wrong):
        assert refused.status_code == 401
        assert refused.json["code"] == "unauthorized"
        assert "reelyard_up" not in refused.get_data(as_text=True)
    assert "Bearer" in bare.headers["WWW-Authenticate"]
    allowed = scrape(guarded_client, {"Authorization": f"Bearer {SECRET_TOKEN}"})
    assert value(allowed, "reelyard_up", component="database") == 1


def test_without_a_token_setting_metrics_are_open(client):
    assert value(scrape(client), "reelyard_up", component="broker") == 1


# --- the broker and the database ----------------------------------------------------


def test_queue_depths_are_read_from_the_redis_broker(client, redis_client):
    redis_client.lpush("pipeline", "a", "b")
    redis_client.lpush("pipeline\x06\x163", "c")  # kombu's key for priority 3
    redis_client.lpush("edit", "d")
    redis_client.hset("unacked", mapping={"tag-1": "x", "tag-2": "y"})

    samples = scrape(client)

    assert value(samples, "reelyard_queue_messages", queue="pipeline") == 3
    assert value(samples, "reelyard_queue_messages", queue="edit") == 1
    assert ("reelyard_queue_messages", (("queue", "webhooks"),)) in samples
    assert value(samples, "reelyard_queue_messages", queue="webhooks") == 0
    assert value(samples, "reelyard_broker_unacked_messages") == 2
    assert value(samples, "reelyard_up", component="broker") == 1


def test_a_broker_that_is_down_is_reported_and_the_scrape_still_answers(settings, session_factory):
    down = dataclasses.replace(settings, broker_url=DOWN_REDIS)
    client = create_app(down, session_factory=session_factory).test_client()

    samples = scrape(client)

    assert samples["reelyard_up", (("component", "broker"),)] == 0
    assert value(samples, "reelyard_up", component="database") == 1
    assert not any(name == "reelyard_queue_messages" for name, _ in samples)


def test_a_database_that_is_down_is_reported_and_the_scrape_still_answers(settings, redis_client):
    engine = create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:1/none", connect_args={"connect_timeout": 2}
    )
    try:
        app = create_app(settings, session_factory=make_session_factory(engine))
        samples = scrape(app.test_client())
    finally:
        engine.dispose()

    assert samples["reelyard_up", (("component", "database"),)] == 0
    assert value(samples, "reelyard_up", component="broker") == 1
    assert not any(name == "reelyard_jobs" for name, _ in samples)


# --- multiprocess mode under gunicorn -----------------------------------------------


@pytest.fixture
def api_process(database_url, redis_url, redis_client, engine, tmp_path):
    """``reelyard api`` with two gunicorn workers, its multiprocess directory given."""
    multiproc_dir = tmp_path / "prometheus"
    multiproc_dir.mkdir()
    leave_stale_counter(multiproc_dir)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "REELYARD_DATABASE_URL": database_url,
        "REELYARD_BROKER_URL": redis_url,
        "REELYARD_REDIS_URL": redis_url,
        "REELYARD_DATA_DIR": str(tmp_path / "data"),
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir),
    }
    proc = spawn_cli(
        "api", ["api", "--port", str(port), "--workers", "2"], env, tmp_path / "api.log"
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("the API to answer", lambda: healthy(proc, url), timeout_s=60)
        yield url, multiproc_dir, proc
    finally:
        proc.stop()


def leave_stale_counter(multiproc_dir):
    """The counter file a previous run would have left (a process that counted 1000)."""
    script = (
        "from prometheus_client import Counter; "
        "Counter('reelyard_http_requests', '', ['method', 'route', 'status'], registry=None)"
        ".labels('GET', '/healthz', '200').inc(1000)"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir)}
    subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, check=True)
    assert list(multiproc_dir.glob("counter_*.db"))


def healthy(proc: Proc, url):
    assert proc.alive, proc.output()[-4000:]
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
def test_every_gunicorn_worker_counts_into_one_scrape(api_process):
    url, multiproc_dir, _ = api_process
    before = value(scrape_url(url), "reelyard_http_requests_total", **HEALTHZ)
    requests = 40
    for _ in range(requests):
        # a connection each, so that the kernel spreads them over both workers
        assert httpx.get(f"{url}/healthz", headers={"Connection": "close"}).status_code == 200

    # whichever worker answers a scrape reports every worker's requests
    totals = {value(scrape_url(url), "reelyard_http_requests_total", **HEALTHZ) for _ in range(8)}

    assert totals == {before + requests}
    assert before < 1000  # the previous run's file was removed at start
    assert len(list(multiproc_dir.glob("counter_*.db"))) == 2


HEALTHZ = {"method": "GET", "route": "/healthz", "status": "200"}


def scrape_url(url):
    response = httpx.get(f"{url}/metrics", headers={"Connection": "close"}, timeout=10)
    assert response.status_code == 200, response.text
    return samples_of(response.text)


@pytest.mark.slow
def test_the_api_command_makes_and_removes_its_own_directory_when_none_is_given(
    database_url, redis_url, redis_client, engine, tmp_path
):
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        PYTHONUNBUFFERED="1",
        REELYARD_DATABASE_URL=database_url,
        REELYARD_BROKER_URL=redis_url,
        REELYARD_REDIS_URL=redis_url,
        TMPDIR=str(tmp_path),
    )
    port = free_port()
    proc = spawn_cli(
        "api", ["api", "--port", str(port), "--workers", "2"], env, tmp_path / "api.log"
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("the API to answer", lambda: healthy(proc, url), timeout_s=60)
        made = list(tmp_path.glob("reelyard-metrics-*"))
        assert len(made) == 1
        assert list(made[0].glob("counter_*.db"))
        assert value(scrape_url(url), "reelyard_http_requests_total", **HEALTHZ) >= 1
    finally:
        code = proc.stop()

    assert code == 0, proc.output()[-4000:]
    assert not made[0].exists()


# --- RabbitMQ -----------------------------------------------------------------------


@pytest.fixture
def amqp_url(request):
    """A RabbitMQ virtual host of this test's own, deleted after it."""
    vhost = f"reelyard_metrics_{run_tag()}_{os.getpid()}"
    rabbitmqctl("delete_vhost", vhost, check=False)
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    try:
        yield f"{RABBITMQ_URL}/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


def rabbitmqctl(*args, check=True):
    command = shutil.which("rabbitmqctl")
    assert command is not None, "rabbitmqctl is not on PATH (RabbitMQ: see DEVELOPERS.md)"
    subprocess.run([command, "-q", *args], check=check, capture_output=True, timeout=60)


@pytest.mark.slow
def test_queue_depths_are_read_from_a_rabbitmq_broker(settings, session_factory, amqp_url):
    with Connection(amqp_url) as connection:
        producer = Producer(connection.channel())
        for body in ("a", "b"):
            producer.publish(body, routing_key="pipeline", declare=[Queue("pipeline")])
    on_rabbitmq = dataclasses.replace(settings, broker_url=amqp_url)
    client = create_app(on_rabbitmq, session_factory=session_factory).test_client()

    def both_counted():
        found = scrape(client)
        return found if value(found, "reelyard_queue_messages", queue="pipeline") == 2 else None

    samples = wait_for("RabbitMQ to count both messages", both_counted, timeout_s=10)

    assert value(samples, "reelyard_up", component="broker") == 1
    # never declared (no worker ran): reported empty, not an error
    assert ("reelyard_queue_messages", (("queue", "edit"),)) in samples
    assert value(samples, "reelyard_queue_messages", queue="edit") == 0
    assert not any(name == "reelyard_broker_unacked_messages" for name, _ in samples)
