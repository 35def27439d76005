"""The chaos run, short (about three minutes), in the suite: ``make chaos`` is the long one.

Sixty jobs and twenty faults, every kind of the schedule at least once, against the
real processes on a private PostgreSQL and Redis; the history must keep every rule
(``tests/chaos/history.py``). The seed is fixed so that CI replays the same faults and
submissions; ``REELYARD_CHAOS_SEED`` picks another.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.chaos.run import Settings, report, run_chaos
from tests.chaos.schedule import KINDS

SEED = int(os.environ.get("REELYARD_CHAOS_SEED", "20261124"))


def test_a_short_chaos_run_keeps_every_rule(tmp_path: Path) -> None:
    settings = Settings(seed=SEED, jobs=60, faults=20, per_kind=1, duration_s=60, settle_s=180)
    outcome = run_chaos(settings, tmp_path)
    table = report(outcome)
    assert set(outcome.record.applied) == set(KINDS), table
    assert sum(outcome.record.applied.values()) >= settings.faults, table
    assert len(outcome.history.submitted.job_ids) >= settings.jobs, table
    assert outcome.ok, f"seed {SEED}: {len(outcome.violations)} violation(s)\n{table}"
