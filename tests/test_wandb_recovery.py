"""W&B offline runs cut off by kill -9: set aside on resume, their history replayed from metrics.jsonl.

A real process logs through LocalTracker with W&B offline and is SIGKILLed; the .wandb files are read back
from disk (tests/wandb_reader.py).
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from wandb_reader import history, offline_runs, records

from launch.config import TrackingConfig
from launch.tracking import LocalTracker, read_metrics

pytestmark = pytest.mark.slow

LOGGER = """
import sys, time
from pathlib import Path
from launch.config import TrackingConfig
from launch.tracking import LocalTracker
tracker = LocalTracker(Path(sys.argv[1]), TrackingConfig(wandb="offline"))
for step in range(1, 31):
    tracker.log({"x": float(step)}, step)
    if step == 20:
        tracker.checkpoint({"step": step}, step)
print("logged", flush=True)
time.sleep(120)
"""


def steps(path: Path) -> list[int]:
    return [row["global_step"] for row in history(path)]


def ended(path: Path) -> bool:
    return any(r.WhichOneof("record_type") == "exit" for r in records(path))


def killed_run(run_dir: Path) -> None:
    """A run that logged steps 1..30, saved a checkpoint at 20 and was SIGKILLed."""
    process = subprocess.Popen(
        [sys.executable, "-c", LOGGER, str(run_dir)], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    try:
        assert process.stdout.readline().strip() == "logged"
        time.sleep(1)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()


def test_a_killed_run_resumes_into_one_complete_wandb_run(tmp_path):
    run_dir = tmp_path / "run"
    killed_run(run_dir)
    (cut_off,) = offline_runs(run_dir)
    assert not ended(cut_off)  # what kill -9 leaves: no end, and (wandb 0.31) most or all of the history lost

    tracker = LocalTracker(run_dir, TrackingConfig(wandb="offline"), resume_step=20)
    for step in range(21, 41):
        tracker.log({"x": float(step)}, step)
    tracker.close()

    assert [r["step"] for r in read_metrics(run_dir / "metrics.jsonl")] == list(range(1, 41))
    (kept,) = offline_runs(run_dir)  # the cut-off run moved out of `wandb sync RUN/wandb/offline-run-*`'s way
    assert steps(kept) == list(range(1, 41)) and ended(kept)
    assert [p.name for p in (run_dir / "wandb" / "interrupted").iterdir()] == [cut_off.parent.name]


def test_a_cleanly_closed_run_is_kept_and_nothing_is_replayed(tmp_path):
    run_dir = tmp_path / "run"
    first = LocalTracker(run_dir, TrackingConfig(wandb="offline"))
    for step in range(1, 11):
        first.log({"x": float(step)}, step)
    first.close()
    resumed = LocalTracker(run_dir, TrackingConfig(wandb="offline"), resume_step=10)
    for step in range(11, 16):
        resumed.log({"x": float(step)}, step)
    resumed.close()

    runs = offline_runs(run_dir)
    assert [steps(path) for path in runs] == [list(range(1, 11)), list(range(11, 16))]
    assert all(ended(path) for path in runs) and not (run_dir / "wandb" / "interrupted").exists()
