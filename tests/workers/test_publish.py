"""The API's publisher: Celery task messages over a connection kept per thread."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from reelyard.settings import Settings
from workers.app import RUN_STAGE_TASK, TaskPublisher, create_celery, send_now

ROOT = Path(__file__).resolve().parents[2]

#: a real Celery worker process that records the job ids its run_stage task receives
WORKER = """
import sys

import redis

from reelyard.settings import Settings
from workers.app import RUN_STAGE_TASK, create_celery

app = create_celery(Settings(broker_url=sys.argv[1]))
seen = redis.Redis.from_url(sys.argv[1])


@app.task(name=RUN_STAGE_TASK)
def run_stage(job_id):
    seen.rpush("seen", job_id)


app.worker_main(
    ["worker", "--pool=solo", "--without-heartbeat", "--without-gossip", "--without-mingle",
     "--loglevel=WARNING"]
)
"""


@pytest.fixture
def celery(redis_url):
    return create_celery(Settings(broker_url=redis_url))


@pytest.fixture
def publisher(celery):
    publisher = TaskPublisher(celery)
    try:
        yield publisher
    finally:
        publisher.close()


def messages(redis_client, queue="pipeline"):
    # kombu pushes on the left and workers pop on the right: oldest last
    return [json.loads(raw) for raw in reversed(redis_client.lrange(queue, 0, -1))]


def body(message):
    return json.loads(base64.b64decode(message["body"]))


def test_a_real_celery_worker_runs_the_published_task(celery, redis_url, redis_client):
    assert send_now(celery, RUN_STAGE_TASK, ("job_1",))
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, redis_url],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        received = redis_client.blpop(["seen"], timeout=30)
    finally:
        worker.terminate()
        try:
            _, errors = worker.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
            _, errors = worker.communicate()
    assert received == (b"seen", b"job_1"), errors.decode(errors="replace")


def test_the_message_is_the_one_send_task_makes_but_for_its_ids(celery, publisher, redis_client):
    celery.send_task(RUN_STAGE_TASK, args=["job_1"], retry=False)
    publisher.publish(RUN_STAGE_TASK, ("job_1",))
    sent, published = messages(redis_client)
    assert body(published) == body(sent) == [["job_1"], {}, body(sent)[2]]
    # send_task also names a reply queue (for result backends; there is none) and
    # leaves ignore_result unset where the task is not registered: False means the same
    different = {"id", "root_id", "correlation_id", "delivery_tag", "reply_to", "ignore_result"}
    for part in ("headers", "properties"):
        assert {k: v for k, v in published[part].items() if k not in different} == {
            k: v for k, v in sent[part].items() if k not in different
        }
    assert published["headers"]["id"] == published["properties"]["correlation_id"]
    assert published["headers"]["id"] != sent["headers"]["id"]


def test_each_message_gets_its_own_task_id(publisher, redis_client):
    publisher.publish(RUN_STAGE_TASK, ("job_1",))
    publisher.publish(RUN_STAGE_TASK, ("job_2",))
    first, second = messages(redis_client)
    assert [body(first)[0], body(second)[0]] == [["job_1"], ["job_2"]]
    assert first["headers"]["id"] != second["headers"]["id"]


def test_the_apps_task_routes_are_followed(celery, publisher, redis_client):
    celery.conf.task_routes = {RUN_STAGE_TASK: {"queue": "elsewhere"}}
    publisher.publish(RUN_STAGE_TASK, ("job_1",))
    assert messages(redis_client) == []
    [message] = messages(redis_client, "elsewhere")
    assert body(message)[0] == ["job_1"]


def test_each_thread_publishes_over_its_own_connection(publisher, redis_client):
    connections = []

    def publish(job_id):
        publisher.publish(RUN_STAGE_TASK, (job_id,))
        connections.append(publisher._state().connection)
        publisher.close()

    threads = [threading.Thread(target=publish, args=(f"job_{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(body(message)[0][0] for message in messages(redis_client)) == ["job_0", "job_1"]
    assert connections[0] is not connections[1]


def test_a_connection_is_kept_between_messages(publisher):
    publisher.publish(RUN_STAGE_TASK, ("job_1",))
    kept = publisher._state().connection
    publisher.publish(RUN_STAGE_TASK, ("job_2",))
    assert publisher._state().connection is kept


def test_a_dead_broker_is_reported_and_the_connection_dropped(redis_url, caplog):
    dead = create_celery(Settings(broker_url="redis://127.0.0.1:1/0"))
    publisher = TaskPublisher(dead)
    with pytest.raises(Exception):  # noqa: B017, PT011 (kombu raises transport-specific errors)
        publisher.publish(RUN_STAGE_TASK, ("job_1",))
    assert getattr(publisher._local, "state", None) is None
    assert send_now(dead, RUN_STAGE_TASK, ("job_1",)) is False
    assert "could not publish" in caplog.text


def test_after_a_failure_the_next_message_reconnects(celery, publisher, redis_client, monkeypatch):
    publisher.publish(RUN_STAGE_TASK, ("job_1",))
    broken = publisher._state().connection

    def refuse(*_args, **_kwargs):
        raise ConnectionError("broker went away")

    monkeypatch.setattr(celery.amqp, "send_task_message", refuse)
    with pytest.raises(ConnectionError):
        publisher.publish(RUN_STAGE_TASK, ("job_2",))
    monkeypatch.undo()
    publisher.publish(RUN_STAGE_TASK, ("job_3",))
    assert publisher._state().connection is not broken
    assert [body(message)[0] for message in messages(redis_client)] == [["job_1"], ["job_3"]]


def test_a_forked_process_does_not_reuse_its_parents_connection(publisher, monkeypatch):
    publisher.publish(RUN_STAGE_TASK, ("job_1",))
    parents = publisher._state().connection
    monkeypatch.setattr("workers.app.os.getpid", lambda: -1)
    childs = publisher._state().connection
    childs.release()
    assert childs is not parents
