"""Webhooks: ``/v1/webhook-endpoints``, ``/v1/webhook-messages``, ``/v1/webhook-secret``.

Everything is scoped to the caller's tenant: another tenant's endpoint or message is a
404. Secrets are answered once, by the request that made them (creation, rotation).
A URL is checked when it is registered with the guard delivery uses
(``reelyard.outbound.check_url``: http(s), no credentials, every address the host
resolves to public unless ``REELYARD_ALLOW_PRIVATE_URLS``); delivery checks it again
against the address it connects to. docs/webhooks.md is the guide.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Response
from flask.views import MethodView
from sqlalchemy import select

from api.blueprint import Blueprint
from api.context import db, settings, tenant_id
from api.errors import ApiError, rule
from api.idempotency import run_once
from api.schemas import (
    IdempotencyHeaders,
    PageQuery,
    ReplayFailedIn,
    ReplayFailedOut,
    TenantWebhookSecretOut,
    TenantWebhookSecretRotatedOut,
    WebhookEndpointChangeIn,
    WebhookEndpointIn,
    WebhookEndpointOut,
    WebhookEndpointPageOut,
    WebhookEndpointWithSecretOut,
    WebhookMessageDetailOut,
    WebhookMessageListQuery,
    WebhookMessagePageOut,
)
from models import Tenant
from models.base import utcnow
from models.ids import id_pattern
from models.outbox import OutboxType
from models.webhooks import (
    MAX_ENDPOINTS_PER_TENANT,
    MessageStatus,
    WebhookAttempt,
    WebhookEndpoint,
    WebhookMessage,
    count_endpoints,
    create_endpoint,
    lock_tenant,
    replay_failed,
    replay_message,
    rotate_endpoint_secret,
    rotate_tenant_secret,
    set_enabled,
)
from reelyard.outbound import UrlRefused, check_url

endpoints_blp = Blueprint(
    "webhook_endpoints",
    __name__,
    url_prefix="/v1/webhook-endpoints",
    description="Where webhooks go: URLs, event types, secrets.",
)
messages_blp = Blueprint(
    "webhook_messages",
    __name__,
    url_prefix="/v1/webhook-messages",
    description="What webhooks were sent: messages, attempts, replays.",
)
secret_blp = Blueprint(
    "webhook_secret",
    __name__,
    url_prefix="/v1/webhook-secret",
    description="The secret that signs what goes to a job's own webhook_url.",
)

ENDPOINT_ID = id_pattern("we")
#: built once: building a schema copies every field (marshmallow)
_CREATED_OUT = WebhookEndpointWithSecretOut()
MESSAGE_ID = id_pattern("msg")
_INVALID = "The request is not valid; see errors."


def _invalid(field: str, code: str, message: str, location: str | None = None) -> ApiError:
    item: dict[str, Any] = {"field": field, "code": code, "message": message}
    if location is not None:
        item["location"] = location
    return ApiError(422, "validation_failed", _INVALID, [item])


def check_destination(url: str) -> None:
    """Refuse a URL delivery would refuse: 422 ``url_refused`` naming the problem.

    The schema has already checked the URL's form; this resolves its host and refuses
    any address that is not public (numeric forms such as ``2130706433`` or ``0x7f.1``
    resolve to what they encode), so a caller learns now rather than from failed
    deliveries.
    """
    try:
        check_url(url, allow_private=settings().allow_private_urls)
    except UrlRefused as exc:
        raise _invalid("url", "url_refused", f"{rule('url_refused')} {exc.message}") from None


def _page_cursor(cursor: str | None, pattern: re.Pattern[str]) -> str | None:
    if cursor is not None and not pattern.match(cursor):
        raise _invalid("cursor", "cursor_invalid", rule("cursor_invalid"), "query")
    return cursor


def endpoint_to_dict(endpoint: WebhookEndpoint, *, secret: bool = False) -> dict[str, Any]:
    """An endpoint as the API shows it; its secret only when just made."""
    view = {
        "id": endpoint.id,
        "object": "webhook_endpoint",
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": endpoint.event_types,
        "enabled": endpoint.enabled,
        "disabled_reason": endpoint.disabled_reason,
        "failing_since": endpoint.failing_since,
        "previous_secret_expires_at": endpoint.previous_secret_expires_at,
        "created_at": endpoint.created_at,
        "updated_at": endpoint.updated_at,
    }
    if secret:
        view["secret"] = endpoint.secret
    return view


def message_to_dict(message: WebhookMessage) -> dict[str, Any]:
    return {
        "id": message.id,
        "object": "webhook_message",
        "event_id": message.event_id,
        "type": message.event_type.value,
        "endpoint_id": message.endpoint_id,
        "url": message.url,
        "job_id": message.job_id,
        "batch_id": message.batch_id,
        "status": message.status.value,
        "attempt_count": message.attempt_count,
        "next_attempt_at": message.next_attempt_at,
        "last_attempt_at": message.last_attempt_at,
        "delivered_at": message.delivered_at,
        "created_at": message.created_at,
        "payload": message.payload,
    }


def attempt_to_dict(attempt: WebhookAttempt) -> dict[str, Any]:
    return {
        "id": attempt.id,
        "started_at": attempt.started_at,
        "duration_ms": attempt.duration_ms,
        "status_code": attempt.status_code,
        "response_body": attempt.response_body,
        "error": attempt.error,
        "trigger": attempt.trigger.value,
    }


def find_endpoint(endpoint_id: str) -> WebhookEndpoint:
    """The caller's endpoint ``endpoint_id``, or 404 (also when it is another tenant's)."""
    endpoint = None
    if ENDPOINT_ID.match(endpoint_id):
        endpoint = db().scalar(
            select(WebhookEndpoint).where(
                WebhookEndpoint.id == endpoint_id, WebhookEndpoint.tenant_id == tenant_id()
            )
        )
    if endpoint is None:
        raise ApiError(404, "not_found", f"No webhook endpoint {endpoint_id}.")
    return endpoint


def find_message(message_id: str) -> WebhookMessage:
    """The caller's message ``message_id``, or 404 (also when it is another tenant's)."""
    message = None
    if MESSAGE_ID.match(message_id):
        message = db().scalar(
            select(WebhookMessage).where(
                WebhookMessage.id == message_id, WebhookMessage.tenant_id == tenant_id()
            )
        )
    if message is None:
        raise ApiError(404, "not_found", f"No webhook message {message_id}.")
    return message


def _refuse_disabled(endpoint: WebhookEndpoint) -> None:
    if not endpoint.enabled:
        raise ApiError(
            409,
            "endpoint_disabled",
            f"Webhook endpoint {endpoint.id} is disabled; enable it before replaying.",
        )


@endpoints_blp.route("")
class WebhookEndpoints(MethodView):
    @endpoints_blp.arguments(IdempotencyHeaders(), location="headers", as_kwargs=True)
    @endpoints_blp.arguments(WebhookEndpointIn())
    @endpoints_blp.response(201, WebhookEndpointWithSecretOut())
    @endpoints_blp.alt_response(
        409,
        schema=Blueprint.error_schema(),
        description="The tenant has the most endpoints, or the Idempotency-Key is in use",
    )
    def post(self, data: dict[str, Any], idempotency_key: str | None = None) -> Response:
        """Register a webhook endpoint

        Answers its signing secret (``whsec_…``), which is never shown again (except
        to a replay of the same request with the same ``Idempotency-Key``). The URL's
        host must resolve to public addresses only (422 ``url_refused``).
        """
        check_destination(data["url"])

        def create() -> tuple[int, dict[str, Any]]:
            session = db()
            tenant = tenant_id()
            # the tenant row is locked so that two creations cannot both take the last place
            lock_tenant(session, tenant)
            if count_endpoints(session, tenant) >= MAX_ENDPOINTS_PER_TENANT:
                raise ApiError(
                    409,
                    "endpoint_limit",
                    f"A tenant has at most {MAX_ENDPOINTS_PER_TENANT} webhook endpoints;"
                    " delete one first.",
                )
            endpoint = create_endpoint(
                session,
                tenant,
                url=data["url"],
                description=data.get("description"),
                event_types=data["event_types"],
                enabled=data["enabled"],
            )
            body: dict[str, Any] = _CREATED_OUT.dump(endpoint_to_dict(endpoint, secret=True))
            return 201, body

        return run_once(idempotency_key, create)

    @endpoints_blp.arguments(PageQuery(), location="query")
    @endpoints_blp.response(200, WebhookEndpointPageOut())
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List webhook endpoints, newest first

        Cursor pagination: pass ``next_cursor`` back as ``cursor``.
        """
        conditions = [WebhookEndpoint.tenant_id == tenant_id()]
        cursor = _page_cursor(query.get("cursor"), ENDPOINT_ID)
        if cursor is not None:
            conditions.append(WebhookEndpoint.id < cursor)
        limit: int = query["limit"]
        found = (
            db()
            .scalars(
                select(WebhookEndpoint)
                .where(*conditions)
                .order_by(WebhookEndpoint.id.desc())
                .limit(limit + 1)
            )
            .all()
        )
        page = found[:limit]
        return {
            "data": [endpoint_to_dict(endpoint) for endpoint in page],
            "next_cursor": page[-1].id if len(found) > limit else None,
        }


