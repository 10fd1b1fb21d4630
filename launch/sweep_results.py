"""A sweep's results: results.csv/.json, best.json, best_config.yaml and the table printed at the end.

Written from Tune's ResultGrid, one row per trial, each file replaced atomically, so an interrupted driver
never leaves half a table and a resumed one rewrites it whole.
"""

from __future__ import annotations

import csv
import io as text_io
import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from launch.sweep_config import SweepPlan
from launch.sweep_trial import CONFIG_ERROR, TRIAL_FILE
from launch.text import short
from launch.tracking import checkpoint_stems
from networks import io


@dataclass
class SweepOutcome:
    plan: SweepPlan
    rows: list[dict]
    best: dict | None
    interrupted: bool


def collect_results(plan: SweepPlan, grid) -> SweepOutcome:
    """Write results.csv/.json, best.json and best_config.yaml from Tune's ResultGrid."""
    metric, mode = plan.settings.metric, plan.settings.mode
    rows = []
    finished = 0
    for result in grid:
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
        finished += status != "unfinished"
        rows.append(
            {
                "trial": label,
                "status": status,
                metric: _finite(metrics.get(metric)),
                "step": metrics.get("step"),
                "params": plan.point(result.config or {}),
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
    write_tables(plan, rows)
    return SweepOutcome(plan=plan, rows=rows, best=best, interrupted=finished < len(rows))


def write_tables(plan: SweepPlan, rows: list[dict]) -> None:
    metric = plan.settings.metric
    io.atomic_write_text(
        plan.sweep_dir / "results.json",
        json.dumps({"sweep": plan.name, "metric": metric, "mode": plan.settings.mode, "trials": rows}, indent=2),
    )
    keys = sorted({k for row in rows for k in row["params"]})
    table = text_io.StringIO(newline="")
    writer = csv.writer(table)
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
    io.atomic_write_text(plan.sweep_dir / "results.csv", table.getvalue())


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


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None
