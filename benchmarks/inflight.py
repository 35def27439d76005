"""``make bench-inflight``: 1,000 edit streams in flight on one worker host.

Issue 7, must-show 5(b). Real processes on loopback, started by the end-to-end tests'
launcher (``tests/e2e/system.py``) with the production commands: the studio in
no-render mode at time scale 1, the API (one gunicorn worker), a worker for the
``pipeline`` queue (its default pool, prefork, one process per core), one for
``edit`` and beat. Each phase is a fresh system on a fresh database
(``reelyard_bench_inflight``, dropped at the end) and Redis database 11 (flushed
before and after); three generated JPEGs are served by a loopback HTTP server.

``--jobs`` jobs (1,000 by default) are submitted through ``POST /v1/batches``, 100 per
batch, in three phases, side by side in one run because the machines are shared and
noisy and only ratios compare:

1. ``reference``: every turn lasts 0 s (``STUDIO_TURN_S=0``): what the same jobs
   cost when holding a stream costs nothing;
2. ``threads``: every turn lasts ``--turn-s`` (60) s, the edit worker on
   ``--pool threads -c 1000``;
3. ``gevent``: the same with ``--pool gevent -c 1000``.

The clock runs from the first submission until every job has ended, read from the
database once a second (the same query counts the streams open at that moment: jobs
in ``edit`` whose instruction was sent; the messages waiting in each queue are read
from Redis at the same time, to show which worker held the jobs back). Everything but
the turn takes no time: the studio runs at time scale 0 (``STUDIO_TURN_S`` is wall
time, whatever the scale), so its no-render exports finish at once, and reelyard's
time scale is 0 too, so a render is polled as soon as it is started.

``ideal_s`` is the reference phase's wall time plus one turn (what the run would
take if holding the streams cost nothing); ``ratio_to_ideal`` is a phase's wall
time over it (target <= 1.2). The reference's own wall time varies from run to run
on a shared machine (the jobs reach their edit as fast as the ``pipeline`` worker's
cores allow), so each phase also reports ``tail_s``: from the end of the last turn
(its instruction's ``edit_sent_at`` plus the turn) to the end of the last job, what
holding the streams cost whatever the earlier stages' pace.

Every turn lasts exactly the turn: the studio's silent closes are off
(``STUDIO_SILENT_CLOSE_RATIO=0``), because a silent turn ends at its last heartbeat,
5 s early; reelyard reads the state after every turn, so a silent close costs it
nothing more.

Memory: every 0.5 s the VmRSS of every process in the worker process groups
(pipeline, edit, beat) is summed (shared pages count once per process: an upper
bound); the peak of the sum is ``peak_rss_mb`` (target < 1 GB), with the edit
worker's own peak and thread count. CPU seconds per process group, PostgreSQL,
Redis and the rest of the machine come from ``/proc`` (``benchmarks/harness.py``).

Prints a human summary per phase, then one JSON line for the edit worker's default
pool: ``{"jobs", "ideal_s", "wall_s", "ratio_to_ideal", "peak_rss_mb", "errors", ...}``
(``errors``: jobs that did not succeed in time), with each
pool's under ``pools``. Exits 1 when a phase timed out.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import harness  # noqa: E402
from harness import SETTINGS, CpuMeter, print_cpu, submit  # noqa: E402

from tests.e2e.system import Broker, System, create_database, drop_database  # noqa: E402
from tests.workers.pipeline_fixtures import serve_photos  # noqa: E402
from workers.commands import POOLS  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/11"
DATABASE = "reelyard_bench_inflight"
WORKERS = ("pipeline", "edit", "beat")
#: the studio as in bench-pipeline, and every turn exactly as long (set per phase)
STUDIO_ENV = {**harness.STUDIO_ENV, "STUDIO_SILENT_CLOSE_RATIO": "0"}
SAMPLE_EVERY_S = 0.5


@dataclass
class Phase:
    name: str
    pool: str
    turn_s: float


@dataclass
class Result:
    name: str
    pool: str
    turn_s: float
    wall_s: float = 0.0
    submit_s: float = 0.0
    ended: int = 0
    succeeded: int = 0
    peak_streams: int = 0
    #: seconds from the first submission to the last instruction sent, and from the end
    #: of that last turn to the end of the last edit (what the edits lost to holding
    #: the streams, free of the earlier stages' speed)
    last_sent_s: float = 0.0
    tail_s: float = 0.0
    #: the most messages waiting in each queue at once (sampled with the progress)
    peak_backlog: dict[str, int] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    peak_edit_rss_mb: float = 0.0
    peak_edit_threads: int = 0
    retries: int = 0
    log_errors: dict[str, int] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)
    timed_out: bool = False

    def errors(self, jobs: int) -> int:
        return jobs - self.succeeded


def _group_of(pid: str) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # pid (comm) state ppid pgrp …: comm may hold spaces and parentheses
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[2]) if len(fields) > 2 else None


def _status(pid: str) -> tuple[int, int]:
    """(VmRSS in kB, threads) of ``pid``; zeros if it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0, 0
    rss = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
    threads = re.search(r"^Threads:\s+(\d+)", text, re.M)
    return (int(rss[1]) if rss else 0, int(threads[1]) if threads else 0)


