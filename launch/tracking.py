"""The tracker handed to every trainer: metrics.jsonl, W&B, media, checkpoints and progress.

Trainers only see this object's methods (`log`, `image`, `video`, `checkpoint`, `summary`,
`should_stop`), so they never import W&B, Ray or the CLI. `metrics.jsonl` is always written, one JSON
object per `log` call with its `step`; W&B follows `tracking.wandb` (offline by default). An offline run
starts W&B lazily on the first thing it must record, so a run that fails its setup checks costs no W&B
start; an online run starts it at once, so an unreachable server stops the run at its start
(`INIT_TIMEOUT_S`) rather than midway. A run that trained ends by logging its best and final checkpoints
as a W&B model artifact (launch/wandb_run.py holds what acts on one W&B run).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from launch import wandb_run
from launch.config import TrackingConfig
from launch.text import slug
from launch.wandb_recovery import mark_closed, set_aside_interrupted
from launch.wandb_run import _check_wandb_online, finish_wandb, log_model_artifacts, start_wandb
from networks import io
from networks.errors import TrainingDiverged
from networks.run_folder import CHECKPOINTS, checkpoint_stems, load_latest, newest_checkpoint  # noqa: F401 (kept names)

KEEP_LAST = 2  # step checkpoints kept; the newest one that loads is the resume point


def non_finite_leaf(tree: Any, path: str = "") -> str | None:
    """The tree path of the first float tensor or array holding NaN or inf, else None."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            found = non_finite_leaf(value, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(tree, list | tuple):
        for index, value in enumerate(tree):
            found = non_finite_leaf(value, f"{path}.{index}")
            if found is not None:
                return found
    elif hasattr(tree, "is_floating_point"):  # a torch tensor
        return path if tree.is_floating_point() and not bool(tree.isfinite().all()) else None
    elif isinstance(tree, np.ndarray) and tree.dtype.kind == "f":
        return None if np.isfinite(tree).all() else path
    return None


