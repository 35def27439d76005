"""The Flask app factory.

``create_app(settings)`` builds the app and attaches everything in the factory
(flask tutorial style); nothing connects until a request needs it. Tests pass their
own settings, and may pass a session factory (bound to a connection in a rolled-back
transaction) and a Celery app.
"""

from __future__ import annotations

from celery import Celery
from flask import Flask, Response, g, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import HTTPException, InternalServerError

from api import batches, jobs, metrics, system, webhooks
from api.blueprint import Api
from api.context import (
    AUTH_CACHE,
    CELERY,
    SESSION_FACTORY,
    SETTINGS,
    AuthCache,
    authenticate,
    close_db,
)
from api.errors import LIMITER_EXTENSION, ApiError, handle_http_exception
from models.db import make_engine, make_session_factory
from reelyard import __version__
from reelyard.settings import Settings
from workers.app import create_celery

#: a batch of 100 jobs of 50 long URLs each fits; anything larger is refused with 413
MAX_BODY_BYTES = 2 * 1024 * 1024
API_PREFIX = "/v1/"

API_DESCRIPTION = """Photos and a prompt in, a finished video out.

Authenticate with `Authorization: Bearer <api key>`. Every error has the shape
`{"code", "status", "message", "errors"}` with a stable `code`. Creation endpoints
accept an `Idempotency-Key` header (replayed for 24 h).
"""


def _rate_key() -> str:
    caller = g.get("caller")
    return f"tenant:{caller.tenant_id}" if caller is not None else get_remote_address()


def _guard() -> None:
    """Authenticate ``/v1`` requests and refuse bodies that are not JSON."""
    if not request.path.startswith(API_PREFIX):
        return
    authenticate()
    has_body = (
        bool(request.content_length)
        or "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    )
    if request.method in {"POST", "PUT", "PATCH"} and has_body and not request.is_json:
        raise ApiError(
            415,
            "unsupported_media_type",
            "The body must be JSON (Content-Type: application/json).",
        )


def create_app(
    settings: Settings | None = None,
    *,
    session_factory: sessionmaker[Session] | None = None,
    celery: Celery | None = None,
) -> Flask:
    """The reelyard API for ``settings`` (read from the environment when None)."""
    settings = settings or Settings.from_env()
    app = Flask("reelyard.api")
    app.config.update(
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
        API_TITLE="reelyard",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        API_SPEC_OPTIONS={
            "info": {"description": API_DESCRIPTION},
            "security": [{"apiKey": []}],
        },
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    if session_factory is None:
        session_factory = make_session_factory(
            make_engine(settings.database_url, pool_size=settings.database_pool_size)
        )
    app.extensions[SETTINGS] = settings
    app.extensions[AUTH_CACHE] = AuthCache(settings.auth_cache_s)
    app.extensions[SESSION_FACTORY] = session_factory
    app.extensions[CELERY] = celery or create_celery(settings)
    app.teardown_appcontext(close_db)

    # first: requests the guard or the limiter refuse are timed too; serves /metrics
    metrics.init_app(app)
    # before the limiter's own hook, so that limits are counted per tenant
    app.before_request(_guard)
    limiter = Limiter(
        key_func=_rate_key,
        application_limits=[lambda: _tenant_limit(settings)],
        storage_uri=settings.redis_url,
        # "memory://" (standalone): each process counts its own requests
        storage_options=(
            {"socket_connect_timeout": 1, "socket_timeout": 1}
            if settings.redis_url.startswith(("redis", "unix"))
            else {}
        ),
        strategy="fixed-window",
        swallow_errors=True,
        headers_enabled=False,
    )
    limiter.request_filter(lambda: not request.path.startswith(API_PREFIX))
    limiter.init_app(app)
    app.extensions[LIMITER_EXTENSION] = limiter

    api = Api(app)
    api.spec.components.security_scheme(
        "apiKey",
        {"type": "http", "scheme": "bearer", "description": "An API key: ry_<prefix>_<secret>"},
    )
    for blueprint in (
        jobs.blp,
        batches.blp,
        webhooks.endpoints_blp,
        webhooks.messages_blp,
        webhooks.secret_blp,
        system.blp,
        system.health,
    ):
        api.register_blueprint(blueprint)
    app.register_blueprint(system.docs)
    # flask-smorest registered its own handler; ours answers in the house shape
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, _unexpected)
    return app


def _tenant_limit(settings: Settings) -> str:
    caller = g.get("caller")
    if caller is not None and caller.rate_limit:
        limit: str = caller.rate_limit
        return limit
    return settings.rate_limit


def _unexpected(error: Exception) -> Response:
    """A bug: logged with its traceback, answered as a bare 500 in the house shape."""
    return handle_http_exception(InternalServerError(original_exception=error))
