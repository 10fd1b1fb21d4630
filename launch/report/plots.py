"""The report's pictures: learning curves per metric, and rliable's plots of the reliable statistics (PNG).

Noisy curves are drawn as W&B draws them: an exponential moving average over a faint line of the raw values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from launch.report.data import Group, curve, metric_order
from launch.text import is_number, slug

SMOOTHING = 0.8  # EMA weight of the past (W&B's "smoothing" slider); 0 draws the raw values alone
MIN_POINTS_TO_SMOOTH = 10  # shorter curves (e.g. a handful of evaluations) are drawn as they are
FIGSIZE = (6.4, 3.8)  # inches at 100 dpi: two plots side by side on a 1280-pixel window


def ema(values: np.ndarray, weight: float = SMOOTHING) -> np.ndarray:
    """Debiased exponential moving average: s_t = w s_(t-1) + (1 - w) x_t, divided by 1 - w^(t+1), as TensorBoard
    and W&B smooth, so the first points are not pulled towards zero."""
    smoothed, total = np.empty(len(values)), 0.0
    for t, value in enumerate(values):
        total = weight * total + (1 - weight) * value
        smoothed[t] = total / (1 - weight ** (t + 1))
    return smoothed


def legend_label(label: str, width: int = 60) -> str:
    """A config label short enough for a legend (the tables show it whole)."""
    return label if len(label) <= width else label[: width - 1] + "…"


def smoothed(key: str, n_points: int) -> bool:
    """Evaluations are averages over episodes already; everything else with enough points gets the EMA."""
    return not key.startswith("eval/") and n_points >= MIN_POINTS_TO_SMOOTH


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(groups: list[Group], folder: Path) -> list[Path]:
    """One PNG per metric, one colour per config: the mean across seeds (EMA-smoothed over the faint raw mean
    where noisy), and the min-max band across seeds."""
    plt = _pyplot()
    logged = {k for g in groups for run in g.runs for r in run.metrics for k, v in r.items() if is_number(v)}
    keys = sorted(logged - {"step"}, key=metric_order)
    paths = []
    for key in keys:
        fig, ax = plt.subplots(figsize=FIGSIZE, dpi=100)
        any_smoothed = False
        for i, group in enumerate(groups):
            found = curve(group.runs, key)
            if found is None:
                continue
            steps, mean, low, high = found
            colour = plt.cm.tab10(i % 10)
            seeds = len(group.runs)
            label = f"{legend_label(group.label)} ({seeds} seed{'s' * (seeds > 1)})"
            if smoothed(key, len(steps)):
                any_smoothed = True
                ax.plot(steps, mean, color=colour, lw=0.8, alpha=0.25)
                ax.plot(steps, ema(mean), color=colour, lw=1.6, label=label)
            else:
                ax.plot(steps, mean, color=colour, lw=1.6, label=label)
            if seeds > 1:
                ax.fill_between(steps, low, high, color=colour, alpha=0.12, lw=0)
        note = f" (EMA {SMOOTHING} over raw, faint)" if any_smoothed else ""
        ax.set_title(f"{key}{note}", fontsize=10)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        path = folder / f"{slug(key)}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_reliable(reliable: dict, folder: Path) -> list[Path]:
    """Per task: IQM and mean with their intervals, the IQM learning curves, the performance profiles, and the
    probability of improvement, each drawn by rliable's plotting functions."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    tasks = list(dict.fromkeys(c["task"] for c in reliable["configs"]))
    for task in tasks:
        stem = slug(task) if len(tasks) > 1 else "all"
        configs = [c for c in reliable["configs"] if c["task"] == task]
        names = {c["config"]: legend_label(c["config"], 40) for c in configs}  # the tables show labels whole
        plt = _pyplot()
        colours = dict(zip(names.values(), plt.cm.tab10(np.arange(len(names)) % 10)))
        paths.append(_save(_intervals(configs, names, colours, reliable["metric"]), folder / f"intervals-{stem}.png"))
        curves = {names[k]: v for k, v in reliable["iqm_curves"].items() if k in names}
        if curves:
            figure = _iqm_curves(curves, colours, reliable)
            paths.append(_save(figure, folder / f"iqm-curve-{stem}.png"))
        profile = reliable["performance_profiles"][task]
        figure = _profiles(profile, names, colours, reliable["metric"])
        paths.append(_save(figure, folder / f"profiles-{stem}.png"))
        pairs = [p for p in reliable["probability_of_improvement"] if p["task"] == task]
        if pairs:
            paths.append(_save(_improvement(pairs, names), folder / f"improvement-{stem}.png"))
    return paths


