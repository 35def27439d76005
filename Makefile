# Entry points a person types; CI calls the same ones.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# MoviePy 2.x pins pillow<12, so the comparison in bench-render runs in a venv of its own.
MOVIEPY_VENV := .venv-moviepy
PYTEST_ARGS ?=

# Benchmark scripts run as files, so benchmarks/ is first on their path: no benchmark may be
# named like a package of ours (benchmarks/studio.py would hide the studio package).
.PHONY: install demo test chaos lint format typecheck pytest bench-render bench-studio bench-api bench-pipeline bench-inflight bench-webhooks bench-broker bench-scale bench-studio-render clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Issue 9: the main job end to end on this machine, with `reelyard standalone` (SQLite and
# a broker in files: no PostgreSQL, no Redis): two videos into demo-output/, verified
# webhooks; exits non-zero if a step failed (demo/run.py says which)
demo: $(STAMP)
	$(BIN)/python demo/run.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -n 2 $(PYTEST_ARGS)

test: lint typecheck pytest

# Issue 10: three chaos runs with new seeds (each printed; CHAOS_ARGS="--seed N" replays
# one): 200 jobs, 60 faults of every kind over 150 s against a private PostgreSQL and
# Redis, then the history checked; prints each run's table, exits non-zero on a violation
CHAOS_ARGS ?= --seeds 3
chaos: $(STAMP)
	$(BIN)/python tests/chaos/run.py $(CHAOS_ARGS)

$(MOVIEPY_VENV)/bin/python:
	$(PYTHON) -m venv $(MOVIEPY_VENV)
	$(MOVIEPY_VENV)/bin/python -m pip install --quiet 'moviepy>=2.1,<3'

bench-render: $(STAMP) $(MOVIEPY_VENV)/bin/python
	$(BIN)/python benchmarks/render.py --runs 3 --moviepy-python $(MOVIEPY_VENV)/bin/python

bench-studio: $(STAMP)
	$(BIN)/python benchmarks/studio_streams.py

# Issue 11: renders of a 15 s 1080x1920 draft through the studio's HTTP API at its default
# render pool, at 1 and at 2, in one run; ends with {"renders", "videos_per_hour", "pool", "errors"}
bench-studio-render: $(STAMP)
	$(BIN)/python benchmarks/studio_render.py

# wrk is the load generator (a C program: a Python one costs the two cores more);
# installed from Debian's packages where it is missing and apt can install it
bench-api: $(STAMP)
	@command -v wrk >/dev/null || (command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
		&& apt-get install -y -qq wrk >/dev/null) || echo "wrk not installed: using the Python load generator"
	$(BIN)/python benchmarks/api_load.py

# 2,000 jobs through api, workers and a studio that does not render: jobs/s end to end
bench-pipeline: $(STAMP)
	$(BIN)/python benchmarks/pipeline.py

# 1,000 jobs whose edit turn lasts 60 s all in flight on one worker host: time against
# the ideal, peak RSS and CPU of the workers, edit pool on threads and on gevent
bench-inflight: $(STAMP)
	$(BIN)/python benchmarks/inflight.py

# Issue 10: one 2-core host: 10,000 queued jobs drained (jobs/s), p50/p95/p99 accepted ->
# succeeded at a steady half of that rate, 1,000 jobs in flight with 60 s edit turns (time
# against the ideal, peak RSS, CPU); one JSON line per phase, {"phase": "scale", ...} last
bench-scale: $(STAMP)
	$(BIN)/python benchmarks/scale.py

# Issue 8: webhook deliveries per second from one worker host (`reelyard worker -Q webhooks`,
# its default pool, one process then one per core) to a loopback receiver; ends with
# {"deliveries", "deliveries_per_s", "errors", ...}.
bench-webhooks: $(STAMP)
	$(BIN)/python benchmarks/webhooks.py

# Issue 9: the standalone mode's embedded broker (kombu's filesystem transport) against
# kombu's SQLAlchemy transport on SQLite, side by side
bench-broker: $(STAMP)
	$(BIN)/python benchmarks/embedded_broker.py

clean:
	rm -rf $(VENV) $(MOVIEPY_VENV) .mypy_cache .ruff_cache .pytest_cache
