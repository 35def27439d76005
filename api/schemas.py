"""Marshmallow schemas: separate input and output schemas, unknown fields rejected.

Input schemas validate every rule of the issue and report each broken rule with its
code (:mod:`api.errors`); output schemas are ``dump_only`` by nature and document the
responses in ``/openapi.json``.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import marshmallow as ma
from marshmallow import RAISE, ValidationError, fields, pre_load, validate, validates_schema

from api.errors import rule

ASPECT_RATIOS = ("16:9", "9:16", "1:1", "4:5")
RESOLUTIONS = ("720p", "1080p")
MAX_IMAGES = 50
MAX_PROMPT = 2000
MAX_URL = 2048
MAX_METADATA_BYTES = 4096
MAX_BATCH = 100
STATUSES = ("queued", "running", "succeeded", "failed", "canceled")
_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,3}$")
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def check_url(value: str) -> None:
    """http(s) only, a host, no credentials, no whitespace or control characters."""
    if len(value) > MAX_URL:
        raise ValidationError(rule("url_too_long"))
    if _CONTROL.search(value):
        raise ValidationError(rule("url_invalid"))
    try:
        parts = urlsplit(value)
        port = parts.port  # raises on a port that is not a number in range
    except ValueError:
        raise ValidationError(rule("url_invalid")) from None
    if parts.scheme.lower() not in {"http", "https"}:
        raise ValidationError(rule("url_scheme"))
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValidationError(rule("url_credentials"))
    host = parts.hostname or ""
    if not host or port == 0:
        raise ValidationError(rule("url_invalid"))
    if host.startswith("[") or ":" in host:
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            raise ValidationError(rule("url_invalid")) from None


class Url(fields.String):
    """An http(s) URL as :func:`check_url` accepts it."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["metadata"] = {"format": "uri", "maxLength": MAX_URL, **kwargs.get("metadata", {})}
        super().__init__(validate=check_url, **kwargs)


