"""A sweep's results: results.csv/.json, best.json, best_config.yaml and the table printed at the end.

Written from Tune's ResultGrid, one row per trial, each file replaced atomically, so an interrupted driver
never leaves half a table and a resumed one rewrites it whole.

RL needs many seeds to say anything, so the sweep's answer is a *point* (the sampled values without the seed),
ranked by its mean over seeds, never the luckiest seed: best.json names the point, with every seed's value and
the aggregate, and the tables give each point's aggregate beside its per-seed rows.
"""

from __future__ import annotations

import csv
import io as text_io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from launch.population_record import POPULATION_FILE
from launch.sweep_config import SweepPlan
from launch.sweep_trial import CONFIG_ERROR, TRIAL_FILE, member_result
from launch.text import short
from launch.tracking import checkpoint_stems
from networks import io
from networks.run_folder import MEMBERS

# Statuses whose metric counts: ran to the end (or solved: stop_at_return), or stopped early by the scheduler. A
# member that diverged is listed but not scored: its point misses that seed and ranks after complete points.
SCORED = ("done", "solved", "stopped")
IQM_MIN_SEEDS = 4  # the IQM (a 25% trimmed mean) differs from the mean from 4 values on; below, mean and spread


@dataclass
class SweepOutcome:
    plan: SweepPlan
    rows: list[dict]
    best: dict | None
    interrupted: bool
    points: list[dict] = field(default_factory=list)  # rank_points: best first


def collect_results(plan: SweepPlan, grid) -> SweepOutcome:
    """Write results.csv/.json, best.json and best_config.yaml from Tune's ResultGrid. A packed trial gives one
    row per member, as if each had been its own trial: `<trial>/<member>`, its own run folder and value."""
    metric = plan.settings.metric
    rows = []
    finished = trials = 0
    for result in grid:
        trials += 1
        metrics = result.metrics or {}
        label = Path(result.path).name  # trial_dirname_creator: trial_label()
        marker = plan.trials_dir / label / TRIAL_FILE
        if result.error is not None:
            status = "error"
        elif not metrics.get("done"):
            status = "unfinished"  # interrupted, or never started
        elif marker.exists():
            status = json.loads(marker.read_text()).get("status", "done")
        else:  # Ray ended the process before the trial wrote its record (it does so to a stopped trial)
            status = "done" if (metrics.get("step") or 0) >= plan.total_steps else "stopped"
        row = {
            "trial": label,
            "status": status,
            metric: _finite(metrics.get(metric)),
            "step": metrics.get("step"),
            "params": {},
            "run_dir": str(plan.trials_dir / label),
            "error": _error_line(result.error) if result.error is not None else None,
            "config_error": metrics.get(CONFIG_ERROR),
        }
        members = plan.members(result.config or {})
        ended = _ended_members(plan.trials_dir / label) if plan.packed else {}
        trial_rows = []
        for member, params in members:
            if member is None:
                trial_rows.append({**row, "params": params})
                continue
            member_dir = plan.trials_dir / label / MEMBERS / member
            value, step = member_result(member_dir, metric)
            trial_rows.append(
                {**row, "trial": f"{label}/{member}", metric: value, "step": step, "params": params}
                | {"run_dir": str(member_dir), "status": ended.get(member, status)}
            )
        # a trial is finished when each of its rows is: a packed trial whose members all ended (population.json) is,
        # even when Tune's last result from a resumed driver lacks `done`
        finished += all(r["status"] != "unfinished" for r in trial_rows)
        rows.extend(trial_rows)
    rows.sort(key=lambda r: r["trial"])
    points = rank_points(rows, plan)
    best = write_best(plan, points[0]) if points and points[0]["mean"] is not None else None
    write_tables(plan, rows, points)
    return SweepOutcome(plan=plan, rows=rows, best=best, interrupted=finished < trials, points=points)


def _ended_members(trial_dir: Path) -> dict[str, str]:
    """A packed trial's members that ended on their own (population.json): solved, done, or diverged; the others
    share their trial's status (a scheduler's stop, an error)."""
    try:
        record = json.loads((trial_dir / POPULATION_FILE).read_text())
    except (OSError, ValueError):
        return {}
    members = record.get("members", [])
    return {m["name"]: m["status"] for m in members if m.get("status") in ("done", "solved", "diverged")}