@endpoints_blp.route("/<endpoint_id>")
class WebhookEndpointResource(MethodView):
    @endpoints_blp.response(200, WebhookEndpointOut())
    def get(self, endpoint_id: str) -> dict[str, Any]:
        """Read a webhook endpoint (without its secret)"""
        return endpoint_to_dict(find_endpoint(endpoint_id))

    @endpoints_blp.arguments(WebhookEndpointChangeIn())
    @endpoints_blp.response(200, WebhookEndpointOut())
    def patch(self, data: dict[str, Any], endpoint_id: str) -> dict[str, Any]:
        """Change a webhook endpoint

        Any of ``url``, ``description``, ``event_types``, ``enabled``. Enabling also
        clears ``disabled_reason`` and ``failing_since``. Messages already fanned
        out keep the URL they were made with.
        """
        endpoint = find_endpoint(endpoint_id)
        if "url" in data:
            check_destination(data["url"])
            endpoint.url = data["url"]
        if "description" in data:
            endpoint.description = data["description"]
        if "event_types" in data:
            endpoint.event_types = list(dict.fromkeys(data["event_types"]))
        if "enabled" in data:
            set_enabled(endpoint, data["enabled"])
        endpoint.updated_at = utcnow()
        session = db()
        session.commit()
        return endpoint_to_dict(endpoint)

    @endpoints_blp.response(204)
    def delete(self, endpoint_id: str) -> None:
        """Delete a webhook endpoint

        Its messages and their attempts are deleted with it.
        """
        endpoint = find_endpoint(endpoint_id)
        session = db()
        session.delete(endpoint)
        session.commit()


