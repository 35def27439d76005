"""The service's settings: read once from the environment into one frozen object.

Processes call :meth:`Settings.from_env` at start-up and pass the object down; tests
build their own with :meth:`Settings.from_env` on a dictionary or with
:func:`dataclasses.replace`. Nothing here reads the environment at import time.

The ``REELYARD_*`` names are part of the product's interface (design.md,
"Configuration"); the few added here for the API's tuning follow the same prefix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/reelyard"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"
#: the Standard Webhooks retry schedule: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
#: 14 h, 20 h, 24 h (about three days in all)
DEFAULT_WEBHOOK_SCHEDULE_S = (
    0.0,
    5.0,
    300.0,
    1800.0,
    7200.0,
    18000.0,
    36000.0,
    50400.0,
    72000.0,
    86400.0,
)
#: requests per tenant; a tenant row may carry its own limit instead
DEFAULT_RATE_LIMIT = "50/second"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_RATE = re.compile(r"^\s*\d+\s*(/|per)\s*(\d+\s*)?(second|minute|hour|day)s?\s*$", re.IGNORECASE)


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


def _flag(environ: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(f"{name}={raw!r}: expected one of on/off, true/false, 1/0")


def _positive_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a whole number") from None
    if value < 1:
        raise SettingsError(f"{name}={raw!r}: expected a number of at least 1")
    return value


def _non_negative_int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return default
    if raw.strip() == "0":
        return 0
    return _positive_int(environ, name, default)


def _choice(environ: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return choices[0]
    if raw not in choices:
        raise SettingsError(f"{name}={raw!r}: expected one of {', '.join(choices)}")
    return raw


def _float(
    environ: Mapping[str, str], name: str, default: float, *, zero_allowed: bool = False
) -> float:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a number") from None
    if not (value >= 0 if zero_allowed else value > 0):
        floor = "of at least 0" if zero_allowed else "above 0"
        raise SettingsError(f"{name}={raw!r}: expected a number {floor}")
    return value


def _schedule(environ: Mapping[str, str], name: str) -> tuple[float, ...]:
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return DEFAULT_WEBHOOK_SCHEDULE_S
    try:
        values = tuple(float(part) for part in raw.split(","))
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected seconds such as '0,5,300'") from None
    if not all(value >= 0 for value in values):
        raise SettingsError(f"{name}={raw!r}: expected seconds of at least 0")
    return values


def _basic_auth(environ: Mapping[str, str], name: str) -> str | None:
    raw = environ.get(name, "").strip()
    if not raw:
        return None
    for credential in raw.split(","):
        user, _, password = credential.partition(":")
        if not user.strip() or not password:
            # the value is a password: never echo it
            raise SettingsError(f"{name}: expected user:password (several separated by commas)")
    return raw


def _rate_limits(raw: str, name: str) -> str:
    parts = [part for part in raw.split(";") if part.strip()]
    if not parts or not all(_RATE.match(part) for part in parts):
        raise SettingsError(f"{name}={raw!r}: expected limits such as '50/second;1000/minute'")
    return raw


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the API and the workers are configured with."""

    #: SQLAlchemy URL of the system of record (``REELYARD_DATABASE_URL``)
    database_url: str = DEFAULT_DATABASE_URL
    #: the Celery broker (``REELYARD_BROKER_URL``)
    broker_url: str = DEFAULT_BROKER_URL
    #: rate limits and pub/sub; the broker's Redis unless set (``REELYARD_REDIS_URL``)
    redis_url: str = DEFAULT_BROKER_URL
    #: where finished videos are kept (``REELYARD_STORAGE_DIR``)
    storage_dir: Path = Path(".reelyard/videos")
    #: the standalone mode's data directory (``REELYARD_DATA_DIR``)
    data_dir: Path = Path(".reelyard")
    #: let webhooks and fetches reach private addresses (``REELYARD_ALLOW_PRIVATE_URLS``)
    allow_private_urls: bool = False
    #: the API's external base URL (``REELYARD_PUBLIC_URL``)
    public_url: str = DEFAULT_PUBLIC_URL
    #: per-tenant request limits, flask-limiter notation (``REELYARD_RATE_LIMIT``)
    rate_limit: str = DEFAULT_RATE_LIMIT
    #: database connections kept per API process (``REELYARD_DATABASE_POOL_SIZE``)
    database_pool_size: int = 10
    #: seconds an API process may reuse a key it has verified; a revoked key stops
    #: working within this time (``REELYARD_AUTH_CACHE_S``; 0 checks every request)
    auth_cache_s: float = 10.0
    #: seconds between two looks at the event log for a live stream
    #: (``REELYARD_EVENTS_POLL_S``)
    events_poll_s: float = 1.0
    #: seconds a live event stream stays open before the client reconnects
    #: with ``Last-Event-ID`` (``REELYARD_EVENTS_STREAM_S``)
    events_stream_s: float = 300.0
    #: a bearer token ``GET /metrics`` requires when set (``REELYARD_METRICS_TOKEN``;
    #: unset: the endpoint is open, for a scraper on a private network)
    metrics_token: str | None = field(default=None, repr=False)

    # the pipeline (workers/)
    #: multiplies every wait the pipeline schedules: backoff, the reads after a broken
    #: stream, render polling (``REELYARD_TIME_SCALE``; tests use 0.01, production 1)
    time_scale: float = 1.0
    #: seconds a worker holds a job before another may take it over
    #: (``REELYARD_LEASE_S``); the edit renews its lease while the stream is alive
    lease_s: float = 120.0
    #: seconds between two looks at a render (``REELYARD_RENDER_POLL_S``, nemo-api.md)
    render_poll_s: float = 30.0
    #: seconds a render may stay unfinished before it is canceled and tried once more
    #: (``REELYARD_RENDER_TIMEOUT_S``)
    render_timeout_s: float = 900.0
    #: seconds from a job's first stage to its deadline (``REELYARD_JOB_DEADLINE_S``)
    job_deadline_s: float = 3600.0
    #: ``url`` (the upstream fetches the images) or ``file`` (reelyard fetches them and
    #: uploads the files) (``REELYARD_UPLOAD_MODE``)
    upload_mode: str = "url"
    #: corrective instructions after a draft fails verification (each one is charged)
    #: (``REELYARD_MAX_CORRECTIONS``)
    max_corrections: int = 1
    #: seconds between two reads of the upstream's credit balance
    #: (``REELYARD_CREDITS_EVERY_S``)
    credits_every_s: float = 60.0
    #: seconds between two reconciler sweeps (``REELYARD_RECONCILE_EVERY_S``)
    reconcile_every_s: float = 5.0
    #: run a stage that is due at once in the same task execution as the one before it
    #: (``REELYARD_CONTINUE_STAGES``; measured in benchmarks/pipeline.py)
    continue_stages: bool = True

    # webhooks
    #: seconds a rotated-out secret keeps signing beside the new one
    #: (``REELYARD_WEBHOOK_ROTATION_OVERLAP_S``; 0 drops it at once)
    webhook_rotation_overlap_s: float = 86400.0
    #: seconds before each attempt of a message, the first at once: the Standard
    #: Webhooks schedule (``REELYARD_WEBHOOK_SCHEDULE_S``, comma-separated; scaled by
    #: ``time_scale``, like every wait of the webhooks but the per-attempt timeout)
    webhook_schedule_s: tuple[float, ...] = DEFAULT_WEBHOOK_SCHEDULE_S
    #: seconds one attempt may take, connection included (``REELYARD_WEBHOOK_TIMEOUT_S``)
    webhook_timeout_s: float = 15.0
    #: seconds a delivery worker holds a message before another may take it over; above
    #: the attempt's timeout (``REELYARD_WEBHOOK_LEASE_S``)
    webhook_lease_s: float = 60.0
    #: messages of one endpoint in flight at once, whatever the number of workers
    #: (``REELYARD_WEBHOOK_ENDPOINT_CONCURRENCY``)
    webhook_endpoint_concurrency: int = 10
    #: seconds an endpoint may fail every attempt before it is disabled
    #: (``REELYARD_WEBHOOK_DISABLE_AFTER_S``; 5 days; scaled by ``time_scale``)
    webhook_disable_after_s: float = 5 * 86400.0
    #: seconds between two sweeps of the outbox and of due messages
    #: (``REELYARD_WEBHOOK_SWEEP_EVERY_S``)
    webhook_sweep_every_s: float = 5.0
    #: delivery loops a wake-up starts at most: the webhooks pool's size
    #: (``REELYARD_WEBHOOK_PARALLEL``)
    webhook_parallel: int = 50

    # operations
    #: Flower's HTTP basic auth, ``user:password``, several separated by commas
    #: (``REELYARD_FLOWER_BASIC_AUTH``); ``reelyard flower`` refuses to start without it
    #: unless ``standalone`` or ``--no-auth``
    flower_basic_auth: str | None = field(default=None, repr=False)
    #: everything on one machine for trying it out (``REELYARD_STANDALONE``)
    standalone: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``environ`` (the process environment by default)."""
        env = os.environ if environ is None else environ

        def text(name: str, default: str) -> str:
            value = env.get(name, "").strip()
            return value or default

        broker_url = text("REELYARD_BROKER_URL", DEFAULT_BROKER_URL)
        data_dir = Path(text("REELYARD_DATA_DIR", ".reelyard"))
        settings = cls(
            database_url=text("REELYARD_DATABASE_URL", DEFAULT_DATABASE_URL),
            broker_url=broker_url,
            redis_url=text("REELYARD_REDIS_URL", broker_url),
            storage_dir=Path(text("REELYARD_STORAGE_DIR", str(data_dir / "videos"))),
            data_dir=data_dir,
            allow_private_urls=_flag(env, "REELYARD_ALLOW_PRIVATE_URLS", default=False),
            public_url=text("REELYARD_PUBLIC_URL", DEFAULT_PUBLIC_URL).rstrip("/"),
            rate_limit=_rate_limits(
                text("REELYARD_RATE_LIMIT", DEFAULT_RATE_LIMIT), "REELYARD_RATE_LIMIT"
            ),
            database_pool_size=_positive_int(env, "REELYARD_DATABASE_POOL_SIZE", 10),
            auth_cache_s=_float(env, "REELYARD_AUTH_CACHE_S", 10.0, zero_allowed=True),
            events_poll_s=_float(env, "REELYARD_EVENTS_POLL_S", 1.0),
            events_stream_s=_float(env, "REELYARD_EVENTS_STREAM_S", 300.0),
            metrics_token=env.get("REELYARD_METRICS_TOKEN", "").strip() or None,
            time_scale=_float(env, "REELYARD_TIME_SCALE", 1.0, zero_allowed=True),
            lease_s=_float(env, "REELYARD_LEASE_S", 120.0),
            render_poll_s=_float(env, "REELYARD_RENDER_POLL_S", 30.0, zero_allowed=True),
            render_timeout_s=_float(env, "REELYARD_RENDER_TIMEOUT_S", 900.0),
            job_deadline_s=_float(env, "REELYARD_JOB_DEADLINE_S", 3600.0),
            upload_mode=_choice(env, "REELYARD_UPLOAD_MODE", ("url", "file")),
            max_corrections=_non_negative_int(env, "REELYARD_MAX_CORRECTIONS", 1),
            credits_every_s=_float(env, "REELYARD_CREDITS_EVERY_S", 60.0, zero_allowed=True),
            reconcile_every_s=_float(env, "REELYARD_RECONCILE_EVERY_S", 5.0),
            continue_stages=_flag(env, "REELYARD_CONTINUE_STAGES", default=True),
            webhook_rotation_overlap_s=_float(
                env, "REELYARD_WEBHOOK_ROTATION_OVERLAP_S", 86400.0, zero_allowed=True
            ),
            webhook_schedule_s=_schedule(env, "REELYARD_WEBHOOK_SCHEDULE_S"),
            webhook_timeout_s=_float(env, "REELYARD_WEBHOOK_TIMEOUT_S", 15.0),
            webhook_lease_s=_float(env, "REELYARD_WEBHOOK_LEASE_S", 60.0),
            webhook_endpoint_concurrency=_positive_int(
                env, "REELYARD_WEBHOOK_ENDPOINT_CONCURRENCY", 10
            ),
            webhook_disable_after_s=_float(env, "REELYARD_WEBHOOK_DISABLE_AFTER_S", 5 * 86400.0),
            webhook_sweep_every_s=_float(env, "REELYARD_WEBHOOK_SWEEP_EVERY_S", 5.0),
            webhook_parallel=_positive_int(env, "REELYARD_WEBHOOK_PARALLEL", 50),
            flower_basic_auth=_basic_auth(env, "REELYARD_FLOWER_BASIC_AUTH"),
            standalone=_flag(env, "REELYARD_STANDALONE", default=False),
        )
        if settings.webhook_lease_s <= settings.webhook_timeout_s:
            # a lease shorter than an attempt would hand a message to a second worker
            # while the first is still sending it
            raise SettingsError(
                f"REELYARD_WEBHOOK_LEASE_S={settings.webhook_lease_s:g} must be longer than"
                f" REELYARD_WEBHOOK_TIMEOUT_S={settings.webhook_timeout_s:g}"
            )
        return settings
