"""Every input rule of ``POST /v1/jobs``, each answered 422 with its code."""

from __future__ import annotations

import pytest

from tests.api.conftest import PHOTO, job_body


def errors_of(client, caller, body):
    response = client.post("/v1/jobs", json=body, headers=caller.headers)
    assert response.status_code == 422, response.json
    assert response.json["code"] == "validation_failed"
    assert response.json["status"] == 422
    return {(item["field"], item["code"]) for item in response.json["errors"]}


@pytest.mark.parametrize(
    ("changes", "field", "code"),
    [
        ({"images": []}, "images", "images_count"),
        ({"images": [PHOTO] * 51}, "images", "images_count"),
        ({"images": ["file:///etc/passwd"]}, "images.0", "url_scheme"),
        ({"images": ["ftp://example.com/a.jpg"]}, "images.0", "url_scheme"),
        ({"images": ["javascript:alert(1)"]}, "images.0", "url_scheme"),
        ({"images": ["https://user:pw@example.com/a.jpg"]}, "images.0", "url_credentials"),
        ({"images": ["https://user@example.com/a.jpg"]}, "images.0", "url_credentials"),
        ({"images": ["https:///a.jpg"]}, "images.0", "url_invalid"),
        ({"images": ["https://exa mple.com/a.jpg"]}, "images.0", "url_invalid"),
        ({"images": ["https://example.com:99999/a.jpg"]}, "images.0", "url_invalid"),
        ({"images": ["https://example.com/" + "a" * 2100]}, "images.0", "url_too_long"),
        ({"images": [42]}, "images.0", "invalid_type"),
        ({"images": "https://example.com/a.jpg"}, "images", "invalid_type"),
        ({"prompt": ""}, "prompt", "prompt_length"),
        ({"prompt": "x" * 2001}, "prompt", "prompt_length"),
        ({"prompt": None}, "prompt", "null"),
        ({"options": {"aspect_ratio": "21:9"}}, "options.aspect_ratio", "aspect_ratio"),
        ({"options": {"resolution": "4k"}}, "options.resolution", "resolution"),
        ({"options": {"duration_s": 1}}, "options.duration_s", "duration_range"),
        ({"options": {"duration_s": 601}}, "options.duration_s", "duration_range"),
        ({"options": {"music": "loud"}}, "options.music", "music"),
        ({"options": {"music": "file:///song.mp3"}}, "options.music", "music"),
        ({"options": {"title": ""}}, "options.title", "title_length"),
        ({"options": {"language": "english!"}}, "options.language", "language"),
        ({"options": {"speed": 2}}, "options.speed", "unknown_field"),
        ({"metadata": {"k": "v" * 4100}}, "metadata", "metadata_too_large"),
        ({"metadata": ["not", "an", "object"]}, "metadata", "invalid_type"),
        ({"webhook_url": "gopher://example.com/"}, "webhook_url", "url_scheme"),
        ({"colour": "red"}, "colour", "unknown_field"),
        ({"prompt": "nul \x00 inside"}, "prompt", "text_invalid"),
        ({"metadata": {"k": {"deep": "\ud800"}}}, "metadata.k.deep", "text_invalid"),
    ],
)
def test_each_rule_has_its_code(client, alice, changes, field, code):
    assert (field, code) in errors_of(client, alice, job_body(**changes))


@pytest.mark.parametrize("missing", ["images", "prompt"])
def test_required_fields(client, alice, missing):
    body = job_body()
    del body[missing]
    assert errors_of(client, alice, body) == {(missing, "required")}


@pytest.mark.parametrize(
    "changes",
    [
        {"images": [PHOTO] * 50},
        {"prompt": "x" * 2000},
        {"options": {"music": "https://music.example.com/track.mp3", "language": "pt-BR"}},
        {"options": {"duration_s": 3}},
        {"metadata": {"k": "v" * 4000}},
        {"images": ["http://[2001:db8::1]:8080/a.jpg"]},
    ],
)
def test_values_at_the_limits_are_accepted(client, alice, changes):
    response = client.post("/v1/jobs", json=job_body(**changes), headers=alice.headers)
    assert response.status_code == 202, response.json


def test_a_body_that_is_not_an_object_is_422(client, alice):
    response = client.post("/v1/jobs", json=["a"], headers=alice.headers)
    assert response.status_code == 422
    assert response.json["code"] == "validation_failed"


def test_malformed_json_is_400_invalid_json(client, alice):
    response = client.post(
        "/v1/jobs",
        data="{not json",
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json["code"] == "invalid_json"


def test_nul_in_a_query_parameter_is_refused(client, alice):
    response = client.get("/v1/jobs?metadata_key=a&metadata_value=%00", headers=alice.headers)
    assert response.status_code == 422
    assert response.json["errors"][0]["code"] == "text_invalid"


def test_unknown_query_parameters_are_refused(client, alice):
    response = client.get("/v1/jobs?colour=red", headers=alice.headers)
    assert response.status_code == 422
    assert response.json["errors"] == [
        {
            "field": "colour",
            "code": "unknown_field",
            "message": "Unknown field.",
            "location": "query",
        }
    ]


@pytest.mark.parametrize(
    ("query", "field", "code"),
    [
        ("limit=0", "limit", "limit_range"),
        ("limit=101", "limit", "limit_range"),
        ("limit=x", "limit", "invalid_type"),
        ("status=paused", "status.0", "status"),
        ("created_after=yesterday", "created_after", "invalid_datetime"),
        ("metadata_key=a", "metadata_value", "metadata_filter"),
    ],
)
def test_list_query_rules(client, alice, query, field, code):
    response = client.get(f"/v1/jobs?{query}", headers=alice.headers)
    assert response.status_code == 422
    assert (field, code) in {(e["field"], e["code"]) for e in response.json["errors"]}


def test_an_invalid_idempotency_key_header_is_refused(client, alice):
    response = client.post(
        "/v1/jobs", json=job_body(), headers={**alice.headers, "Idempotency-Key": "x" * 256}
    )
    assert response.status_code == 422
    assert response.json["errors"][0]["code"] == "idempotency_key"
    assert response.json["errors"][0]["location"] == "headers"