@endpoints_blp.route("/<endpoint_id>/rotate")
class WebhookEndpointRotate(MethodView):
    @endpoints_blp.response(200, WebhookEndpointWithSecretOut())
    def post(self, endpoint_id: str) -> dict[str, Any]:
        """Rotate a webhook endpoint's secret

        Answers the new secret (shown once). Until ``previous_secret_expires_at``
        (``REELYARD_WEBHOOK_ROTATION_OVERLAP_S``, 24 h by default) messages carry a
        signature with the previous secret as well.
        """
        endpoint = find_endpoint(endpoint_id)
        session = db()
        rotate_endpoint_secret(
            session, endpoint, now=utcnow(), overlap_s=settings().webhook_rotation_overlap_s
        )
        session.commit()
        return endpoint_to_dict(endpoint, secret=True)


@endpoints_blp.route("/<endpoint_id>/replay-failed")
class WebhookEndpointReplayFailed(MethodView):
    @endpoints_blp.arguments(ReplayFailedIn())
    @endpoints_blp.response(202, ReplayFailedOut())
    @endpoints_blp.alt_response(
        409, schema=Blueprint.error_schema(), description="The endpoint is disabled"
    )
    def post(self, data: dict[str, Any], endpoint_id: str) -> dict[str, Any]:
        """Replay an endpoint's failed messages

        Every ``failed`` message of the endpoint created at or after ``since`` is
        made due now, each with its own id; answers how many.
        """
        endpoint = find_endpoint(endpoint_id)
        _refuse_disabled(endpoint)
        session = db()
        replayed = replay_failed(session, endpoint.id, since=data["since"], now=utcnow())
        session.commit()
        return {"replayed": len(replayed)}


