"""The report's input: run folders found under the given folders, read, and grouped into configs.

A run folder holds config.yaml and metrics.jsonl (and maybe summary.json, media/*.png). Runs whose configs differ
only in `seed` (or tracking, device) are one *config*; its label names what tells the configs apart.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from launch.text import is_number, short
from launch.tracking import read_metrics
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

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(steps, values) of `key` in step order, or None when the run never logged it."""
        points = [(r["step"], r[key]) for r in self.metrics if is_number(r.get(key)) and is_number(r.get("step"))]
        if not points:
            return None
        steps, values = np.array(points, dtype=np.float64).T
        order = np.argsort(steps, kind="stable")
        return steps[order], values[order]


@dataclass
class Group:
    """Runs of one config (they differ only in seed)."""

    label: str
    runs: list[Run] = field(default_factory=list)

    @property
    def task(self) -> str:
        """What the config is evaluated on: the env id (agents) or the data (generative kinds)."""
        config = self.runs[0].config
        return str(config.get("env_id") or config.get("data") or config.get("kind", "?"))


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


def curve(runs: list[Run], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(steps, mean, low, high) of `key` across runs; each step averages the runs that cover it."""
    series = [found for run in runs if (found := run.series(key)) is not None]
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


def metric_order(key: str) -> tuple[int, str]:
    prefix = key.split("/", 1)[0]
    return ({"eval": 0, "charts": 1, "losses": 2}.get(prefix, 3), key)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        flat: dict[str, Any] = {}
        for k, v in tree.items():
            flat.update(_flatten(v, f"{prefix}{k}."))
        return flat
    return {prefix[:-1]: tree}