def rank_points(rows: list[dict], plan: SweepPlan) -> list[dict]:
    """The sweep's points (a point: the sampled values without the seed), best first, each with every seed's
    row and its aggregate over seeds: mean, std, min, max, and from IQM_MIN_SEEDS seeds on the IQM and the mean
    with their 95% stratified-bootstrap intervals (launch/report/stats.py). Points rank by their mean over the
    seeds that scored (done or stopped by the scheduler); points missing a seed (an error, an unfinished trial)
    rank after the complete ones, and unscored points come last. Sets each row's `point` to its point's label."""
    metric, mode = plan.settings.metric, plan.settings.mode
    grouped: dict[str, dict] = {}
    for row in rows:
        params = {key: value for key, value in row["params"].items() if key != "seed"}
        key = json.dumps(params, sort_keys=True, default=str)
        if key not in grouped:
            grouped[key] = {"point": f"p{len(grouped):02d}", "params": params, "rows": []}
        grouped[key]["rows"].append(row)
        row["point"] = grouped[key]["point"]
    points = []
    for point in grouped.values():
        seeds = [
            {
                "seed": row["params"].get("seed"),
                "value": row[metric],
                "status": row["status"],
                "trial": row["trial"],
                "run_dir": row["run_dir"],
            }
            for row in point.pop("rows")
        ]
        values = [s["value"] for s in seeds if s["value"] is not None and s["status"] in SCORED]
        point.update(seeds=seeds, n=len(values), complete=len(values) == len(seeds), **_aggregate(values))
        points.append(point)
    sign = -1.0 if mode == "max" else 1.0
    points.sort(key=lambda p: (p["mean"] is None, not p["complete"], sign * (p["mean"] or 0.0), p["point"]))
    for rank, point in enumerate(points, start=1):
        point["rank"] = rank
    return points


def _aggregate(values: list[float]) -> dict:
    if not values:
        return {"mean": None, "std": None, "min": None, "max": None, "iqm": None, "mean_interval": None}
    found = {
        "mean": float(np.mean(values)),
        "std": float(np.std(values)),
        "min": float(np.min(values)),
        "max": float(np.max(values)),
        "iqm": None,
        "mean_interval": None,
    }
    if len(values) >= IQM_MIN_SEEDS:
        from launch.report.stats import aggregates  # rliable: imported only when a point has enough seeds

        estimates = aggregates(np.array(values, dtype=np.float64).reshape(-1, 1))
        found["iqm"], found["mean_interval"] = estimates["iqm"], estimates["mean"]
    return found


def write_best(plan: SweepPlan, point: dict) -> dict:
    """best.json names the best point: its values, every seed's value (with run folder and checkpoint) and the
    aggregate; best_config.yaml is the point's config without a seed (with the seed when the sweep has one seed:
    the point is then that run), so `dlforge train best_config.yaml seed=N` trains the point with any seed."""
    metric = plan.settings.metric
    seeds = []
    for seed in point["seeds"]:
        seeds.append({**seed, "checkpoint": _checkpoint(Path(seed["run_dir"]))})
    scored = [s for s in seeds if s["value"] is not None and s["status"] in SCORED]
    top = (max if plan.settings.mode == "max" else min)(scored, key=lambda s: s["value"])
    best = {
        "point": point["point"],
        "metric": metric,
        "mode": plan.settings.mode,
        "value": point["mean"],  # the point's mean over its seeds: what it was ranked by
        "aggregate": {key: point[key] for key in ("mean", "std", "min", "max", "n", "iqm", "mean_interval")},
        "params": point["params"],
        "seeds": seeds,
        # The point's best seed, for a policy to evaluate or a checkpoint to start from:
        "trial": top["trial"],
        "run_dir": top["run_dir"],
        "checkpoint": top["checkpoint"],
        "config": str(plan.sweep_dir / "best_config.yaml"),
    }
    config_file = Path(top["run_dir"]) / "config.yaml"
    if config_file.exists():
        config = yaml.safe_load(config_file.read_text())
        if len(plan.settings.seeds) > 1:
            config.pop("seed", None)
        io.atomic_write_text(plan.sweep_dir / "best_config.yaml", yaml.safe_dump(config, sort_keys=False))
    io.atomic_write_text(plan.sweep_dir / "best.json", json.dumps(best, indent=2))
    return best


def _checkpoint(run_dir: Path) -> str | None:
    checkpoint = (checkpoint_stems(run_dir, "best") or checkpoint_stems(run_dir, "step") or [None])[0]
    return str(checkpoint.with_suffix(".safetensors")) if checkpoint else None


