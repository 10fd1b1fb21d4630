"""W&B offline runs that a crash cut off: set aside on resume, their history replayed from metrics.jsonl.

An offline W&B run reaches the disk through W&B's service process, which holds the history until the run
finishes: a process killed mid-run (kill -9, a lost Ray worker, a killed sweep driver) leaves a run file with
none or part of its history and no end (seen with wandb 0.31: a 7-byte file after 50 logged steps).
metrics.jsonl is the run's own record (flushed with every checkpoint). So:

- a run that finishes cleanly gets a marker in its folder, naming the last step of metrics.jsonl it covers;
- on resume, offline runs without the marker move to `wandb/interrupted/`, out of the way of
  `wandb sync RUN/wandb/offline-run-*`, and the resumed run first logs the records of metrics.jsonl that no
  cleanly finished run covers. The kept runs then hold every step once, in order, with an end.
"""

from __future__ import annotations

import json
from pathlib import Path

from networks import io

CLOSED = "dlforge-closed.json"  # in a finished W&B run's folder: {"step": last metrics.jsonl step it covers}
INTERRUPTED = "interrupted"  # wandb/interrupted/: the runs a crash cut off


def mark_closed(run_folder: Path, last_step: int) -> None:
    """Record that the W&B run in `run_folder` finished and, with the runs before it, holds metrics.jsonl up to
    `last_step`."""
    io.atomic_write_text(Path(run_folder) / CLOSED, json.dumps({"step": int(last_step)}))


def has_cut_off_runs(run_dir: Path) -> bool:
    """Whether `run_dir` holds an offline W&B run that never finished."""
    return any(not (run / CLOSED).is_file() for run in (Path(run_dir) / "wandb").glob("offline-run-*"))


def set_aside_interrupted(run_dir: Path, records: list[dict]) -> list[dict]:
    """Move the offline runs of `run_dir` that never finished to wandb/interrupted/, and return those of
    `records` (metrics.jsonl, cut back to the resume point) that the finished runs do not hold."""
    folder = Path(run_dir) / "wandb"
    covered = -1
    for run in sorted(folder.glob("offline-run-*")):
        marker = run / CLOSED
        if marker.is_file():
            covered = max(covered, int(json.loads(marker.read_text())["step"]))
            continue
        (folder / INTERRUPTED).mkdir(exist_ok=True)
        run.rename(folder / INTERRUPTED / run.name)
    return [record for record in records if record.get("step", -1) > covered]
