"""The fault schedule: replayable from its seed, every kind present, outages apart."""

from __future__ import annotations

import pytest

from studio.faults import NUMBER_FAULTS, SPEC_FAULTS
from tests.chaos.schedule import (
    KINDS,
    OUTAGES,
    STUDIO_FAULTS,
    Fault,
    counts,
    draw,
    overlapping_outages,
)


def test_the_same_seed_draws_the_same_schedule_and_another_seed_another():
    first = draw(1234, duration_s=180, total=60)
    assert first == draw(1234, duration_s=180, total=60)
    assert first != draw(1235, duration_s=180, total=60)


@pytest.mark.parametrize("seed", [1, 2, 3, 99])
def test_every_kind_is_drawn_at_least_per_kind_times(seed):
    schedule = draw(seed, duration_s=600, per_kind=3, total=200)
    drawn = counts(schedule)
    assert set(drawn) == set(KINDS)
    assert min(drawn.values()) >= 3
    assert len(schedule) == 200


@pytest.mark.parametrize("seed", range(20))
def test_faults_are_in_order_within_the_run_and_outages_never_overlap(seed):
    schedule = draw(seed, duration_s=120, per_kind=2, total=80)
    times = [fault.at_s for fault in schedule]
    assert times == sorted(times)
    assert all(0 <= fault.at_s <= 120 for fault in schedule)
    assert all(fault.ends_s <= 120 + 6 for fault in schedule)
    assert overlapping_outages(schedule) == []


def test_overlapping_outages_are_found():
    clash = [Fault(10.0, "redis.restart", 4.0), Fault(12.0, "postgres.restart", 3.0)]
    assert overlapping_outages(clash) == [(clash[0], clash[1])]
    apart = [Fault(10.0, "redis.restart", 1.0), Fault(12.0, "postgres.restart", 3.0)]
    assert overlapping_outages(apart) == []


def test_the_studio_faults_are_the_studios_own():
    known = set(SPEC_FAULTS) | set(NUMBER_FAULTS)
    for kind, spec in STUDIO_FAULTS.items():
        assert set(spec) <= known, (kind, spec)


def test_studio_faults_run_at_a_random_rate_for_a_while_then_go_off():
    schedule = draw(3, duration_s=300, per_kind=4, total=120)
    studio = [fault for fault in schedule if fault.kind in STUDIO_FAULTS]
    rates = set()
    for fault in studio:
        assert 2.0 <= fault.duration_s <= 6.0
        spec, off = fault.params["spec"], fault.params.get("off")
        if fault.kind == "studio.token_expiry":  # counted exactly: never a rate
            assert off is None
            assert spec == {"token_expiry": {"count": 1}}
        elif fault.kind == "studio.latency":
            assert spec["latency_ms"] > 0
            assert off == {"latency_ms": 0}
        else:
            name = fault.kind.removeprefix("studio.")
            assert 0.05 <= spec[name]["p"] <= 0.3
            assert spec[name]["count"] >= 1
            assert off == {name: {"p": 0, "count": 0}}
            rates.add(spec[name]["p"])
    assert len(rates) > 5  # drawn, not fixed
    assert STUDIO_FAULTS["studio.rate_limit"]["rate_limit"] == {"count": 5}  # not mutated


def test_a_flush_is_an_instant_and_other_outages_last_a_while():
    schedule = draw(7, duration_s=300, per_kind=4, total=120)
    for fault in schedule:
        if fault.kind == "redis.flushall":
            assert fault.duration_s == 0
        elif fault.kind in OUTAGES:
            assert 0 < fault.duration_s <= 5.0


def test_a_schedule_needs_time():
    with pytest.raises(ValueError, match="positive duration"):
        draw(1, duration_s=0)
