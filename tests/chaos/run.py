"""``make chaos``: run the real system, break it at random moments, check the history.

One run (:func:`run_chaos`):

1. starts a private PostgreSQL and a private Redis (``tests/chaos/servers.py``), then
   the studio, the API, beat and the ``pipeline``, ``edit`` and ``webhooks`` workers
   with the production commands (``tests/e2e/system.py``), every worker armed with
   every named crash point (``reelyard/crash.py``), each point's file made beforehand
   so that none fires until the schedule removes it;
2. submits a stream of jobs through the API (single jobs, batches, revisions of jobs
   that succeeded, cancels), every request with an ``Idempotency-Key`` and tried again
   until it is answered, while the fault schedule drawn from the seed
   (``tests/chaos/schedule.py``) plays: ``kill -9`` of a process, a crash point re-armed,
   Redis restarted or flushed, PostgreSQL restarted or refusing connections, every
   studio fault, the webhook receiver failing, timing out or down. A supervisor starts
   a process that died again a moment later, as a container's restart policy does;
3. turns every fault off and lets the system settle (bounded) until every job ended
   and its terminal webhook arrived, stops the processes, reads the history
   (``tests/chaos/history.py``) and checks it.

It prints the seed first (``--seed`` replays a run's faults and submissions; the
timing of a real system is not replayable), the table of the checks, and one JSON line;
it exits 1 when a rule was broken. ``--seeds 3`` runs three seeds one after the other.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a file by `make chaos`
    sys.path.insert(0, str(ROOT))

from reelyard.crash import POINTS  # noqa: E402
from studio.config import StudioConfig  # noqa: E402
from tests.chaos.history import (  # noqa: E402
    Faults,
    History,
    Submitted,
    Violation,
    check,
    format_table,
    load_history,
)
from tests.chaos.receiver import ChaosReceiver, Mode  # noqa: E402
from tests.chaos.schedule import STUDIO_FAULTS, Fault, draw  # noqa: E402
from tests.chaos.servers import PrivatePostgres, PrivateRedis  # noqa: E402
from tests.e2e.system import Broker, System, wait_for  # noqa: E402
from tests.workers.pipeline_fixtures import serve_photos  # noqa: E402

#: the reelyard processes the supervisor keeps running (the studio is the "cloud")
SUPERVISED = ("api", "pipeline", "edit", "webhooks", "beat")
TERMINAL = ("succeeded", "failed", "canceled")
#: how long a worker waits for a receiver, and how long the receiver's timeout holds
WEBHOOK_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Settings:
    seed: int
    #: jobs to have accepted (singles, batch members and revisions)
    jobs: int = 200
    #: faults in the schedule; at least ``per_kind`` of every kind
    faults: int = 60
    per_kind: int = 3
    #: seconds over which jobs are submitted and faults injected
    duration_s: float = 150.0
    #: the longest the system may take to settle once the faults are off
    settle_s: float = 300.0
    #: real renders (ffmpeg, draft quality) or the studio's pre-made file
    render: bool = True


@dataclass
class Record:
    """What the harness did and what the API answered."""

    job_ids: list[str] = field(default_factory=list)
    revisions: dict[str, str] = field(default_factory=dict)
    cancels: dict[str, str | None] = field(default_factory=dict)
    batches: dict[str, tuple[str, ...]] = field(default_factory=dict)
    without_webhook: set[str] = field(default_factory=set)
    #: requests never answered within their deadline (their jobs may exist)
    unanswered: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    applied: Counter[str] = field(default_factory=Counter)
    #: crash points a process reached (and died at) after the schedule armed them
    crashes: Counter[str] = field(default_factory=Counter)
    #: the studio's faults that struck, by name (``GET /_studio/faults``)
    studio_fired: dict[str, int] = field(default_factory=dict)
    fault_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def submitted(self) -> Submitted:
        with self.lock:
            return Submitted(
                job_ids=tuple(self.job_ids),
                revisions=dict(self.revisions),
                cancels=dict(self.cancels),
                batches=dict(self.batches),
                without_webhook=frozenset(self.without_webhook),
            )


@dataclass
class Outcome:
    seed: int
    history: History
    violations: list[Violation]
    record: Record
    schedule: list[Fault]
    settled_s: float
    wall_s: float

    @property
    def ok(self) -> bool:
        return not self.violations

    def result(self) -> dict[str, Any]:
        statuses = Counter(job.status.value for job in self.history.jobs.values())
        failures = Counter(
            job.error_code or "none"
            for job in self.history.jobs.values()
            if job.status.value == "failed"
        )
        return {
            "seed": self.seed,
            "ok": self.ok,
            "jobs": len(self.history.jobs),
            "accepted": len(self.history.submitted.job_ids),
            "statuses": dict(sorted(statuses.items())),
            "failures": dict(sorted(failures.items())),
            "faults": sum(self.record.applied.values()),
            "crashes": sum(self.record.crashes.values()),
            "studio_faults_struck": sum(self.record.studio_fired.values()),
            "fault_kinds": len(self.record.applied),
            "violations": len(self.violations),
            "deliveries": len(self.history.deliveries),
            "unanswered_requests": self.record.unanswered,
            "settled_s": round(self.settled_s, 1),
            "wall_s": round(self.wall_s, 1),
        }


# --- the system under test -----------------------------------------------------------


class Chaos:
    """One run's servers, processes, receiver and threads."""

    def __init__(self, settings: Settings, root: Path) -> None:
        self.settings = settings
        self.root = root
        self.marks = root / "marks"
        self.marks.mkdir(parents=True)
        for point in POINTS:  # made beforehand: nothing fires until the schedule says
            (self.marks / point).write_text("disarmed\n")
        self.record = Record()
        self.rng = random.Random(settings.seed)
        self.stopping = threading.Event()
        self.receiver = ChaosReceiver(timeout_s=WEBHOOK_TIMEOUT_S * 2)
        self.postgres = PrivatePostgres(root)
        self.redis = PrivateRedis(root)
        self.system: System | None = None
        self.api_port = 0
        self._supervisor: threading.Thread | None = None
        self._paused: set[str] = set()

    # -- start and stop ---------------------------------------------------------------

    def start(self, photo_urls: list[str]) -> System:
        self.photo_urls = photo_urls
        self.postgres.start()
        self.redis.start()
        broker_url = f"{self.redis.url}/0"
        studio_env = {
            "STUDIO_SEED": str(self.settings.seed),
            "STUDIO_RENDER_MODE": "ffmpeg" if self.settings.render else "none",
        }
        env = {
            "REELYARD_CRASH_POINTS": ",".join(sorted(POINTS)),
            "REELYARD_CRASH_DIR": str(self.marks),
            "REELYARD_WEBHOOK_TIMEOUT_S": str(WEBHOOK_TIMEOUT_S),
            "REELYARD_WEBHOOK_LEASE_S": "6",
            # a stuck render is given up after 15 minutes in production: 20 s here
            "REELYARD_RENDER_TIMEOUT_S": "20",
        }
        system = System(
            self.root / "system",
            Broker("redis", broker_url, broker_url),
            self.postgres.url,
            studio_env,
            env_overrides=env,
        )
        self.system = system
        system.start()
        self.api_port = int(system.api_url.rsplit(":", 1)[1])
        rotated = self._request("POST", "/v1/webhook-secret/rotate", {}, deadline_s=60)
        assert rotated is not None, "the API did not answer"
        assert rotated[0] == 200, rotated
        self.receiver.secrets.append(str(rotated[1]["secret"]))
        self._supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
        self._supervisor.start()
        return system

    def close(self) -> None:
        self.stopping.set()
        if self._supervisor is not None:
            self._supervisor.join(10)
        if self.system is not None:
            self.system.stop()
        self.receiver.close()
        self.redis.close()
        self.postgres.close()

    # -- the supervisor ----------------------------------------------------------------

    def _respawn(self, name: str) -> None:
        system = self.system
        assert system is not None
        if name == "api":  # the same port: clients keep their address
            system.spawn("api", ["api", "--port", str(self.api_port), "--workers", "1"])
        else:
            system.spawn(name, system.commands[name])

    def _supervise(self) -> None:
        """Start again, a moment later, any reelyard process that died."""
        system = self.system
        assert system is not None
        while not self.stopping.wait(0.5):
            for name in SUPERVISED:
                proc = system.procs.get(name)
                if proc is not None and not proc.alive and name not in self._paused:
                    self._respawn(name)

    def wait_all_running(self, timeout_s: float = 120.0) -> None:
        system = self.system
        assert system is not None

        def up() -> bool:
            return all(system.procs[name].alive for name in SUPERVISED) and self._api_ready()

        wait_for("every process running", up, timeout_s=timeout_s, every_s=0.5)

    def _api_ready(self) -> bool:
        assert self.system is not None
        try:
            return httpx.get(f"{self.system.api_url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    # -- the API, tried again until it answers -------------------------------------------

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None, *, deadline_s: float = 90.0
    ) -> tuple[int, Any] | None:
        """(status, body) of the first answer that is not a 5xx or 429, trying again
        with the same ``Idempotency-Key``; None if none came within ``deadline_s``."""
        assert self.system is not None
        headers = {
            "Authorization": f"Bearer {self.system.key}",
            "Idempotency-Key": str(uuid.uuid4()),
        }
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                response = httpx.request(
                    method, self.system.api_url + path, json=body, headers=headers, timeout=15
                )
            except httpx.HTTPError:
                pass
            else:
                if response.status_code < 500 and response.status_code != 429:
                    try:
                        return response.status_code, response.json()
                    except ValueError:
                        return response.status_code, response.text
            if time.monotonic() >= deadline or self.stopping.is_set():
                return None
            time.sleep(0.5)

    # -- submissions ---------------------------------------------------------------------

    def _job_body(self, number: int) -> dict[str, Any]:
        rng = self.rng
        body: dict[str, Any] = {
            "images": rng.sample(self.photo_urls, rng.randint(1, len(self.photo_urls))),
            "prompt": f"chaos job {number}: a short slideshow with soft transitions",
            "options": {
                "aspect_ratio": rng.choice(["1:1", "9:16", "16:9"]),
                "resolution": "720p",
                "duration_s": rng.choice([3, 4]),
            },
            "metadata": {"chaos": str(number)},
        }
        if rng.random() < 0.9:
            body["webhook_url"] = f"{self.receiver.url}?job={number}"
        return body

    def _accept(self, job: dict[str, Any], body: dict[str, Any]) -> str:
        job_id = str(job["id"])
        with self.record.lock:
            self.record.job_ids.append(job_id)
            if not body.get("webhook_url"):
                self.record.without_webhook.add(job_id)
        return job_id

    def submit(self) -> None:
        """The stream of jobs, revisions, batches and cancels, spread over the run."""
        settings = self.settings
        rng = self.rng
        started = time.monotonic()
        number = 0
        while len(self.record.job_ids) < settings.jobs and not self.stopping.is_set():
            accepted = len(self.record.job_ids)
            due = started + settings.duration_s * accepted / settings.jobs
            time.sleep(max(0.0, due - time.monotonic()))
            number += 1
            draw_ = rng.random()
            if draw_ < 0.12 and accepted + 3 <= settings.jobs:
                self._submit_batch(number, rng.randint(2, 4))
            elif draw_ < 0.24 and accepted:
                self._submit_revision(number)
            elif draw_ < 0.34 and accepted:
                self._cancel()
            else:
                self._submit_job(number)

    def _submit_job(self, number: int) -> None:
        body = self._job_body(number)
        answer = self._request("POST", "/v1/jobs", body)
        if answer is None:
            self.record.unanswered += 1
        elif answer[0] in (201, 202):
            self._accept(answer[1], body)
        else:
            self.record.refused[f"job {answer[0]}"] += 1

    def _submit_batch(self, number: int, size: int) -> None:
        bodies = [self._job_body(number * 100 + index) for index in range(size)]
        answer = self._request("POST", "/v1/batches", {"jobs": bodies})
        if answer is None:
            self.record.unanswered += 1
            return
        if answer[0] != 202:
            self.record.refused[f"batch {answer[0]}"] += 1
            return
        ids = tuple(
            self._accept(job, body) for job, body in zip(answer[1]["jobs"], bodies, strict=True)
        )
        with self.record.lock:
            self.record.batches[str(answer[1]["id"])] = ids

    def _submit_revision(self, number: int) -> None:
        """A revision of a job that succeeded (found by asking a few at random)."""
        with self.record.lock:
            candidates = self.rng.sample(self.record.job_ids, min(5, len(self.record.job_ids)))
        for parent in candidates:
            answer = self._request("GET", f"/v1/jobs/{parent}", None, deadline_s=10)
            if answer is None or answer[0] != 200 or answer[1]["status"] != "succeeded":
                continue
            body: dict[str, Any] = {
                "prompt": f"chaos revision {number}: make the title say 'Take {number}'"
            }
            if self.rng.random() < 0.5:
                body["options"] = {"aspect_ratio": self.rng.choice(["1:1", "9:16"])}
            answer = self._request("POST", f"/v1/jobs/{parent}/revisions", body)
            if answer is None:
                self.record.unanswered += 1
            elif answer[0] == 202:
                job_id = self._accept(answer[1], {"webhook_url": answer[1].get("webhook_url")})
                with self.record.lock:
                    self.record.revisions[job_id] = parent
            else:
                self.record.refused[f"revision {answer[0]}"] += 1
            return
        self._submit_job(number)  # nothing succeeded yet: a job instead

    def _cancel(self) -> None:
        """Cancel a job at random, most often a recent one (still running)."""
        with self.record.lock:
            recent = self.record.job_ids[-10:]
            if not recent:
                return
            job_id = self.rng.choice(recent)
            if job_id in self.record.cancels:
                return
        answer = self._request("POST", f"/v1/jobs/{job_id}/cancel", {})
        status: str | None = None
        if answer is not None and answer[0] == 200:
            status = str(answer[1]["status"])
        elif answer is not None and answer[0] == 409:
            details = answer[1].get("details") or answer[1].get("errors") or []
            status = str(details[0]["message"]) if details else "terminal"
        with self.record.lock:
            self.record.cancels[job_id] = status

    # -- faults --------------------------------------------------------------------------

    def play(self, schedule: list[Fault]) -> None:
        """Inject each fault at its time; outages block the player while they last."""
        started = time.monotonic()
        for fault in schedule:
            delay = started + fault.at_s - time.monotonic()
            if self.stopping.wait(max(0.0, delay)):
                return
            try:
                self.inject(fault)
            except Exception as error:  # noqa: BLE001 - a fault that could not be made is reported
                self.record.fault_errors.append(f"{fault.kind} at {fault.at_s}: {error!r}")
            else:
                self.record.applied[fault.kind] += 1

    def inject(self, fault: Fault) -> None:
        system = self.system
        assert system is not None
        kind = fault.kind
        print(f"  t={fault.at_s:7.2f}s {kind} {fault.params or ''}".rstrip(), flush=True)
        if kind == "worker.kill":
            system.procs[fault.params["process"]].kill()
        elif kind == "worker.crash_point":
            self._disarm(fault.params["point"])
            (self.marks / fault.params["point"]).unlink()
        elif kind == "redis.flushall":
            self.redis.flushall()
        elif kind == "redis.restart":
            self.redis.stop()
            time.sleep(fault.duration_s)
            self.redis.start()
        elif kind == "postgres.restart":
            self.postgres.crash_restart()
        elif kind == "postgres.refuse":
            self.postgres.refuse_for(fault.duration_s, immediate=self.rng.random() < 0.5)
            self.postgres.wait_back(fault.duration_s + 120)
        elif kind in STUDIO_FAULTS:
            self._studio_fault(kind, fault)
        elif kind.startswith("receiver."):
            mode = {"receiver.fail": Mode.FAIL, "receiver.timeout": Mode.TIMEOUT}.get(
                kind, Mode.DOWN
            )
            self.receiver.set_mode(mode)
            self._later(fault.duration_s, lambda: self.receiver.set_mode(Mode.OK))
        else:
            raise ValueError(f"unknown fault kind {kind!r}")

    def _studio_fault(self, kind: str, fault: Fault) -> None:
        assert self.system is not None
        spec = dict(fault.params["spec"])
        if kind == "studio.token_expiry":
            # counts add up: what is still pending, plus this one
            pending = int(
                self.system.studio("GET", "faults").get("token_expiry", {}).get("count", 0)
            )
            spec = {"token_expiry": {"count": pending + 1}}
        self.system.faults(**spec)
        off = fault.params.get("off")  # a rate, for the fault's duration
        if off is not None:
            self._later(
                fault.duration_s, lambda: self.system.faults(**off) if self.system else None
            )

    def _disarm(self, point: str) -> None:
        """Make the point's file (no process crashes there), counting the crash that
        removed it last time, if one did (the file then holds the process's pid)."""
        path = self.marks / point
        with contextlib.suppress(FileNotFoundError):
            if path.read_text().strip().isdigit():
                self.record.crashes[point] += 1
        path.write_text("disarmed\n")

    def _later(self, seconds: float, action: Any) -> None:
        def run() -> None:
            if not self.stopping.wait(seconds):
                with contextlib.suppress(Exception):
                    action()

        threading.Thread(target=run, daemon=True).start()

    # -- settling and the history --------------------------------------------------------

    def faults_off(self) -> None:
        """Every fault off, every crash point disarmed, the servers and receiver up."""
        assert self.system is not None
        self.receiver.set_mode(Mode.OK)
        self.postgres.wait_back(120)
        if not self.redis.running:
            self.redis.start()
        self.system.clear_faults()
        for point in POINTS:
            self._disarm(point)
        fired = self.system.studio("GET", "faults")["fired"]
        self.record.studio_fired = {str(name): int(count) for name, count in fired.items()}

    def unsettled(self) -> tuple[int, int]:
        """(jobs not ended, ended jobs whose terminal webhook has not arrived)."""
        with psycopg.connect(self.postgres.dsn, connect_timeout=5) as conn:
            rows = conn.execute("SELECT id, status, webhook_url IS NOT NULL FROM jobs").fetchall()
        delivered = {
            (entry["job_id"], entry["type"])
            for entry in self.receiver.entries()
            if entry["verified"] and entry["job_id"]
        }
        running = sum(1 for _, status, _ in rows if status not in TERMINAL)
        waiting = sum(
            1
            for job_id, status, hooked in rows
            if status in TERMINAL and hooked and (job_id, f"job.{status}") not in delivered
        )
        return running, waiting

    def settle(self, timeout_s: float) -> float:
        started = time.monotonic()
        self.wait_all_running()
        last = (-1, -1)
        while time.monotonic() - started < timeout_s:
            try:
                now = self.unsettled()
            except psycopg.Error:
                now = (-1, -1)
            if now == (0, 0):
                break
            if now != last:
                print(f"  settling: {now[0]} jobs running, {now[1]} webhooks awaited", flush=True)
                last = now
            time.sleep(1.0)
        return time.monotonic() - started

    def history(self) -> History:
        system = self.system
        assert system is not None
        for name in SUPERVISED:  # nothing moves while the history is read
            self._paused.add(name)
            system.procs[name].stop()
        ledger = system.ledger()
        # each token the studio's faults killed, by client id, costs that client a token
        revoked = {str(client): int(count) for client, count in ledger["tokens_revoked"].items()}
        return load_history(
            self.postgres.url,
            ledger,
            self.receiver.entries(),
            self.root / "system" / "data" / "videos",
            self.record.submitted(),
            faults=Faults(by_kind=dict(self.record.applied), token_expiries=revoked),
            export_cost=StudioConfig.from_env({}).cost_export,
        )


