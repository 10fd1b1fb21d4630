"""Hyperparameter sweeps on Ray Tune, every trial a `dlforge train` run tracked in W&B.

A sweep config (configs/sweeps/*.yaml) names a base config, a search space, seeds, the metric to
optimise and how to schedule the trials. Ray does the scheduling: the search space becomes Tune
distributions, `seeds` a grid over `seed` (or a Repeater around Optuna), `asha` Ray's ASHA scheduler
with the trainer's step as its clock. Each trial runs `launch.run.train_run`, the same function as
`dlforge train`, into its own run folder under the sweep folder, with a tracker that also reports to
Tune. W&B is logged from inside the trial process and finished even when the trial fails or the
scheduler stops it, so every offline run holds every step its trial reported.

    runs/sweeps/<name>/
        sweep.yaml          the resolved sweep: settings + the base config every trial starts from
        trials/<name>-000/  one run folder per trial (config.yaml, metrics.jsonl, checkpoints/, wandb/)
        tune/               Ray Tune's experiment state (what --resume restores)
        results.csv/.json   config, metric, status and run folder per trial
        best.json           the best trial, its metric, config and best checkpoint
        best_config.yaml    that trial's full config: `dlforge train best_config.yaml` reruns it
"""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import logging
import math
import os
import re
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from launch.config import apply_overrides, from_dict, parse_config, read_yaml, to_dict
from launch.registry import TRAINERS, trainer_module
from launch.sweep_trial import CONFIG_ERROR, TRIAL_FILE, trainable, trial_label
from launch.text import is_number, short
from launch.tracking import _check_wandb_online, checkpoint_stems
from networks import io
from networks.errors import ConfigError
from networks.spec import did_you_mean

SPACE_TYPES = ("grid", "choice", "uniform", "loguniform", "randint")


# --- the sweep config ---------------------------------------------------------------------------


@dataclass
class SchedulerConfig:
    """When to stop trials: fifo runs each to its end; asha stops the worst early (Li et al. 2020)."""

    type: Literal["fifo", "asha"] = "fifo"
    grace_period: int = field(default=1, metadata={"ge": 1})  # trainer steps before ASHA may stop a trial
    max_t: int | None = field(default=None, metadata={"ge": 1})  # ASHA's last rung, in steps; None = total_steps
    reduction_factor: float = field(default=4.0, metadata={"gt": 1})  # keep the top 1/4 per rung (Ray's default)


@dataclass
class Resources:
    """What one trial holds while it runs."""

    cpu: float = field(default=1.0, metadata={"gt": 0})  # CPU cores per trial
    gpu: float = field(default=0.0, metadata={"ge": 0})  # GPUs per trial; a fraction shares one GPU


