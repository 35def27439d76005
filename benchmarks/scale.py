"""``make bench-scale``: what one 2-core host drains, at what latency, and how many it holds.

Issue 10, "Scale". Real processes on loopback, started by the end-to-end tests'
launcher (``tests/e2e/system.py``) with the production commands, bench-pipeline's
settings (``benchmarks/harness.py``: the studio in no-render mode at time scale 0) and
three generated JPEGs served by a loopback HTTP server. Three phases, each ending with
one JSON line that names it (``"phase"``), then one combined JSON line, last:

1. ``drain``: a system whose studio and API run but no worker, on a fresh database
   (``reelyard_bench_scale``) and Redis database 8. ``--jobs`` jobs (10,000) are
   submitted through ``POST /v1/batches``, 100 per batch, so that they are accepted,
   in the database and on the broker with no one to take them (the messages waiting
   on the ``pipeline`` queue are counted); then the ``pipeline`` and ``edit`` workers
   and beat start (their defaults, one after the other), and the clock runs from
   their launch until every job is terminal: ``jobs_per_s``, ``errors`` (jobs not
   ``succeeded``), CPU seconds per process, and what the jobs left behind: events and
   outbox rows per job, the database's growth and the WAL written per job (from
   before the submission), and the connections the system holds open to PostgreSQL
   at the end; ``workers_startup_s``, the part of the clock the workers took to start
   (it weighs on a short run); ``reconciler_reenqueued``, the messages the reconciler
   sent again meanwhile (jobs queued for longer than its grace period: duplicates
   that their claims turn away).
2. ``latency``: the same system, now warm, takes jobs one at a time through
   ``POST /v1/jobs`` at a steady ``--rate-fraction`` (0.5) of the drain's jobs/s for
   ``--latency-s`` (120) s, and runs each to its end: p50, p95 and p99 of accepted
   → succeeded, from each job's row (``created_at``, written by the API in the
   transaction that accepts it, to ``finished_at``), ``errors`` (posts refused and
   jobs not ``succeeded``).
3. ``inflight``: bench-inflight's phases (``benchmarks/inflight.py``), each on a fresh
   system: ``--inflight-jobs`` jobs (1,000) with 0-s edit turns (the reference), then
   with ``--turn-s`` (60) s turns on the edit worker's default pool. ``ideal_s`` is the
   reference's wall time plus one turn; ``ratio_to_ideal`` the turn phase's wall time
   over it; peak RSS of the worker processes and CPU seconds per process.

The sizes are options, so that a short version (``--jobs 300 --latency-s 20
--inflight-jobs 100 --turn-s 10``) runs in a few minutes. Exits 1 when a phase timed
out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import inflight  # noqa: E402
import pipeline  # noqa: E402
from harness import (  # noqa: E402
    SETTINGS,
    STUDIO_ENV,
    CpuMeter,
    job_spec,
    print_cpu,
    submit,
    transactions,
)

from tests.e2e.system import Broker, System, create_database, drop_database  # noqa: E402
from tests.workers.pipeline_fixtures import serve_photos  # noqa: E402
from workers.commands import POOLS  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/8"
DATABASE = "reelyard_bench_scale"
INFLIGHT_DATABASE = "reelyard_bench_scale_inflight"
#: the workers, started once the drain's jobs are queued (each with its defaults)
WORKERS = {
    "pipeline": ["worker", "-Q", "pipeline"],
    "edit": ["worker", "-Q", "edit"],
    "beat": ["beat"],
}
TERMINAL = ("succeeded", "failed", "canceled")


def _query(database_url: str, statement: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...]:
    """The first row of one statement (autocommit)."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(statement, params).fetchone()
    if row is None:
        raise RuntimeError(f"no row: {statement}")
    return tuple(row)


def database_size(database_url: str) -> int:
    return int(_query(database_url, "SELECT pg_database_size(current_database())")[0])


def wal_position(database_url: str) -> int:
    """Bytes of WAL the server has written so far (the whole cluster's: an upper bound
    of the system's own when other databases are busy)."""
    return int(_query(database_url, "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")[0])