@messages_blp.route("")
class WebhookMessages(MethodView):
    @messages_blp.arguments(WebhookMessageListQuery(), location="query")
    @messages_blp.response(200, WebhookMessagePageOut())
    def get(self, query: dict[str, Any]) -> dict[str, Any]:
        """List webhook messages, newest first

        Filters: ``job_id``, ``endpoint_id``, ``status``, ``type``. Cursor
        pagination: pass ``next_cursor`` back as ``cursor``.
        """
        conditions = [WebhookMessage.tenant_id == tenant_id()]
        cursor = _page_cursor(query.get("cursor"), MESSAGE_ID)
        if cursor is not None:
            conditions.append(WebhookMessage.id < cursor)
        if "job_id" in query:
            conditions.append(WebhookMessage.job_id == query["job_id"])
        if "endpoint_id" in query:
            conditions.append(WebhookMessage.endpoint_id == query["endpoint_id"])
        if "status" in query:
            conditions.append(WebhookMessage.status == MessageStatus(query["status"]))
        if "type" in query:
            conditions.append(WebhookMessage.event_type == OutboxType(query["type"]))
        limit: int = query["limit"]
        found = (
            db()
            .scalars(
                select(WebhookMessage)
                .where(*conditions)
                .order_by(WebhookMessage.id.desc())
                .limit(limit + 1)
            )
            .all()
        )
        page = found[:limit]
        return {
            "data": [message_to_dict(message) for message in page],
            "next_cursor": page[-1].id if len(found) > limit else None,
        }


def _message_detail(message: WebhookMessage) -> dict[str, Any]:
    attempts = db().scalars(
        select(WebhookAttempt)
        .where(WebhookAttempt.message_id == message.id)
        .order_by(WebhookAttempt.id.desc())
    )
    return {**message_to_dict(message), "attempts": [attempt_to_dict(a) for a in attempts]}


@messages_blp.route("/<message_id>")
class WebhookMessageResource(MethodView):
    @messages_blp.response(200, WebhookMessageDetailOut())
    def get(self, message_id: str) -> dict[str, Any]:
        """Read a webhook message with its attempts, newest first"""
        return _message_detail(find_message(message_id))


@messages_blp.route("/<message_id>/replay")
class WebhookMessageReplay(MethodView):
    @messages_blp.response(202, WebhookMessageDetailOut())
    @messages_blp.alt_response(
        409,
        schema=Blueprint.error_schema(),
        description="The message is still pending, or its endpoint is disabled",
    )
    def post(self, message_id: str) -> dict[str, Any]:
        """Replay a webhook message

        A delivered or failed message is made due now; its next attempt is recorded
        as a ``replay`` and carries the same ``webhook-id``. 409 ``message_pending``
        while it is still pending.
        """
        session = db()
        # locked, so that a replay and a delivery finishing at the same time serialise
        message = session.execute(
            select(WebhookMessage)
            .where(WebhookMessage.id == find_message(message_id).id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).scalar_one()
        if message.status is MessageStatus.PENDING:
            raise ApiError(
                409,
                "message_pending",
                f"Webhook message {message.id} is still pending; it will be attempted.",
            )
        if message.endpoint_id is not None:
            endpoint = session.get(WebhookEndpoint, message.endpoint_id)
            if endpoint is not None:
                _refuse_disabled(endpoint)
        replay_message(session, message, utcnow())
        session.commit()
        return _message_detail(message)


def _secret_view(tenant: Tenant) -> dict[str, Any]:
    return {
        "exists": tenant.webhook_secret is not None,
        "rotated_at": tenant.webhook_secret_rotated_at,
        "previous_secret_expires_at": tenant.webhook_previous_secret_expires_at,
    }


@secret_blp.route("")
class TenantWebhookSecret(MethodView):
    @secret_blp.response(200, TenantWebhookSecretOut())
    def get(self) -> dict[str, Any]:
        """Whether the tenant has a default webhook secret, and when it was rotated

        The secret itself is shown only by ``POST /v1/webhook-secret/rotate``.
        """
        tenant = db().execute(select(Tenant).where(Tenant.id == tenant_id())).scalar_one()
        return _secret_view(tenant)


@secret_blp.route("/rotate")
class TenantWebhookSecretRotate(MethodView):
    @secret_blp.response(200, TenantWebhookSecretRotatedOut())
    def post(self) -> dict[str, Any]:
        """Make (or rotate) the default webhook secret

        It signs what goes to jobs' own ``webhook_url``; answered once. The secret it
        replaces keeps signing until ``previous_secret_expires_at``.
        """
        session = db()
        secret = rotate_tenant_secret(
            session, tenant_id(), now=utcnow(), overlap_s=settings().webhook_rotation_overlap_s
        )
        tenant = session.execute(select(Tenant).where(Tenant.id == tenant_id())).scalar_one()
        view = {**_secret_view(tenant), "secret": secret}
        session.commit()
        return view