@dataclass
class SweepConfig:
    """One sweep: a base config, a search space over its fields, seeds, a metric and a schedule."""

    base: str | dict[str, Any]  # a config file (relative to the sweep file) or the config inline
    metric: str  # a metric the trainer logs, e.g. eval/mean_return
    mode: Literal["max", "min"] = "max"  # whether higher or lower metric is better
    overrides: dict[str, Any] = field(default_factory=dict)  # dotted key -> value, applied to the base
    space: dict[str, Any] = field(default_factory=dict)  # dotted key -> {grid|choice|uniform|loguniform|randint: ..}
    seeds: list[int] = field(default_factory=lambda: [0])  # every point runs once per seed
    num_samples: int = field(default=1, metadata={"ge": 1})  # draws from the space (grids: repeats)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    search: Literal["random", "grid", "optuna"] = "random"  # random also expands grids; optuna: Bayesian TPE
    resources: Resources = field(default_factory=Resources)
    max_concurrent: int | None = field(default=None, metadata={"ge": 1})  # None: as many as resources allow
    max_failures: int = field(default=2, metadata={"ge": 0})  # retries of a trial that raises or loses its worker
    name: str | None = None  # sweep folder name; default: the sweep file's name

    def validate(self) -> None:
        if not self.seeds:
            raise ConfigError("seeds", "is empty; list at least one seed, e.g. [0]")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError("seeds", f"repeats a seed: {self.seeds}")
        if "seed" in self.space:
            raise ConfigError("space.seed", "seeds are swept with `seeds: [...]`, not in the space")
        dimensions = {key: parse_dimension(key, spec) for key, spec in self.space.items()}
        if self.search == "grid":
            sampled = [key for key, (kind, _) in dimensions.items() if kind != "grid"]
            if sampled:
                raise ConfigError(
                    f"space.{sampled[0]}",
                    "search: grid needs every dimension to be a grid; use search: random (or optuna) to sample",
                )
            if self.num_samples != 1:
                raise ConfigError("num_samples", f"search: grid runs each grid point once; got {self.num_samples}")
        if self.search == "optuna":
            grids = [key for key, (kind, _) in dimensions.items() if kind == "grid"]
            if grids:
                raise ConfigError(f"space.{grids[0]}", "search: optuna cannot take a grid; use choice")
            if not dimensions:
                raise ConfigError("space", "search: optuna needs at least one dimension to search")
        gpu = self.resources.gpu
        if gpu > 1 and not float(gpu).is_integer():
            raise ConfigError("resources.gpu", f"must be a fraction <= 1 or a whole number, got {gpu}")
        if self.scheduler.max_t is not None and self.scheduler.grace_period > self.scheduler.max_t:
            raise ConfigError(
                "scheduler.grace_period",
                f"must be <= max_t ({self.scheduler.max_t}), got {self.scheduler.grace_period}",
            )


def parse_dimension(key: str, spec: Any) -> tuple[str, list]:
    """`{loguniform: [1e-4, 1e-2]}` -> ("loguniform", [1e-4, 1e-2]), checked."""
    where = f"space.{key}"
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ConfigError(
            where,
            f"expected one of {{{', '.join(SPACE_TYPES)}}}: <values>, e.g. "
            "{grid: [0.001, 0.0003]}; got " + repr(spec),
        )
    ((kind, values),) = spec.items()
    if kind not in SPACE_TYPES:
        raise ConfigError(
            where,
            f"unknown search-space type '{kind}'{did_you_mean(str(kind), SPACE_TYPES)}; "
            f"allowed: {', '.join(SPACE_TYPES)}",
        )
    where = f"{where}.{kind}"
    if kind in ("grid", "choice"):
        if not isinstance(values, list):
            raise ConfigError(where, f"expected a list of values, got {values!r}")
        if not values:
            raise ConfigError(where, "is empty; list at least one value")
        return kind, values
    if not isinstance(values, list) or len(values) != 2 or not all(is_number(v) for v in values):
        raise ConfigError(where, f"expected [low, high], got {values!r}")
    low, high = (float(v) for v in values)
    if kind == "randint" and not all(float(v).is_integer() for v in values):
        raise ConfigError(where, f"expected integer bounds [low, high), got {values!r}")
    if not low < high:
        raise ConfigError(where, f"needs low < high, got [{values[0]}, {values[1]}]")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(where, f"needs low > 0 (a log scale), got {values[0]}")
    return kind, ([int(low), int(high)] if kind == "randint" else [low, high])


@dataclass
class SweepPlan:
    """A validated sweep, everything a trial needs, plain data so Ray can ship it to workers."""

    name: str
    sweep_dir: Path
    settings: SweepConfig
    kind: str
    base: dict  # the base config document, overrides applied
    total_steps: int
    trainers: dict[str, str]  # the driver's trainer registry, so workers resolve the same kinds

    @property
    def trials_dir(self) -> Path:
        return self.sweep_dir / "trials"

    def trial_document(self, params: dict) -> dict:
        """The config of one trial: the base, the sampled point, its seed, and W&B grouping."""
        document = copy.deepcopy(self.base)
        for key, value in params.items():
            if key not in ("seed", "__trial_index__"):
                set_dotted(document, key, value)
        seeds = self.settings.seeds
        document["seed"] = seeds[params["__trial_index__"]] if "__trial_index__" in params else params["seed"]
        tracking = dict(document.get("tracking") or {})
        tracking["group"] = self.name
        tracking["tags"] = list(dict.fromkeys([*(tracking.get("tags") or []), f"sweep:{self.name}"]))
        document["tracking"] = tracking
        return document

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "settings": to_dict(self.settings),
            "base": self.base,
            "total_steps": self.total_steps,
            "trainers": self.trainers,
        }