class Music(fields.String):
    """``on``, ``off`` or the URL of a music track."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        if text in {"on", "off"}:
            return text
        try:
            check_url(text)
        except ValidationError:
            raise ValidationError(rule("music")) from None
        return text


def _bad_text(value: str) -> bool:
    """NUL (PostgreSQL cannot store it) or a lone surrogate (not encodable as UTF-8)."""
    if "\x00" in value:
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return True
    return False


def _bad_text_paths(value: Any, path: tuple[str, ...] = ()) -> Iterator[str]:
    if isinstance(value, str):
        if _bad_text(value):
            yield ".".join(path) or "_schema"
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and _bad_text(key):
                yield ".".join((*path, "<key>")) if path else "_schema"
            else:
                yield from _bad_text_paths(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _bad_text_paths(item, (*path, str(index)))


class StrictSchema(ma.Schema):
    """Unknown fields are refused, and so is text no JSON column can keep."""

    class Meta:
        unknown = RAISE

    @pre_load
    def _refuse_bad_text(self, data: Any, **_kwargs: Any) -> Any:
        paths = list(_bad_text_paths(data))
        if paths:
            raise ValidationError({path: [rule("text_invalid")] for path in paths})
        return data


def _options_fields(*, defaults: bool) -> dict[str, fields.Field[Any]]:
    def default(value: str) -> dict[str, Any]:
        return {"load_default": value} if defaults else {}

    return {
        "aspect_ratio": fields.String(
            validate=validate.OneOf(ASPECT_RATIOS, error=rule("aspect_ratio")),
            **default("16:9"),
        ),
        "resolution": fields.String(
            validate=validate.OneOf(RESOLUTIONS, error=rule("resolution")), **default("1080p")
        ),
        "duration_s": fields.Float(
            validate=validate.Range(min=3, max=600, error=rule("duration_range")),
            metadata={"description": "Target length in seconds; the editor decides if absent."},
        ),
        "music": Music(metadata={"description": "on, off, or a track URL."}, **default("on")),
        "title": fields.String(
            validate=validate.Length(min=1, max=200, error=rule("title_length"))
        ),
        "language": fields.String(
            validate=validate.Regexp(_LANGUAGE, error=rule("language")),
            metadata={"description": "BCP 47 tag of the language of titles and captions."},
        ),
    }


#: a new job's options, defaults filled in
OptionsIn = StrictSchema.from_dict(_options_fields(defaults=True), name="OptionsIn")
#: a revision's changes to its parent's options
OptionsChangeIn = StrictSchema.from_dict(_options_fields(defaults=False), name="OptionsChangeIn")


def _check_metadata(value: dict[str, Any]) -> None:
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        raise ValidationError(rule("metadata_too_large"))


def _metadata_field(*, inherit: bool = False) -> fields.Dict:
    if inherit:
        return fields.Dict(
            keys=fields.String(),
            values=fields.Raw(allow_none=True),
            validate=_check_metadata,
            metadata={"description": "Your own key/values (≤ 4 KB); the parent's if absent."},
        )
    return fields.Dict(
        keys=fields.String(),
        values=fields.Raw(allow_none=True),
        load_default=dict,
        validate=_check_metadata,
        metadata={"description": "Your own key/values (≤ 4 KB as JSON), echoed back."},
    )


class JobIn(StrictSchema):
    images = fields.List(
        Url(),
        required=True,
        validate=validate.Length(min=1, max=MAX_IMAGES, error=rule("images_count")),
        metadata={"description": "1 to 50 http(s) URLs of the photos, in order."},
    )
    prompt = fields.String(
        required=True,
        validate=validate.Length(min=1, max=MAX_PROMPT, error=rule("prompt_length")),
    )
    options = fields.Nested(OptionsIn, load_default=lambda: OptionsIn().load({}))
    metadata = _metadata_field()
    webhook_url = Url(allow_none=True, load_default=None)


class BatchIn(StrictSchema):
    jobs = fields.List(
        fields.Nested(JobIn),
        required=True,
        validate=validate.Length(min=1, max=MAX_BATCH, error=rule("batch_size")),
    )


class RevisionIn(StrictSchema):
    prompt = fields.String(
        required=True,
        validate=validate.Length(min=1, max=MAX_PROMPT, error=rule("prompt_length")),
        metadata={"description": "The new instruction, applied to the parent's video."},
    )
    options = fields.Nested(OptionsChangeIn, metadata={"description": "Changes to the parent's."})
    metadata = _metadata_field(inherit=True)
    webhook_url = Url(allow_none=True, metadata={"description": "The parent's if absent."})


class IdempotencyHeaders(ma.Schema):
    class Meta:
        unknown = ma.EXCLUDE

    idempotency_key = fields.String(
        data_key="Idempotency-Key",
        validate=validate.Regexp(r"^[\x21-\x7e]{1,255}$", error=rule("idempotency_key")),
        metadata={"description": "Replays the first response for 24 h (see the guide)."},
    )


class JobListQuery(StrictSchema):
    status = fields.List(
        fields.String(validate=validate.OneOf(STATUSES, error=rule("status"))),
        metadata={"description": "Only jobs in these statuses (repeat the parameter)."},
    )
    created_after = fields.AwareDateTime()
    created_before = fields.AwareDateTime()
    batch_id = fields.String(validate=validate.Length(max=40))
    metadata_key = fields.String(validate=validate.Length(min=1, max=200))
    metadata_value = fields.String(
        validate=validate.Length(max=1000),
        metadata={"description": "With metadata_key: jobs whose metadata has this string."},
    )
    cursor = fields.String(validate=validate.Length(max=40))
    limit = fields.Integer(
        load_default=20, validate=validate.Range(min=1, max=100, error=rule("limit_range"))
    )

    @validates_schema
    def _check_range(self, data: dict[str, Any], **_kwargs: Any) -> None:
        after, before = data.get("created_after"), data.get("created_before")
        if after is not None and before is not None and after >= before:
            raise ValidationError(rule("created_range"), "created_after")
        if ("metadata_value" in data) != ("metadata_key" in data):
            raise ValidationError(rule("metadata_filter"), "metadata_value")


class EventListQuery(StrictSchema):
    after = fields.Integer(
        validate=validate.Range(min=0),
        metadata={"description": "Only events with a larger id (the last id you have)."},
    )
    limit = fields.Integer(
        load_default=100, validate=validate.Range(min=1, max=1000, error=rule("limit_range"))
    )


# --- output -------------------------------------------------------------------
# Views build plain dictionaries (``api.views.job_to_dict``); these schemas dump and
# document them.


class VideoOut(ma.Schema):
    url = fields.String(required=True)
    width = fields.Integer(allow_none=True)
    height = fields.Integer(allow_none=True)
    duration_s = fields.Float(allow_none=True)
    size_bytes = fields.Integer(allow_none=True)
    sha256 = fields.String(allow_none=True, metadata={"description": "Hex SHA-256 of the file."})


class TimelineOut(ma.Schema):
    summary = fields.String(
        required=True,
        metadata={
            "description": "What the video will contain, known once the editor finished.",
            "example": "Timeline (3 tracks): 1. Video: 3 clips (0-15s) 2. BGM: Upbeat (0-15s, 35%)"
            ' 3. Title: "Summer Sale" (0-3s)',
        },
    )
    duration_s = fields.Float(allow_none=True, required=True)


class JobErrorOut(ma.Schema):
    code = fields.String(required=True)
    message = fields.String(allow_none=True)


class OptionsOut(ma.Schema):
    aspect_ratio = fields.String()
    resolution = fields.String()
    duration_s = fields.Float()
    music = fields.String()
    title = fields.String()
    language = fields.String()


class JobOut(ma.Schema):
    id = fields.String(required=True, metadata={"example": "job_01JD3Q8X6R9V2M4K7T0B5N8C1W"})
    object = fields.Constant("job", required=True)
    status = fields.String(required=True, validate=validate.OneOf(STATUSES))
    stage = fields.String(required=True)
    progress = fields.Integer(required=True, validate=validate.Range(min=0, max=100))
    images = fields.List(fields.String(), required=True)
    prompt = fields.String(required=True)
    options = fields.Nested(OptionsOut, required=True)
    metadata = fields.Dict(required=True)
    webhook_url = fields.String(allow_none=True, required=True)
    batch_id = fields.String(allow_none=True, required=True)
    parent_id = fields.String(allow_none=True, required=True)
    timeline = fields.Nested(TimelineOut, allow_none=True, required=True)
    result = fields.Nested(VideoOut, allow_none=True, required=True)
    error = fields.Nested(JobErrorOut, allow_none=True, required=True)
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)
    started_at = fields.DateTime(allow_none=True, required=True)
    finished_at = fields.DateTime(allow_none=True, required=True)


class JobPageOut(ma.Schema):
    data = fields.List(fields.Nested(JobOut), required=True)
    next_cursor = fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "Pass as cursor for the next page; null on the last page."},
    )


class EventOut(ma.Schema):
    id = fields.Integer(required=True, metadata={"description": "Also the SSE event id."})
    job_id = fields.String(required=True)
    type = fields.String(required=True)
    stage = fields.String(allow_none=True, required=True)
    progress = fields.Integer(allow_none=True, required=True)
    message = fields.String(allow_none=True, required=True)
    data = fields.Dict(allow_none=True, required=True)
    created_at = fields.DateTime(required=True)


class EventPageOut(ma.Schema):
    data = fields.List(fields.Nested(EventOut), required=True)
    job_status = fields.String(required=True)
    next_after = fields.Integer(
        allow_none=True,
        required=True,
        metadata={"description": "Pass as after for more; null when there is no more now."},
    )


class StatusCountsOut(ma.Schema):
    queued = fields.Integer(required=True)
    running = fields.Integer(required=True)
    succeeded = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    canceled = fields.Integer(required=True)


class BatchOut(ma.Schema):
    id = fields.String(required=True)
    object = fields.Constant("batch", required=True)
    job_count = fields.Integer(required=True)
    counts = fields.Nested(StatusCountsOut, required=True)
    created_at = fields.DateTime(required=True)
    jobs = fields.List(
        fields.Nested(JobOut),
        metadata={"description": "The jobs, in submission order (only when just created)."},
    )


class CreditsOut(ma.Schema):
    balance = fields.Integer(
        allow_none=True,
        required=True,
        metadata={"description": "Upstream credits as the pipeline last read them."},
    )
    checked_at = fields.DateTime(allow_none=True, required=True)


class ErrorItem(ma.Schema):
    field = fields.String(allow_none=True, required=True)
    code = fields.String(required=True)
    message = fields.String(required=True)
    location = fields.String(metadata={"description": "query or headers; absent for the body"})


class ErrorOut(ma.Schema):
    code = fields.String(required=True, metadata={"description": "Stable machine-readable code."})
    status = fields.Integer(required=True)
    message = fields.String(required=True)
    errors = fields.List(fields.Nested(ErrorItem), required=True)


class HealthOut(ma.Schema):
    status = fields.String(required=True)
    checks = fields.Dict(keys=fields.String(), values=fields.String())


# --- webhooks -----------------------------------------------------------------------

EVENT_TYPES = ("job.succeeded", "job.failed", "job.canceled", "job.progress", "batch.completed")
MESSAGE_STATUSES = ("pending", "delivered", "failed")
MAX_DESCRIPTION = 500


def _event_types_field(**kwargs: Any) -> fields.List[str]:
    return fields.List(
        fields.String(validate=validate.OneOf(EVENT_TYPES, error=rule("event_type"))),
        metadata={
            "description": "The event types it receives; empty: every type but job.progress."
        },
        **kwargs,
    )


def _description_field() -> fields.String:
    return fields.String(
        allow_none=True,
        validate=validate.Length(max=MAX_DESCRIPTION, error=rule("description_length")),
    )


class WebhookEndpointIn(StrictSchema):
    url = Url(
        required=True,
        metadata={"description": "http(s) URL whose host is public (checked when registered)."},
    )
    description = _description_field()
    event_types = _event_types_field(load_default=list)
    enabled = fields.Boolean(load_default=True)


class WebhookEndpointChangeIn(StrictSchema):
    url = Url()
    description = _description_field()
    event_types = _event_types_field()
    enabled = fields.Boolean(
        metadata={"description": "true also clears disabled_reason and failing_since."}
    )


class PageQuery(StrictSchema):
    cursor = fields.String(validate=validate.Length(max=40))
    limit = fields.Integer(
        load_default=20, validate=validate.Range(min=1, max=100, error=rule("limit_range"))
    )


class WebhookMessageListQuery(PageQuery):
    job_id = fields.String(validate=validate.Length(max=40))
    endpoint_id = fields.String(validate=validate.Length(max=40))
    status = fields.String(validate=validate.OneOf(MESSAGE_STATUSES, error=rule("message_status")))
    type = fields.String(validate=validate.OneOf(EVENT_TYPES, error=rule("event_type")))


class ReplayFailedIn(StrictSchema):
    since = fields.AwareDateTime(
        required=True,
        metadata={"description": "Replay the failed messages created at or after this time."},
    )


class WebhookEndpointOut(ma.Schema):
    id = fields.String(required=True, metadata={"example": "we_01JD3Q8X6R9V2M4K7T0B5N8C1W"})
    object = fields.Constant("webhook_endpoint", required=True)
    url = fields.String(required=True)
    description = fields.String(allow_none=True, required=True)
    event_types = fields.List(fields.String(), required=True)
    enabled = fields.Boolean(required=True)
    disabled_reason = fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "Why delivery disabled it (410 Gone, failing for days)."},
    )
    failing_since = fields.DateTime(allow_none=True, required=True)
    previous_secret_expires_at = fields.DateTime(
        allow_none=True,
        required=True,
        metadata={"description": "Until then, the secret before the last rotation also signs."},
    )
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)


class WebhookEndpointWithSecretOut(WebhookEndpointOut):
    secret = fields.String(
        required=True,
        metadata={"description": "whsec_<base64>: shown only in this response."},
    )


class WebhookEndpointPageOut(ma.Schema):
    data = fields.List(fields.Nested(WebhookEndpointOut), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class WebhookAttemptOut(ma.Schema):
    id = fields.Integer(required=True)
    started_at = fields.DateTime(required=True)
    duration_ms = fields.Integer(allow_none=True, required=True)
    status_code = fields.Integer(allow_none=True, required=True)
    response_body = fields.String(
        allow_none=True, required=True, metadata={"description": "The answer's first 1 KB."}
    )
    error = fields.String(allow_none=True, required=True)
    trigger = fields.String(required=True, validate=validate.OneOf(("scheduled", "replay")))


class WebhookMessageOut(ma.Schema):
    id = fields.String(
        required=True,
        metadata={
            "description": "The webhook-id header, the same on every retry and replay.",
            "example": "msg_01JD3Q8X6R9V2M4K7T0B5N8C1W",
        },
    )
    object = fields.Constant("webhook_message", required=True)
    event_id = fields.String(required=True)
    type = fields.String(required=True, validate=validate.OneOf(EVENT_TYPES))
    endpoint_id = fields.String(
        allow_none=True,
        required=True,
        metadata={"description": "null for a job's own webhook_url."},
    )
    url = fields.String(required=True)
    job_id = fields.String(allow_none=True, required=True)
    batch_id = fields.String(allow_none=True, required=True)
    status = fields.String(required=True, validate=validate.OneOf(MESSAGE_STATUSES))
    attempt_count = fields.Integer(required=True)
    next_attempt_at = fields.DateTime(allow_none=True, required=True)
    last_attempt_at = fields.DateTime(allow_none=True, required=True)
    delivered_at = fields.DateTime(allow_none=True, required=True)
    created_at = fields.DateTime(required=True)
    payload = fields.Dict(
        required=True, metadata={"description": 'The body sent: {"type", "timestamp", "data"}.'}
    )


class WebhookMessageDetailOut(WebhookMessageOut):
    attempts = fields.List(
        fields.Nested(WebhookAttemptOut),
        required=True,
        metadata={"description": "Every attempt, newest first."},
    )


class WebhookMessagePageOut(ma.Schema):
    data = fields.List(fields.Nested(WebhookMessageOut), required=True)
    next_cursor = fields.String(allow_none=True, required=True)


class ReplayFailedOut(ma.Schema):
    replayed = fields.Integer(required=True, metadata={"description": "Messages made due."})


class TenantWebhookSecretOut(ma.Schema):
    exists = fields.Boolean(required=True)
    rotated_at = fields.DateTime(allow_none=True, required=True)
    previous_secret_expires_at = fields.DateTime(allow_none=True, required=True)


class TenantWebhookSecretRotatedOut(TenantWebhookSecretOut):
    secret = fields.String(
        required=True, metadata={"description": "whsec_<base64>: shown only in this response."}
    )
