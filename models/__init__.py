"""The system of record: SQLAlchemy models, engine and session handling, queries.

- ``models.base``: the declarative base and shared column types
- ``models.access``: tenants and API keys
- ``models.jobs``: jobs, their event log, batches, revisions; terminal transitions
- ``models.idempotency``: idempotency keys
- ``models.outbox``: the webhook outbox, written with the state change it reports
- ``models.webhooks``: webhook endpoints, messages and attempts; fan-out; secrets
- ``models.upstream``: the service-wide upstream credentials
- ``models.db``: engines and sessions
"""

from models.access import ApiKey, Tenant
from models.base import Base
from models.idempotency import IdempotencyKey
from models.jobs import Batch, EventType, Job, JobEvent, JobStatus, Stage
from models.outbox import OutboxEvent, OutboxType
from models.upstream import UpstreamCredentials
from models.webhooks import (
    AttemptTrigger,
    MessageStatus,
    WebhookAttempt,
    WebhookEndpoint,
    WebhookMessage,
)

__all__ = [
    "ApiKey",
    "AttemptTrigger",
    "Base",
    "Batch",
    "EventType",
    "IdempotencyKey",
    "Job",
    "JobEvent",
    "JobStatus",
    "MessageStatus",
    "OutboxEvent",
    "OutboxType",
    "Stage",
    "Tenant",
    "UpstreamCredentials",
    "WebhookAttempt",
    "WebhookEndpoint",
    "WebhookMessage",
]
