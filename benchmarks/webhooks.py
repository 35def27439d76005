"""``make bench-webhooks``: webhook deliveries per second from one worker host.

Issue 8, must-show 5. Real ``reelyard worker -Q webhooks`` processes (each its default
pool: 50 threads), started by the end-to-end tests' launcher (``tests/e2e/system.py``)
on a fresh database ``reelyard_bench_webhooks`` (migrated, dropped at the end) and Redis database 12
(flushed before and after). The receiver runs in this process: an asyncio HTTP server
on loopback that reads each request, keeps one in ``--sample-every`` for
verification, and answers 200, keeping the connection open unless the request asks
to close it (delivery keeps one pool of connections per receiver).

``--messages`` messages (5,000 by default) are committed first as outbox events of
one tenant with ``--endpoints`` endpoints (10 by default, so 500 events: a receiver's
traffic, not one slow URL, which the per-endpoint limit would rightly cap); the clock runs from the
one ``reelyard.webhooks.dispatch`` this sends (fan-out included) until every message
is delivered, read from the database twice a second; ``after_fan_out_per_s`` is the
rate from the first reading that found every message fanned out to the end. The
sample is verified with the official ``standardwebhooks`` package after the run.

Two runs side by side: one worker process, then one per core, the way a worker host
runs them (a process's delivery loops share one GIL: docs/operations.md). The JSON's
headline figures are the last run's, with each run's rate and the ratio between them.

Prints a human summary, then one JSON line:
``{"deliveries", "deliveries_per_s", "errors", ...}`` (``errors``: messages not
delivered, plus sampled requests that did not verify, plus malformed requests).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from standardwebhooks.webhooks import Webhook

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness import CpuMeter, print_cpu, transactions  # noqa: E402

from models.access import create_tenant  # noqa: E402
from models.db import make_engine, make_session_factory  # noqa: E402
from models.jobs import JobStatus, finish_job, queue_jobs  # noqa: E402
from models.outbox import OutboxType  # noqa: E402
from models.webhooks import create_endpoint  # noqa: E402
from reelyard.settings import Settings  # noqa: E402
from tests.e2e.system import Broker, System, create_database, drop_database  # noqa: E402
from workers.app import WEBHOOKS_DISPATCH_TASK, create_celery, send_now  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/12"
DATABASE = "reelyard_bench_webhooks"
#: reelyard's settings where the launcher's (tests') differ from production's
SETTINGS = {"REELYARD_TIME_SCALE": "1", "REELYARD_WEBHOOK_SWEEP_EVERY_S": "5"}
_KEEP = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


@dataclass
class Receiver:
    """Counts requests and keeps a sample (headers, body) to verify afterwards."""

    sample_every: int
    count: int = 0
    malformed: int = 0
    sample: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Requests on one connection, kept alive until the sender closes it or asks to."""
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as eof:
                    if eof.partial:
                        self.malformed += 1
                    return
                lines = head.decode("latin-1").split("\r\n")[1:]
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in lines if line)
                }
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.count += 1
                if self.count % self.sample_every == 1:
                    self.sample.append((headers, body))
                close = headers.get("connection", "").lower() == "close"
                writer.write(_CLOSE if close else _KEEP)
                await writer.drain()
                if close:
                    return
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            self.malformed += 1
        except ConnectionError:
            return
        finally:
            writer.close()

    def serve(self, ready: threading.Event) -> None:
        async def run() -> None:
            server = await asyncio.start_server(self.handle, "127.0.0.1", 0, backlog=1024)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            async with server:
                await server.serve_forever()

        asyncio.run(run())


