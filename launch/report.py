"""`dlforge report DIR...`: learning curves, a comparison table and media for runs and sweeps, offline.

It reads run folders only (config.yaml, metrics.jsonl, summary.json, media/*.png), so it needs no W&B
account and no server. Runs whose configs differ only in `seed` are one *config*: each curve is the
mean across its seeds with a min-max band. A sweep folder contributes its trials; any other folder
contributes every run folder below it. The report folder holds:

    index.html       everything below, readable straight from disk (relative links, no scripts)
    curves/*.png     one figure per metric, one line per config
    media/*.png      the newest image of each kind per run (GAN samples, reconstructions, ...)
    comparison.csv   per config: seeds, and the final value of each summary metric (mean ± std)
    report.json      the same data, for scripts
"""

from __future__ import annotations

import csv
import html
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from launch.text import is_number, short, slug
from launch.tracking import read_metrics
from networks import io
from networks.errors import ConfigError

IGNORED_KEYS = ("seed", "tracking", "device")  # differences that do not make another config
MEDIA_RE = re.compile(r"^(?P<key>.+)-(?P<step>\d{6,})\.png$")  # LocalTracker.image: <key>-<step:09d>.png


@dataclass
class Run:
    path: Path
    config: dict
    metrics: list[dict]
    summary: dict[str, float]
    media: dict[str, Path]  # media key -> newest image

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class Group:
    """Runs of one config (they differ only in seed)."""

    label: str
    runs: list[Run] = field(default_factory=list)


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
    for stale in ("curves", "media"):
        shutil.rmtree(out / stale, ignore_errors=True)
    (out / "curves").mkdir(parents=True, exist_ok=True)
    (out / "media").mkdir(parents=True, exist_ok=True)
    groups = group_runs(runs)
    curves = plot_curves(groups, out / "curves")
    media = copy_media(runs, out / "media")
    table = comparison(groups)
    sweeps = [json.loads((d / "results.json").read_text()) for d in dirs if (d / "results.json").is_file()]
    _write_csv(table, out / "comparison.csv")
    io.atomic_write_text(
        out / "report.json",
        json.dumps(
            {
                "runs": [str(r.path) for r in runs],
                "curves": [str(p.relative_to(out)) for p in curves],
                "media": {run: [str(p.relative_to(out)) for p in paths] for run, paths in media.items()},
                "comparison": table,
            },
            indent=2,
        ),
    )
    index = out / "index.html"
    io.atomic_write_text(index, render_html(dirs, groups, table, curves, media, out, sweeps))
    return index


# --- reading -----------------------------------------------------------------------------------------


def find_runs(dirs: list[Path], exclude: Path | None = None) -> list[Run]:
    """Every run folder (config.yaml + metrics.jsonl) at or below `dirs`, each once, in order."""
    found: dict[Path, Run] = {}
    skip = exclude.resolve() if exclude else None
    for folder in dirs:
        if not folder.exists():
            raise ConfigError("dirs", f"{folder}: no such folder")
        if not folder.is_dir():
            raise ConfigError("dirs", f"{folder}: not a folder; give run or sweep folders")
        candidates = [folder] if _is_run(folder) else sorted(p.parent for p in folder.rglob("metrics.jsonl"))
        for path in candidates:
            resolved = path.resolve()
            if _is_run(path) and resolved not in found and not (skip and skip in resolved.parents):
                found[resolved] = read_run(path)
        if not candidates:
            raise ConfigError(
                "dirs", f"{folder}: holds no dlforge runs (a run folder has config.yaml and metrics.jsonl)"
            )
    return list(found.values())


def _is_run(path: Path) -> bool:
    return (path / "config.yaml").is_file() and (path / "metrics.jsonl").is_file()


def read_run(path: Path) -> Run:
    try:
        config = yaml.safe_load((path / "config.yaml").read_text()) or {}
    except yaml.YAMLError:
        config = {}
    summary: dict = {}
    if (path / "summary.json").exists():
        try:
            summary = json.loads((path / "summary.json").read_text())
        except json.JSONDecodeError:
            summary = {}
    media: dict[str, tuple[int, Path]] = {}
    for image in sorted((path / "media").glob("*.png")):
        match = MEDIA_RE.match(image.name)
        key, step = (match["key"], int(match["step"])) if match else (image.stem, -1)
        if key not in media or step > media[key][0]:
            media[key] = (step, image)
    for extra in ("generated.png",):  # `dlforge generate` output
        if (path / extra).exists():
            media[Path(extra).stem] = (-1, path / extra)
    return Run(
        path=path,
        config=config if isinstance(config, dict) else {},
        metrics=read_metrics(path / "metrics.jsonl"),
        summary={k: v for k, v in summary.items() if is_number(v)},
        media={k: p for k, (_, p) in sorted(media.items())},
    )


