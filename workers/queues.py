"""How many messages wait on each broker queue, read from the broker itself.

The metrics report it (``reelyard_queue_messages``), and the reconciler uses it so that a
backlog is not mistaken for lost messages: a job that waits behind thousands of others
has its message on the queue, and sending another one only lengthens the queue.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis
from kombu import Connection

from workers.app import EDIT_QUEUE, PIPELINE_QUEUE, WEBHOOKS_QUEUE

log = logging.getLogger(__name__)

#: the broker queues whose depth is reported
QUEUES = (PIPELINE_QUEUE, EDIT_QUEUE, WEBHOOKS_QUEUE)
#: kombu's Redis transport keeps a queue's messages of priority p > 0 under
#: ``name + SEP + p`` (its default priority steps)
_REDIS_PRIORITY_SEP = "\x06\x16"
_REDIS_PRIORITIES = (3, 6, 9)
#: the Redis hash where kombu keeps messages delivered but not yet acknowledged
_REDIS_UNACKED = "unacked"
#: seconds the broker may take to answer
BROKER_TIMEOUT_S = 1.0


@dataclass(frozen=True)
class QueueDepths:
    messages: dict[str, int]
    #: delivered to a worker and not yet acknowledged, all queues together (Redis only:
    #: it includes the tasks waiting for their countdown)
    unacked: int | None = None


def queue_depths(broker_url: str) -> QueueDepths | None:
    """Messages waiting on each queue; None when the broker cannot be read."""
    try:
        if broker_url.startswith(("redis://", "rediss://", "unix://")):
            return _redis_depths(broker_url)
        return _kombu_depths(broker_url)
    except Exception:  # any transport error: the broker is reported down
        log.warning("the broker could not be read", exc_info=True)
        return None


def _redis_depths(broker_url: str) -> QueueDepths:
    client = redis.Redis.from_url(
        broker_url, socket_connect_timeout=BROKER_TIMEOUT_S, socket_timeout=BROKER_TIMEOUT_S
    )
    try:
        pipe = client.pipeline(transaction=False)
        for queue in QUEUES:
            pipe.llen(queue)
            for priority in _REDIS_PRIORITIES:
                pipe.llen(f"{queue}{_REDIS_PRIORITY_SEP}{priority}")
        pipe.hlen(_REDIS_UNACKED)
        answers = [int(answer) for answer in pipe.execute()]
    finally:
        client.close()
    per_queue = 1 + len(_REDIS_PRIORITIES)
    messages = {
        queue: sum(answers[index * per_queue : (index + 1) * per_queue])
        for index, queue in enumerate(QUEUES)
    }
    return QueueDepths(messages, unacked=answers[-1])


def _kombu_depths(broker_url: str) -> QueueDepths:
    """Any other broker (RabbitMQ): a passive declare reports a queue's message count."""
    messages: dict[str, int] = {}
    with Connection(broker_url, connect_timeout=BROKER_TIMEOUT_S) as connection:
        connection.ensure_connection(max_retries=1)
        for queue in QUEUES:
            channel: Any = connection.channel()  # kombu's StdChannel type omits both calls
            try:
                declared = channel.queue_declare(queue=queue, passive=True)
                messages[queue] = int(declared.message_count)
            except connection.channel_errors:  # not declared yet: no worker ever ran
                messages[queue] = 0
            finally:
                channel.close()
    return QueueDepths(messages)


def waiting_messages(broker_url: str) -> dict[str, int] | None:
    """Messages waiting on each queue, by name; None when the broker cannot be read."""
    depths = queue_depths(broker_url)
    return None if depths is None else depths.messages