def load_sweep(
    path: str | Path,
    overrides: list[str] | tuple = (),
    *,
    out: str | Path = "runs",
    name: str | None = None,
    cpus_per_trial: float | None = None,
    gpus_per_trial: float | None = None,
    max_concurrent: int | None = None,
) -> SweepPlan:
    """Read and validate a sweep file; `overrides` apply to the base config of every trial."""
    path = Path(path)
    document = read_yaml(path)
    if cpus_per_trial is not None:
        document.setdefault("resources", {})["cpu"] = cpus_per_trial
    if gpus_per_trial is not None:
        document.setdefault("resources", {})["gpu"] = gpus_per_trial
    if max_concurrent is not None:
        document["max_concurrent"] = max_concurrent
    settings = from_dict(SweepConfig, document, "")
    return plan_sweep(settings, overrides, source=path, out=out, name=name)


def plan_sweep(
    settings: SweepConfig,
    overrides: list[str] | tuple = (),
    *,
    source: Path | None = None,
    out: str | Path = "runs",
    name: str | None = None,
) -> SweepPlan:
    name = name or settings.name or (source.stem if source else "sweep")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise ConfigError("--name", f"expected a plain folder name (letters, digits, _ . -), got '{name}'")
    base = _base_document(settings.base, source)
    for key, value in settings.overrides.items():
        set_dotted(base, key, value)
    base = apply_overrides(base, overrides)
    spec = parse_config(base)  # the base itself must be a valid config
    for key, spec_value in settings.space.items():  # and so must every value the space can take
        kind, values = parse_dimension(key, spec_value)
        candidates = values if kind in ("grid", "choice") else [values[0], values[1] - (kind == "randint")]
        for value in candidates:
            trial = copy.deepcopy(base)
            set_dotted(trial, key, value)
            parse_config(trial)
    _check_metric(spec.kind, settings.metric)
    _check_wandb_online(spec.tracking)  # online without an API key: say so now, not from the first trial
    total_steps = int(getattr(spec.config, "total_steps", 0) or 0)
    if settings.scheduler.type == "asha":
        max_t = settings.scheduler.max_t or total_steps
        if settings.scheduler.grace_period > max_t:
            raise ConfigError(
                "scheduler.grace_period", f"must be <= max_t ({max_t} steps), got {settings.scheduler.grace_period}"
            )
    return SweepPlan(
        name=name,
        sweep_dir=(Path(out) / "sweeps" / name).resolve(),
        settings=settings,
        kind=spec.kind,
        base=base,
        total_steps=total_steps,
        trainers=dict(TRAINERS),
    )


def _base_document(base: str | dict, source: Path | None) -> dict:
    if isinstance(base, dict):
        return copy.deepcopy(base)
    path = Path(base)
    if not path.is_absolute() and source is not None:
        path = source.parent / path
    if not path.exists():
        raise ConfigError("base", f"file not found: {path} (a path is relative to the sweep file)")
    return read_yaml(path)


def _check_metric(kind: str, metric: str) -> None:
    """Trainers that declare METRICS get the metric checked now; others fail fast at their first trial."""
    known = getattr(trainer_module(kind), "METRICS", None)
    if known and metric not in known:
        raise ConfigError(
            "metric",
            f"'{metric}' is never reported by the {kind} trainer"
            f"{did_you_mean(metric, known)}; it reports: {', '.join(known)}",
        )


# --- the search space in Tune's terms -------------------------------------------------------------


