"""Property-based tests of every endpoint against ``/openapi.json`` (schemathesis).

Valid and invalid requests, generated from the published schema and sent with a valid
key: no response may be a server error, and every response must match what the
schema documents (status code, content type, headers, body). Derandomised, so CI
runs the same examples every time.
"""

from __future__ import annotations

import dataclasses

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from tests.api.conftest import make_caller

EXAMPLES = 100
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def api_schema(settings, session_factory, redis_client):
    unlimited = dataclasses.replace(settings, rate_limit="1000000/second")
    app = create_app(unlimited, session_factory=session_factory)
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


#: every operation in /openapi.json; a test below fails if the schema has others
OPERATIONS = [
    "POST /v1/jobs",
    "GET /v1/jobs",
    "GET /v1/jobs/{job_id}",
    "POST /v1/jobs/{job_id}/cancel",
    "POST /v1/jobs/{job_id}/revisions",
    "GET /v1/jobs/{job_id}/video",
    "GET /v1/jobs/{job_id}/events",
    "POST /v1/batches",
    "GET /v1/batches/{batch_id}",
    "POST /v1/webhook-endpoints",
    "GET /v1/webhook-endpoints",
    "GET /v1/webhook-endpoints/{endpoint_id}",
    "PATCH /v1/webhook-endpoints/{endpoint_id}",
    "DELETE /v1/webhook-endpoints/{endpoint_id}",
    "POST /v1/webhook-endpoints/{endpoint_id}/rotate",
    "POST /v1/webhook-endpoints/{endpoint_id}/replay-failed",
    "GET /v1/webhook-messages",
    "GET /v1/webhook-messages/{message_id}",
    "POST /v1/webhook-messages/{message_id}/replay",
    "GET /v1/webhook-secret",
    "POST /v1/webhook-secret/rotate",
    "GET /v1/credits",
    "GET /healthz",
    "GET /readyz",
]


@pytest.fixture
def key_headers(db_session):
    return make_caller(db_session, "Schemathesis").headers


def test_the_list_covers_every_operation_in_the_schema(api_schema):
    labels = {result.ok().label for result in api_schema.get_all_operations()}
    assert labels == set(OPERATIONS)


#: operations without parameters or body have no invalid input to generate
NO_INPUT = {
    "GET /v1/credits",
    "GET /healthz",
    "GET /readyz",
    "GET /v1/webhook-secret",
    "POST /v1/webhook-secret/rotate",
}


@pytest.mark.parametrize(
    ("label", "mode"),
    [(label, GenerationMode.POSITIVE) for label in OPERATIONS]
    + [(label, GenerationMode.NEGATIVE) for label in OPERATIONS if label not in NO_INPUT],
)
def test_every_endpoint_matches_its_schema(api_schema, key_headers, label, mode):
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case):
        case.call_and_validate(headers=key_headers, checks=CHECKS)

    check()
