"""What runs inside a sweep trial's Ray worker: Tune's function trainable and the tracker that reports to Tune.

A trial is `launch.run.train_run`, the function behind `dlforge train`, run on one spec into one run folder,
with a `TuneTracker`: a LocalTracker (metrics.jsonl, W&B, checkpoints in the run folder) that also sends the
latest metrics to Tune whenever the sweep metric is logged, with a pointer to each checkpoint. A retry, or a
trial continued by `dlforge sweep --resume`, picks its run folder up from the newest checkpoint; a trial that
had already finished reports what it recorded and trains nothing.

A packed trial (launch/sweep_config.py) trains a population into its run folder: one member run folder per seed
(and point), each with a `MemberTuneTracker`, a LocalTracker that hands its values to the trial's `PackReporter`.
Once every member that trains has logged the sweep metric at a step, the reporter sends Tune `pack_metric` of the
members' latest values: the mean over seeds, or under pack: points the best point's mean over its seeds. Tune (and
ASHA, and Optuna) sees the point, not a seed; a pack of points is kept by ASHA as long as its best point is
promising, since stopping it for its worst points would stop the good ones with them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from launch.config import TrackingConfig, parse_config
from launch.text import is_number
from launch.tracking import LocalTracker, read_metrics
from launch.wandb_recovery import has_cut_off_runs
from networks import io
from networks.errors import ConfigError

if TYPE_CHECKING:
    from launch.sweep_config import SweepPlan

CLOSE_TIMEOUT_S = 60  # how long a process kept for the next trial waits for the stopped trial to close its W&B run
CONFIG_ERROR = "dlforge/config_error"  # a trial reports this (and stops the sweep) on bad input
TRIAL_FILE = "trial.json"  # in a trial's run folder, once it ends: status, steps, seconds and its last report


class TuneTracker(LocalTracker):
    """A LocalTracker that also reports to Tune: the latest metrics whenever the sweep metric is
    logged, and a checkpoint (a pointer to the run folder's file) whenever the trainer saves one."""

    def __init__(self, run_dir: str | Path, tracking: TrackingConfig | None = None, *, metric: str, **kwargs):
        super().__init__(run_dir, tracking, **kwargs)
        self.metric = metric
        self.total_steps = kwargs.get("total_steps")
        self.step = kwargs.get("resume_step") or 0
        self.start_step = self.step
        self.reported_step: int | None = None
        self.last_report: dict[str, float] = {}
        self.stopped = False  # Tune's scheduler (ASHA) stopped this trial
        self._numbers: dict[str, float] = {}
        self._pending_checkpoint: Path | None = None
        if kwargs.get("resume_step") is not None:  # the latest values logged before the checkpoint
            for record in read_metrics(self.run_dir / "metrics.jsonl"):
                self._numbers.update(_numbers({k: v for k, v in record.items() if k != "step"}))

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
        self.last_report = payload
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


class PackReporter:
    """A packed trial's link to Tune: its members' trackers hand it their values; it reports `pack_metric` over the
    members' latest values once every member still training has logged the metric at the current step. A member
    that ended (solved, done, diverged) keeps its last value; one that never logged it (it diverged first) is left
    out. Has TuneTracker's record attributes (step, start_step, last_report) and final_report()."""

    def __init__(self, metric: str, mode: str, points: list[list[str]], folders: list[Path], *, total_steps: int):
        self.metric, self.mode, self.total_steps = metric, mode, total_steps
        self.names = [name for point in points for name in point]
        self.points = [[self.names.index(name) for name in point] for point in points]
        # What each member recorded before this attempt (a retry, or a resumed sweep); ended members stay so.
        recorded = [member_result(folder, metric) for folder in folders]
        self.values: list[float | None] = [value for value, _ in recorded]
        self.logged: list[int | None] = [None] * len(self.names)  # the step of each member's latest metric
        self.training = [False] * len(self.names)  # members with a tracker in this attempt, until they end
        self.step = self.start_step = 0
        self.reported_step: int | None = None
        self.last_report: dict[str, float] = {}
        self.stopped = False

    def member_started(self, name: str, resume_step: int | None) -> int:
        """A member's tracker opened; members that train on resume from the same step."""
        index = self.names.index(name)
        self.training[index] = True
        self.step = self.start_step = resume_step or 0
        return index

    def member_ended(self, index: int) -> None:
        self.training[index] = False

    def member_values(self, index: int, numbers: dict[str, float], step: int | None) -> None:
        if self.metric not in numbers:
            return
        self.values[index] = numbers[self.metric]
        if step is None:  # a summary
            return
        self.logged[index] = self.step = int(step)  # members log in lockstep (one loop steps them all)
        waiting = [k for k, training in enumerate(self.training) if training and self.logged[k] != self.step]
        if not waiting:
            self.report()

    def report(self, final: bool = False) -> None:
        if self.stopped or all(value is None for value in self.values):
            return
        if not final and self.total_steps and self.step >= self.total_steps:
            return  # as TuneTracker.report: the last step is reported once training has returned
        payload = {
            self.metric: pack_metric(self.values, self.points, self.mode),
            "step": self.step,
            "members/training": float(sum(self.training)),
        }
        self.reported_step, self.last_report = self.step, payload
        from ray import tune

        try:
            tune.report(payload)
        except SystemExit:  # how Tune's function API stops a trial (ASHA, or the sweep ending)
            self.stopped = True
            raise

    def final_report(self) -> None:
        if all(value is None for value in self.values):
            raise ConfigError("metric", f"'{self.metric}' was never reported by any member of this population")
        if self.reported_step != self.step:
            self.report(final=True)


def pack_metric(values: list[float | None], points: list[list[int]], mode: str) -> float:
    """What a packed trial tells Tune: each point's mean over its members (seeds) that have a value, and the best of
    those points (one point under pack: seeds, so the mean over seeds)."""
    found = [[values[k] for k in members if values[k] is not None] for members in points]
    means = [sum(scores) / len(scores) for scores in found if scores]
    return max(means) if mode == "max" else min(means)


class MemberTuneTracker(LocalTracker):
    """One member's LocalTracker in a packed trial, handing its values to the trial's PackReporter."""

    def __init__(self, run_dir: str | Path, tracking: TrackingConfig | None = None, *, reporter: PackReporter, **kw):
        super().__init__(run_dir, tracking, **kw)
        self.reporter = reporter
        self.index = reporter.member_started(Path(run_dir).name, kw.get("resume_step"))

    def log(self, metrics: dict[str, Any], step: int) -> None:
        super().log(metrics, step)
        self.reporter.member_values(self.index, _numbers(metrics), step)

    def summary(self, metrics: dict) -> None:
        super().summary(metrics)
        self.reporter.member_values(self.index, _numbers(metrics), None)

    def should_stop(self) -> bool:
        return self.reporter.stopped

    def close(self, failed: bool = False) -> None:
        self.reporter.member_ended(self.index)
        super().close(failed=failed and not self.reporter.stopped)  # a scheduler's stop is not a failure


def member_result(run_dir: Path, metric: str) -> tuple[float | None, int | None]:
    """A member's last value of `metric` (its summary's, else the last one logged) and its last logged step."""
    records = read_metrics(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").is_file() else []
    steps = [record["step"] for record in records if isinstance(record.get("step"), int)]
    values = [record[metric] for record in records if metric in record]
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        summary = {}
    value = summary.get(metric, values[-1] if values else None)
    return (float(value) if is_number(value) else None), max(steps, default=None)


def run_trial(config: dict, plan: SweepPlan) -> None:
    """Tune's function trainable: the point `config` (sampled values and seed) of `plan`, trained into
    the run folder named after this trial."""
    from ray import tune

    from launch import registry

    for kind, module in plan.trainers.items():  # kinds the driver knows (plugins, tests) resolve here too
        registry.TRAINERS.setdefault(kind, module)
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)  # a line per checkpoint otherwise
    wait_for_stopped_trials()
    run_dir = plan.trials_dir / tune.get_context().get_trial_name()  # trial_label()
    reporter = None
    if plan.packed:
        from networks.run_folder import MEMBERS

        names = [name for name, _ in plan.members(config)]
        per_point = len(plan.settings.seeds)
        reporter = PackReporter(
            plan.settings.metric,
            plan.settings.mode,
            [names[i : i + per_point] for i in range(0, len(names), per_point)],
            [run_dir / MEMBERS / name for name in names],
            total_steps=plan.total_steps,
        )
    try:
        train_trial(plan.trial_document(config), run_dir, metric=plan.settings.metric, reporter=reporter)
    except ConfigError as e:
        # Bad input is not worth a retry: tell the driver, which ends the sweep with exit code 2.
        tune.report({plan.settings.metric: math.nan, CONFIG_ERROR: str(e), "step": 0})


def train_trial(document: dict, run_dir: Path, *, metric: str, reporter: PackReporter | None = None) -> None:
    """Train the config `document` into `run_dir`, reporting `metric` to Tune as it goes (a population: through
    `reporter`, fed by one MemberTuneTracker per member).

    A run folder that holds a checkpoint is continued from it (a retry, or `dlforge sweep --resume`); one
    whose trial finished reports its recorded last result again and trains nothing."""
    from ray import tune

    with _sole_writer(run_dir):
        finished = _finished(run_dir)
        if finished is not None:
            tune.report(finished["report"])
            return
        _train(parse_config(document), run_dir, metric, reporter)


def _train(spec, run_dir: Path, metric: str, reporter: PackReporter | None) -> None:
    from launch.run import train_run

    trackers: list[TuneTracker | PackReporter] = [reporter] if reporter is not None else []

    def make_tracker(run_dir, tracking, **kwargs):
        if reporter is not None:  # one per member, in a population's member folder
            return MemberTuneTracker(run_dir, tracking, reporter=reporter, **kwargs)
        trackers.append(TuneTracker(run_dir, tracking, metric=metric, **kwargs))
        return trackers[-1]

    status = None
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        train_run(spec, run_dir, resume=run_dir.exists(), tracker_factory=make_tracker)
        status = "done"
        trackers[-1].final_report()
    except SystemExit:  # Tune ended the trial: its scheduler (ASHA), or the sweep being interrupted
        status = status or "stopped"
        raise
    finally:
        if status and trackers and run_dir.exists():
            tracker = trackers[-1]
            record = {
                "status": status,
                "step": tracker.step,
                "start_step": tracker.start_step,  # the checkpoint this attempt continued from (0: a fresh start)
                "train_s": round(time.perf_counter() - start, 3),  # wall seconds in train_run
                "cpu_s": round(time.process_time() - cpu_start, 3),  # CPU seconds of this process meanwhile
                "report": tracker.last_report,  # what Tune was told last
            }
            io.atomic_write_text(run_dir / TRIAL_FILE, json.dumps(record))
        # The run is finished (train_run closed it); stop W&B's service now, while this process is
        # whole, rather than in an atexit hook that Ray's actor exit races.
        if "wandb" in sys.modules:
            sys.modules["wandb"].teardown()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_initialized():
            torch.cuda.empty_cache()  # the process may run the next trial; give a shared GPU its memory back


@contextlib.contextmanager
def _sole_writer(run_dir: Path):
    """One process at a time trains a trial's run folder. A worker of a killed driver can live on for a few
    seconds, and a resumed sweep may start the trial again meanwhile: the second waits for the first to go."""
    import fcntl

    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(run_dir.with_name(f".{run_dir.name}.lock"), "a+") as lock:
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:  # Tune retries the trial (max_failures)
                    raise RuntimeError(f"{run_dir} is still being trained by another process") from None
                time.sleep(0.5)
        yield


def _finished(run_dir: Path) -> dict | None:
    """The trial record of a trial that ran to its end, else None."""
    try:
        record = json.loads((run_dir / TRIAL_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("status") == "done" and record.get("report") else None


def wait_for_stopped_trials() -> None:
    """Let a process that Tune keeps for the next trial wait until the trial it stopped has closed its run.

    The one place that leans on how Tune runs function trials rather than on its API (pyproject bounds ray to
    the versions checked; tests/test_sweep.py pins it). Tune stops a trial (ASHA, the sweep ending, Ctrl+C) by
    raising SystemExit from `tune.report` in the trial's thread and does not wait for the thread to close:
    - a process kept for the next trial waits TUNE_FUNCTION_THREAD_TIMEOUT_S (Tune's setting, 2 s by default)
      and fails the next trial if the stopped one is still closing its W&B run: raised here to CLOSE_TIMEOUT_S;
    - a process let go is ended with its placement group at once, often before W&B has finished: the driver
      then finishes that W&B run from the run folder (`finish_cut_off_wandb`).
    """
    os.environ["TUNE_FUNCTION_THREAD_TIMEOUT_S"] = str(CLOSE_TIMEOUT_S)


def finish_cut_off_wandb(run_dir: Path) -> bool:
    """Finish, from the run folder, an offline W&B run that the trial's process could not finish (Ray ended it
    while it closed, or it was killed): the cut-off run is set aside and a resumed one holds every step of
    metrics.jsonl and the summary. Only for trials whose process is gone. True if a run was finished here."""
    from launch.run import load_run_spec

    if not has_cut_off_runs(run_dir):
        return False
    spec = load_run_spec(run_dir)
    steps = [record["step"] for record in read_metrics(run_dir / "metrics.jsonl")]
    tracker = LocalTracker(run_dir, spec.tracking, config=spec.resolved, resume_step=max(steps, default=0))
    summary_path = run_dir / "summary.json"
    tracker.summary(json.loads(summary_path.read_text()) if summary_path.is_file() else {})  # starts W&B
    tracker.close()
    return True


def _numbers(metrics: dict) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, bool | int | float):
            out[key] = float(value)
    return out