def connections(database_url: str) -> int:
    """Connections to the system's database, this one left out (the pools keep theirs)."""
    return int(
        _query(
            database_url,
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )[0]
    )


def footprint(database_url: str, jobs: int, size_before: int) -> dict[str, float]:
    """Rows and bytes the drained jobs left: events and outbox rows per job (the jobs
    carry no webhook URL, so no webhook messages), and the database's growth per job
    (dead row versions included: autovacuum frees them for reuse, it does not shrink
    the files)."""
    events, outbox = _query(
        database_url,
        "SELECT (SELECT count(*) FROM job_events), (SELECT count(*) FROM outbox_events)",
    )
    jobs_bytes, events_bytes = _query(
        database_url,
        "SELECT pg_total_relation_size('jobs'), pg_total_relation_size('job_events')",
    )
    per_job = max(jobs, 1)
    return {
        "events_per_job": round(int(events) / per_job, 2),
        "outbox_per_job": round(int(outbox) / per_job, 2),
        "db_bytes_per_job": round((database_size(database_url) - size_before) / per_job),
        "jobs_table_bytes_per_job": round(int(jobs_bytes) / per_job),
        "events_table_bytes_per_job": round(int(events_bytes) / per_job),
    }


def reenqueued(system: System) -> int:
    """Messages the reconciler sent again so far (its ``reconciled: N enqueued`` lines in
    the pipeline worker's log): jobs queued longer than its grace period are enqueued
    once more, a duplicate their claim turns away."""
    lines = re.findall(r"reconciled: (\d+) enqueued", system.procs["pipeline"].output())
    return sum(int(count) for count in lines)


def drain(system: System, urls: list[str], jobs: int, timeout_s: float) -> dict[str, Any]:
    """Queue ``jobs`` with no worker running, then start the workers and time the drain."""
    run = pipeline.Run(jobs)
    size_before = database_size(system.database_url)
    wal_before = wal_position(system.database_url)
    print(f"[drain] system up without workers (logs in {system.root / 'logs'})", flush=True)
    run.submit_s = submit(system, urls, jobs)
    queues = redis.Redis.from_url(system.broker.url)
    try:
        queued = int(queues.llen("pipeline"))
    finally:
        queues.close()
    print(f"[drain] {jobs} accepted in {run.submit_s:.1f} s; {queued} messages queued", flush=True)
    meter = CpuMeter(system)
    meter.start()
    commits_before = transactions(system.database_url)
    started = time.monotonic()
    system.commands = dict(WORKERS)
    for name in WORKERS:
        system.start_worker(name)
    startup_s = time.monotonic() - started
    print(f"[drain] workers up in {startup_s:.1f} s", flush=True)
    pipeline.wait_terminal(system, run, started, timeout_s)
    run.cpu = meter.stop()
    wal_bytes = wal_position(system.database_url) - wal_before
    database_connections = connections(system.database_url)
    time.sleep(1.0)  # statistics reach pg_stat_database within a second
    run.commits = transactions(system.database_url) - commits_before
    run.report(timeout_s)
    print(f"(the clock started at the workers' launch; they took {startup_s:.1f} s to start)")
    return {
        "phase": "drain",
        **run.result(),
        "queued_messages": queued,
        "workers_startup_s": round(startup_s, 2),
        "reconciler_reenqueued": reenqueued(system),
        "db_connections": database_connections,
        "wal_bytes_per_job": round(wal_bytes / max(jobs, 1)),
        "timed_out": run.timed_out,
        **footprint(system.database_url, jobs, size_before),
    }


def latency_counts(database_url: str, ids: list[str]) -> tuple[int, int]:
    """(terminal, succeeded) among ``ids``."""
    terminal, succeeded = _query(
        database_url,
        "SELECT count(*) FILTER (WHERE status = ANY(%s)),"
        " count(*) FILTER (WHERE status = 'succeeded') FROM jobs WHERE id = ANY(%s)",
        (list(TERMINAL), ids),
    )
    return int(terminal), int(succeeded)