def group_runs(runs: list[Run]) -> list[Group]:
    """Runs that differ only in seed form one group; labels name what tells the groups apart."""
    keyed: dict[str, Group] = {}
    flats = {id(run): _flatten({k: v for k, v in run.config.items() if k not in IGNORED_KEYS}) for run in runs}
    for run in runs:
        key = json.dumps(flats[id(run)], sort_keys=True, default=str)
        keyed.setdefault(key, Group(label="")).runs.append(run)
    groups = list(keyed.values())
    differing = sorted(
        {
            k
            for run in runs
            for k in flats[id(run)]
            if len({json.dumps(flats[id(r)].get(k), default=str) for r in runs}) > 1
        }
    )
    for group in groups:
        flat = flats[id(group.runs[0])]
        parts = [f"{k}={short(flat.get(k))}" for k in differing if k != "kind"]
        kind = group.runs[0].config.get("kind", "?")
        label = ", ".join(parts) if parts else (group.runs[0].name if len(groups) > 1 else str(kind))
        group.label = f"{kind}: {label}" if "kind" in differing else label
    return groups


# --- curves ----------------------------------------------------------------------------------------------


def curve(runs: list[Run], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(steps, mean, low, high) of `key` across runs; each step averages the runs that cover it."""
    series = []
    for run in runs:
        points = [(r["step"], r[key]) for r in run.metrics if is_number(r.get(key)) and is_number(r.get("step"))]
        if points:
            steps, values = np.array(points, dtype=np.float64).T
            order = np.argsort(steps, kind="stable")
            series.append((steps[order], values[order]))
    if not series:
        return None
    grid = np.unique(np.concatenate([s for s, _ in series]))
    values = np.full((len(series), len(grid)), np.nan)
    for i, (steps, vals) in enumerate(series):
        covered = (grid >= steps[0]) & (grid <= steps[-1])
        values[i, covered] = np.interp(grid[covered], steps, vals)
    with np.errstate(all="ignore"):
        finite = np.isfinite(values)
        count = finite.sum(0)
        keep = count > 0
        masked = np.where(finite, values, 0.0)
        mean = masked.sum(0)[keep] / count[keep]
        low = np.nanmin(np.where(finite, values, np.nan)[:, keep], axis=0)
        high = np.nanmax(np.where(finite, values, np.nan)[:, keep], axis=0)
    return grid[keep], mean, low, high


def plot_curves(groups: list[Group], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted(
        {
            k
            for g in groups
            for run in g.runs
            for r in run.metrics
            for k, v in r.items()
            if k != "step" and is_number(v)
        },
        key=_metric_order,
    )
    paths = []
    for key in keys:
        fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=100)
        for i, group in enumerate(groups):
            found = curve(group.runs, key)
            if found is None:
                continue
            steps, mean, low, high = found
            colour = plt.cm.tab10(i % 10)
            seeds = len(group.runs)
            ax.plot(steps, mean, color=colour, lw=1.5, label=f"{group.label} ({seeds} seed{'s' * (seeds > 1)})")
            if seeds > 1:
                ax.fill_between(steps, low, high, color=colour, alpha=0.2, lw=0)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        path = folder / f"{slug(key)}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def _metric_order(key: str) -> tuple[int, str]:
    prefix = key.split("/", 1)[0]
    return ({"eval": 0, "charts": 1, "losses": 2}.get(prefix, 3), key)


# --- media and the table ------------------------------------------------------------------------------------


def copy_media(runs: list[Run], folder: Path) -> dict[str, list[Path]]:
    copied: dict[str, list[Path]] = {}
    for index, run in enumerate(runs):
        for key, image in run.media.items():
            target = folder / f"{index:03d}-{slug(run.name)}-{slug(key)}.png"
            shutil.copyfile(image, target)
            copied.setdefault(run.name if run.name not in copied else f"{run.name} ({index})", []).append(target)
    return copied


def comparison(groups: list[Group]) -> list[dict]:
    """One row per config: seeds, and each summary metric's mean, std, min and max over seeds."""
    rows = []
    for group in groups:
        finals: dict[str, list[float]] = {}
        for run in group.runs:
            last = {k: v for r in run.metrics for k, v in r.items() if k != "step" and is_number(v)}
            for key, value in {**last, **run.summary}.items():
                finals.setdefault(key, []).append(float(value))
        metrics = {
            key: {
                "mean": float(np.mean(v)),
                "std": float(np.std(v)),
                "min": float(np.min(v)),
                "max": float(np.max(v)),
                "n": len(v),
            }
            for key, v in sorted(finals.items(), key=lambda kv: _metric_order(kv[0]))
        }
        rows.append(
            {
                "config": group.label,
                "kind": group.runs[0].config.get("kind"),
                "seeds": len(group.runs),
                "runs": [str(r.path) for r in group.runs],
                "metrics": metrics,
            }
        )
    return rows


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


# --- html ---------------------------------------------------------------------------------------------------


def render_html(dirs, groups, table, curves, media, out: Path, sweeps: list[dict]) -> str:
    e = html.escape
    keys = list(dict.fromkeys(k for row in table for k in row["metrics"]))[:8]
    head = "".join(f"<th>{e(k)}</th>" for k in ("config", "seeds", *keys))
    body = []
    for row in table:
        cells = [f"<td>{e(str(row['config']))}</td>", f"<td>{row['seeds']}</td>"]
        for k in keys:
            m = row["metrics"].get(k)
            cells.append(f"<td>{m['mean']:.4g} ± {m['std']:.2g}</td>" if m else "<td>-</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    figures = "".join(
        f'<figure><img src="{e(p.relative_to(out).as_posix())}" alt="{e(p.stem)}"></figure>' for p in curves
    )
    images = []
    for run, paths in media.items():
        tiles = "".join(
            f'<figure><img src="{e(p.relative_to(out).as_posix())}" alt="{e(p.stem)}">'
            f"<figcaption>{e(p.stem.split('-', 2)[-1])}</figcaption></figure>"
            for p in paths
        )
        images.append(f"<h3>{e(run)}</h3><div class=grid>{tiles}</div>")
    runs = sum(len(g.runs) for g in groups)
    sources = ", ".join(e(str(d)) for d in dirs)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="dlforge report">
<title>dlforge report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; }}
th {{ background: #f3f3f3; }} td {{ text-align: right; }} td:first-child {{ text-align: left; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 12px; }} figure {{ margin: 0; }}
figure img {{ max-width: 640px; image-rendering: pixelated; }} figcaption {{ font-size: 0.8em; color: #666; }}
</style></head><body>
<h1>dlforge report</h1>
<p>{runs} run{"s" * (runs != 1)} in {len(groups)} config{"s" * (len(groups) != 1)} from {sources}.
Curves show the mean across seeds with a min-max band.</p>
<h2>Comparison</h2>
<p>Final values per config, mean ± std over seeds (all columns in <a href="comparison.csv">comparison.csv</a>).</p>
<table><tr>{head}</tr>{"".join(body)}</table>
{sweep_tables(sweeps)}
<h2>Learning curves</h2>
<div class=grid>{figures}</div>
{"<h2>Samples and reconstructions</h2>" + "".join(images) if images else ""}
</body></html>
"""


def sweep_tables(sweeps: list[dict]) -> str:
    """For each sweep folder given: its trials with their metric, status and error (results.json)."""
    e = html.escape
    parts = []
    for sweep in sweeps:
        metric, trials = sweep["metric"], sweep["trials"]
        keys = sorted({k for t in trials for k in t["params"]})
        head = "".join(f"<th>{e(k)}</th>" for k in ("trial", *keys, metric, "step", "status"))
        rows = []
        for t in trials:
            value = t.get(metric)
            status = t["status"] + (f": {t['error']}" if t.get("error") else "")
            cells = [t["trial"], *(json.dumps(t["params"].get(k)) for k in keys)]
            cells += ["-" if value is None else f"{value:.4g}", str(t.get("step", "-")), status]
            rows.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in cells) + "</tr>")
        parts.append(
            f"<h2>Sweep {e(sweep['sweep'])}: {e(metric)} ({e(sweep['mode'])})</h2>"
            f"<table><tr>{head}</tr>{''.join(rows)}</table>"
        )
    return "".join(parts)


# --- helpers --------------------------------------------------------------------------------------------------


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        flat: dict[str, Any] = {}
        for k, v in tree.items():
            flat.update(_flatten(v, f"{prefix}{k}."))
        return flat
    return {prefix[:-1]: tree}