def tune_search(plan: SweepPlan):
    """(param_space, search_alg, num_samples) for Tune."""
    from ray import tune

    settings = plan.settings
    space: dict[str, Any] = {}
    for key, spec in settings.space.items():
        kind, values = parse_dimension(key, spec)
        if kind in ("grid", "choice"):
            space[key] = tune.grid_search(values) if kind == "grid" else tune.choice(values)
        else:
            space[key] = {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}[kind](
                *values
            )
    if settings.search == "optuna":
        from ray.tune.search import Repeater
        from ray.tune.search.optuna import OptunaSearch

        # Optuna proposes points; the Repeater runs each once per seed and reports their mean back.
        searcher = Repeater(OptunaSearch(seed=settings.seeds[0]), repeat=len(settings.seeds), set_index=True)
        return space, searcher, settings.num_samples * len(settings.seeds)
    space["seed"] = tune.grid_search(list(settings.seeds))
    return space, None, settings.num_samples


def tune_scheduler(plan: SweepPlan):
    scheduler = plan.settings.scheduler
    if scheduler.type == "fifo":
        return None
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(
        time_attr="step",
        grace_period=scheduler.grace_period,
        max_t=scheduler.max_t or max(plan.total_steps, scheduler.grace_period),
        reduction_factor=scheduler.reduction_factor,
    )


# --- the driver -------------------------------------------------------------------------------------


def main(args) -> int:
    """`dlforge sweep SWEEP.yaml [overrides] [--address] [--cpus-per-trial] ... [--resume]`."""
    joining = bool(args.address or os.environ.get("RAY_ADDRESS"))
    # `ray start --head` turns on token auth in Ray 2.60, and Ray reads this when it is imported. It is set
    # for this command only: left behind, it would also reach the GCS of a later embedded cluster in the
    # same process, whose driver (imported without it) would then be refused.
    with _environment(RAY_AUTH_MODE=os.environ.get("RAY_AUTH_MODE", "token") if joining else None):
        return _sweep_command(args)


@contextlib.contextmanager
def _environment(**values: str | None):
    """Set the environment variables whose value is not None, and restore them afterwards."""
    saved = {key: os.environ.get(key) for key, value in values.items() if value is not None}
    os.environ.update({key: value for key, value in values.items() if value is not None})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _sweep_command(args) -> int:
    plan = load_sweep(
        args.sweep_config,
        args.overrides,
        out=args.out,
        name=args.name,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_concurrent=args.max_concurrent,
    )
    if args.resume:
        if not (plan.sweep_dir / "tune").is_dir():
            raise ConfigError("--resume", f"no sweep to continue at {plan.sweep_dir}")
        if args.overrides:
            raise ConfigError("--resume", "continues the sweep as it was started; overrides cannot change it")
        plan = stored_plan(plan.sweep_dir)
    elif plan.sweep_dir.exists():
        raise ConfigError(
            "--name", f"sweep folder {plan.sweep_dir} already exists; continue it with --resume or pick another --name"
        )
    outcome = run_sweep(plan, address=args.address, resume=args.resume)
    print_results(outcome)
    if outcome.interrupted:
        print(
            f"interrupted; continue with: dlforge sweep {args.sweep_config} --resume"
            + (f" --name {plan.name}" if args.name else "")
            + (f" --out {args.out}" if args.out != "runs" else "")
        )
        return 130
    print(f"sweep: {plan.sweep_dir}")
    return 0 if outcome.best is not None else 1


@dataclass
class SweepOutcome:
    plan: SweepPlan
    rows: list[dict]
    best: dict | None
    interrupted: bool


