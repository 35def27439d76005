"""``make bench-pipeline``: end-to-end jobs per second through the whole pipeline.

Issue 7, must-show 5(a). Real processes on loopback, started by the end-to-end tests'
launcher (``tests/e2e/system.py``) with the production commands and defaults: the
studio in no-render mode at time scale 0, the API (one gunicorn worker), a worker for
the ``pipeline`` queue and one for ``edit`` (each with its default pool and
concurrency; ``--pipeline-args``/``--edit-args`` add options, to compare) and beat.
The database ``reelyard_bench_pipeline`` is created fresh, migrated with ``reelyard
migrate`` and dropped at the end; the broker is Redis database 10, flushed before and
after. Three generated JPEGs are served by a loopback HTTP server.

``--jobs`` jobs (2,000 by default) are submitted through ``POST /v1/batches``, 100 per
batch; the clock runs from the first submission until every job is terminal, which
is read from the database with one COUNT query per second. The CPU time of each
process is read from ``ps`` at the end, to show where the time went.

Prints a human summary, then one JSON line:
``{"jobs", "jobs_per_s", "errors", ...}`` (``errors``: jobs not ``succeeded``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import (  # noqa: E402
    SETTINGS,
    STUDIO_ENV,
    CpuMeter,
    print_cpu,
    submit,
    transactions,
)

from tests.e2e.system import Broker, System, create_database, drop_database  # noqa: E402
from tests.workers.pipeline_fixtures import serve_photos  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/10"
DATABASE = "reelyard_bench_pipeline"


def counts(database_url: str) -> tuple[int, int]:
    """(terminal jobs, succeeded jobs), in one COUNT query."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status IN ('succeeded', 'failed', 'canceled')),"
            " count(*) FILTER (WHERE status = 'succeeded') FROM jobs"
        ).fetchone()
    return (int(row[0]), int(row[1])) if row is not None else (0, 0)


@dataclass
class Run:
    """What one run measured."""

    jobs: int
    terminal: int = 0
    succeeded: int = 0
    wall_s: float = 0.0
    submit_s: float = 0.0
    timed_out: bool = False
    cpu: dict[str, float] = field(default_factory=dict)
    commits: int = 0

    @property
    def jobs_per_s(self) -> float:
        return self.terminal / self.wall_s if self.wall_s > 0 else 0.0

    def report(self, timeout_s: float) -> None:
        """The human summary."""
        print()
        failed = self.terminal - self.succeeded
        print(f"jobs:       {self.jobs} ({self.succeeded} succeeded, {failed} failed/canceled)")
        if self.timed_out:
            print(f"TIMED OUT after {timeout_s:.0f} s with {self.terminal} terminal")
        print(f"wall:       {self.wall_s:.1f} s (submission {self.submit_s:.1f} s)")
        print(f"throughput: {self.jobs_per_s:.1f} jobs/s (target >= 30)")
        print(f"commits:    {self.commits / max(self.terminal, 1):.1f} transactions per job")
        print_cpu(self.cpu, self.wall_s)

    def result(self) -> dict[str, object]:
        """The JSON line."""
        return {
            "jobs": self.jobs,
            "jobs_per_s": round(self.jobs_per_s, 2),
            "errors": self.jobs - self.succeeded,
            "wall_s": round(self.wall_s, 2),
            "submit_s": round(self.submit_s, 2),
            "succeeded": self.succeeded,
            "terminal": self.terminal,
            "cpu_s": self.cpu,
            "commits_per_job": round(self.commits / max(self.terminal, 1), 1),
        }


def measure(system: System, urls: list[str], jobs: int, timeout_s: float) -> Run:
    """Submit ``jobs`` and wait until every one is terminal (or ``timeout_s``)."""
    run = Run(jobs)
    meter = CpuMeter(system)
    meter.start()
    commits_before = transactions(system.database_url)
    print(f"system up (logs in {system.root / 'logs'}); submitting {jobs} jobs", flush=True)
    started = time.monotonic()
    run.submit_s = submit(system, urls, jobs)
    print(f"submitted in {run.submit_s:.1f} s", flush=True)
    wait_terminal(system, run, started, timeout_s)
    run.cpu = meter.stop()
    time.sleep(1.0)  # statistics reach pg_stat_database within a second
    run.commits = transactions(system.database_url) - commits_before
    return run


def wait_terminal(system: System, run: Run, started: float, timeout_s: float) -> None:
    """Poll once a second until ``run.jobs`` jobs are terminal or ``timeout_s`` has passed
    since ``started`` (monotonic); sets the run's counts, ``wall_s`` and ``timed_out``."""
    while True:
        run.terminal, run.succeeded = counts(system.database_url)
        elapsed = time.monotonic() - started
        if run.terminal >= run.jobs:
            break
        if elapsed > timeout_s:
            run.timed_out = True
            break
        print(f"  {elapsed:6.1f} s: {run.terminal}/{run.jobs} terminal", flush=True)
        time.sleep(1.0)
    run.wall_s = time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs to run (default 2000)")
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="give up after this many seconds"
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs' directory")
    parser.add_argument("--pipeline-args", default="", help="more options of the pipeline worker")
    parser.add_argument("--edit-args", default="", help="more options of the edit worker")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="reelyard-bench-pipeline-"))
    broker = Broker("redis", REDIS_URL, REDIS_URL)
    broker.flush()
    system = System(
        root,
        broker,
        create_database(DATABASE),
        studio_env=STUDIO_ENV,
        env_overrides=SETTINGS,
        commands={
            "pipeline": ["worker", "-Q", "pipeline", *shlex.split(args.pipeline_args)],
            "edit": ["worker", "-Q", "edit", *shlex.split(args.edit_args)],
            "beat": ["beat"],
        },
    )
    try:
        with serve_photos(root / "photos") as photos:
            system.start()
            run = measure(system, photos.urls, args.jobs, args.timeout)
    finally:
        system.stop()
        broker.flush()
        drop_database(DATABASE)
    run.report(args.timeout)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(run.result()))
    return 1 if run.timed_out else 0


if __name__ == "__main__":
    raise SystemExit(main())