def write_tables(plan: SweepPlan, rows: list[dict], points: list[dict]) -> None:
    """results.json (every trial, and every point with its aggregate) and results.csv (one row per trial, its
    point's label, rank and aggregate beside it)."""
    metric = plan.settings.metric
    io.atomic_write_text(
        plan.sweep_dir / "results.json",
        json.dumps(
            {"sweep": plan.name, "metric": metric, "mode": plan.settings.mode, "trials": rows, "points": points},
            indent=2,
        ),
    )
    by_label = {point["point"]: point for point in points}
    keys = sorted({k for row in rows for k in row["params"]})
    table = text_io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(
        ["trial", *keys, metric, "step", "status", "run_dir", "error", *(f"point_{k}" for k in POINT_COLUMNS)]
    )
    for row in rows:
        point = by_label[row["point"]]
        writer.writerow(
            [
                row["trial"],
                *(json.dumps(row["params"].get(k)) for k in keys),
                row[metric],
                row["step"],
                row["status"],
                row["run_dir"],
                row["error"] or "",
                *("" if (value := _point_column(point, k)) is None else value for k in POINT_COLUMNS),
            ]
        )
    io.atomic_write_text(plan.sweep_dir / "results.csv", table.getvalue())


# results.csv's aggregate columns, each prefixed `point_`: the point's label and rank, and its aggregate over seeds.
POINT_COLUMNS = ("label", "rank", "n", "mean", "std", "iqm", "iqm_low", "iqm_high")


def _point_column(point: dict, column: str) -> Any:
    if column == "label":
        return point["point"]
    if column.startswith("iqm"):
        bound = {"iqm": "value", "iqm_low": "low", "iqm_high": "high"}[column]
        return point["iqm"][bound] if point["iqm"] else None
    return point[column]


def print_results(outcome: SweepOutcome) -> None:
    """The trials grouped by point, best point first, each point's seeds followed by its aggregate."""
    from rich.console import Console
    from rich.table import Table

    plan = outcome.plan
    metric = plan.settings.metric
    keys = sorted({k for row in outcome.rows for k in row["params"]})
    table = Table(title=f"sweep {plan.name}: {metric} ({plan.settings.mode}), points ranked by their mean over seeds")
    for column in ("trial", *keys, metric, "step", "status"):
        table.add_column(column, justify="right" if column in (metric, "step") else "left")
    best_point = outcome.best["point"] if outcome.best else None
    by_point: dict[str, list[dict]] = {}
    for row in outcome.rows:
        by_point.setdefault(row["point"], []).append(row)
    for point in outcome.points:
        style = "green" if point["point"] == best_point else None
        for row in by_point[point["point"]]:
            value = row[metric]
            status = row["status"] if not row["error"] else f"error: {row['error']}"
            table.add_row(
                row["trial"],
                *(short(row["params"].get(k)) for k in keys),
                "-" if value is None else f"{value:.4g}",
                str(row["step"] if row["step"] is not None else "-"),
                status,
                style=style,
            )
        if len(point["seeds"]) > 1:
            table.add_row(
                f"{point['point']} #{point['rank']}",
                *(short(point["params"].get(k, "-")) if k != "seed" else f"{point['n']} seeds" for k in keys),
                "-" if point["mean"] is None else f"{point['mean']:.4g}",
                "",
                _spread(point),
                style=f"bold {style or ''}".strip(),
                end_section=True,
            )
    console = Console()
    console.print(table)
    best = outcome.best
    if best:
        console.print(
            f"best point: {best['point']} {_params_line(best['params'])} {metric} mean {best['value']:.4g} "
            f"over {best['aggregate']['n']} seed(s){_iqm_text(best['aggregate'])}\n  config: {best['config']}"
            + (f"  best seed's checkpoint: {best['checkpoint']}" if best["checkpoint"] else "")
        )


def _spread(point: dict) -> str:
    if point["mean"] is None:
        return "no seed scored"
    text = f"mean of {point['n']}, std {point['std']:.3g}" + (
        "" if point["complete"] else f", {len(point['seeds']) - point['n']} seed(s) missing"
    )
    return text + _iqm_text(point)


def _iqm_text(aggregate: dict) -> str:
    iqm = aggregate.get("iqm")
    return f", IQM {iqm['value']:.4g} [{iqm['low']:.4g}, {iqm['high']:.4g}]" if iqm else ""


def _params_line(params: dict) -> str:
    return " ".join(f"{key}={short(value)}" for key, value in params.items()) or "(no swept values)"


def _error_line(error: BaseException) -> str:
    """The trial's own exception, one line (Ray wraps it in a long RayTaskError)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None