class LocalTracker:
    """Writes a run folder: metrics.jsonl, summary.json, media/, checkpoints/ and the W&B run."""

    _with_open_wandb: weakref.WeakSet = weakref.WeakSet()  # trackers of this process whose W&B run is open
    _unmarked: list[tuple[Path, int]] = []  # finished offline runs (folder, last step) awaiting W&B's teardown

    def __init__(
        self,
        run_dir: str | Path,
        tracking: TrackingConfig | None = None,
        *,
        config: dict | None = None,
        total_steps: int | None = None,
        progress: bool = False,
        resume_step: int | None = None,
    ):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.tracking = tracking or TrackingConfig(wandb="disabled")
        self.config = config or {}
        self._wandb_run = None
        self._closed = False
        self._latest: dict[str, float] = {}
        self._checkpointed = False  # this process saved a checkpoint: the run trained, and ends with artifacts
        self._sent = {"rows": 0, "last_step": None, "media": 0, "model artifacts": 0}  # handed to W&B
        self._backlog: list[dict] = []  # records a crash kept from W&B, logged first when W&B starts
        _check_wandb_online(self.tracking)
        if self.tracking.wandb == "online":
            self._wandb()  # an unreachable server stops the run now, not after its first minutes of training
        metrics_path = self.run_dir / "metrics.jsonl"
        if resume_step is not None:
            truncate_metrics(metrics_path, resume_step)
            if self.tracking.wandb == "offline":
                self._backlog = set_aside_interrupted(self.run_dir, read_metrics(metrics_path))
        elif metrics_path.exists():
            metrics_path.unlink()
        self._metrics = metrics_path.open("a", buffering=1)
        self._progress = _Progress(total_steps, start=resume_step or 0) if progress else None

    # --- the trainer-facing API ------------------------------------------------------------

    def log(self, metrics: dict[str, Any], step: int) -> None:
        clean = {k: _scalar(v) for k, v in metrics.items()}
        self._metrics.write(json.dumps({"step": int(step), **clean}) + "\n")
        self._latest.update(clean)
        if self.tracking.wandb != "disabled":
            self._wandb().log({"global_step": int(step), **clean})
            self._sent.update(rows=self._sent["rows"] + 1, last_step=int(step))
        if self._progress:
            self._progress.update(step, self._latest)

    def image(self, key: str, image: Any, step: int, caption: str | None = None) -> Path:
        path = self.run_dir / "media" / f"{slug(key)}-{int(step):09d}.png"
        if isinstance(image, str | Path):
            path = Path(image)
        else:
            save_png(image, path)
        if self.tracking.wandb != "disabled":
            import wandb

            self._wandb().log({"global_step": int(step), key: wandb.Image(str(path), caption=caption)})
            self._sent["media"] += 1
        return path

    def video(self, key: str, path: str | Path, step: int) -> None:
        if self.tracking.wandb != "disabled":
            import wandb

            self._wandb().log({"global_step": int(step), key: wandb.Video(str(path), format="mp4")})
            self._sent["media"] += 1

    def checkpoint(self, tree: dict, step: int, *, best: bool = False, metric: float | None = None) -> Path:
        """Save `tree` atomically as checkpoints/step-<step>; keep the last two (and one best)."""
        folder = self.run_dir / CHECKPOINTS
        bad = non_finite_leaf(tree)
        if bad is not None:  # a diverged model is never saved, so the newest checkpoint stays the last good one
            kept = checkpoint_stems(self.run_dir, "any")
            raise TrainingDiverged(
                f"non-finite values in '{bad}' at step {int(step)}: training diverged and this checkpoint was not "
                f"saved; the last good one is {kept[0].name if kept else 'none (no checkpoint yet)'}. Lower the "
                "learning rate (or set nan_policy: skip where the trainer has it)"
            )
        meta = {"step": int(step), "metric": metric, "time": time.time()}
        self._metrics.flush()
        os.fsync(self._metrics.fileno())  # metrics up to this step survive a crash with the checkpoint
        prefix = "best" if best else "step"
        stem = io.save(folder / f"{prefix}-{int(step):09d}", tree, meta)
        _prune(folder, prefix, keep=1 if best else KEEP_LAST)
        self._checkpointed = True
        return stem

    def summary(self, metrics: dict[str, Any]) -> None:
        path = self.run_dir / "summary.json"
        current = json.loads(path.read_text()) if path.exists() else {}
        current.update({k: _scalar(v) for k, v in metrics.items()})
        io.atomic_write_text(path, json.dumps(current, indent=2))
        if self.tracking.wandb != "disabled":
            self._wandb().summary.update(current)

    def should_stop(self) -> bool:
        return False

    def close(self, failed: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        if self._progress:
            self._progress.close()
        self._metrics.close()
        unsent = []  # what W&B could not send, for one line at the end
        if self.tracking.wandb != "disabled" and self._checkpointed and not failed:
            logged, why_not = log_model_artifacts(self._wandb(), self.run_dir)
            self._sent["model artifacts"] += len(logged)
            if why_not:
                unsent.append(f"the model artifacts were not logged ({why_not}; the checkpoints are in the run folder)")
        if self._wandb_run is not None:
            import wandb

            sync_dir = self._wandb_run.settings.sync_dir
            if not finish_wandb(self._wandb_run, failed=failed):
                sent = self._sent
                held = [f"{sent['rows']} logged rows up to step {sent['last_step']}"]
                held += [f"{sent[key]} {key}" for key in ("media", "model artifacts") if sent[key]]
                unsent.append(
                    f"its upload was unfinished {wandb_run.FINISH_TIMEOUT_S:g} s after the end; what W&B holds "
                    f"({', '.join(held)}) is kept in {sync_dir}: upload it with `wandb sync {sync_dir}`"
                )
            LocalTracker._with_open_wandb.discard(self)
            if self.tracking.wandb == "offline":
                steps = [record["step"] for record in read_metrics(self.run_dir / "metrics.jsonl")]
                LocalTracker._unmarked.append((Path(self._wandb_run.dir).parent, max(steps, default=-1)))
            # finish() can return before the service has written the run file; teardown waits for it, so the offline
            # run is complete on disk when close() returns (tests read it right away), and only then is it marked
            # closed. Teardown ends every W&B run of the process: while another tracker's run is open (a
            # population's members), the last one to close tears down and marks them all.
            if not LocalTracker._with_open_wandb:
                wandb.teardown()
                for folder, last_step in LocalTracker._unmarked:
                    mark_closed(folder, last_step)
                LocalTracker._unmarked.clear()
        if unsent:
            print(
                f"warning: W&B could not send all of this run (metrics.jsonl is complete): {'; '.join(unsent)}",
                file=sys.stderr,
            )

    # --- W&B -------------------------------------------------------------------------------

    def _wandb(self):
        if self._wandb_run is None:
            self._wandb_run = start_wandb(self.run_dir, self.tracking, self.config)
            LocalTracker._with_open_wandb.add(self)
            for record in self._backlog:
                self._wandb_run.log({"global_step": record["step"], **{k: v for k, v in record.items() if k != "step"}})
            self._backlog = []
        return self._wandb_run


# --- checkpoints in a run folder -------------------------------------------------------------


def clear_interrupted_writes(run_dir: Path) -> int:
    """Remove what a killed writer left in a run folder: temporary files of atomic writes, and tensor files
    whose JSON sidecar never arrived. Only for the one process that owns the run (a resume). Returns the count."""
    run_dir = Path(run_dir)
    folder = run_dir / CHECKPOINTS
    stale = [*run_dir.glob(".*.tmp"), *folder.glob(".*.tmp")]
    for tensors in folder.glob("*.safetensors"):
        if not tensors.with_name(tensors.name[: -len(".safetensors")] + ".json").exists():
            stale.append(tensors)
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def _prune(folder: Path, prefix: str, keep: int) -> None:
    for stem in sorted((p.with_suffix("") for p in folder.glob(f"{prefix}-*.json")), reverse=True)[keep:]:
        for suffix in (".json", ".safetensors"):
            stem.with_suffix(suffix).unlink(missing_ok=True)


def truncate_metrics(path: Path, last_step: int) -> None:
    """Keep the records with step <= last_step (the resume point); drop a torn last line."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("step", math.inf) <= last_step:
            kept.append(line)
    text = "".join(line + "\n" for line in kept)
    if text != path.read_text():  # unchanged: leave the file (and a writer that has it open) alone
        io.atomic_write_text(path, text)


def read_metrics(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


# --- media -----------------------------------------------------------------------------------


def save_png(image: np.ndarray, path: Path) -> Path:
    """Save an image array (HxW, HxWxC or CxHxW; uint8, or float in [0, 1]) as a PNG."""
    import matplotlib.image

    array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
        array = array.transpose(1, 2, 0)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype != np.uint8:
        array = (np.clip(array, 0.0, 1.0) * 255).round().astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    matplotlib.image.imsave(path, array, cmap="gray" if array.ndim == 2 else None)
    return path


def _scalar(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep the fact visible
    return value


class _Progress:
    """A rich progress bar: steps, steps/s and the latest metrics."""

    SHOWN = ("charts/episodic_return", "eval/mean_return", "eval/accuracy", "losses/td_loss", "losses/loss")

    def __init__(self, total: int | None, start: int = 0):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(
            TextColumn("[bold]train"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TextColumn("{task.fields[sps]} steps/s"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[latest]}"),
            transient=False,
        )
        self._task = self._bar.add_task("train", total=total, completed=start, sps="-", latest="")
        self._t0, self._s0 = time.perf_counter(), start
        self._bar.start()

    def update(self, step: int, latest: dict) -> None:
        elapsed = time.perf_counter() - self._t0
        sps = f"{(step - self._s0) / elapsed:,.0f}" if elapsed > 0 else "-"
        shown = "  ".join(
            f"{k.split('/')[-1]}={v:.4g}" for k, v in latest.items() if k in self.SHOWN and isinstance(v, int | float)
        )
        self._bar.update(self._task, completed=step, sps=sps, latest=shown)

    def close(self) -> None:
        self._bar.stop()
