"""A sweep file, validated, and the plan every trial is built from. Plain data: no Ray here.

A sweep config (configs/sweeps/*.yaml) names a base config, a search space over its fields, seeds, the metric
to optimise and how to schedule the trials. `load_sweep` reads and checks it once, at the edge: the base config,
every value the space can take, and the metric the trainer must report, so bad input fails before Ray starts.
The result is a `SweepPlan`, which Ray ships to the workers and `sweep.yaml` stores for `--resume`.

Packing (`pack:`): a trainer that trains populations (a `population:` section: dqn, drqn) trains several seeds,
and points that differ only in per-member scalars (agents/population.py's VARYING), as one batched network in one
process. `pack: seeds` runs each point's seeds as one trial (`population: {seeds: [...]}`); `pack: points` also
packs the grid's points that differ only in VARYING fields into one trial, as per-member lists, up to
`max_members` members (points x seeds); `pack: none` runs one trial per seed. Each member is still a complete run
folder (trials/<trial>/members/<member>/), and the results list every member as if it had been its own trial.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from launch.config import apply_overrides, from_dict, parse_config, read_yaml, to_dict
from launch.registry import TRAINERS, trainer_module
from launch.text import is_number
from launch.wandb_run import _check_wandb_online
from networks.errors import ConfigError
from networks.spec import did_you_mean

SPACE_TYPES = ("grid", "choice", "uniform", "loguniform", "randint")
TRIAL_INDEX = "__trial_index__"  # set by the Repeater around Optuna: which of the point's seeds this trial runs
PACK_INDEX = "__pack__"  # pack: points: which of the plan's packs (lists of points) this trial trains


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
    # seeds: a point's seeds train as one population trial; points: also the grid points that differ only in
    # per-member scalars; none: one trial per seed. Default: seeds where the trainer trains populations, else none.
    pack: Literal["seeds", "none", "points"] | None = None
    max_members: int | None = field(default=None, metadata={"ge": 1})  # pack: points: members (points x seeds)

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
        if self.max_members is not None and self.pack != "points":
            raise ConfigError("max_members", f"applies to pack: points only (pack: {self.pack or 'default'})")
        if self.pack == "points":
            sampled = [key for key, (kind, _) in dimensions.items() if kind != "grid"]
            if sampled or self.search == "optuna":
                raise ConfigError(
                    "pack",
                    "points needs every dimension to be a grid, searched as a grid (the points are packed before "
                    f"the trials start); got {f'space.{sampled[0]}' if sampled else 'search: optuna'}; "
                    "use pack: seeds",
                )
            if self.max_members is not None and self.max_members < len(self.seeds):
                raise ConfigError(
                    "max_members",
                    f"must be >= the number of seeds ({len(self.seeds)}): a point's seeds share a trial, "
                    f"got {self.max_members}",
                )
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

    @property
    def packed(self) -> bool:
        """Whether a trial trains a population: several seeds (pack: seeds), or points and seeds (pack: points)."""
        return self.settings.pack == "points" or (self.settings.pack == "seeds" and len(self.settings.seeds) > 1)

    def packs(self) -> list[list[dict]]:
        """pack: points: the grid's points in packs, one pack per trial. Points that differ in a field outside
        VARYING (it changes shapes or control flow) never share a pack; a pack holds at most max_members
        members (its points x the seeds)."""
        from agents.population import VARYING

        keys = list(self.settings.space)
        grids = [parse_dimension(key, self.settings.space[key])[1] for key in keys]
        shared: dict[str, list[dict]] = {}
        for values in itertools.product(*grids):
            point = dict(zip(keys, values, strict=True))
            apart = json.dumps({k: v for k, v in point.items() if k not in VARYING}, sort_keys=True, default=str)
            shared.setdefault(apart, []).append(point)
        size = max(1, (self.settings.max_members or 10**9) // len(self.settings.seeds))
        return [points[i : i + size] for points in shared.values() for i in range(0, len(points), size)]

    def trial_points(self, params: dict) -> list[dict]:
        """The points (sampled values, no seed) a trial trains: one, or a pack's under pack: points."""
        if PACK_INDEX in params:
            return self.packs()[params[PACK_INDEX]]
        return [{key: value for key, value in params.items() if key not in ("seed", TRIAL_INDEX)}]

    def trial_document(self, params: dict) -> dict:
        """The config of one trial: the base, the sampled point, its seed, and W&B grouping. A packed trial is a
        population: its points' seeds (point-major), and the values its points differ in as per-member lists."""
        points = self.trial_points(params)
        seeds = self.settings.seeds
        if not self.packed:
            document = apply_overrides(self.base, points[0])
            document["seed"] = seeds[params[TRIAL_INDEX]] if TRIAL_INDEX in params else params["seed"]
        else:
            varying = [key for key in points[0] if len({json.dumps(p[key]) for p in points}) > 1]
            document = apply_overrides(self.base, {k: v for k, v in points[0].items() if k not in varying})
            population: dict[str, Any] = {"seeds": [seed for _ in points for seed in seeds]}
            for key in varying:  # only VARYING fields differ within a pack (packs())
                section, _, leaf = key.rpartition(".")
                values = [point[key] for point in points for _ in seeds]
                (population.setdefault(section, {}) if section else population)[leaf] = values
            document["seed"] = seeds[0]
            document["population"] = population
        tracking = dict(document.get("tracking") or {})
        tracking["group"] = self.name
        tracking["tags"] = list(dict.fromkeys([*(tracking.get("tags") or []), f"sweep:{self.name}"]))
        document["tracking"] = tracking
        return document

    def point(self, params: dict) -> dict:
        """A trial's sampled values and its seed, as results.csv lists them (an unpacked trial)."""
        point = {key: value for key, value in params.items() if key != TRIAL_INDEX}
        if TRIAL_INDEX in params:
            point["seed"] = self.settings.seeds[params[TRIAL_INDEX]]
        return point

    def members(self, params: dict) -> list[tuple[str | None, dict]]:
        """(member folder name, its point and seed) for each member of a trial; one (None, point) unpacked.
        The names are the population's (agents/population.py), in its order: point-major, then seed."""
        if not self.packed:
            return [(None, self.point(params))]
        from agents.population import members

        spec = parse_config(self.trial_document(params))
        found = members(spec.config)
        rows = [{**point, "seed": seed} for point in self.trial_points(params) for seed in self.settings.seeds]
        return [(member.name, row) for member, row in zip(found, rows, strict=True)]

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
    seeds: str | None = None,
    pack: str | None = None,
    max_members: int | None = None,
) -> SweepPlan:
    """Read and validate a sweep file; `overrides` apply to the base config of every trial, and the flags
    (`seeds` as "0,1,2,3", `pack`, `max_members`, resources) replace the file's settings."""
    path = Path(path)
    document = read_yaml(path)
    if seeds is not None:
        try:
            document["seeds"] = yaml.safe_load(f"[{seeds.strip().strip('[]')}]")
        except yaml.YAMLError:
            reason = f"expected whole numbers separated by commas, e.g. 0,1,2,3; got {seeds!r}"
            raise ConfigError("--seeds", reason) from None
    if pack is not None:
        document["pack"] = pack
    if max_members is not None:
        document["max_members"] = max_members
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
    settings.pack = _resolve_pack(settings, spec, base)
    _check_metric(spec.kind, settings.metric)
    _check_wandb_online(spec.tracking)  # online without an API key: say so now, not from the first trial
    total_steps = int(getattr(spec.config, "total_steps", 0) or 0)
    if settings.scheduler.type == "asha":
        max_t = settings.scheduler.max_t or total_steps
        if settings.scheduler.grace_period > max_t:
            raise ConfigError(
                "scheduler.grace_period", f"must be <= max_t ({max_t} steps), got {settings.scheduler.grace_period}"
            )
    plan = SweepPlan(
        name=name,
        sweep_dir=(Path(out) / "sweeps" / name).resolve(),
        settings=settings,
        kind=spec.kind,
        base=base,
        total_steps=total_steps,
        trainers=dict(TRAINERS),
    )
    if settings.pack == "points":  # every pack's population must be valid too (per-member values, their lists)
        for index in range(len(plan.packs())):
            parse_config(plan.trial_document({PACK_INDEX: index}))
    return plan


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


