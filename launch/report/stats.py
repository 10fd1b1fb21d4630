"""The report's numbers: the comparison table, and reliable statistics across seeds (Agarwal et al. 2021).

For every config with several seeds, on the final evaluation return of each run (its last `eval/mean_return`):
IQM and mean with 95% stratified-bootstrap confidence intervals, the IQM learning curve with its interval,
performance profiles (the fraction of runs scoring above each threshold), and the probability that one config
improves on another (configs on the same task only).

All of it is rliable's: the intervals come from `library.get_interval_estimates` (its stratified bootstrap,
percentile intervals), the profiles from `library.create_performance_profile`, the statistics from `metrics`.
Two small pieces are ours, each with its reason beside it: `seeded_numpy` (rliable's bootstraps draw from NumPy's
global generator) and `iqm_per_step` (the IQM curve's statistic, vectorised over evaluation steps).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from itertools import combinations

import numpy as np
import scipy.stats
from rliable import library, metrics

from launch.report.data import Group, metric_order
from launch.text import is_number

METRIC = "eval/mean_return"  # the final evaluation return of an agent run
CONFIDENCE = 0.95
REPS = 2000  # bootstrap replicates (rliable's default for performance profiles)


# --- the comparison table ------------------------------------------------------------------------------------


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
            for key, v in sorted(finals.items(), key=lambda kv: metric_order(kv[0]))
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


# --- reliable statistics ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def seeded_numpy(seed: int) -> Iterator[None]:
    """NumPy's global generator seeded with `seed` inside the block, and put back as it was afterwards.

    rliable 1.2's `StratifiedBootstrap` draws its resamples with `np.random.choice`, NumPy's global generator: the
    `random_state` that `get_interval_estimates` accepts does not reach those draws (two calls with
    `RandomState(0)` give different intervals here), and arch 7 warns that it is deprecated. So the same runs
    give the same report only with the global generator seeded around the call, which must not leak to others."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def interval_estimates(
    scores: np.ndarray | list[np.ndarray], statistic: Callable[..., np.ndarray], reps: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """rliable's `get_interval_estimates` for one score matrix (runs, tasks, ...) or a list of them (resampled
    independently): the statistic's value (k,) and its percentile interval (2, k), rows low and high."""
    with seeded_numpy(seed):
        points, intervals = library.get_interval_estimates(
            {"scores": scores}, statistic, reps=reps, confidence_interval_size=CONFIDENCE
        )
    return np.atleast_1d(points["scores"]), np.asarray(intervals["scores"]).reshape(2, -1)


def estimate(value: float, low: float, high: float) -> dict[str, float]:
    return {"value": float(value), "low": float(low), "high": float(high)}


def final_scores(group: Group, metric: str = METRIC) -> np.ndarray:
    """(runs, 1): each run's last `metric` (summary first, then metrics.jsonl); runs without one are left out."""
    scores = []
    for run in group.runs:
        if is_number(run.summary.get(metric)):
            scores.append(float(run.summary[metric]))
        elif (series := run.series(metric)) is not None:
            scores.append(float(series[1][-1]))
    return np.array(scores, dtype=np.float64).reshape(-1, 1)


def aggregates(scores: np.ndarray, reps: int = REPS, seed: int = 0) -> dict[str, dict[str, float]]:
    """IQM and mean of `scores` (runs, tasks), each with its 95% stratified-bootstrap interval."""

    def iqm_and_mean(resample: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(resample), metrics.aggregate_mean(resample)])

    (iqm, mean), (low, high) = interval_estimates(scores, iqm_and_mean, reps, seed)
    return {"iqm": estimate(iqm, low[0], high[0]), "mean": estimate(mean, low[1], high[1])}


def probability_of_improvement(x: np.ndarray, y: np.ndarray, reps: int = REPS, seed: int = 0) -> dict[str, float]:
    """P(X > Y) with its interval; x and y (runs, tasks) are resampled independently (rliable's
    StratifiedIndependentBootstrap)."""
    (value,), ((low,), (high,)) = interval_estimates([x, y], improvement_probability, reps, seed)
    return estimate(value, low, high)


def improvement_probability(x: np.ndarray, y: np.ndarray) -> float:
    """rliable's `metrics.probability_of_improvement`, P(X_m > Y_m) + P(X_m = Y_m) / 2 averaged over tasks m,
    computed by comparing every pair of runs at once. rliable computes each task's value with scipy's
    `mannwhitneyu` (U / (n_x n_y), the same number), which costs about 2 ms a call: 4 s per pair of configs
    over 2,000 resamples, against 0.1 s here (tests/test_report_stats.py checks the two agree, ties included)."""
    greater = (x[:, None, :] > y[None, :, :]).mean(axis=(0, 1))  # (tasks,)
    equal = (x[:, None, :] == y[None, :, :]).mean(axis=(0, 1))
    return float(np.mean(greater + 0.5 * equal))


