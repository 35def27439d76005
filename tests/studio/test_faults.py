"""Fault specs: counts strike first and for sure, probabilities after, merges keep the rest."""

from __future__ import annotations

import pytest

from studio.config import StatusShape
from studio.faults import FaultConfigError, Faults


def test_a_count_strikes_exactly_that_many_times():
    faults = Faults(seed=1)
    faults.update({"rate_limit": {"count": 3}})
    assert [faults.fires("rate_limit") for _ in range(5)] == [True, True, True, False, False]


def test_a_probability_strikes_about_that_often():
    faults = Faults(seed=2)
    faults.update({"server_error": 0.25})
    hits = sum(faults.fires("server_error") for _ in range(4000))
    assert 850 < hits < 1150


def test_the_same_seed_draws_the_same_faults():
    first, second = Faults(seed=7), Faults(seed=7)
    for faults in (first, second):
        faults.update({"stream_cut": {"p": 0.5}})
    assert [first.fires("stream_cut") for _ in range(50)] == [
        second.fires("stream_cut") for _ in range(50)
    ]


def test_silent_close_defaults_to_the_configured_ratio():
    faults = Faults(seed=3, silent_close_ratio=0.3)
    assert faults.as_json()["silent_close"] == {"p": 0.3, "count": 0}


def test_update_merges_and_clear_resets_everything_first():
    faults = Faults(seed=1)
    faults.update({"rate_limit": {"p": 0.5}, "latency_ms": 20, "status_shape": "top"})
    faults.update({"session_loss": {"count": 1}})
    state = faults.as_json()
    assert state["rate_limit"]["p"] == 0.5
    assert state["session_loss"]["count"] == 1
    assert state["latency_ms"] == 20
    assert faults.status_shape is StatusShape.TOP
    faults.update({"clear": True, "render_stuck": {"count": 2}})
    state = faults.as_json()
    assert state["rate_limit"]["p"] == 0
    assert state["render_stuck"]["count"] == 2
    assert "latency_ms" not in state
    assert state["status_shape"] is None


def test_a_number_can_be_removed_with_null():
    faults = Faults()
    faults.update({"token_expiry_after": 5})
    faults.update({"token_expiry_after": None})
    assert faults.number("token_expiry_after") is None


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ([], "JSON object"),
        ({"meteor": 1}, "unknown fault 'meteor'"),
        ({"rate_limit": {"p": 2}}, "rate_limit.p"),
        ({"rate_limit": {"p": "often"}}, "rate_limit.p"),
        ({"rate_limit": {"count": -1}}, "rate_limit.count"),
        ({"rate_limit": {"count": 1.5}}, "rate_limit.count"),
        ({"rate_limit": {"q": 1}}, "rate_limit is"),
        ({"rate_limit": "sometimes"}, "rate_limit is"),
        ({"latency_ms": -5}, "latency_ms"),
        ({"latency_ms": True}, "latency_ms"),
        ({"status_shape": "side"}, "status_shape"),
        ({"clear": "yes"}, "clear"),
    ],
)
def test_bad_settings_are_refused_naming_the_key_and_change_nothing(settings, message):
    faults = Faults()
    before = faults.as_json()
    with pytest.raises(FaultConfigError, match=message):
        faults.update(settings)
    assert faults.as_json() == before


def test_settings_text_must_be_json():
    with pytest.raises(FaultConfigError, match="not JSON"):
        Faults().update_from_text("rate_limit=0.1")


def test_what_struck_is_counted_through_clears_and_can_be_posted_back():
    faults = Faults(seed=3)
    faults.update({"token_expiry": {"count": 2}, "server_error": 1.0})
    assert [faults.fires("token_expiry") for _ in range(3)] == [True, True, False]
    assert faults.fires("server_error")
    faults.clear()
    assert not faults.fires("server_error")
    state = faults.as_json()
    assert state["fired"] == {"server_error": 1, "token_expiry": 2}
    faults.update(state)  # GET's answer, POSTed back: ``fired`` is read-only
    assert faults.as_json() == state
