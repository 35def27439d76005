"""What the end-to-end benchmarks share: submitting jobs and counting CPU.

The system itself is started by the end-to-end tests' launcher
(``tests/e2e/system.py``); this module submits the same jobs to it in batches and
reads where the CPU went: per process group of the system (from ``/proc``), for
PostgreSQL and Redis by process name, and for the whole machine (``/proc/stat``),
so that what is left (the benchmark itself, its photo server, the kernel, other
tenants of the machine) shows as ``other``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.e2e.system import System

BATCH_SIZE = 100
PROMPT = "A calm slideshow of the garden, one photo after another, with soft music."
SPEC: dict[str, Any] = {"aspect_ratio": "16:9", "resolution": "720p", "duration_s": 3}
#: the studio: no rendering, no simulated delays, credits for every job
STUDIO_ENV = {
    "STUDIO_RENDER_MODE": "none",
    "STUDIO_TIME_SCALE": "0",
    "STUDIO_FREE_CREDITS": "100000000",
}
#: reelyard's settings where the end-to-end tests' differ from production's: no waits
#: (render polls at once), leases of 60 s and a reconciler sweep every 30 s (production:
#: 120 s and 5 s)
SETTINGS = {
    "REELYARD_TIME_SCALE": "0",
    "REELYARD_RENDER_POLL_S": "1",
    "REELYARD_LEASE_S": "60",
    "REELYARD_RECONCILE_EVERY_S": "30",
}
#: servers outside the system whose CPU is counted by process name
SERVERS = {"postgres": "postgres", "redis-server": "redis"}


def job_spec(urls: list[str]) -> dict[str, Any]:
    """The body of one benchmark job (``POST /v1/jobs``, or one of a batch's jobs)."""
    return {"images": urls, "prompt": PROMPT, "options": SPEC}


def submit(system: System, urls: list[str], jobs: int) -> float:
    """Post ``jobs`` jobs through ``POST /v1/batches``, 100 at a time; the seconds it took."""
    spec = job_spec(urls)
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {system.key}"}
    with httpx.Client(base_url=system.api_url, headers=headers, timeout=120) as client:
        left = jobs
        while left > 0:
            size = min(BATCH_SIZE, left)
            response = client.post("/v1/batches", json={"jobs": [spec] * size})
            if response.status_code not in (200, 201, 202):
                raise RuntimeError(f"POST /v1/batches: {response.status_code} {response.text}")
            left -= size
    return time.monotonic() - started


def cpu_seconds(system: System) -> dict[str, float]:
    """CPU seconds (user + system) of each process group of the system, from
    ``/proc/<pid>/stat``, and of PostgreSQL and Redis (by name). Of PostgreSQL, the
    server's own processes and the backends of the system's database count; other
    databases' backends (another test run on the same server) do not, nor do
    connections that closed during the run (the system's pool keeps its own open)."""
    groups = {proc.process.pid: name for name, proc in system.procs.items()}
    database = system.database_url.rsplit("/", 1)[-1]
    totals = dict.fromkeys([*system.procs, *SERVERS.values()], 0.0)
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            command, rest = stat.read_text().rsplit(")", 1)
            server = SERVERS.get(command.split("(", 1)[-1])
            if server == "postgres" and not _ours(stat.with_name("cmdline"), database):
                continue
        except (OSError, ValueError):
            continue  # the process ended meanwhile
        fields = rest.split()  # after the command name, which is in parentheses
        own = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
        name = server or groups.get(int(fields[2]))  # pgrp
        if name is not None:
            totals[name] += own
    return totals


def _ours(cmdline: Path, database: str) -> bool:
    """Whether a PostgreSQL process is the server's own or a backend of ``database``
    (a backend's title is ``postgres: <cluster>: <user> <database> <client> …``)."""
    title = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace").split()
    if len(title) < 4 or not title[0].startswith("postgres:") or "(" not in " ".join(title):
        return True  # the postmaster, checkpointer, WAL writer…
    return title[3] == database


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine has been busy (every core, from /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system_, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system_ + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds spent between :meth:`start` and :meth:`stop`, by process group,
    PostgreSQL, Redis and ``other`` (the rest of the machine)."""

    def __init__(self, system: System) -> None:
        self.system = system
        self._groups: dict[str, float] = {}
        self._machine = 0.0

    def start(self) -> None:
        self._groups = cpu_seconds(self.system)
        self._machine = machine_cpu_seconds()

    def stop(self) -> dict[str, float]:
        after = cpu_seconds(self.system)
        spent = {name: after[name] - self._groups.get(name, 0.0) for name in after}
        spent["other"] = machine_cpu_seconds() - self._machine - sum(spent.values())
        return {name: round(seconds, 1) for name, seconds in spent.items()}


def transactions(database_url: str) -> int:
    """Transactions committed in the benchmark's database so far (pg_stat_database)."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row is not None else 0


def print_cpu(cpu: dict[str, float], wall_s: float) -> None:
    print("CPU seconds during the run:")
    for name, seconds in sorted(cpu.items(), key=lambda item: -item[1]):
        share = 100 * seconds / wall_s if wall_s > 0 else 0.0
        print(f"  {name:9s} {seconds:7.1f} s  ({share:5.1f}% of one core)")
