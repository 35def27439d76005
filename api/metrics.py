"""``GET /metrics``: the API's request metrics and the service's job metrics, in
Prometheus format (every metric is described in docs/metrics.md).

Two kinds of metric, kept in two places:

- Request counts and latencies are counted by the process that served the request.
  Under gunicorn (``reelyard api``) there are several such processes, so they use
  prometheus_client's multiprocess mode: ``reelyard api`` points
  ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the workers fork, each
  worker writes its values there, and a scrape, whichever worker answers it, adds
  them all up. Without that variable (tests, the Flask test client) the app's own
  metrics are reported as they are.
- Everything about jobs, webhooks and queues is read at scrape time from where it is
  recorded: PostgreSQL, the system of record, and the broker. Workers keep nothing in
  memory (they are many processes on many hosts and may be killed at any line). Each
  query is one aggregate, cut off after :data:`STATEMENT_TIMEOUT_MS`; a database or
  broker that is down gives ``reelyard_up{component=...} 0`` instead of a failed
  scrape.

Counters read from tables (``reelyard_job_retries_total``, ...) are totals over the
rows that exist, so they only go down if rows are deleted, which Prometheus treats as
a reset.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import Row, case, func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from api.context import session_factory, settings
from api.errors import ApiError
from models import Job
from models.base import utcnow
from models.jobs import ACTIVE_STATUSES, TERMINAL_STATUSES, EventType, JobEvent, JobStatus
from models.webhooks import MessageStatus, WebhookAttempt, WebhookMessage
from nemo import errors as nemo_errors
from workers.queues import QueueDepths, queue_depths

log = logging.getLogger(__name__)

blp = Blueprint("metrics", __name__)

#: the environment variable that turns prometheus_client's multiprocess mode on (it is
#: read when prometheus_client is first imported)
MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
REQUEST_METRICS = "reelyard.request_metrics"
#: milliseconds any one query of a scrape may take (PostgreSQL)
STATEMENT_TIMEOUT_MS = 5000
#: stage durations are read from the newest job events only: at most this many, and
#: none older than :data:`STAGE_WINDOW_S` (about 55 ms for 50,000 events)
STAGE_WINDOW_EVENTS = 50_000
STAGE_WINDOW_S = 900
#: request latency buckets, in seconds: job creation takes milliseconds, an event
#: stream minutes (its latency is the time to the first byte)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: the route label of a request no URL rule matched (a 404): never the raw path
UNMATCHED_ROUTE = "<unmatched>"
#: the upstream errors (``nemo`` exception names), as job events record them
UPSTREAM_ERRORS = frozenset(
    name
    for name in nemo_errors.__all__
    if isinstance(kind := getattr(nemo_errors, name), type)
    and issubclass(kind, nemo_errors.NemoError)
)


# --- request metrics (per process) --------------------------------------------------


class RequestMetrics:
    """Requests served by this process, by method, route template and status."""

    def __init__(self) -> None:
        # not in prometheus_client's global registry: each app has its own, and a
        # scrape registers it (or, under gunicorn, reads every process's files)
        self.requests = Counter(
            "reelyard_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=None,
        )
        self.latency = Histogram(
            "reelyard_http_request_duration_seconds",
            "Seconds from a request's arrival to its response (to the first byte of a"
            " stream), by method and route template.",
            ["method", "route"],
            registry=None,
            buckets=LATENCY_BUCKETS,
        )

    def collect(self) -> Iterable[Metric]:
        yield from self.requests.collect()
        yield from self.latency.collect()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)


def init_app(app: Flask) -> None:
    """Count the app's requests and serve ``/metrics``. Call before any other
    ``before_request`` hook, so that requests they refuse are timed too."""
    app.extensions[REQUEST_METRICS] = RequestMetrics()
    app.before_request(_start_timer)
    app.after_request(_count_request)
    app.register_blueprint(blp)


def _start_timer() -> None:
    g.metrics_started = time.perf_counter()


def _count_request(response: Response) -> Response:
    started: float | None = g.get("metrics_started")
    if started is not None:
        rule = request.url_rule
        route = rule.rule if rule is not None else UNMATCHED_ROUTE
        metrics: RequestMetrics = current_app.extensions[REQUEST_METRICS]
        metrics.observe(request.method, route, response.status_code, time.perf_counter() - started)
    return response


# --- the endpoint -------------------------------------------------------------------


@blp.get("/metrics")
def metrics_view() -> Response:
    _check_token(settings().metrics_token)
    registry = CollectorRegistry(auto_describe=False)
    multiproc_dir = os.environ.get(MULTIPROC_DIR_ENV)
    if multiproc_dir:
        MultiProcessCollector(registry, path=multiproc_dir)  # type: ignore[no-untyped-call]
    else:
        registry.register(current_app.extensions[REQUEST_METRICS])
    registry.register(ScrapeCollector(session_factory(), settings().broker_url))
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def _check_token(expected: str | None) -> None:
    if expected is None:
        return
    given = request.headers.get("Authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.encode()
    ):
        raise ApiError(
            401,
            "unauthorized",
            "The metrics token is required: Authorization: Bearer <REELYARD_METRICS_TOKEN>.",
            headers={"WWW-Authenticate": 'Bearer realm="reelyard-metrics"'},
        )


class ScrapeCollector:
    """The job, webhook and queue metrics, read afresh at each scrape."""

    def __init__(self, sessions: sessionmaker[Session], broker_url: str) -> None:
        self.sessions = sessions
        self.broker_url = broker_url

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "reelyard_up",
            "1 when the API could read the component at this scrape, 0 when it could not.",
            labels=["component"],
        )
        took = GaugeMetricFamily(
            "reelyard_metrics_collect_seconds",
            "Seconds this scrape spent reading each component.",
            labels=["component"],
        )
        started = time.perf_counter()
        families = database_families(self.sessions)
        up.add_metric(["database"], 0 if families is None else 1)
        took.add_metric(["database"], time.perf_counter() - started)
        yield from families or []

        started = time.perf_counter()
        depths = queue_depths(self.broker_url)
        up.add_metric(["broker"], 0 if depths is None else 1)
        took.add_metric(["broker"], time.perf_counter() - started)
        yield from broker_families(depths)
        yield up
        yield took


# --- the database -------------------------------------------------------------------


def database_families(sessions: sessionmaker[Session]) -> list[Metric] | None:
    """Every metric read from the database; None when it cannot be read."""
    try:
        with sessions() as session:
            _bound_scrape(session)
            now = utcnow()
            families = [
                *job_families(session, now),
                *event_families(session),
                *stage_duration_families(session),
                *webhook_families(session, now),
            ]
            session.rollback()
    except SQLAlchemyError:
        log.warning("metrics: the database could not be read", exc_info=True)
        return None
    return families


def _bound_scrape(session: Session) -> None:
    """PostgreSQL: no query of the scrape may run long; no JIT (it costs more than it
    saves on these small aggregates); enough memory to sort the stage window."""
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
    session.execute(text("SET LOCAL jit = off"))
    session.execute(text("SET LOCAL work_mem = '32MB'"))


def job_families(session: Session, now: datetime) -> list[Metric]:
    return [
        *job_state_families(session),
        jobs_created_family(session),
        oldest_due_job_family(session, now),
    ]


def job_state_families(session: Session) -> list[Metric]:
    """Jobs by status and stage, and the finished ones by outcome (one scan of jobs)."""
    jobs = GaugeMetricFamily(
        "reelyard_jobs",
        "Jobs by current status and stage (a finished job keeps the stage it ended in).",
        labels=["status", "stage"],
    )
    finished = CounterMetricFamily(
        "reelyard_jobs_finished",
        "Jobs that ended, by terminal status (succeeded, failed, canceled).",
        labels=["status"],
    )
    failed = CounterMetricFamily(
        "reelyard_jobs_failed", "Jobs that ended failed, by error code.", labels=["error_code"]
    )
    by_state: Tally[tuple[str, str]] = Tally()
    by_outcome: Tally[str] = Tally({status.value: 0 for status in TERMINAL_STATUSES})
    by_code: Tally[str] = Tally()
    for status, stage, error_code, count in session.execute(
        select(Job.status, Job.stage, Job.error_code, func.count()).group_by(
            Job.status, Job.stage, Job.error_code
        )
    ):
        by_state[status.value, stage.value] += count
        if status.terminal:
            by_outcome[status.value] += count
        if status is JobStatus.FAILED:
            by_code[error_code or "unknown"] += count
    for (status_name, stage_name), count in sorted(by_state.items()):
        jobs.add_metric([status_name, stage_name], count)
    for status_name, count in sorted(by_outcome.items()):
        finished.add_metric([status_name], count)
    for code, count in sorted(by_code.items()):
        failed.add_metric([code], count)
    return [jobs, finished, failed]


def jobs_created_family(session: Session) -> Metric:
    created = CounterMetricFamily(
        "reelyard_jobs_created", "Jobs created, by tenant id.", labels=["tenant"]
    )
    for tenant_id, count in session.execute(
        select(Job.tenant_id, func.count()).group_by(Job.tenant_id).order_by(Job.tenant_id)
    ):
        created.add_metric([tenant_id], count)
    return created


def oldest_due_job_family(session: Session, now: datetime) -> Metric:
    oldest_due = GaugeMetricFamily(
        "reelyard_job_oldest_due_seconds",
        "Seconds the live job that has waited longest for a worker has been due (no"
        " worker holds it); 0 when none is waiting.",
    )
    due_since = session.scalar(
        select(func.min(Job.next_run_at)).where(
            Job.status.in_(ACTIVE_STATUSES),
            Job.next_run_at <= now,
            (Job.lease_expires_at.is_(None)) | (Job.lease_expires_at <= now),
        )
    )
    oldest_due.add_metric([], _age_s(due_since, now))
    return oldest_due


def event_families(session: Session) -> list[Metric]:
    """Retries and upstream errors, counted from the job event log."""
    retries = CounterMetricFamily(
        "reelyard_job_retries",
        "Stage retries, by the stage retried and the reason: the upstream error's name"
        " (RateLimited, ServerError, StreamBroken, ...), an internal error's name, or"
        " 'pipeline' for the pipeline's own (a correction, a render started again, a"
        " read of the state, a photo fetched again).",
        labels=["stage", "reason"],
    )
    upstream = CounterMetricFamily(
        "reelyard_upstream_errors",
        "Errors the upstream answered that led to a retry or a repair, by error name"
        " (nemo/errors.py maps them to Nemo's codes: TokenInvalid is 1001,"
        " SessionNotFound 1002, RateLimited 429, ServerError 5xx, ...).",
        labels=["error"],
    )
    error = JobEvent.data["error"].as_string()
    rows = session.execute(
        select(JobEvent.type, JobEvent.stage, error, func.count())
        .where(JobEvent.type.in_((EventType.RETRY, EventType.REPAIR)))
        .group_by(JobEvent.type, JobEvent.stage, error)
    )
    by_retry: Tally[tuple[str, str]] = Tally()
    by_error: Tally[str] = Tally()
    for type_, stage, name, count in rows:
        if type_ is EventType.RETRY:
            by_retry[str(stage or ""), name or "pipeline"] += count
        if name in UPSTREAM_ERRORS:
            by_error[name] += count
    for (stage, reason), count in sorted(by_retry.items()):
        retries.add_metric([stage, reason], count)
    for name, count in sorted(by_error.items()):
        upstream.add_metric([name], count)
    return [retries, upstream]


#: a stage run starts at the event that entered the stage and ends at the next event
#: that entered another stage or ended the job (events that move a job carry the stage
#: they move it to; a terminal event carries none). Only events inside the window are
#: read, so a run must start and end inside it to count.
_STAGE_DURATIONS = text(
    """
    WITH recent AS (
        SELECT job_id, id, type, stage, created_at FROM job_events
        WHERE id > (SELECT coalesce(max(id), 0) FROM job_events) - :max_events
          AND created_at > now() - make_interval(secs => :window_s)
          AND type IN ('created', 'stage', 'retry', 'repair', 'succeeded', 'failed',
                       'canceled')
    ), marked AS (
        SELECT job_id, id, type, stage, created_at,
               lag(type) OVER w AS previous_type, lag(stage) OVER w AS previous_stage
        FROM recent WINDOW w AS (PARTITION BY job_id ORDER BY id)
    ), runs AS (
        SELECT stage, created_at,
               lead(created_at) OVER (PARTITION BY job_id ORDER BY id) AS ended_at
        FROM marked
        WHERE type = 'created'
           OR (previous_type IS NOT NULL AND stage IS DISTINCT FROM previous_stage)
    ), durations AS (
        SELECT stage, extract(epoch FROM ended_at - created_at)::float8 AS seconds
        FROM runs WHERE stage IS NOT NULL AND ended_at IS NOT NULL
    )
    SELECT stage, count(*) AS runs, sum(seconds) AS total_s,
           percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY seconds) AS pct
    FROM durations GROUP BY stage ORDER BY stage
    """
)
_PERCENTILES = ("50", "90", "99")


def stage_duration_families(session: Session) -> list[Metric]:
    """Recent stage durations (PostgreSQL only: percentiles are computed there)."""
    if session.get_bind().dialect.name != "postgresql":
        return []
    window = f"over the stage runs that ended in the last {STAGE_WINDOW_S // 60} minutes"
    window += f" (within the newest {STAGE_WINDOW_EVENTS} job events)"
    durations = GaugeMetricFamily(
        "reelyard_job_stage_duration_seconds",
        f"Percentiles of the seconds a stage took, by stage, {window}.",
        labels=["stage", "percentile"],
    )
    runs = GaugeMetricFamily(
        "reelyard_job_stage_runs_recent", f"Stage runs, by stage, {window}.", labels=["stage"]
    )
    total = GaugeMetricFamily(
        "reelyard_job_stage_seconds_recent",
        f"Seconds spent in each stage, summed {window}.",
        labels=["stage"],
    )
    rows: Sequence[Row[Any]] = session.execute(
        _STAGE_DURATIONS, {"max_events": STAGE_WINDOW_EVENTS, "window_s": STAGE_WINDOW_S}
    ).all()
    for row in rows:
        stage, count, total_s, percentiles = row.stage, row.runs, row.total_s, row.pct
        runs.add_metric([stage], count)
        total.add_metric([stage], total_s)
        for name, value in zip(_PERCENTILES, percentiles, strict=True):
            durations.add_metric([stage, name], value)
    return [durations, runs, total]


def webhook_families(session: Session, now: datetime) -> list[Metric]:
    attempts = CounterMetricFamily(
        "reelyard_webhook_attempts",
        "Webhook delivery attempts that have ended, by result: the receiver's status"
        " class (2xx is a delivery) or no_response (a timeout, a refused connection or"
        " address, a redirect not followed).",
        labels=["result"],
    )
    result = _attempt_result()
    for name, count in session.execute(
        select(result, func.count())
        .where(WebhookAttempt.status_code.is_not(None) | WebhookAttempt.error.is_not(None))
        .group_by(result)
        .order_by(result)
    ):
        attempts.add_metric([name], count)

    messages = GaugeMetricFamily(
        "reelyard_webhook_messages",
        "Webhook messages by status: pending (due or waiting for a retry), delivered, or"
        " failed (every retry spent).",
        labels=["status"],
    )
    counts: Tally[MessageStatus] = Tally()
    for status, count in session.execute(
        select(WebhookMessage.status, func.count()).group_by(WebhookMessage.status)
    ):
        counts[status] += count
    for status in MessageStatus:
        messages.add_metric([status.value], counts[status])

    oldest_due = GaugeMetricFamily(
        "reelyard_webhook_oldest_due_seconds",
        "Seconds the pending webhook message due longest ago has been due; 0 when none is.",
    )
    due_since = session.scalar(
        select(func.min(WebhookMessage.next_attempt_at)).where(
            WebhookMessage.status == MessageStatus.PENDING,
            WebhookMessage.next_attempt_at <= now,
        )
    )
    oldest_due.add_metric([], _age_s(due_since, now))
    return [attempts, messages, oldest_due]


def _attempt_result() -> Any:
    code = WebhookAttempt.status_code
    return case(
        (code.is_(None), "no_response"),
        (code < 200, "1xx"),
        (code < 300, "2xx"),
        (code < 400, "3xx"),
        (code < 500, "4xx"),
        else_="5xx",
    ).label("result")


def _age_s(since: datetime | None, now: datetime) -> float:
    return max((now - since).total_seconds(), 0.0) if since is not None else 0.0


# --- the broker ---------------------------------------------------------------------


def broker_families(depths: QueueDepths | None) -> list[Metric]:
    if depths is None:
        return []
    queued = GaugeMetricFamily(
        "reelyard_queue_messages",
        "Messages waiting on each broker queue (not yet delivered to a worker).",
        labels=["queue"],
    )
    for queue, count in depths.messages.items():
        queued.add_metric([queue], count)
    families: list[Metric] = [queued]
    if depths.unacked is not None:
        unacked = GaugeMetricFamily(
            "reelyard_broker_unacked_messages",
            "Messages delivered to workers and not yet acknowledged, all queues together"
            " (running tasks, prefetched ones, and those waiting for their countdown).",
        )
        unacked.add_metric([], depths.unacked)
        families.append(unacked)
    return families
