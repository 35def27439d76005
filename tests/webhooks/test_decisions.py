"""The delivery's decisions, on tables: no database, no network."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from models.webhooks import AttemptTrigger, MessageStatus
from reelyard.outbound import FetchFailed, Reply, TimedOut, UrlRefused
from reelyard.settings import DEFAULT_WEBHOOK_SCHEDULE_S, Settings, SettingsError
from workers.webhooks import (
    DeliveryConfig,
    Kind,
    Outcome,
    classify,
    decide,
    parse_retry_after,
    response_text,
    retry_delay_s,
)

NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
CONFIG = DeliveryConfig(jitter=0.0)
MIDDLE = 0.5  # rand() that gives no jitter


def reply(status, headers=None, body=b"ok"):
    return Reply(status, httpx.Headers(headers or {}), body, truncated=False, elapsed_s=0.01)


@pytest.mark.parametrize(
    ("attempts_made", "delay"),
    [
        (0, 0.0),
        (1, 5.0),
        (2, 300.0),
        (3, 1800.0),
        (4, 7200.0),
        (5, 18000.0),
        (6, 36000.0),
        (7, 50400.0),
        (8, 72000.0),
        (9, 86400.0),
        (10, None),
        (11, None),
    ],
)
def test_the_retry_schedule_is_standard_webhooks(attempts_made, delay):
    assert retry_delay_s(attempts_made, DEFAULT_WEBHOOK_SCHEDULE_S, rand=lambda: MIDDLE) == delay


def test_the_schedule_spans_about_three_days():
    assert sum(DEFAULT_WEBHOOK_SCHEDULE_S) / 86400 == pytest.approx(3.1, abs=0.1)


@pytest.mark.parametrize(("rand", "delay"), [(0.0, 240.0), (0.5, 300.0), (1.0, 360.0)])
def test_jitter_moves_a_delay_by_at_most_a_fifth(rand, delay):
    got = retry_delay_s(2, DEFAULT_WEBHOOK_SCHEDULE_S, rand=lambda: rand)
    assert got == pytest.approx(delay)


def test_the_time_scale_shrinks_every_delay():
    got = retry_delay_s(3, DEFAULT_WEBHOOK_SCHEDULE_S, time_scale=0.001, jitter=0.0)
    assert got == pytest.approx(1.8)


def test_a_schedule_is_configurable():
    settings = Settings.from_env({"REELYARD_WEBHOOK_SCHEDULE_S": "0, 1, 2"})
    assert settings.webhook_schedule_s == (0.0, 1.0, 2.0)
    assert retry_delay_s(3, settings.webhook_schedule_s) is None
    with pytest.raises(SettingsError):
        Settings.from_env({"REELYARD_WEBHOOK_SCHEDULE_S": "0,-1"})


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        ("Tue, 24 Nov 2026 15:01:00 GMT", 60.0),
        ("Tue, 24 Nov 2026 14:00:00 GMT", 0.0),
        ("soon", None),
    ],
)
def test_retry_after_is_seconds_or_a_date(value, seconds):
    assert parse_retry_after(value, NOW) == seconds


@pytest.mark.parametrize(
    ("status", "kind", "error"),
    [
        (200, Kind.DELIVERED, None),
        (204, Kind.DELIVERED, None),
        (299, Kind.DELIVERED, None),
        (410, Kind.GONE, "410 Gone"),
        (429, Kind.SLOW_DOWN, None),
        (502, Kind.SLOW_DOWN, None),
        (504, Kind.SLOW_DOWN, None),
        (500, Kind.RETRY, None),
        (503, Kind.RETRY, None),
        (400, Kind.RETRY, None),
        (404, Kind.RETRY, None),
        (301, Kind.RETRY, "redirect not followed (HTTP 301)"),
        (302, Kind.RETRY, "redirect not followed (HTTP 302)"),
        (307, Kind.RETRY, "redirect not followed (HTTP 307)"),
    ],
)
def test_what_a_status_means(status, kind, error):
    outcome = classify(reply(status), None, NOW)
    assert (outcome.kind, outcome.status_code, outcome.error) == (kind, status, error)


@pytest.mark.parametrize(
    ("error", "kind", "starts"),
    [
        (UrlRefused("no", url="u"), Kind.REFUSED, "refused URL"),
        (TimedOut("slow", url="u"), Kind.RETRY, "timeout"),
        (FetchFailed("gone", url="u"), Kind.RETRY, "connection closed"),
    ],
)
def test_what_an_error_means(error, kind, starts):
    outcome = classify(None, error, NOW)
    assert outcome.kind is kind
    assert outcome.status_code is None
    assert outcome.error.startswith(starts)


def test_a_connection_refused_is_told_from_one_closed():
    error = FetchFailed("cannot connect to h", url="u")
    error.__cause__ = httpx.ConnectError("refused")
    outcome = classify(None, error, NOW)
    assert (outcome.kind, outcome.error) == (Kind.RETRY, "connection refused: cannot connect to h")


def test_retry_after_is_read_from_a_slow_down():
    outcome = classify(reply(429, {"Retry-After": "30"}), None, NOW)
    assert outcome.retry_after_s == 30.0


def test_a_response_body_is_kept_to_one_kilobyte_even_with_bad_bytes():
    assert len(response_text(b"a" * 5000).encode()) == 1024
    assert len(response_text(b"\xff" * 1024).encode()) <= 1024


def _decide(outcome, attempts_made=1, trigger=AttemptTrigger.SCHEDULED, **kwargs):
    return decide(
        outcome,
        attempts_made=attempts_made,
        trigger=trigger,
        now=NOW,
        config=kwargs.pop("config", CONFIG),
        rand=lambda: MIDDLE,
        **kwargs,
    )


@pytest.mark.parametrize(
    ("outcome", "attempts_made", "status", "after_s", "disable"),
    [
        (Outcome(Kind.DELIVERED, 200), 1, MessageStatus.DELIVERED, None, None),
        (Outcome(Kind.DELIVERED, 200), 10, MessageStatus.DELIVERED, None, None),
        (Outcome(Kind.RETRY, 500), 1, MessageStatus.PENDING, 5.0, None),
        (Outcome(Kind.RETRY, 500), 3, MessageStatus.PENDING, 1800.0, None),
        (Outcome(Kind.RETRY, 500), 9, MessageStatus.PENDING, 86400.0, None),
        (Outcome(Kind.RETRY, 500), 10, MessageStatus.FAILED, None, None),
        (Outcome(Kind.RETRY, error="timeout"), 2, MessageStatus.PENDING, 300.0, None),
        (Outcome(Kind.GONE, 410), 1, MessageStatus.FAILED, None, "410 Gone"),
        (Outcome(Kind.REFUSED, error="refused URL"), 1, MessageStatus.FAILED, None, None),
    ],
)
def test_what_follows_an_attempt(outcome, attempts_made, status, after_s, disable):
    decision = _decide(outcome, attempts_made)
    assert decision.status is status
    assert decision.disable_reason == disable
    if after_s is None:
        assert decision.next_attempt_at is None
    else:
        assert decision.next_attempt_at == NOW + timedelta(seconds=after_s)


def test_a_failed_replay_is_failed_again_without_a_new_schedule():
    decision = _decide(Outcome(Kind.RETRY, 500), 11, trigger=AttemptTrigger.REPLAY)
    assert decision.status is MessageStatus.FAILED
    assert _decide(Outcome(Kind.DELIVERED, 200), 11, trigger=AttemptTrigger.REPLAY).status is (
        MessageStatus.DELIVERED
    )


def test_retry_after_longer_than_the_schedule_is_honoured_and_slows_the_endpoint():
    decision = _decide(Outcome(Kind.SLOW_DOWN, 429, retry_after_s=600.0), 1)
    assert decision.next_attempt_at == NOW + timedelta(seconds=600)
    assert decision.slow_endpoint_until == NOW + timedelta(seconds=600)


def test_retry_after_shorter_than_the_schedule_keeps_the_schedule():
    decision = _decide(Outcome(Kind.SLOW_DOWN, 502, retry_after_s=1.0), 2)
    assert decision.next_attempt_at == NOW + timedelta(seconds=300)
    assert decision.slow_endpoint_until == NOW + timedelta(seconds=1)


def test_a_slow_down_without_retry_after_holds_the_endpoint_for_the_schedules_delay():
    decision = _decide(Outcome(Kind.SLOW_DOWN, 504), 2)
    assert decision.slow_endpoint_until == NOW + timedelta(seconds=300)


def test_retry_after_is_capped_at_the_schedules_longest_step():
    decision = _decide(Outcome(Kind.SLOW_DOWN, 429, retry_after_s=10 * 86400.0), 1)
    assert decision.next_attempt_at == NOW + timedelta(seconds=86400)


def test_retry_after_is_scaled_with_the_rest():
    config = DeliveryConfig(jitter=0.0, time_scale=0.01)
    decision = _decide(Outcome(Kind.SLOW_DOWN, 429, retry_after_s=600.0), 1, config=config)
    assert decision.next_attempt_at == NOW + timedelta(seconds=6)


@pytest.mark.parametrize(
    ("failing_for", "disabled"),
    [(None, False), (timedelta(days=1), False), (timedelta(days=5), True)],
)
def test_an_endpoint_failing_for_days_is_disabled_with_a_reason(failing_for, disabled):
    since = None if failing_for is None else NOW - failing_for
    decision = _decide(Outcome(Kind.RETRY, 500), 3, failing_since=since)
    assert (decision.disable_reason is not None) is disabled
    assert decision.status is MessageStatus.PENDING  # waits for the endpoint to return
    if disabled:
        assert "every attempt failed since" in decision.disable_reason