def iqm_per_step(scores: np.ndarray) -> np.ndarray:
    """rliable's `aggregate_iqm` (a 25% trimmed mean over runs and tasks) at each step: (runs, tasks, steps) ->
    (steps,). One trimmed mean along an axis rather than rliable's one `aggregate_iqm` call per step: each call
    costs about 0.2 ms in scipy's argument handling, which over 2,000 resamples of a 40-step curve is 16 s."""
    return scipy.stats.trim_mean(scores.reshape(-1, scores.shape[-1]), proportiontocut=0.25, axis=0)


def iqm_curve(group: Group, metric: str = METRIC, reps: int = REPS, seed: int = 0) -> dict[str, list[float]] | None:
    """The IQM across seeds of `metric` at each evaluation step, with its interval, at the steps where at least
    two runs are in force. A run is in force from its first evaluation on; one that stopped early (solved, or
    stopped by the scheduler) keeps its last evaluation: it is the policy that run ended with."""
    series = [found for run in group.runs if (found := run.series(metric)) is not None]
    grid = np.unique(np.concatenate([steps for steps, _ in series])) if series else np.array([])
    # The runs in force only grow along the grid, so steps with the same runs in force form one stretch, whose
    # scores are one (runs, 1 task, steps) matrix for the bootstrap.
    stretches: dict[tuple[int, ...], list[float]] = {}
    for step in grid:
        in_force = tuple(i for i, (steps, _) in enumerate(series) if steps[0] <= step)
        if len(in_force) >= 2:  # an interval needs two runs
            stretches.setdefault(in_force, []).append(step)
    if not stretches:
        return None
    out: dict[str, list[float]] = {"steps": [], "iqm": [], "low": [], "high": []}
    for in_force, steps_here in stretches.items():
        scores = np.array(
            [[series[i][1][np.searchsorted(series[i][0], steps_here, side="right") - 1]] for i in in_force]
        )  # (runs, 1, steps)
        iqm, (low, high) = interval_estimates(scores, iqm_per_step, reps, seed)
        out["steps"] += [float(step) for step in steps_here]
        out["iqm"] += iqm.tolist()
        out["low"] += low.tolist()
        out["high"] += high.tolist()
    return out


def performance_profile(scores: np.ndarray, taus: np.ndarray, reps: int = REPS, seed: int = 0) -> dict:
    """The fraction of runs scoring above each threshold `tau`, with its interval per threshold."""
    with seeded_numpy(seed):
        fractions, intervals = library.create_performance_profile(
            {"scores": scores}, taus, reps=reps, confidence_interval_size=CONFIDENCE
        )
    (low, high) = np.asarray(intervals["scores"]).reshape(2, -1)
    return {"fraction": np.asarray(fractions["scores"]).tolist(), "low": low.tolist(), "high": high.tolist()}


def reliable(groups: list[Group], metric: str = METRIC, reps: int = REPS) -> dict | None:
    """Everything above for the configs with >= 2 seeds that report `metric`; None when there are none."""
    scored = [(g, final_scores(g, metric)) for g in groups]
    scored = [(g, s) for g, s in scored if len(s) >= 2]
    if not scored:
        return None
    configs = [
        {"config": g.label, "task": g.task, "seeds": len(s), "scores": s[:, 0].tolist(), **aggregates(s, reps)}
        for g, s in scored
    ]
    pairs = [
        {"x": x.label, "y": y.label, "task": x.task, **probability_of_improvement(sx, sy, reps)}
        for (x, sx), (y, sy) in combinations(scored, 2)
        if x.task == y.task
    ]
    profiles: dict[str, dict] = {}
    for task in dict.fromkeys(g.task for g, _ in scored):
        on_task = [(g, s) for g, s in scored if g.task == task]
        everything = np.concatenate([s for _, s in on_task])
        taus = np.linspace(everything.min(), everything.max(), 41) if np.ptp(everything) > 0 else everything[:1, 0]
        profiles[task] = {"tau": taus.tolist(), **{g.label: performance_profile(s, taus, reps) for g, s in on_task}}
    curves = {g.label: c for g, _ in scored if (c := iqm_curve(g, metric, reps)) is not None}
    return {
        "metric": metric,
        "bootstrap": {"reps": reps, "confidence": CONFIDENCE, "method": "stratified, percentile"},
        "configs": configs,
        "probability_of_improvement": pairs,
        "performance_profiles": profiles,
        "iqm_curves": curves,
    }
