"""Credits, health, readiness and the offline docs UI."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import redis
import swagger_ui_bundle  # type: ignore[import-untyped]
from flask import Blueprint as FlaskBlueprint
from flask import Response, send_from_directory
from flask.views import MethodView
from sqlalchemy import select, text

from api.blueprint import Blueprint
from api.context import celery_app, db, settings
from api.schemas import CreditsOut, HealthOut
from models import UpstreamCredentials
from models.upstream import CREDENTIALS_ROW

log = logging.getLogger(__name__)

blp = Blueprint("credits", __name__, url_prefix="/v1", description="The upstream account.")
health = Blueprint("health", __name__, description="Probes for orchestrators.")
docs = FlaskBlueprint("docs", __name__)

SWAGGER_DIR = Path(swagger_ui_bundle.swagger_ui_path)
PROBE_TIMEOUT_S = 1.0

DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>reelyard API</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});
</script>
</body>
</html>
"""


@blp.route("/credits")
class Credits(MethodView):
    @blp.response(200, CreditsOut())
    def get(self) -> dict[str, Any]:
        """The upstream credit balance, as the pipeline last read it"""
        row = db().scalar(
            select(UpstreamCredentials).where(UpstreamCredentials.id == CREDENTIALS_ROW)
        )
        if row is None:
            return {"balance": None, "checked_at": None}
        return {"balance": row.credits_balance, "checked_at": row.credits_checked_at}


@health.route("/healthz")
class Healthz(MethodView):
    @health.response(200, HealthOut())
    @health.doc(security=[])
    def get(self) -> dict[str, Any]:
        """The process is up"""
        return {"status": "ok", "checks": {}}


def _database_ok() -> bool:
    try:
        db().execute(text("SELECT 1"))
    except Exception:  # any driver error means "not ready"
        log.warning("readiness: database unreachable", exc_info=True)
        return False
    return True


def _broker_ok() -> bool:
    url = settings().broker_url
    try:
        if url.startswith(("redis://", "rediss://", "unix://")):
            client = redis.Redis.from_url(
                url, socket_connect_timeout=PROBE_TIMEOUT_S, socket_timeout=PROBE_TIMEOUT_S
            )
            try:
                client.ping()
            finally:
                client.close()
        else:
            with celery_app().connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, timeout=1)
    except Exception:  # any transport error means "not ready"
        log.warning("readiness: broker unreachable", exc_info=True)
        return False
    return True


@health.route("/readyz")
class Readyz(MethodView):
    @health.response(200, HealthOut())
    @health.alt_response(503, schema=HealthOut, description="A dependency is down")
    @health.doc(security=[])
    def get(self) -> Any:
        """The database and the broker are reachable"""
        checks = {
            "database": "ok" if _database_ok() else "down",
            "broker": "ok" if _broker_ok() else "down",
        }
        ready = all(value == "ok" for value in checks.values())
        return {"status": "ok" if ready else "not_ready", "checks": checks}, 200 if ready else 503


@docs.get("/docs")
def docs_page() -> Response:
    return Response(DOCS_PAGE, mimetype="text/html")


@docs.get("/docs/assets/<path:name>")
def docs_asset(name: str) -> Response:
    return send_from_directory(SWAGGER_DIR, name)
