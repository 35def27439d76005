"""Tasks go to the broker only after the commit that made them due."""

from __future__ import annotations

import pytest

from reelyard.settings import Settings
from tests.api.conftest import queued_tasks
from workers.app import RUN_STAGE_TASK, create_celery, enqueue_job, publish_after_commit


@pytest.fixture
def celery(redis_url):
    return create_celery(Settings(broker_url=redis_url))


def test_nothing_is_sent_before_the_commit(session_factory, celery, redis_client):
    with session_factory() as session:
        enqueue_job(session, celery, "job_1")
        session.flush()
        assert queued_tasks(redis_client) == []
        session.commit()
    assert queued_tasks(redis_client) == [(RUN_STAGE_TASK, ["job_1"])]


def test_a_rollback_drops_the_task(session_factory, celery, redis_client):
    with session_factory() as session:
        enqueue_job(session, celery, "job_1")
        session.rollback()
        session.commit()
    assert queued_tasks(redis_client) == []


def test_each_task_is_sent_once(session_factory, celery, redis_client):
    with session_factory() as session:
        publish_after_commit(session, celery, "a.task", 1)
        publish_after_commit(session, celery, "b.task", 2)
        session.commit()
        session.commit()
    assert queued_tasks(redis_client) == [("a.task", [1]), ("b.task", [2])]


def test_the_celery_app_is_configured_for_durability(celery):
    conf = celery.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.task_serializer == "json"
    assert conf.accept_content == ["json"]
    assert conf.result_backend is None
    assert conf.broker_transport_options["visibility_timeout"] >= 3600
