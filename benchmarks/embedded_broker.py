"""``make bench-broker``: the standalone mode's broker, kombu's filesystem transport,
against the other embedded candidate, kombu's SQLAlchemy transport on SQLite.

Both side by side in one run, through ``workers.app.transport_options`` (the options
the standalone's workers use): ``--messages`` messages published by this process
while ``--consumers`` processes consume them from one queue, each as a Celery worker's
consumer does (``SimpleQueue.get``, ack). A second phase repeats it while another
process writes to an SQLite database in a loop, as the pipeline does in the standalone
mode, where the SQLAlchemy transport would share the database's single writer.

Reports messages/s end to end, each message's latency (publish to receipt, p50/p99),
and messages delivered twice or lost; ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kombu import Connection

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workers.app import transport_options  # noqa: E402

QUEUE = "bench"


def connection(kind: str, root: Path) -> Connection:
    if kind == "filesystem":
        url = f"filesystem://{root / 'broker'}"
        return Connection(url, transport_options=transport_options(url))
    return Connection(f"sqla+sqlite:///{root / 'broker.db'}")


def consume(kind: str, root: str, expected: int, results: Any, stop: Any) -> None:
    received: list[tuple[int, float]] = []
    with connection(kind, Path(root)) as conn:
        queue = conn.SimpleQueue(QUEUE)
        while not stop.is_set():
            try:
                message = queue.get(timeout=0.2)
            except queue.Empty:
                continue
            received.append((message.payload["n"], time.time() - message.payload["at"]))
            message.ack()
        queue.close()
    results.put(received)


def write_sqlite(root: str, stop: Any) -> None:
    """Another writer on an SQLite file next to the broker's: the pipeline's share."""
    db = sqlite3.connect(Path(root) / "reelyard.db", timeout=30)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER)")
    while not stop.is_set():
        db.execute("INSERT INTO t VALUES (1)")
        db.commit()


def run(kind: str, messages: int, consumers: int, *, busy: bool) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix=f"bench-broker-{kind}-"))
    if kind == "sqlalchemy":  # the transport makes its tables on first use
        with connection(kind, root) as conn:
            conn.SimpleQueue(QUEUE).close()
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    stop = context.Event()
    procs = [
        context.Process(target=consume, args=(kind, str(root), messages, results, stop))
        for _ in range(consumers)
    ]
    if busy:
        procs.append(context.Process(target=write_sqlite, args=(str(root), stop)))
    for proc in procs:
        proc.start()
    time.sleep(2.0)  # the consumers connect
    started = time.monotonic()
    with connection(kind, root) as conn:
        queue = conn.SimpleQueue(QUEUE)
        for n in range(messages):
            queue.put({"n": n, "at": time.time()})
        queue.close()
    published_s = time.monotonic() - started
    # wait for the queue to drain: the consumers report at stop
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with connection(kind, root) as conn:
            left = conn.SimpleQueue(QUEUE).qsize()
        if not left:
            break
        time.sleep(0.1)
    time.sleep(1.0)  # the last ones being acked
    wall_s = time.monotonic() - started
    stop.set()
    received: list[tuple[int, float]] = []
    for _ in range(consumers):
        received += results.get(timeout=30)
    for proc in procs:
        proc.join(timeout=30)
    seen = [n for n, _ in received]
    latencies = sorted(latency for _, latency in received)
    return {
        "transport": kind,
        "busy_sqlite_writer": busy,
        "messages": messages,
        "received": len(received),
        "duplicates": len(seen) - len(set(seen)),
        "lost": messages - len(set(seen)),
        "publish_per_s": round(messages / published_s, 1),
        "end_to_end_per_s": round(len(set(seen)) / wall_s, 1),
        "latency_p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "latency_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1)
        if latencies
        else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--consumers", type=int, default=3)
    args = parser.parse_args()
    rows = [
        run(kind, args.messages, args.consumers, busy=busy)
        for busy in (False, True)
        for kind in ("filesystem", "sqlalchemy")
    ]
    for row in rows:
        print(
            f"{row['transport']:11} busy={row['busy_sqlite_writer']!s:5} "
            f"{row['end_to_end_per_s']:8.1f} msg/s  publish {row['publish_per_s']:8.1f}/s  "
            f"p50 {row['latency_p50_ms']} ms  p99 {row['latency_p99_ms']} ms  "
            f"dup {row['duplicates']}  lost {row['lost']}"
        )
    by = {(r["transport"], r["busy_sqlite_writer"]): r for r in rows}
    summary = {
        "rows": rows,
        "filesystem_vs_sqlalchemy_throughput": round(
            by[("filesystem", False)]["end_to_end_per_s"]
            / max(by[("sqlalchemy", False)]["end_to_end_per_s"], 0.1),
            2,
        ),
        "filesystem_vs_sqlalchemy_throughput_busy": round(
            by[("filesystem", True)]["end_to_end_per_s"]
            / max(by[("sqlalchemy", True)]["end_to_end_per_s"], 0.1),
            2,
        ),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
