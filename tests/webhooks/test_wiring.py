"""How delivery is woken and served: the queue, its pool, the beat's sweep, the wakes."""

from __future__ import annotations

import pytest

from models.jobs import Stage
from nemo import NemoConfig
from reelyard.settings import Settings
from tests.api.conftest import queued_tasks
from workers import tasks
from workers.app import (
    WEBHOOKS_DELIVER_TASK,
    WEBHOOKS_DISPATCH_TASK,
    WEBHOOKS_QUEUE,
    create_celery,
)
from workers.commands import POOLS
from workers.pipeline import Next
from workers.tasks import create_worker_app


def test_webhook_tasks_have_a_queue_and_a_threads_pool_of_their_own():
    app = create_celery(Settings())
    routes = app.conf.task_routes
    assert routes[WEBHOOKS_DISPATCH_TASK] == {"queue": WEBHOOKS_QUEUE}
    assert routes[WEBHOOKS_DELIVER_TASK] == {"queue": WEBHOOKS_QUEUE}
    assert POOLS[WEBHOOKS_QUEUE] == ("threads", 50)


def test_beat_sweeps_the_webhooks_at_the_configured_interval():
    app = create_celery(Settings(webhook_sweep_every_s=2.5))
    sweep = app.conf.beat_schedule["webhooks-sweep"]
    assert sweep == {"task": WEBHOOKS_DISPATCH_TASK, "schedule": 2.5}


def worker_app(redis_url):
    settings = Settings(broker_url=redis_url, redis_url=redis_url)
    return create_worker_app(settings, NemoConfig(base_url="http://127.0.0.1:9"))


def test_a_stage_run_that_leaves_nothing_to_publish_wakes_webhook_delivery(
    monkeypatch, redis_url, redis_client
):
    # the job ended (or the message was a duplicate): run_stage has nothing to publish
    monkeypatch.setattr(tasks, "build_deps", lambda settings, nemo_config: object())
    monkeypatch.setattr(tasks, "run_stage", lambda deps, job_id, **kwargs: None)
    worker_app(redis_url).tasks["reelyard.pipeline.run_stage"].run("job_01")
    assert queued_tasks(redis_client, WEBHOOKS_QUEUE) == [(WEBHOOKS_DISPATCH_TASK, [])]
    assert queued_tasks(redis_client, "pipeline") == []


def test_a_stage_run_with_a_next_step_does_not_wake_webhook_delivery(
    monkeypatch, redis_url, redis_client
):
    monkeypatch.setattr(tasks, "build_deps", lambda settings, nemo_config: object())
    monkeypatch.setattr(
        tasks, "run_stage", lambda deps, job_id, **kwargs: Next(job_id, Stage.UPLOAD)
    )
    worker_app(redis_url).tasks["reelyard.pipeline.run_stage"].run("job_01")
    assert queued_tasks(redis_client, WEBHOOKS_QUEUE) == []


def test_a_dispatch_starts_one_delivery_loop_per_due_message(monkeypatch, redis_url, redis_client):
    monkeypatch.setattr(tasks, "build_webhook_deps", lambda settings: object())
    monkeypatch.setattr(tasks.webhooks, "dispatch", lambda deps, start_loops: start_loops(3))
    worker_app(redis_url).tasks[WEBHOOKS_DISPATCH_TASK].run()
    assert queued_tasks(redis_client, WEBHOOKS_QUEUE) == [(WEBHOOKS_DELIVER_TASK, [])] * 3


@pytest.mark.parametrize(("more", "queued"), [(True, 1), (False, 0)])
def test_a_delivery_loop_that_ran_out_of_time_hands_over_to_a_new_one(
    monkeypatch, redis_url, redis_client, more, queued
):
    monkeypatch.setattr(tasks, "build_webhook_deps", lambda settings: object())
    monkeypatch.setattr(tasks.webhooks, "deliver_due", lambda deps, owner: (7, more))
    worker_app(redis_url).tasks[WEBHOOKS_DELIVER_TASK].run()
    assert queued_tasks(redis_client, WEBHOOKS_QUEUE) == [(WEBHOOKS_DELIVER_TASK, [])] * queued


def test_delivery_connections_walk_the_due_index_rather_than_sort_it(engine):
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SHOW enable_bitmapscan").scalar() == "off"
