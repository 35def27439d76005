"""Fixtures for driving the pipeline in-process against a real studio.

No Celery here: :func:`drive` calls :func:`workers.pipeline.run_stage` the way the
tasks would, waiting out each countdown, until the job ends. The studio is a real
process on a free port; the photos come from a real HTTP server on loopback; the
database is the test's PostgreSQL transaction (savepoints stand in for commits).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw
from sqlalchemy.orm import Session, sessionmaker

from models.access import create_tenant
from models.jobs import Job, JobEvent, queue_jobs
from nemo import NemoConfig
from reelyard.storage import LocalStorage
from tests.studio.api.conftest import StudioProcess, assert_no_traceback, start_studio
from workers.decisions import Policy
from workers.pipeline import Deps, PipelineConfig, Queue, queue_for, run_stage
from workers.stages import HANDLERS
from workers.upstream import Upstream

PHOTO_COLORS = ("#c0392b", "#2980b9", "#27ae60")


def make_photos(directory: Path, count: int = 3, size: tuple[int, int] = (640, 480)) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for index in range(count):
        image = Image.new("RGB", size, PHOTO_COLORS[index % len(PHOTO_COLORS)])
        ImageDraw.Draw(image).ellipse((80, 60, 360, 340), fill="#f1c40f")
        name = f"photo{index + 1}.jpg"
        image.save(directory / name, quality=85)
        names.append(name)
    return names


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class PhotoServer:
    base_url: str
    names: list[str]

    @property
    def urls(self) -> list[str]:
        return [f"{self.base_url}/{name}" for name in self.names]


@contextlib.contextmanager
def serve_photos(directory: Path) -> Iterator[PhotoServer]:
    """Three generated photos in ``directory``, served over HTTP on loopback."""
    names = make_photos(directory)
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield PhotoServer(f"http://127.0.0.1:{server.server_address[1]}", names)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PhotoServer]:
    """Three generated photos served over HTTP on loopback."""
    with serve_photos(tmp_path_factory.mktemp("photos")) as server:
        yield server


@pytest.fixture(scope="module")
def pipeline_studio(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StudioProcess]:
    """A studio for the module (``STUDIO_ENV`` of the module adds settings)."""
    server = start_studio(
        tmp_path_factory.mktemp("studio"),
        STUDIO_RENDER_WORKERS="2",
        **getattr(request.module, "STUDIO_ENV", {}),
    )
    yield server
    server.stop()
    assert_no_traceback(server)


@pytest.fixture
def studio(pipeline_studio: StudioProcess) -> StudioProcess:
    pipeline_studio.reset()
    return pipeline_studio


#: the pipeline's waits in tests: 30 s of production time is 0.3 s here
TEST_CONFIG = PipelineConfig(
    policy=Policy(time_scale=0.01),
    lease_s=5.0,
    render_poll_s=0.2,
    render_timeout_s=20.0,
    job_deadline_s=120.0,
    credits_every_s=0.0,
    allow_private_urls=True,
)


@pytest.fixture
def deps(
    session_factory: sessionmaker[Session], studio: StudioProcess, tmp_path: Path
) -> Iterator[Deps]:
    nemo_config = NemoConfig(base_url=studio.url, heartbeat_limit=10.0, turn_limit=30.0)
    upstream = Upstream.connect(nemo_config)
    yield Deps(
        sessions=session_factory,
        upstream=upstream,
        storage=LocalStorage(tmp_path / "videos"),
        config=TEST_CONFIG,
        public_url="http://api.test",
    )
    upstream.close()


def with_config(deps: Deps, **changes: Any) -> Deps:
    return replace(deps, config=replace(deps.config, **changes))


def submit(
    session: Session,
    urls: list[str],
    prompt: str = "turn these photos into a short video with transitions",
    options: dict[str, Any] | None = None,
    *,
    parent: Job | None = None,
    tenant_id: str | None = None,
) -> str:
    """Queue a job as the API does; its id."""
    if tenant_id is None:
        tenant_id = create_tenant(session, "Acme").id
    rows = queue_jobs(
        session,
        tenant_id,
        [
            {
                "images": urls,
                "prompt": prompt,
                "options": options or {},
                "metadata": {},
                "webhook_url": None,
            }
        ],
        parent=parent,
    )
    session.commit()
    return str(rows[0]["id"])


def drive(deps: Deps, job_id: str, *, timeout_s: float = 60.0) -> Job:
    """Run the job's stages as the workers would until it ends; the finished job."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = load(deps, job_id)
        if job.status.terminal:
            return job
        if job.next_run_at is not None:
            wait = (job.next_run_at - deps.clock()).total_seconds()
            if wait > 0:
                time.sleep(min(wait, 0.5))
                continue
        if job.lease_expires_at is not None and job.lease_expires_at > deps.clock():
            time.sleep(0.05)  # held by a (simulated) dead worker: wait for its lease
            continue
        queue: Queue = queue_for(job.stage)
        run_stage(deps, job_id, queue=queue, handlers=HANDLERS)
    raise AssertionError(f"job {job_id} did not end within {timeout_s} s: {load(deps, job_id)}")


def load(deps: Deps, job_id: str) -> Job:
    with deps.sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        session.expunge(job)
        return job


def events(deps: Deps, job_id: str) -> list[JobEvent]:
    with deps.sessions() as session:
        rows = session.query(JobEvent).filter(JobEvent.job_id == job_id).order_by(JobEvent.id).all()
        for row in rows:
            session.expunge(row)
        return rows