class MemorySampler(threading.Thread):
    """Sums the VmRSS of the worker process groups every 0.5 s; keeps the peaks."""

    def __init__(self, groups: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.groups = groups
        self.peak_kb = 0
        self.peak_edit_kb = 0
        self.peak_edit_threads = 0
        self._stopping = threading.Event()

    def run(self) -> None:
        names = {pgid: name for name, pgid in self.groups.items()}
        while not self._stopping.is_set():
            rss: dict[str, int] = dict.fromkeys(self.groups, 0)
            threads = 0
            for entry in Path("/proc").iterdir():
                pid = entry.name
                if not pid.isdigit():
                    continue
                name = names.get(_group_of(pid) or -1)
                if name is None:
                    continue
                kb, count = _status(pid)
                rss[name] += kb
                if name == "edit":
                    threads += count
            self.peak_kb = max(self.peak_kb, sum(rss.values()))
            self.peak_edit_kb = max(self.peak_edit_kb, rss.get("edit", 0))
            self.peak_edit_threads = max(self.peak_edit_threads, threads)
            self._stopping.wait(SAMPLE_EVERY_S)

    def stop(self) -> None:
        self._stopping.set()
        self.join()


def progress(database_url: str) -> tuple[int, int, int]:
    """(jobs ended, jobs succeeded, streams open), in one query."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status IN ('succeeded', 'failed', 'canceled')),"
            " count(*) FILTER (WHERE status = 'succeeded'),"
            " count(*) FILTER (WHERE stage = 'edit' AND edit_sent_at IS NOT NULL"
            "   AND status NOT IN ('succeeded', 'failed', 'canceled'))"
            " FROM jobs"
        ).fetchone()
    return (int(row[0]), int(row[1]), int(row[2])) if row is not None else (0, 0, 0)


def backlog(client: redis.Redis) -> dict[str, int]:
    """Messages waiting in each queue (kombu keeps a Redis queue in a list of its name)."""
    return {queue: int(client.llen(queue)) for queue in ("pipeline", "edit")}


def last_sent(database_url: str) -> float:
    """When the last instruction went out (epoch seconds; 0 if none did)."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT extract(epoch FROM max(edit_sent_at)) FROM jobs").fetchone()
    return float(row[0]) if row is not None and row[0] is not None else 0.0


