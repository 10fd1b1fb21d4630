"""What runs inside a sweep trial's Ray worker: the trial function and the tracker that reports to Tune.

A trial is `launch.run.train_run`, the function behind `dlforge train`, with a `TuneTracker`: a LocalTracker
(metrics.jsonl, W&B, checkpoints in the run folder) that also sends the latest metrics to Tune whenever the
sweep metric is logged, with a pointer to each checkpoint. Tune's scheduler (ASHA) stops a trial by raising
SystemExit from `tune.report`; the run folder and the W&B run are closed on the way out, and the worker
waits for that before it goes (see `trainable`).
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launch.config import TrackingConfig, parse_config
from launch.tracking import LocalTracker
from networks import io
from networks.errors import ConfigError

if TYPE_CHECKING:
    from launch.sweep import SweepPlan

CLOSE_TIMEOUT_S = 60  # how long a stopped trial's process waits for its W&B run to finish
CONFIG_ERROR = "dlforge/config_error"  # a trial reports this (and stops the sweep) on bad input
TRIAL_FILE = "trial.json"  # in a trial's run folder: {"status": "done" | "stopped", "step", "train_s", "cpu_s"}


class TuneTracker(LocalTracker):
    """A LocalTracker that also reports to Tune: the latest metrics whenever the sweep metric is
    logged, and a checkpoint (a pointer to the run folder's file) whenever the trainer saves one."""

    def __init__(self, run_dir: str | Path, tracking: TrackingConfig | None = None, *, metric: str, **kwargs):
        super().__init__(run_dir, tracking, **kwargs)
        self.metric = metric
        self.total_steps = kwargs.get("total_steps")
        self.step = 0
        self.reported_step: int | None = None
        self.stopped = False  # Tune's scheduler (ASHA) stopped this trial
        self._numbers: dict[str, float] = {}
        self._pending_checkpoint: Path | None = None

    def log(self, metrics: dict[str, Any], step: int) -> None:
        super().log(metrics, step)
        self.step = int(step)
        self._numbers.update(_numbers(metrics))
        if self.metric in metrics:
            self.report()

    def checkpoint(self, tree: dict, step: int, *, best: bool = False, metric: float | None = None) -> Path:
        stem = super().checkpoint(tree, step, best=best, metric=metric)
        self._pending_checkpoint = stem
        if self.metric in self._numbers:
            self.report()
        return stem

    def summary(self, metrics: dict) -> None:
        super().summary(metrics)
        self._numbers.update(_numbers(metrics))

    def should_stop(self) -> bool:
        return self.stopped

    def close(self, failed: bool = False) -> None:
        super().close(failed=failed and not self.stopped)  # a scheduler's stop is not a failure

    def report(self, final: bool = False) -> None:
        """Send the latest value of every metric (and a pending checkpoint) to Tune.

        The last step is reported once training has returned: ASHA stops a trial that reaches max_t at
        once, and the trainer's last checkpoint and summary come after its last log call.
        """
        if self.metric not in self._numbers or self.stopped:
            return
        if not final and self.total_steps and self.step >= self.total_steps:
            return
        payload = {**self._numbers, "step": self.step}
        stem, self._pending_checkpoint = self._pending_checkpoint, None
        self.reported_step = self.step
        if stem is None:
            self._send(payload, None)
            return
        from ray import tune

        with tempfile.TemporaryDirectory(prefix=".tune-checkpoint-", dir=self.run_dir) as folder:
            # Tune keeps a small pointer; the run folder holds the one real checkpoint (networks/io).
            pointer = {"run_dir": str(self.run_dir), "stem": str(stem), "step": self.step}
            Path(folder, "dlforge_checkpoint.json").write_text(json.dumps(pointer))
            self._send(payload, tune.Checkpoint.from_directory(folder))

    def _send(self, payload: dict, checkpoint) -> None:
        from ray import tune

        try:
            tune.report(payload, checkpoint=checkpoint)
        except SystemExit:  # how Tune's function API stops a trial (ASHA, or the sweep ending)
            self.stopped = True
            raise

    def final_report(self) -> None:
        """After training: report what the last log calls and the summary added."""
        if self.metric not in self._numbers:
            raise ConfigError(
                "metric",
                f"'{self.metric}' was never reported by this trainer; it reported: "
                f"{', '.join(sorted(self._numbers)) or 'nothing'}",
            )
        if self.reported_step != self.step or self._pending_checkpoint is not None:
            self.report(final=True)


def run_trial(plan: SweepPlan, params: dict) -> None:
    """One trial: the trial's config, trained by `train_run` into its run folder."""
    from ray import tune

    from launch import registry
    from launch.run import train_run

    for kind, module in plan.trainers.items():  # kinds the driver knows (plugins, tests) resolve here too
        registry.TRAINERS.setdefault(kind, module)
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)  # a line per checkpoint otherwise
    run_dir = plan.trials_dir / tune.get_context().get_trial_name()  # trial_label()
    trackers: list[TuneTracker] = []

    def make_tracker(run_dir, tracking, **kwargs):
        trackers.append(TuneTracker(run_dir, tracking, metric=plan.settings.metric, **kwargs))
        return trackers[-1]

    status = None
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        spec = parse_config(plan.trial_document(params))
        # A retry (or --resume) continues the run folder from its newest checkpoint.
        train_run(spec, run_dir, resume=run_dir.exists(), tracker_factory=make_tracker)
        status = "done"
        trackers[-1].final_report()
    except SystemExit:  # Tune ended the trial: its scheduler (ASHA), or the sweep being interrupted
        status = status or "stopped"
        raise
    except ConfigError as e:
        # Bad input is not worth a retry: tell the driver, which ends the sweep with exit code 2.
        tune.report({plan.settings.metric: math.nan, CONFIG_ERROR: str(e), "step": 0})
    finally:
        if status and run_dir.exists():
            step = trackers[-1].step if trackers else None
            record = {
                "status": status,
                "step": step,
                "train_s": round(time.perf_counter() - start, 3),  # wall seconds in train_run
                "cpu_s": round(time.process_time() - cpu_start, 3),  # CPU seconds of this process meanwhile
            }
            io.atomic_write_text(run_dir / TRIAL_FILE, json.dumps(record))
        # The run is finished (train_run closed it); stop W&B's service now, while this process is
        # whole, rather than in an atexit hook that Ray's actor exit races.
        if "wandb" in sys.modules:
            sys.modules["wandb"].teardown()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():
            torch.cuda.empty_cache()  # the process may run the next trial; give a shared GPU its memory back