def run_sweep(plan: SweepPlan, *, address: str | None = None, resume: bool = False) -> SweepOutcome:
    """Run (or continue) the sweep on Ray and write its results. Bad input removes a new sweep folder."""
    created = [p for p in (plan.sweep_dir, *plan.sweep_dir.parents) if not p.exists()]  # to undo on bad input
    started_ray = False
    try:
        started_ray = connect(address, plan)
        check_resources(plan)
        plan.sweep_dir.mkdir(parents=True, exist_ok=True)
        io.atomic_write_text(plan.sweep_dir / "sweep.yaml", yaml.safe_dump(plan.to_dict(), sort_keys=False))
        grid = _tuner(plan, resume).fit()
        outcome = collect_results(plan, grid)
        errors = [row for row in outcome.rows if row.get("config_error")]
        if errors:
            raise ConfigError("", errors[0]["config_error"])
        return outcome
    except ConfigError:
        if created:
            shutil.rmtree(plan.sweep_dir, ignore_errors=True)
            for folder in created[1:]:  # runs/sweeps/ (and runs/) if this sweep made them
                with contextlib.suppress(OSError):
                    folder.rmdir()
        raise
    finally:
        if started_ray:
            sys.modules["ray"].shutdown()


def _tuner(plan: SweepPlan, resume: bool):
    from ray import tune

    resources = {"cpu": plan.settings.resources.cpu, "gpu": plan.settings.resources.gpu}
    trial = tune.with_resources(trainable(plan), resources)
    if resume:
        return tune.Tuner.restore(str(plan.sweep_dir / "tune"), trial, resume_unfinished=True, resume_errored=True)
    param_space, search_alg, num_samples = tune_search(plan)
    label = _TrialLabel(plan.name)
    return tune.Tuner(
        trial,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=plan.settings.metric,
            mode=plan.settings.mode,
            num_samples=num_samples,
            search_alg=search_alg,
            scheduler=tune_scheduler(plan),
            max_concurrent_trials=plan.settings.max_concurrent,
            reuse_actors=True,  # the next trial runs in a finished trial's process: no new process, no re-imports
            trial_name_creator=label,
            trial_dirname_creator=label,
        ),
        run_config=tune.RunConfig(
            name="tune",
            storage_path=str(plan.sweep_dir),
            failure_config=tune.FailureConfig(max_failures=plan.settings.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),  # pointers: tiny, and no forced snapshots
            stop=_stop_on_config_error(),
            verbose=1,
        ),
    )


