"""`dlforge report DIR...`: learning curves, a comparison table, reliable statistics and media, offline.

It reads run folders only (config.yaml, metrics.jsonl, summary.json, media/*.png), so it needs no W&B account and
no server. Runs whose configs differ only in `seed` are one *config*. A sweep folder contributes its trials; any
other folder contributes every run folder below it. By concern:

    data.py    finding, reading and grouping runs
    stats.py   the comparison table; IQM, mean, CIs, profiles, probability of improvement (rliable)
    plots.py   learning curves (EMA over raw) and rliable's plots
    html.py    index.html

The report folder holds:

    index.html        everything below, readable straight from disk (relative links, no scripts)
    curves/*.png      one figure per metric, one line per config
    reliable/*.png    IQM and mean with CIs, IQM learning curves, performance profiles, probability of improvement
    media/*.png       the newest image of each kind per run (GAN samples, reconstructions, ...)
    comparison.csv    per config: seeds, and the final value of each summary metric (mean ± std)
    report.json       the same data and the reliable statistics, for scripts
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

from launch.report.data import Group, Run, curve, find_runs, group_runs
from launch.report.html import render_html
from launch.report.plots import plot_curves, plot_reliable
from launch.report.stats import comparison, reliable
from launch.text import slug
from networks import io
from networks.errors import ConfigError

__all__ = ["Group", "Run", "comparison", "curve", "find_runs", "group_runs", "main", "write_report"]


def main(args) -> int:
    dirs = [Path(d) for d in args.dirs]
    out = Path(args.out) if args.out else dirs[0] / "report"
    path = write_report(dirs, out)
    print(f"report: {path}")
    return 0


def write_report(dirs: list[Path], out: Path) -> Path:
    """Write the report for the runs under `dirs` into `out`; returns the index.html path."""
    runs = find_runs(dirs, exclude=out)
    if out.exists() and any(out.iterdir()) and not (out / "report.json").exists():
        raise ConfigError("--out", f"{out} exists and is not a dlforge report; pick another --out")
    for stale in ("curves", "media", "reliable"):
        shutil.rmtree(out / stale, ignore_errors=True)
    (out / "curves").mkdir(parents=True, exist_ok=True)
    (out / "media").mkdir(parents=True, exist_ok=True)
    groups = group_runs(runs)
    curves = plot_curves(groups, out / "curves")
    media = copy_media(runs, out / "media")
    table = comparison(groups)
    statistics = reliable(groups)
    statistics_plots = plot_reliable(statistics, out / "reliable") if statistics else []
    sweeps = [json.loads((d / "results.json").read_text()) for d in dirs if (d / "results.json").is_file()]
    _write_csv(table, out / "comparison.csv")
    relative = [str(p.relative_to(out)) for p in statistics_plots]
    document = {
        "runs": [str(r.path) for r in runs],
        "curves": [str(p.relative_to(out)) for p in curves],
        "media": {run: [str(p.relative_to(out)) for p in paths] for run, paths in media.items()},
        "comparison": table,
        "reliable": None if statistics is None else {**statistics, "plots": relative},
    }
    io.atomic_write_text(out / "report.json", json.dumps(document, indent=2))
    index = out / "index.html"
    page = render_html(dirs, groups, table, curves, media, out, sweeps, statistics, statistics_plots)
    io.atomic_write_text(index, page)
    return index


def copy_media(runs: list[Run], folder: Path) -> dict[str, list[Path]]:
    copied: dict[str, list[Path]] = {}
    for index, run in enumerate(runs):
        for key, image in run.media.items():
            target = folder / f"{index:03d}-{slug(run.name)}-{slug(key)}.png"
            shutil.copyfile(image, target)
            copied.setdefault(run.name if run.name not in copied else f"{run.name} ({index})", []).append(target)
    return copied


def _write_csv(table: list[dict], path: Path) -> None:
    keys = list(dict.fromkeys(k for row in table for k in row["metrics"]))
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["config", "kind", "seeds", *(f"{k} {s}" for k in keys for s in ("mean", "std"))])
        for row in table:
            cells = []
            for k in keys:
                m = row["metrics"].get(k)
                cells += [m["mean"], m["std"]] if m else ["", ""]
            writer.writerow([row["config"], row["kind"], row["seeds"], *cells])