def run_chaos(settings: Settings, root: Path | None = None) -> Outcome:
    """One chaos run (see the module doc); its history and the rules it broke."""
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="reelyard-chaos-")) if root is None else root
    schedule = draw(
        settings.seed,
        duration_s=settings.duration_s,
        per_kind=settings.per_kind,
        total=settings.faults,
    )
    print(
        f"chaos: seed {settings.seed}, {settings.jobs} jobs and {len(schedule)} faults over "
        f"{settings.duration_s:.0f} s (replay: --seed {settings.seed})",
        flush=True,
    )
    chaos = Chaos(settings, workdir)
    try:
        with serve_photos(workdir / "photos") as photos:
            chaos.start(photos.urls)
            player = threading.Thread(
                target=chaos.play, args=(schedule,), name="faults", daemon=True
            )
            player.start()
            chaos.submit()
            player.join(settings.duration_s + 300)
            chaos.faults_off()
            settled = chaos.settle(settings.settle_s)
            history = chaos.history()
        violations = check(history)
        for error in chaos.record.fault_errors:
            violations.append(Violation("fault_not_injected", "harness", error))
        return Outcome(
            settings.seed,
            history,
            violations,
            chaos.record,
            schedule,
            settled,
            time.monotonic() - started,
        )
    finally:
        chaos.close()
        if root is None:
            shutil.rmtree(workdir, ignore_errors=True)