def _intervals(configs: list[dict], names: dict, colours: dict, metric: str):
    from rliable import plot_utils

    points = {names[c["config"]]: np.array([c["iqm"]["value"], c["mean"]["value"]]) for c in configs}
    intervals = {
        names[c["config"]]: np.array([[c["iqm"]["low"], c["mean"]["low"]], [c["iqm"]["high"], c["mean"]["high"]]])
        for c in configs
    }
    row_height = 0.5  # inches per config; the axis label goes half an inch below the axes' bottom (at 11%)
    figure, _ = plot_utils.plot_interval_estimates(
        points,
        intervals,
        ["IQM", "Mean"],
        algorithms=list(points),
        colors=colours,
        xlabel=f"final {metric}",
        subfigure_width=3.4,
        row_height=row_height,
        xlabel_y_coordinate=0.11 - 0.5 / (row_height * len(points)),
    )
    return figure


def _iqm_curves(curves: dict, colours: dict, reliable: dict):
    from rliable import plot_utils

    plt = _pyplot()
    figure, ax = plt.subplots(figsize=FIGSIZE, dpi=100)
    for name, found in curves.items():
        plot_utils.plot_sample_efficiency_curve(
            np.array(found["steps"]),
            {name: np.array(found["iqm"])},
            {name: np.array([found["low"], found["high"]])},
            algorithms=[name],
            colors=colours,
            ax=ax,
            xlabel="step",
            ylabel=f"IQM of {reliable['metric']}",
            labelsize="medium",
            ticklabelsize="small",
            marker=".",
        )
    ax.legend(fontsize=7, loc="best")
    ax.set_title(f"IQM across seeds, {int(reliable['bootstrap']['confidence'] * 100)}% CI band", fontsize=10)
    return figure


def _profiles(profile: dict, names: dict, colours: dict, metric: str):
    from rliable import plot_utils

    plt = _pyplot()
    figure, ax = plt.subplots(figsize=FIGSIZE, dpi=100)
    plot_utils.plot_performance_profiles(
        {names[k]: np.array(profile[k]["fraction"]) for k in names},
        np.array(profile["tau"]),
        performance_profile_cis={names[k]: (np.array(profile[k]["low"]), np.array(profile[k]["high"])) for k in names},
        colors=colours,
        ax=ax,
        xlabel=f"final {metric} (τ)",
        ylabel="fraction of runs > τ",
        labelsize="medium",
        ticklabelsize="small",
    )
    ax.legend(fontsize=7, loc="best")
    return figure


def _improvement(pairs: list[dict], names: dict):
    from rliable import plot_utils

    plt = _pyplot()
    separator = " vs "
    keys = [f"{names[p['x']]}{separator}{names[p['y']]}" for p in pairs]
    figure, ax = plt.subplots(figsize=(FIGSIZE[0], 0.45 * len(pairs) + 1.2), dpi=100)
    plot_utils.plot_probability_of_improvement(
        {key: p["value"] for key, p in zip(keys, pairs)},
        {key: np.array([p["low"], p["high"]]) for key, p in zip(keys, pairs)},
        pair_separator=separator,
        ax=ax,
        xticks=[0, 0.25, 0.5, 0.75, 1.0],
        labelsize="medium",
        ticklabelsize="small",
        left_ylabel="config X",
        right_ylabel="config Y",
    )
    return figure


def _save(figure, path: Path) -> Path:
    figure.savefig(path, dpi=100, bbox_inches="tight")
    _pyplot().close(figure)
    return path