def percentiles(database_url: str, ids: list[str]) -> dict[str, float]:
    """Seconds from accepted to succeeded of the succeeded jobs among ``ids``."""
    row = _query(
        database_url,
        "SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY s), max(s)"
        " FROM (SELECT extract(epoch FROM finished_at - created_at) AS s FROM jobs"
        "       WHERE id = ANY(%s) AND status = 'succeeded') AS latencies",
        (ids,),
    )
    p50, p95, p99 = row[0] or (0.0, 0.0, 0.0)
    return {
        "p50_s": round(float(p50), 3),
        "p95_s": round(float(p95), 3),
        "p99_s": round(float(p99), 3),
        "max_s": round(float(row[1] or 0.0), 3),
    }


def latency(
    system: System, urls: list[str], rate: float, duration_s: float, timeout_s: float
) -> dict[str, Any]:
    """Post one job every ``1/rate`` s for ``duration_s``, wait for their ends; latencies."""
    print(f"[latency] {rate:.2f} jobs/s for {duration_s:g} s, one POST /v1/jobs each", flush=True)
    ids: list[str] = []
    refused = 0
    meter = CpuMeter(system)
    meter.start()
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {system.key}"}
    with httpx.Client(base_url=system.api_url, headers=headers, timeout=30) as client:
        sent = 0
        # the n-th job is due at n / rate: a slow answer is caught up, not carried over
        while (due := sent / rate) < duration_s:
            time.sleep(max(0.0, started + due - time.monotonic()))
            sent += 1
            try:
                response = client.post("/v1/jobs", json=job_spec(urls))
            except httpx.HTTPError:
                refused += 1
                continue
            if response.status_code == 202:
                ids.append(response.json()["id"])
            else:
                refused += 1
            if sent % max(1, round(rate * 10)) == 0:
                print(f"  {time.monotonic() - started:6.1f} s: {sent} posted", flush=True)
    submit_s = time.monotonic() - started
    terminal = succeeded = 0
    while True:
        terminal, succeeded = latency_counts(system.database_url, ids)
        if terminal >= len(ids) or time.monotonic() - started > duration_s + timeout_s:
            break
        time.sleep(0.5)
    wall_s = time.monotonic() - started
    cpu = meter.stop()
    result: dict[str, Any] = {
        "phase": "latency",
        "rate_per_s": round(rate, 2),
        "offered": sent,
        "achieved_rate_per_s": round(sent / submit_s, 2) if submit_s > 0 else 0.0,
        **percentiles(system.database_url, ids),
        "errors": refused + len(ids) - succeeded,
        "refused": refused,
        "succeeded": succeeded,
        "wall_s": round(wall_s, 2),
        "cpu_s": cpu,
        "timed_out": terminal < len(ids),
        "log_errors": inflight.log_errors(system),
    }
    print()
    print(f"offered:    {sent} jobs at {rate:.2f}/s ({refused} refused, {succeeded} succeeded)")
    print(
        f"latency:    accepted -> succeeded p50 {result['p50_s']:.2f} s,"
        f" p95 {result['p95_s']:.2f} s, p99 {result['p99_s']:.2f} s, max {result['max_s']:.2f} s"
    )
    print_cpu(cpu, wall_s)
    return result