def report(outcome: Outcome) -> str:
    lines = [format_table(outcome.history, outcome.violations), "crash points reached:"]
    lines += [f"  {point:22} {count}" for point, count in sorted(outcome.record.crashes.items())]
    lines.append("studio faults that struck:")
    lines += [f"  {name:22} {count}" for name, count in sorted(outcome.record.studio_fired.items())]
    examples: dict[str, str] = {}  # one failed job per error code: how it came to fail
    for job in outcome.history.jobs.values():
        if job.status.value == "failed" and job.error_code not in examples:
            examples[job.error_code or "none"] = job.id
    for code, job_id in sorted(examples.items()):
        lines.append(f"failed {code}, e.g. {job_id}:")
        lines += [
            f"  {event.type.value} {event.stage.value if event.stage else '-'} "
            f"{(event.message or '')[:140]}"
            for event in outcome.history.jobs[job_id].events[-8:]
        ]
    for subject in sorted({violation.subject for violation in outcome.violations}):
        job = outcome.history.jobs.get(subject)
        if job is None:
            continue
        lines.append(f"{job.id}: {job.status.value} at {job.stage.value}, events:")
        lines += [
            f"  {event.id} {event.type.value} {event.stage.value if event.stage else '-'} "
            f"{(event.message or '')[:100]} {json.dumps(event.data or {})[:160]}"
            for event in job.events[-40:]
        ]
    if outcome.record.refused:
        lines.append(f"requests refused: {dict(outcome.record.refused)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, action="append", help="replay this seed (repeatable)")
    parser.add_argument("--seeds", type=int, default=1, help="runs with new seeds (default 1)")
    parser.add_argument("--jobs", type=int, default=Settings.jobs)
    parser.add_argument("--faults", type=int, default=Settings.faults)
    parser.add_argument("--per-kind", type=int, default=Settings.per_kind)
    parser.add_argument("--duration", type=float, default=Settings.duration_s)
    parser.add_argument("--settle", type=float, default=Settings.settle_s)
    parser.add_argument("--no-render", action="store_true", help="the studio's pre-made video")
    parser.add_argument("--keep", type=Path, help="keep the run's files (logs) in this folder")
    args = parser.parse_args(argv)
    seeds = args.seed or [random.SystemRandom().randrange(1, 2**31) for _ in range(args.seeds)]
    results = []
    for seed in seeds:
        settings = Settings(
            seed=seed,
            jobs=args.jobs,
            faults=args.faults,
            per_kind=args.per_kind,
            duration_s=args.duration,
            settle_s=args.settle,
            render=not args.no_render,
        )
        root = None
        if args.keep is not None:
            root = args.keep / f"seed-{seed}"
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
        outcome = run_chaos(settings, root)
        print(report(outcome), flush=True)
        print(json.dumps(outcome.result()), flush=True)
        results.append(outcome.result())
    failed = [result["seed"] for result in results if not result["ok"]]
    print(json.dumps({"runs": len(results), "failed_seeds": failed, "results": results}))
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