def retries(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM job_events WHERE type = 'retry'").fetchone()
    return int(row[0]) if row is not None else 0


def log_errors(system: System) -> dict[str, int]:
    """Lines logged at ERROR (or tracebacks) by each process."""
    return {
        name: sum(
            1 for line in proc.output().splitlines() if " ERROR " in line or "Traceback" in line
        )
        for name, proc in system.procs.items()
    }


def run_phase(
    phase: Phase,
    jobs: int,
    timeout: float,
    root: Path,
    *,
    database: str = DATABASE,
    redis_url: str = REDIS_URL,
) -> Result:
    """One fresh system, ``jobs`` jobs until every one has ended; its measurements.
    ``database`` (created, then dropped) and ``redis_url`` (flushed) are the system's."""
    result = Result(phase.name, phase.pool, phase.turn_s)
    database_url = create_database(database)
    broker = Broker("redis", redis_url, redis_url)
    broker.flush()
    system = System(
        root / phase.name,
        broker,
        database_url,
        studio_env={**STUDIO_ENV, "STUDIO_TURN_S": f"{phase.turn_s:g}"},
        env_overrides=SETTINGS,
        commands={
            "pipeline": ["worker", "-Q", "pipeline"],
            "edit": ["worker", "-Q", "edit", "--pool", phase.pool, "-c", "1000"],
            "beat": ["beat"],
        },
    )
    try:
        with serve_photos(root / phase.name / "photos") as photos:
            system.start()
            sampler = MemorySampler({name: system.procs[name].process.pid for name in WORKERS})
            sampler.start()
            meter = CpuMeter(system)
            meter.start()
            print(f"[{phase.name}] system up (logs in {system.root / 'logs'})", flush=True)
            queues = redis.Redis.from_url(redis_url)
            started, started_epoch = time.monotonic(), time.time()
            result.submit_s = submit(system, photos.urls, jobs)
            print(f"[{phase.name}] submitted {jobs} in {result.submit_s:.1f} s", flush=True)
            while True:
                result.ended, result.succeeded, streams = progress(database_url)
                result.peak_streams = max(result.peak_streams, streams)
                waiting = backlog(queues)
                for queue, count in waiting.items():
                    result.peak_backlog[queue] = max(result.peak_backlog.get(queue, 0), count)
                elapsed = time.monotonic() - started
                if result.ended >= jobs:
                    break
                if elapsed > timeout:
                    result.timed_out = True
                    break
                if int(elapsed) % 5 == 0:
                    print(
                        f"  {elapsed:6.1f} s: {result.ended}/{jobs} ended,"
                        f" {streams} streaming; waiting: {waiting}",
                        flush=True,
                    )
                time.sleep(1.0)
            result.wall_s = time.monotonic() - started
            queues.close()
            result.cpu_s = meter.stop()
            sampler.stop()
            result.peak_rss_mb = round(sampler.peak_kb / 1024, 1)
            result.peak_edit_rss_mb = round(sampler.peak_edit_kb / 1024, 1)
            result.peak_edit_threads = sampler.peak_edit_threads
            result.retries = retries(database_url)
            sent = last_sent(database_url)
            if sent > 0:
                result.last_sent_s = round(sent - started_epoch, 2)
                result.tail_s = round(result.wall_s - result.last_sent_s - phase.turn_s, 2)
            result.log_errors = log_errors(system)
    finally:
        system.stop()
        broker.flush()
        drop_database(database)
    return result


def report(result: Result, jobs: int, ideal_s: float | None) -> None:
    """The human summary of one phase."""
    print()
    print(f"== {result.name}: edit pool {result.pool}, turns of {result.turn_s:g} s")
    print(
        f"jobs:         {jobs} ({result.ended} ended, {result.succeeded} succeeded,"
        f" {result.errors(jobs)} errors)"
    )
    if result.timed_out:
        print("TIMED OUT")
    ratio = f" = {result.wall_s / ideal_s:.2f} x the ideal {ideal_s:.1f} s" if ideal_s else ""
    print(f"wall:         {result.wall_s:.1f} s (submission {result.submit_s:.1f} s){ratio}")
    print(
        f"turns:        the last sent at {result.last_sent_s:.1f} s; the last job ended"
        f" {result.tail_s:.1f} s after that turn's end"
    )
    print(
        f"streams:      {result.peak_streams} open at once at the peak;"
        f" most messages waiting: {result.peak_backlog}"
    )
    print(
        f"memory:       {result.peak_rss_mb:.0f} MB peak RSS of the workers"
        f" (edit worker {result.peak_edit_rss_mb:.0f} MB, {result.peak_edit_threads} threads)"
    )
    print(f"retries:      {result.retries}; ERROR lines in logs: {result.log_errors}")
    print_cpu(result.cpu_s, result.wall_s)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000, help="jobs to run (default 1000)")
    parser.add_argument("--turn-s", type=float, default=60.0, help="each turn's length (60)")
    parser.add_argument(
        "--pools", default="threads,gevent", help="edit pools to measure (threads,gevent)"
    )
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="give up on a phase after so many seconds"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the logs' directory (kept anyway on errors)"
    )
    args = parser.parse_args()

    default_pool = POOLS["edit"][0]
    pools = [name for name in args.pools.split(",") if name]
    phases = [Phase("reference", default_pool, 0.0)]
    phases += [Phase(pool, pool, args.turn_s) for pool in pools]
    root = Path(tempfile.mkdtemp(prefix="reelyard-bench-inflight-"))
    results: list[Result] = []
    for phase in phases:
        results.append(run_phase(phase, args.jobs, args.timeout, root))
        ideal = results[0].wall_s + args.turn_s if phase.turn_s > 0 else None
        report(results[-1], args.jobs, ideal)
    if args.keep or any(result.timed_out or result.errors(args.jobs) for result in results):
        print(f"logs kept in {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)

    ideal_s = results[0].wall_s + args.turn_s
    measured = {result.pool: result for result in results[1:]}
    chosen = measured.get(default_pool) or results[-1]
    result_json = {
        "jobs": args.jobs,
        "ideal_s": round(ideal_s, 2),
        "wall_s": round(chosen.wall_s, 2),
        "ratio_to_ideal": round(chosen.wall_s / ideal_s, 3),
        "peak_rss_mb": chosen.peak_rss_mb,
        "errors": chosen.errors(args.jobs),
        "pool": chosen.pool,
        "turn_s": args.turn_s,
        "reference_wall_s": round(results[0].wall_s, 2),
        "peak_edit_rss_mb": chosen.peak_edit_rss_mb,
        "peak_streams": chosen.peak_streams,
        "cpu_s": chosen.cpu_s,
        "pools": {
            pool: {
                "wall_s": round(result.wall_s, 2),
                "ratio_to_ideal": round(result.wall_s / ideal_s, 3),
                "last_sent_s": result.last_sent_s,
                "tail_s": result.tail_s,
                "peak_rss_mb": result.peak_rss_mb,
                "peak_edit_rss_mb": result.peak_edit_rss_mb,
                "peak_edit_threads": result.peak_edit_threads,
                "peak_streams": result.peak_streams,
                "peak_backlog": result.peak_backlog,
                "errors": result.errors(args.jobs),
                "cpu_s": result.cpu_s,
            }
            for pool, result in measured.items()
        },
        "reference": asdict(results[0]),
    }
    print(json.dumps(result_json))
    return 1 if any(result.timed_out for result in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
