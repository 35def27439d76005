"""``make bench-pipeline``: end-to-end jobs per second through the whole pipeline.

Issue 7, must-show 5(a). Real processes on loopback, as the end-to-end harness
(``tests/e2e/system.py``) runs them, each in a session of its own with its output in a
file: the studio in no-render mode at time scale 0, the API (one gunicorn worker), a
worker for the ``pipeline`` queue (default pool), one for ``edit`` (``-c 200``) and
beat. The database ``reelyard_bench_pipeline`` is created fresh, migrated with
``reelyard migrate`` and dropped at the end; the broker is Redis database 10, flushed
before and after. Three generated JPEGs are served by a loopback HTTP server.

``--jobs`` jobs (2,000 by default) are submitted through ``POST /v1/batches``, 100 per
batch; the clock runs from the first submission until every job is terminal, which
is read from the database with one COUNT query per second. The CPU time of each
process is read from ``ps`` at the end, to show where the time went.

Prints a human summary, then one JSON line:
``{"jobs", "jobs_per_s", "errors", ...}`` (``errors``: jobs not ``succeeded``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psycopg
import redis
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.workers.pipeline_fixtures import make_photos  # noqa: E402

ADMIN_URL = os.environ.get(
    "REELYARD_BENCH_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("REELYARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/10")
DATABASE = "reelyard_bench_pipeline"
BATCH_SIZE = 100
STUDIO_READY = "studio listening on "
PROMPT = "A calm slideshow of the garden, one photo after another, with soft music."
SPEC = {"aspect_ratio": "16:9", "resolution": "720p", "duration_s": 3}
#: the worker processes, and the command each runs (after ``reelyard.cli``)
WORKERS: dict[str, list[str]] = {
    "pipeline": ["worker", "-Q", "pipeline"] + os.environ.get("BENCH_PIPELINE_ARGS", "").split(),
    "edit": ["worker", "-Q", "edit", "-c", "200"],
    "beat": ["beat"],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def admin_execute(statement: sql.Composed) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(statement)


def drop_database() -> None:
    admin_execute(
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE))
    )


def flush_redis() -> None:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    finally:
        client.close()


class Photos:
    """Three generated JPEGs on a loopback HTTP server, in a thread."""

    def __init__(self, directory: Path) -> None:
        self.names = make_photos(directory)
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        port = self.server.server_address[1]
        self.urls = [f"http://127.0.0.1:{port}/{name}" for name in self.names]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class System:
    """The processes of the benchmark; every one stopped (process group) by :meth:`stop`."""

    def __init__(self, root: Path, database_url: str) -> None:
        self.root = root
        self.database_url = database_url
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self.studio_url = ""
        self.api_url = ""

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "REELYARD_DATABASE_URL": self.database_url,
            "REELYARD_BROKER_URL": REDIS_URL,
            "REELYARD_REDIS_URL": REDIS_URL,
            "REELYARD_DATA_DIR": str(self.root / "data"),
            "REELYARD_STORAGE_DIR": str(self.root / "data" / "videos"),
            "REELYARD_TIME_SCALE": "0",
            "REELYARD_RENDER_POLL_S": "1",
            "REELYARD_ALLOW_PRIVATE_URLS": "1",
            "REELYARD_PUBLIC_URL": self.api_url,
            "REELYARD_RATE_LIMIT": "100000/second",
            "NEMO_API_BASE": self.studio_url,
        }

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "reelyard.cli", *args],
            check=False,
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"reelyard {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout.strip()

    def spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        log = self.root / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "reelyard.cli", *args],
                env={**self.env, **(env or {})},
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.logs[name] = log

    def output(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace") if name in self.logs else ""

    def wait_log(self, name: str, marker: str, timeout_s: float = 60.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise RuntimeError(f"{name} exited:\n{self.output(name)[-4000:]}")
            for line in self.output(name).splitlines():
                if marker in line:
                    return line
            time.sleep(0.1)
        raise RuntimeError(f"{name} did not log {marker!r} within {timeout_s} s")

    def start(self) -> str:
        """Start everything; the API key."""
        self.spawn(
            "studio",
            ["studio", "--port", "0"],
            {
                "STUDIO_DATA_DIR": str(self.root / "studio"),
                "STUDIO_RENDER_MODE": "none",
                "STUDIO_TIME_SCALE": "0",
                "STUDIO_FREE_CREDITS": "100000000",
                "STUDIO_ALLOW_PRIVATE_URLS": "1",
                "STUDIO_SEED": "1234",
            },
        )
        line = self.wait_log("studio", STUDIO_READY)
        self.studio_url = line.split(STUDIO_READY, 1)[1].strip()
        self.cli("migrate")
        tenant = self.cli("tenants", "create", "Bench").splitlines()[-1]
        key = self.cli("keys", "create", tenant).splitlines()[-1]
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        self.spawn("api", ["api", "--port", str(port), "--workers", "1"])
        deadline = time.monotonic() + 60
        while True:
            if self.procs["api"].poll() is not None:
                raise RuntimeError(f"api exited:\n{self.output('api')[-4000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.api_url}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the API was not ready within 60 s")
            time.sleep(0.1)
        for name, args in WORKERS.items():
            self.spawn(name, args)
        for name in WORKERS:
            self.wait_log(name, "ready." if name != "beat" else "beat: Starting")
        return key

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds (user + system) of each process group, from ``ps``."""
        done = subprocess.run(
            [shutil.which("ps") or "/bin/ps", "-e", "-o", "pgid=,cputimes="],
            capture_output=True,
            text=True,
            check=False,
        )
        totals: dict[int, float] = {}
        for line in done.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
                totals[int(parts[0])] = totals.get(int(parts[0]), 0.0) + float(parts[1])
        return {name: totals.get(proc.pid, 0.0) for name, proc in self.procs.items()}

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # children that outlived their parent


