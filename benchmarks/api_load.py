"""``make bench-api``: accepted jobs per second and latency of ``POST /v1/jobs``.

The API runs as in production (``reelyard api``: gunicorn with the production
worker settings of ``api/commands.py``) against a PostgreSQL database of its own
(created, migrated and dropped here) and a Redis database of its own as broker and
rate-limit store. A load generator in another process posts valid jobs over
loopback with keep-alive connections for a bounded time, each connection one
request at a time (a closed loop of ``--connections`` callers), after a warm-up.
The load generator is wrk where it is installed (``apt-get install wrk``: written in
C, it leaves the two cores to the API, as the issue's own calibration did), else a
Python one (``--loader python``), which takes a share of the CPU itself.

The benchmark's tenant carries its own rate limit (``tenants.rate_limit``), as a
high-volume platform's would; everything else is the service's defaults.

Prints the details, then one JSON line:
``{"jobs_per_s", "p50_ms", "p99_ms", "errors", ...}``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import redis
from psycopg import sql

from workers.app import PIPELINE_QUEUE

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ADMIN_URL = os.environ.get(
    "REELYARD_BENCH_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("REELYARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/9")
DATABASE = "reelyard_bench_api"

BODY = json.dumps(
    {
        "images": [f"https://photos.example.com/{n}.jpg" for n in range(5)],
        "prompt": "A warm, slow slideshow of the beach house, with calm music.",
        "options": {"aspect_ratio": "9:16", "resolution": "1080p", "duration_s": 20},
        "metadata": {"campaign": "summer", "customer": "c-42"},
    }
).encode()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _prepare() -> tuple[str, str]:
    """A fresh, migrated database and a tenant's key."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE))
        )
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{DATABASE}"
    from migrations import upgrade  # noqa: PLC0415
    from models.access import create_tenant, issue_key  # noqa: PLC0415
    from models.db import make_engine, make_session_factory  # noqa: PLC0415

    upgrade(url)
    engine = make_engine(url, pool_size=1)
    with make_session_factory(engine)() as session:
        tenant = create_tenant(session, "bench", rate_limit="100000/second")
        key = issue_key(session, tenant.id).key
        session.commit()
    engine.dispose()
    return url, key


def _count_jobs(url: str) -> int:
    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT count(*) FROM jobs").fetchone()
    return int(row[0]) if row else 0


def _drop() -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE))
        )