class _TrialLabel:
    """Names Tune's trials (and their folders) like their run folders: `<sweep>-003`."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, trial) -> str:
        return trial_label(self.name, trial.trial_id)


def _stop_on_config_error():
    """A Stopper that ends the whole sweep as soon as one trial reports bad input (all share the config)."""
    from ray import tune

    class StopOnConfigError(tune.Stopper):
        def __init__(self):
            self.failed = False

        def __call__(self, trial_id: str, result: dict) -> bool:
            self.failed = self.failed or CONFIG_ERROR in result
            return self.failed

        def stop_all(self) -> bool:
            return self.failed

    return StopOnConfigError()


def stored_plan(sweep_dir: Path) -> SweepPlan:
    data = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())
    settings = from_dict(SweepConfig, data["settings"], "")
    return SweepPlan(
        name=data["name"],
        sweep_dir=sweep_dir.resolve(),
        settings=settings,
        kind=data["kind"],
        base=data["base"],
        total_steps=int(data["total_steps"]),
        trainers=data["trainers"],
    )


# --- Ray: an embedded cluster, or join one -------------------------------------------------------------


def connect(address: str | None, plan: SweepPlan) -> bool:
    """Start an embedded cluster or join `address` (or RAY_ADDRESS). True if this call started Ray.

    What can be checked without Ray (the address answers, a GPU exists) is checked first, so bad
    input fails in seconds.
    """
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return False  # a caller (a notebook, the tests) already chose the cluster
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None and plan.settings.resources.gpu > 0:
        import torch

        if torch.cuda.device_count() == 0:
            raise ConfigError("resources.gpu", _no_gpu(plan.settings.resources.gpu))
    if address is not None and address.startswith("ray://"):
        raise ConfigError(
            "--address",
            "Ray Client (ray://) does not suit Tune; give the cluster's GCS address "
            "host:port, as `ray start --head` prints it",
        )
    if address not in (None, "auto"):
        _check_reachable(address)

    import ray

    env_vars = {k: v for k, v in os.environ.items() if k.startswith("WANDB_")}
    if address is None:
        # Loopback only: without this variable set before Ray starts, the embedded cluster listens on every
        # interface and routes its own traffic through the machine's network address (Ray 2.60).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray.init(
            address="local",
            num_cpus=_machine_cpus(),
            include_dashboard=False,
            logging_level=logging.ERROR,
            runtime_env={"env_vars": env_vars} if env_vars else None,
        )
        print(f"ray: embedded local cluster, {_machine_cpus()} CPUs")
        return True
    root = Path(__file__).resolve().parents[1]
    packages = [str(root / p) for p in ("networks", "envs", "agents", "generative", "launch")]
    runtime_env = {"py_modules": packages, "excludes": ["__pycache__", "*.pyc"], "env_vars": env_vars}
    try:
        ray.init(address=address, runtime_env=runtime_env, logging_level=logging.ERROR)
    except (ConnectionError, TimeoutError, RuntimeError) as e:
        hint = "" if os.environ.get("RAY_AUTH_MODE") == "token" else " (a token-auth cluster needs RAY_AUTH_MODE=token)"
        raise ConfigError(
            "--address", f"cannot join a Ray cluster at {address}: {str(e).splitlines()[0]}{hint}"
        ) from None
    print(f"ray: joined {address}")
    return True


def _no_gpu(gpu: float) -> str:
    return f"{gpu:g} GPU per trial, but the Ray cluster has no GPU; set resources.gpu: 0 (or --gpus-per-trial 0)"


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError("--address", f"expected host:port (e.g. 127.0.0.1:6379) or auto, got '{address}'")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as e:
        reason = "timed out" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise ConfigError(
            "--address",
            f"cannot reach a Ray cluster at {address} ({reason}); start one with "
            "`ray start --head`, or leave out --address for a local cluster",
        ) from None


def check_resources(plan: SweepPlan) -> None:
    """Refuse trials the cluster can never place, instead of leaving them pending forever."""
    import ray

    want = plan.settings.resources
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    most_gpus = max((n.get("GPU", 0.0) for n in nodes), default=0.0)
    most_cpus = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
    if want.gpu > 0 and most_gpus == 0:
        raise ConfigError("resources.gpu", _no_gpu(want.gpu))
    if want.gpu > most_gpus:
        raise ConfigError("resources.gpu", f"{want.gpu:g} GPUs per trial, but no node has more than {most_gpus:g}")
    if want.cpu > most_cpus:
        raise ConfigError(
            "resources.cpu",
            f"{want.cpu:g} CPUs per trial, but no node has more than "
            f"{most_cpus:g}; lower resources.cpu (or --cpus-per-trial)",
        )


def _machine_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# --- results ----------------------------------------------------------------------------------------------


def collect_results(plan: SweepPlan, grid) -> SweepOutcome:
    """Write results.csv/.json, best.json and best_config.yaml from Tune's ResultGrid."""
    metric, mode = plan.settings.metric, plan.settings.mode
    rows = []
    finished = 0
    for result in grid:
        metrics = result.metrics or {}
        label = Path(result.path).name  # trial_dirname_creator: trial_label()
        params = {k: v for k, v in (result.config or {}).items() if k != "__trial_index__"}
        if "__trial_index__" in (result.config or {}):
            params["seed"] = plan.settings.seeds[result.config["__trial_index__"]]
        value = metrics.get(metric)
        step = metrics.get("step")
        marker = plan.trials_dir / label / TRIAL_FILE
        if result.error is not None:
            status = "error"
        elif not metrics.get("done"):
            status = "unfinished"  # interrupted, or never started
        else:
            status = json.loads(marker.read_text()).get("status", "done") if marker.exists() else "done"
        finished += status != "unfinished"
        rows.append(
            {
                "trial": label,
                "status": status,
                metric: _finite(value),
                "step": step,
                "params": params,
                "run_dir": str(plan.trials_dir / label),
                "error": _error_line(result.error) if result.error is not None else None,
                "config_error": metrics.get(CONFIG_ERROR),
            }
        )
    rows.sort(key=lambda r: r["trial"])
    scored = [r for r in rows if r[metric] is not None and r["status"] in ("done", "stopped")]
    best_row = (max if mode == "max" else min)(scored, key=lambda r: r[metric]) if scored else None
    best = None
    if best_row is not None:
        run_dir = Path(best_row["run_dir"])
        checkpoint = (checkpoint_stems(run_dir, "best") or checkpoint_stems(run_dir, "step") or [None])[0]
        best = {
            "trial": best_row["trial"],
            "metric": metric,
            "mode": mode,
            "value": best_row[metric],
            "params": best_row["params"],
            "run_dir": str(run_dir),
            "checkpoint": str(checkpoint.with_suffix(".safetensors")) if checkpoint else None,
            "config": str(plan.sweep_dir / "best_config.yaml"),
        }
        if (run_dir / "config.yaml").exists():
            shutil.copyfile(run_dir / "config.yaml", plan.sweep_dir / "best_config.yaml")
        io.atomic_write_text(plan.sweep_dir / "best.json", json.dumps(best, indent=2))
    _write_tables(plan, rows)
    return SweepOutcome(plan=plan, rows=rows, best=best, interrupted=finished < len(rows))


