"""A sweep file, validated, and the plan every trial is built from. Plain data: no Ray here.

A sweep config (configs/sweeps/*.yaml) names a base config, a search space over its fields, seeds, the metric
to optimise and how to schedule the trials. `load_sweep` reads and checks it once, at the edge: the base config,
every value the space can take, and the metric the trainer must report, so bad input fails before Ray starts.
The result is a `SweepPlan`, which Ray ships to the workers and `sweep.yaml` stores for `--resume`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from launch.config import apply_overrides, from_dict, parse_config, read_yaml, to_dict
from launch.registry import TRAINERS, trainer_module
from launch.text import is_number
from launch.tracking import _check_wandb_online
from networks.errors import ConfigError
from networks.spec import did_you_mean

SPACE_TYPES = ("grid", "choice", "uniform", "loguniform", "randint")
TRIAL_INDEX = "__trial_index__"  # set by the Repeater around Optuna: which of the point's seeds this trial runs


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
        point = {key: value for key, value in params.items() if key not in ("seed", TRIAL_INDEX)}
        document = apply_overrides(self.base, point)
        seeds = self.settings.seeds
        document["seed"] = seeds[params[TRIAL_INDEX]] if TRIAL_INDEX in params else params["seed"]
        tracking = dict(document.get("tracking") or {})
        tracking["group"] = self.name
        tracking["tags"] = list(dict.fromkeys([*(tracking.get("tags") or []), f"sweep:{self.name}"]))
        document["tracking"] = tracking
        return document

    def point(self, params: dict) -> dict:
        """A trial's sampled values and its seed, as results.csv lists them."""
        point = {key: value for key, value in params.items() if key != TRIAL_INDEX}
        if TRIAL_INDEX in params:
            point["seed"] = self.settings.seeds[params[TRIAL_INDEX]]
        return point

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
    base = apply_overrides(_base_document(settings.base, source), settings.overrides)
    base = apply_overrides(base, overrides)
    spec = parse_config(base)  # the base itself must be a valid config
    for key, spec_value in settings.space.items():  # and so must every value the space can take
        kind, values = parse_dimension(key, spec_value)
        candidates = values if kind in ("grid", "choice") else [values[0], values[1] - (kind == "randint")]
        for value in candidates:
            parse_config(apply_overrides(base, {key: value}))
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


def stored_plan(sweep_dir: Path) -> SweepPlan:
    """The plan a sweep was started with (its sweep.yaml), for --resume."""
    data = yaml.safe_load((sweep_dir / "sweep.yaml").read_text())
    return SweepPlan(
        name=data["name"],
        sweep_dir=sweep_dir.resolve(),
        settings=from_dict(SweepConfig, data["settings"], ""),
        kind=data["kind"],
        base=data["base"],
        total_steps=int(data["total_steps"]),
        trainers=data["trainers"],
    )


def trial_label(sweep_name: str, trial_id: str) -> str:
    """A trial's name, Tune folder, run folder and W&B run name: `<sweep>-003` for grid and random
    trials (Tune id `ab12c_00003`), `<sweep>-<id>` for the ids a search algorithm draws."""
    counted = re.fullmatch(r"[0-9a-f]+_(\d+)", trial_id)
    return f"{sweep_name}-{int(counted[1]):03d}" if counted else f"{sweep_name}-{trial_id}"


def _base_document(base: str | dict, source: Path | None) -> dict:
    if isinstance(base, dict):
        return base
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
