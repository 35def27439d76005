"""The standalone broker: a message is visible only whole, and a broken file is set aside."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from kombu import Producer

from reelyard.settings import Settings
from workers.app import create_celery
from workers.filesystem_broker import Transport

QUEUE = "pipeline"


@pytest.fixture
def broker(tmp_path: Path) -> Path:
    return tmp_path / "broker"


@pytest.fixture
def celery(broker: Path):
    return create_celery(Settings(broker_url=f"filesystem://{broker}"))


def publish(celery, body: dict[str, object]) -> None:
    with celery.connection_for_write() as connection:
        Producer(connection.default_channel).publish(
            body, routing_key=QUEUE, serializer="json", declare=[]
        )


def take(celery) -> dict[str, object] | None:
    with celery.connection_for_read() as connection:
        message = connection.default_channel.basic_get(QUEUE, no_ack=True)
        return None if message is None else message.decode()


def queued(broker: Path) -> list[Path]:
    return sorted((broker / "queue").glob(f"*.{QUEUE}.msg"))


def test_a_filesystem_url_selects_the_transport_that_writes_messages_whole(celery):
    with celery.connection_for_write() as connection:
        assert isinstance(connection.transport, Transport)


def test_a_message_appears_in_the_queue_only_once_written(celery, broker, monkeypatch):
    seen_while_writing: list[list[Path]] = []
    original = Path.write_bytes

    def write_bytes(path: Path, data: bytes) -> int:
        written = original(path, data)
        seen_while_writing.append(queued(broker))  # after the write, before the rename
        return written

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    publish(celery, {"job": "job_1"})
    monkeypatch.undo()

    assert seen_while_writing == [[]]
    [message] = queued(broker)
    assert json.loads(message.read_bytes())["body"]  # whole, and JSON
    assert list((broker / "staging").iterdir()) == []
    assert take(celery) == {"job": "job_1"}


def test_a_message_file_that_cannot_be_read_is_set_aside_not_fatal(celery, broker, caplog):
    (broker / "queue").mkdir(parents=True, exist_ok=True)
    # an empty file, as kombu's own transport could leave for a consumer to find
    (broker / "queue" / f"1_broken.{QUEUE}.msg").write_bytes(b"")
    publish(celery, {"job": "job_2"})

    with caplog.at_level(logging.WARNING, logger="workers.filesystem_broker"):
        assert take(celery) == {"job": "job_2"}
    assert "could not be read and was set aside" in caplog.text
    assert (broker / "processed" / f"1_broken.{QUEUE}.msg").exists()
    assert take(celery) is None