def prepare(database_url: str, receiver_url: str, messages: int, endpoints: int) -> list[str]:
    """A tenant, its endpoints, one ended job and ``messages`` undispatched events of
    it, committed; the endpoints' secrets."""
    engine = make_engine(database_url, pool_size=1)
    try:
        with make_session_factory(engine)() as session:
            tenant = create_tenant(session, "Bench")
            secrets = []
            per = -(-messages // endpoints)
            for index in range(endpoints):
                endpoint = create_endpoint(session, tenant.id, url=f"{receiver_url}/{index}")
                secrets.append(endpoint.secret)
            row = queue_jobs(
                session,
                tenant.id,
                [
                    {
                        "images": ["https://photos.example.com/a.jpg"],
                        "prompt": "A calm slideshow of the garden.",
                        "options": {},
                        "metadata": {"bench": "webhooks"},
                        "webhook_url": None,
                    }
                ],
            )[0]
            finish_job(session, str(row["id"]), JobStatus.CANCELED)
            session.commit()
        # each endpoint wants every type, so one event makes ``endpoints`` messages
        events = per
        with psycopg.connect(database_url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(
                "INSERT INTO outbox_events (id, tenant_id, type, job_id, created_at)"
                " SELECT 'evt_bench_' || n, %s, %s, %s, now() FROM generate_series(2, %s) n",
                (tenant.id, OutboxType.JOB_CANCELED.value, str(row["id"]), events),
            )
        return secrets
    finally:
        engine.dispose()


def delivered(database_url: str) -> tuple[int, int, int]:
    """(messages, delivered, failed)."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=5) as conn:
        found = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'delivered'),"
            " count(*) FILTER (WHERE status = 'failed') FROM webhook_messages"
        ).fetchone()
    return (int(found[0]), int(found[1]), int(found[2])) if found is not None else (0, 0, 0)


def verify(sample: list[tuple[dict[str, str], bytes]], secrets: list[str]) -> int:
    """Sampled requests that no endpoint secret verifies."""
    hooks = [Webhook(secret) for secret in secrets]
    bad = 0
    for headers, body in sample:
        for hook in hooks:
            try:
                hook.verify(body, headers)
                break
            except Exception:  # noqa: BLE001, S112 (the library raises its own on a bad one)
                continue
        else:
            bad += 1
    return bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000, help="messages (default 5000)")
    parser.add_argument("--endpoints", type=int, default=10, help="endpoints (default 10)")
    parser.add_argument("--worker-args", default="", help="more options of the worker")
    parser.add_argument(
        "--processes",
        default=f"1,{os.cpu_count() or 1}",
        help="worker processes on the host, one run for each count in this list "
        "(default: 1, then one per core; the last is the host's result)",
    )
    parser.add_argument("--sample-every", type=int, default=50, help="verify one in N")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--keep", action="store_true", help="keep the logs' directory")
    args = parser.parse_args()
    counts = [int(part) for part in args.processes.split(",") if part.strip()]
    runs = [run(args, count) for count in counts]
    last = runs[-1]
    result = {
        **last,
        "errors": sum(r["errors"] for r in runs),
        "runs": [
            {key: r[key] for key in ("processes", "deliveries_per_s", "after_fan_out_per_s")}
            for r in runs
        ],
        "ratio_to_one_process": round(last["deliveries_per_s"] / runs[0]["deliveries_per_s"], 2)
        if runs[0]["deliveries_per_s"]
        else None,
    }
    print()
    for r in runs:
        print(f"{r['processes']} process(es): {r['deliveries_per_s']:.0f} deliveries/s")
    print(json.dumps(result))
    return 1 if any(r["timed_out"] for r in runs) else 0


def run(args: argparse.Namespace, processes: int) -> dict[str, Any]:  # noqa: PLR0915
    """One run with ``processes`` worker processes; its results."""
    root = Path(tempfile.mkdtemp(prefix="reelyard-bench-webhooks-"))
    broker = Broker("redis", REDIS_URL, REDIS_URL)
    broker.flush()
    receiver = Receiver(args.sample_every)
    ready = threading.Event()
    threading.Thread(target=receiver.serve, args=(ready,), daemon=True).start()
    ready.wait(10)
    database_url = create_database(DATABASE)
    system = System(
        root,
        broker,
        database_url,
        env_overrides=SETTINGS,
        commands={
            f"webhooks{index or ''}": [
                "worker",
                "-Q",
                "webhooks",
                "-n",
                f"webhooks{index}@%h",
                *args.worker_args.split(),
            ]
            for index in range(processes)
        },
    )
    timed_out = False
    try:
        system.cli("migrate")
        secrets = prepare(
            database_url,
            f"http://127.0.0.1:{receiver.port}/hook",
            args.messages,
            args.endpoints,
        )
        for name in system.commands:
            system.start_worker(name)
        settings = Settings(broker_url=REDIS_URL, redis_url=REDIS_URL)
        app = create_celery(settings)
        meter = CpuMeter(system)
        meter.start()
        commits_before = transactions(database_url)
        print(f"worker up (logs in {root / 'logs'}); dispatching", flush=True)
        started = time.monotonic()
        send_now(app, WEBHOOKS_DISPATCH_TASK, ())
        fanned_out: tuple[float, int] | None = None  # (when, delivered then)
        while True:
            total, done, failed = delivered(database_url)
            elapsed = time.monotonic() - started
            if fanned_out is None and total >= args.messages:
                fanned_out = (elapsed, done)
            if total >= args.messages and done + failed >= total:
                break
            if elapsed > args.timeout:
                timed_out = True
                break
            print(f"  {elapsed:6.1f} s: {done}/{total} delivered", flush=True)
            time.sleep(0.5)
        wall_s = time.monotonic() - started
        cpu = meter.stop()
        time.sleep(1.0)
        commits = transactions(database_url) - commits_before
    finally:
        system.stop()
        broker.flush()
        drop_database(DATABASE)
    bad = verify(receiver.sample, secrets)
    rate = done / wall_s if wall_s > 0 else 0.0
    since, before = fanned_out or (0.0, 0)
    steady = (done - before) / (wall_s - since) if wall_s > since else 0.0
    print()
    print(f"messages:   {total} to {args.endpoints} endpoints; {done} delivered, {failed} failed")
    print(f"receiver:   {receiver.count} requests, {receiver.malformed} malformed")
    print(f"verified:   {len(receiver.sample) - bad}/{len(receiver.sample)} sampled signatures")
    print(f"wall:       {wall_s:.1f} s (fan-out included)")
    print(f"throughput: {rate:.0f} deliveries/s (target >= 500)")
    print(f"            {steady:.0f} deliveries/s once every message was fanned out")
    print(f"commits:    {commits / max(done, 1):.1f} transactions per delivery")
    print_cpu(cpu, wall_s)
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    result = {
        "deliveries": done,
        "deliveries_per_s": round(rate, 1),
        "errors": (total - done) + bad + receiver.malformed,
        "messages": total,
        "endpoints": args.endpoints,
        "wall_s": round(wall_s, 2),
        "after_fan_out_per_s": round(steady, 1),
        "processes": processes,
        "requests": receiver.count,
        "sampled": len(receiver.sample),
        "cpu_s": cpu,
        "commits_per_delivery": round(commits / max(done, 1), 1),
    }
    result["timed_out"] = timed_out
    return result


if __name__ == "__main__":
    raise SystemExit(main())