def _wait_ready(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                connection.close()
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the API did not become ready on port {port}")


def _caller(
    port: int, key: str, stop_at: float, record_from: float, out: list[tuple[float, int]]
) -> None:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    while True:
        started = time.perf_counter()
        if started >= stop_at:
            break
        try:
            connection.request("POST", "/v1/jobs", body=BODY, headers=headers)
            response = connection.getresponse()
            response.read()
            status = response.status
        except OSError:
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            status = 0
        if started >= record_from:
            out.append((time.perf_counter() - started, status))
    connection.close()


def _load(
    target: tuple[int, str],
    plan: tuple[int, float, float],
    queue: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    """The load generator's process: ``connections`` closed-loop callers."""
    (port, key), (connections, warmup_s, duration_s) = target, plan
    now = time.perf_counter()
    record_from, stop_at = now + warmup_s, now + warmup_s + duration_s
    results: list[tuple[float, int]] = []
    threads = [
        threading.Thread(target=_caller, args=(port, key, stop_at, record_from, results))
        for _ in range(connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put(results)


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
"""
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk(port: int, key: str, args: argparse.Namespace) -> tuple[int, int, float, float]:
    """Run wrk (a warm-up, then the measured run): accepted, errors, p50 and p99 in ms."""
    script = Path(tempfile.mkdtemp(prefix="reelyard-wrk-")) / "post.lua"
    script.write_text(WRK_SCRIPT.format(body=json.dumps(BODY.decode()), key=key))
    url = f"http://127.0.0.1:{port}/v1/jobs"
    base = ["wrk", "-t", "2", "-c", str(args.connections), "-s", str(script), "--latency"]
    subprocess.run([*base, "-d", f"{args.warmup:g}s", url], capture_output=True, check=True)
    done = subprocess.run(
        [*base, "-d", f"{args.duration:g}s", url], capture_output=True, text=True, check=True
    )
    output = done.stdout
    total = int(re.search(r"(\d+) requests in", output)[1])  # type: ignore[index]
    failed = int((re.search(r"Non-2xx or 3xx responses: (\d+)", output) or [0, 0])[1])
    socket_errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    percentiles = {
        share: float(value) * _UNITS[unit]
        for share, value, unit in re.findall(
            r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)", output, re.M
        )
    }
    shutil.rmtree(script.parent)
    return total - failed, failed + socket_errors, percentiles["50"], percentiles["99"]


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run(args: argparse.Namespace) -> dict[str, object]:
    database_url, key = _prepare()
    broker = redis.Redis.from_url(REDIS_URL)
    broker.flushdb()
    port = _free_port()
    env = {
        **os.environ,
        "REELYARD_DATABASE_URL": database_url,
        "REELYARD_BROKER_URL": REDIS_URL,
        "REELYARD_REDIS_URL": REDIS_URL,
    }
    command = [
        sys.executable,
        "-c",
        "import sys; from api.commands import api_command; api_command(sys.argv[1:])",
        "--port",
        str(port),
        "--workers",
        str(args.workers),
        "--threads",
        str(args.threads),
        "--worker-class",
        args.worker_class,
    ]
    server = subprocess.Popen(command, env=env, cwd=ROOT, start_new_session=True)
    try:
        _wait_ready(port)
        if args.loader == "wrk":
            accepted_n, errors_n, p50, p99 = _wrk(port, key, args)
            results = None
        else:
            context = multiprocessing.get_context("spawn")
            queue = context.Queue()
            loader = context.Process(
                target=_load,
                args=((port, key), (args.connections, args.warmup, args.duration), queue),
            )
            loader.start()
            results = queue.get(timeout=args.warmup + args.duration + 60)
            loader.join()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        queued = broker.llen(PIPELINE_QUEUE)
        stored = _count_jobs(database_url)
        broker.flushdb()
        broker.close()
        _drop()
    if results is not None:
        accepted_n = sum(1 for _latency, status in results if status == 202)
        errors_n = len(results) - accepted_n
        latencies = [latency * 1000 for latency, _status in results]
        p50 = _percentile(latencies, 0.50) if latencies else float("nan")
        p99 = _percentile(latencies, 0.99) if latencies else float("nan")
    errors = errors_n
    summary: dict[str, object] = {
        "jobs_per_s": round(accepted_n / args.duration, 1),
        "p50_ms": round(p50, 2),
        "p99_ms": round(p99, 2),
        "errors": errors,
        "loader": args.loader,
        "worker_class": args.worker_class,
        "workers": args.workers,
        "threads": args.threads,
        "connections": args.connections,
        "duration_s": args.duration,
        "stored": stored,
        "enqueued": queued,
        "cores": os.cpu_count(),
    }
    print(
        f"{summary['worker_class']} x{args.workers} ({args.threads} threads), "
        f"{args.connections} connections, {args.duration:.0f} s: "
        f"{summary['jobs_per_s']} jobs/s accepted, p50 {summary['p50_ms']} ms, "
        f"p99 {summary['p99_ms']} ms, {errors} errors, {queued} tasks enqueued"
    )
    return summary


def main() -> None:
    from api.commands import THREADS, WORKER_CLASS  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--threads", type=int, default=THREADS)
    parser.add_argument("--worker-class", default=WORKER_CLASS, choices=["sync", "gthread"])
    parser.add_argument(
        "--loader",
        choices=["wrk", "python"],
        default="wrk" if shutil.which("wrk") else "python",
        help="the load generator (wrk where installed)",
    )
    args = parser.parse_args()
    summary = run(args)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