def trial_label(sweep_name: str, trial_id: str) -> str:
    """A trial's name, Tune folder, run folder and W&B run name: `<sweep>-003` for grid and random
    trials (Tune id `ab12c_00003`), `<sweep>-<id>` for the ids a search algorithm draws."""
    counted = re.fullmatch(r"[0-9a-f]+_(\d+)", trial_id)
    return f"{sweep_name}-{int(counted[1]):03d}" if counted else f"{sweep_name}-{trial_id}"


def trainable(plan: SweepPlan):
    """Tune's function trainable for `run_trial`, whose actor waits for the trial to close its W&B run.

    Tune stops a function trial by raising SystemExit in the training thread and then ending the actor
    without waiting for that thread; W&B would lose the run (seen here: an empty .wandb file). So
    `cleanup` joins the thread, whose `finally` blocks finish the run, before the actor goes.
    """
    import functools

    from ray.train._internal.session import get_session
    from ray.tune.trainable.function_trainable import wrap_function

    base = wrap_function(functools.partial(run_trial, plan), name="dlforge_trial")

    class DlforgeTrial(base):
        def cleanup(self):
            session = get_session()
            thread = getattr(session, "training_thread", None)
            try:
                super().cleanup()
            finally:
                if thread is not None and thread.is_alive():
                    thread.join(timeout=CLOSE_TIMEOUT_S)

    return DlforgeTrial


def _numbers(metrics: dict) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, bool | int | float):
            out[key] = float(value)
    return out
