"""The standalone supervisor prunes the broker's old files: taken, or abandoned mid-write."""

from __future__ import annotations

import os
import time
from pathlib import Path

from reelyard.standalone import PROCESSED_KEEP_S, Layout, Supervisor


def aged(path: Path, seconds: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"{}")
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_old_taken_and_abandoned_messages_are_pruned_and_recent_ones_kept(tmp_path):
    layout = Layout(tmp_path)
    old_taken = aged(layout.processed / "1_a.pipeline.msg", PROCESSED_KEEP_S + 60)
    new_taken = aged(layout.processed / "2_b.pipeline.msg", 5)
    abandoned = aged(layout.staging / "3_c.pipeline.msg", PROCESSED_KEEP_S + 60)
    writing = aged(layout.staging / "4_d.pipeline.msg", 0)

    Supervisor(layout=layout, env={}).prune_processed()

    assert not old_taken.exists()
    assert not abandoned.exists()
    assert new_taken.exists()
    assert writing.exists()


def test_pruning_without_a_broker_folder_yet_is_harmless(tmp_path):
    Supervisor(layout=Layout(tmp_path), env={}).prune_processed()