def _write_tables(plan: SweepPlan, rows: list[dict]) -> None:
    metric = plan.settings.metric
    io.atomic_write_text(
        plan.sweep_dir / "results.json",
        json.dumps({"sweep": plan.name, "metric": metric, "mode": plan.settings.mode, "trials": rows}, indent=2),
    )
    keys = sorted({k for row in rows for k in row["params"]})
    with open(plan.sweep_dir / "results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trial", *keys, metric, "step", "status", "run_dir", "error"])
        for row in rows:
            writer.writerow(
                [
                    row["trial"],
                    *(json.dumps(row["params"].get(k)) for k in keys),
                    row[metric],
                    row["step"],
                    row["status"],
                    row["run_dir"],
                    row["error"] or "",
                ]
            )


def print_results(outcome: SweepOutcome) -> None:
    from rich.console import Console
    from rich.table import Table

    plan = outcome.plan
    metric = plan.settings.metric
    keys = sorted({k for row in outcome.rows for k in row["params"]})
    table = Table(title=f"sweep {plan.name}: {metric} ({plan.settings.mode})")
    for column in ("trial", *keys, metric, "step", "status"):
        table.add_column(column, justify="right" if column in (metric, "step") else "left")
    best_trial = outcome.best["trial"] if outcome.best else None
    for row in outcome.rows:
        value = row[metric]
        shown = "-" if value is None else f"{value:.4g}"
        status = row["status"] if not row["error"] else f"error: {row['error']}"
        table.add_row(
            row["trial"],
            *(short(row["params"].get(k)) for k in keys),
            shown,
            str(row["step"] if row["step"] is not None else "-"),
            status,
            style="bold green" if row["trial"] == best_trial else None,
        )
    console = Console()
    console.print(table)
    if outcome.best:
        console.print(
            f"best: {outcome.best['trial']} {metric}={outcome.best['value']:.4g}  "
            f"checkpoint: {outcome.best['checkpoint']}"
        )


def _error_line(error: BaseException) -> str:
    """The trial's own exception, one line (Ray wraps it in a long RayTaskError)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


# --- small helpers -----------------------------------------------------------------------------------------


def set_dotted(document: dict, key: str, value: Any) -> None:
    """document[a][b][c] = value for key 'a.b.c', creating mappings on the way."""
    node = document
    *parents, leaf = key.split(".")
    for part in parents:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(key, f"cannot set a sub-key: '{part}' holds a {type(child).__name__}")
        node = child
    node[leaf] = value


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None