def counts(database_url: str) -> tuple[int, int]:
    """(terminal jobs, succeeded jobs), in one COUNT query."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status IN ('succeeded', 'failed', 'canceled')),"
            " count(*) FILTER (WHERE status = 'succeeded') FROM jobs"
        ).fetchone()
    return (int(row[0]), int(row[1])) if row is not None else (0, 0)


def submit(system: System, key: str, urls: list[str], jobs: int) -> float:
    """Post the jobs in batches of 100; the seconds it took."""
    spec = {"images": urls, "prompt": PROMPT, "options": SPEC}
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=system.api_url, headers=headers, timeout=120) as client:
        left = jobs
        while left > 0:
            size = min(BATCH_SIZE, left)
            response = client.post("/v1/batches", json={"jobs": [spec] * size})
            if response.status_code not in (200, 201, 202):
                raise RuntimeError(f"POST /v1/batches: {response.status_code} {response.text}")
            left -= size
    return time.monotonic() - started


def report(
    jobs: int,
    *,
    timeout: float,
    terminal: int,
    succeeded: int,
    wall_s: float,
    submit_s: float,
    cpu: dict[str, float],
    timed_out: bool,
) -> None:
    """The human summary."""
    jobs_per_s = terminal / wall_s if wall_s > 0 else 0.0
    print()
    print(f"jobs:       {jobs} ({succeeded} succeeded, {terminal - succeeded} failed/canceled)")
    if timed_out:
        print(f"TIMED OUT after {timeout:.0f} s with {terminal} terminal")
    print(f"wall:       {wall_s:.1f} s (submission {submit_s:.1f} s)")
    print(f"throughput: {jobs_per_s:.1f} jobs/s (target >= 30)")
    print("CPU seconds during the run, per process group:")
    for name, seconds in sorted(cpu.items(), key=lambda item: -item[1]):
        share = 100 * seconds / wall_s if wall_s > 0 else 0.0
        print(f"  {name:9s} {seconds:7.1f} s  ({share:5.1f}% of one core)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs to run (default 2000)")
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="give up after this many seconds"
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs' directory")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="reelyard-bench-pipeline-"))
    drop_database()
    admin_execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    database_url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{DATABASE}"
    flush_redis()
    photos = Photos(root / "photos")
    system = System(root, database_url)
    try:
        key = system.start()
        cpu_before = system.cpu_seconds()
        print(f"system up (logs in {root / 'logs'}); submitting {args.jobs} jobs", flush=True)
        started = time.monotonic()
        submit_s = submit(system, key, photos.urls, args.jobs)
        print(f"submitted in {submit_s:.1f} s", flush=True)
        terminal = succeeded = 0
        timed_out = False
        while True:
            terminal, succeeded = counts(database_url)
            elapsed = time.monotonic() - started
            if terminal >= args.jobs:
                break
            if elapsed > args.timeout:
                timed_out = True
                break
            print(f"  {elapsed:6.1f} s: {terminal}/{args.jobs} terminal", flush=True)
            time.sleep(1.0)
        wall_s = time.monotonic() - started
        cpu_after = system.cpu_seconds()
        cpu = {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after}
    finally:
        system.stop()
        photos.close()
        flush_redis()
        drop_database()

    report(
        args.jobs,
        timeout=args.timeout,
        terminal=terminal,
        succeeded=succeeded,
        wall_s=wall_s,
        submit_s=submit_s,
        cpu=cpu,
        timed_out=timed_out,
    )
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    jobs_per_s = terminal / wall_s if wall_s > 0 else 0.0
    result = {
        "jobs": args.jobs,
        "jobs_per_s": round(jobs_per_s, 2),
        "errors": args.jobs - succeeded,
        "wall_s": round(wall_s, 2),
        "submit_s": round(submit_s, 2),
        "succeeded": succeeded,
        "terminal": terminal,
        "cpu_s": {name: round(seconds, 1) for name, seconds in cpu.items()},
    }
    print(json.dumps(result))
    return 0 if not timed_out else 1


if __name__ == "__main__":
    raise SystemExit(main())
