"""Crash points: inert unless armed, then one exit per point and directory."""

from __future__ import annotations

import os
import subprocess
import sys

from reelyard.crash import EXIT_CODE, POINTS
from tests.e2e.system import ROOT

PROGRAM = (
    "from reelyard.crash import crash_point\n"
    "for name in {names!r}:\n"
    "    crash_point(name)\n"
    "print('went past')\n"
)
#: goes past a fired point, waits for its file to go, and comes back to it
REARMED = (
    "import pathlib, sys, time\n"
    "from reelyard.crash import crash_point\n"
    "crash_point('render_posted')\n"
    "print('went past', flush=True)\n"
    "mark = pathlib.Path(sys.argv[1]) / 'render_posted'\n"
    "while mark.exists():\n"
    "    time.sleep(0.02)\n"
    "crash_point('render_posted')\n"
    "print('went past again')\n"
)


def run(names, **env):
    return subprocess.run(
        [sys.executable, "-c", PROGRAM.format(names=list(names))],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_nothing_happens_unless_a_point_is_armed():
    done = run(sorted(POINTS))
    assert (done.returncode, done.stdout.strip()) == (0, "went past")


def test_an_armed_point_exits_once_per_directory(tmp_path):
    armed = {"REELYARD_CRASH_POINTS": "video_stored", "REELYARD_CRASH_DIR": str(tmp_path)}
    first = run(["render_posted", "video_stored"], **armed)
    assert first.returncode == EXIT_CODE
    assert "went past" not in first.stdout
    assert "crash point video_stored" in first.stderr
    assert (tmp_path / "video_stored").read_text().strip().isdigit()
    second = run(["video_stored"], **armed)  # it crashed there already
    assert (second.returncode, second.stdout.strip()) == (0, "went past")
    (tmp_path / "video_stored").unlink()  # re-armed
    assert run(["video_stored"], **armed).returncode == EXIT_CODE


def test_an_unknown_point_or_a_missing_directory_is_refused(tmp_path):
    unknown = run(
        ["video_stored"], REELYARD_CRASH_POINTS="nowhere", REELYARD_CRASH_DIR=str(tmp_path)
    )
    assert unknown.returncode == 1
    assert "unknown points ['nowhere']" in unknown.stderr
    no_dir = run(["video_stored"], REELYARD_CRASH_POINTS="video_stored")
    assert no_dir.returncode == 1
    assert "needs REELYARD_CRASH_DIR" in no_dir.stderr


def test_a_running_process_crashes_at_a_point_re_armed_while_it_runs(tmp_path):
    """The harness re-arms a point by removing its file: no restart needed."""
    (tmp_path / "render_posted").write_text("0\n")  # fired already, by another process
    env = {
        **os.environ,
        "REELYARD_CRASH_POINTS": "render_posted",
        "REELYARD_CRASH_DIR": str(tmp_path),
    }
    process = subprocess.Popen(
        [sys.executable, "-c", REARMED, str(tmp_path)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "went past"
    (tmp_path / "render_posted").unlink()
    rest, _ = process.communicate(timeout=30)
    assert process.returncode == EXIT_CODE
    assert "again" not in rest
    assert (tmp_path / "render_posted").read_text().strip() == str(process.pid)