def _resolve_pack(settings: SweepConfig, spec, base: dict) -> str:
    """The pack setting, checked against the trainer: packing needs a `population:` section in its config, and a
    base config that a population can train (else the population's own check names the field)."""
    pack = settings.pack
    trains_populations = "population" in {f.name for f in dataclasses.fields(spec.config)}
    if pack in (None, "none"):
        if pack is None and trains_populations and getattr(spec.config, "population", None) is None:
            try:
                parse_config({**base, "population": {"seeds": list(settings.seeds)}})
                return "seeds"
            except ConfigError:  # the base asks for something populations do not do (compile: true, ...)
                return "none"
        return "none"
    if not trains_populations:
        raise ConfigError(
            "pack",
            f"{pack} needs a trainer that trains populations (a population: section, as dqn and drqn have); "
            f"the {spec.kind} trainer trains one seed per process: use pack: none",
        )
    if getattr(spec.config, "population", None) is not None:
        raise ConfigError("population", f"is set by the sweep under pack: {pack}; remove it from the base config")
    parse_config({**base, "population": {"seeds": list(settings.seeds)}})  # names the field a population refuses
    return pack


def _check_metric(kind: str, metric: str) -> None:
    """Trainers that declare METRICS get the metric checked now; others fail fast at their first trial."""
    known = getattr(trainer_module(kind), "METRICS", None)
    if known and metric not in known:
        raise ConfigError(
            "metric",
            f"'{metric}' is never reported by the {kind} trainer"
            f"{did_you_mean(metric, known)}; it reports: {', '.join(known)}",
        )