def in_flight(jobs: int, turn_s: float, timeout_s: float, root: Path) -> dict[str, Any]:
    """bench-inflight's reference and its default pool's phase, on our database."""
    pool = POOLS["edit"][0]
    phases = [inflight.Phase("reference", pool, 0.0), inflight.Phase(pool, pool, turn_s)]
    results: list[inflight.Result] = []
    for phase in phases:
        results.append(
            inflight.run_phase(
                phase, jobs, timeout_s, root, database=INFLIGHT_DATABASE, redis_url=REDIS_URL
            )
        )
        ideal = results[0].wall_s + turn_s if phase.turn_s > 0 else None
        inflight.report(results[-1], jobs, ideal)
    reference, measured = results
    ideal_s = reference.wall_s + turn_s
    cpu_total = sum(measured.cpu_s.values())
    return {
        "phase": "inflight",
        "jobs": jobs,
        "turn_s": turn_s,
        "ideal_s": round(ideal_s, 2),
        "wall_s": round(measured.wall_s, 2),
        "ratio_to_ideal": round(measured.wall_s / ideal_s, 3) if ideal_s > 0 else 0.0,
        "tail_s": measured.tail_s,
        "peak_rss_mb": measured.peak_rss_mb,
        "peak_edit_rss_mb": measured.peak_edit_rss_mb,
        "peak_edit_threads": measured.peak_edit_threads,
        "peak_streams": measured.peak_streams,
        "errors": measured.errors(jobs),
        "pool": measured.pool,
        "cpu_s": measured.cpu_s,
        #: how busy the machine's cores were over the phase (every process on it, the
        #: machine's other tenants included: ``cpu_s["other"]``)
        "machine_busy": round(cpu_total / (measured.wall_s * (os.cpu_count() or 1)), 3)
        if measured.wall_s > 0
        else 0.0,
        "reference_wall_s": round(reference.wall_s, 2),
        "reference_errors": reference.errors(jobs),
        "timed_out": reference.timed_out or measured.timed_out,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs to drain (10000)")
    parser.add_argument(
        "--rate-fraction",
        type=float,
        default=0.5,
        help="the latency phase's rate, a fraction of the drain's jobs/s (0.5)",
    )
    parser.add_argument(
        "--rate", type=float, default=0.0, help="the latency phase's jobs/s, if given"
    )
    parser.add_argument(
        "--latency-s", type=float, default=120.0, help="the latency phase's length (120 s)"
    )
    parser.add_argument(
        "--inflight-jobs", type=int, default=1000, help="jobs in flight at once (1000)"
    )
    parser.add_argument("--turn-s", type=float, default=60.0, help="each edit turn (60 s)")
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="give up on a phase after so many seconds"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the logs' directory (kept anyway on errors)"
    )
    parser.add_argument("--drain-only", action="store_true", help="the drain phase alone")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="reelyard-bench-scale-"))
    broker = Broker("redis", REDIS_URL, REDIS_URL)
    broker.flush()
    # no workers at first: System.start runs the studio, the migrations and the API
    system = System(
        root / "system",
        broker,
        create_database(DATABASE),
        studio_env=STUDIO_ENV,
        # a backlog is what the reconciler must not flood: its sweeps as in production
        env_overrides={**SETTINGS, "REELYARD_RECONCILE_EVERY_S": "5"},
        commands={},
    )
    try:
        with serve_photos(root / "photos") as photos:
            system.start()
            drained = drain(system, photos.urls, args.jobs, args.timeout)
            print(json.dumps(drained), flush=True)
            if args.drain_only:
                return 1 if drained["timed_out"] else 0
            rate = args.rate or args.rate_fraction * drained["jobs_per_s"]
            timed = latency(system, photos.urls, max(rate, 0.1), args.latency_s, args.timeout)
            print(json.dumps(timed), flush=True)
    finally:
        system.stop()
        broker.flush()
        drop_database(DATABASE)
    held = in_flight(args.inflight_jobs, args.turn_s, args.timeout, root / "inflight")
    print(json.dumps(held), flush=True)

    phases = {"drain": drained, "latency": timed, "inflight": held}
    failed = any(phase["timed_out"] for phase in phases.values())
    errors = sum(int(phase["errors"]) for phase in phases.values())
    if args.keep or failed or errors:
        print(f"logs kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    print(
        json.dumps(
            {
                "phase": "scale",
                "drain_jobs": drained["jobs"],
                "drain_jobs_per_s": drained["jobs_per_s"],
                "latency_rate_per_s": timed["rate_per_s"],
                "latency_p50_s": timed["p50_s"],
                "latency_p99_s": timed["p99_s"],
                "inflight_jobs": held["jobs"],
                "inflight_wall_s": held["wall_s"],
                "inflight_ideal_s": held["ideal_s"],
                "inflight_ratio_to_ideal": held["ratio_to_ideal"],
                "inflight_peak_rss_mb": held["peak_rss_mb"],
                "errors": errors,
                "phases": phases,
            }
        )
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
