"""The report's numbers: the comparison table, and reliable statistics across seeds (Agarwal et al. 2021).

For every config with several seeds, on the final evaluation return of each run (its last `eval/mean_return`):
IQM and mean with 95% stratified-bootstrap confidence intervals, the IQM learning curve with its interval,
performance profiles (the fraction of runs scoring above each threshold), and the probability that one config
improves on another (configs on the same task only).

Point estimates are rliable's functions (`metrics.aggregate_iqm`, `aggregate_mean`, `probability_of_improvement`).
The intervals come from a stratified bootstrap written here as rliable's `StratifiedBootstrap` does it (runs resampled
with replacement within each task; percentile interval), because `rliable.library` does not import next to
pandas >= 3: it needs arch < 8, arch 7 fails to import with pandas 3 (`deprecate_kwarg`'s new signature), and arch 8
no longer accepts the `random_state` that rliable passes. Each replicate uses the same formula as the rliable
function, vectorised over replicates; the tests check both against rliable on the same samples.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import scipy.stats

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


# --- bootstrap ------------------------------------------------------------------------------------------------


def stratified_replicates(scores: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """(reps, runs, tasks): each task's runs resampled with replacement, independently per task."""
    runs, tasks = scores.shape
    picks = rng.integers(runs, size=(reps, runs, tasks))
    return np.take_along_axis(np.broadcast_to(scores, (reps, runs, tasks)), picks, axis=1)


def iqm_of(samples: np.ndarray) -> np.ndarray:
    """rliable's aggregate_iqm (a 25% trimmed mean over runs and tasks) of each replicate (reps, runs, tasks)."""
    return scipy.stats.trim_mean(samples.reshape(len(samples), -1), proportiontocut=0.25, axis=1)


def mean_of(samples: np.ndarray) -> np.ndarray:
    return samples.reshape(len(samples), -1).mean(axis=1)


def improvement_of(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """rliable's probability_of_improvement per replicate: P(X > Y) + P(X = Y) / 2 per task, averaged over tasks.
    x (reps, runs_x, tasks), y (reps, runs_y, tasks) -> (reps,)."""
    greater = (x[:, :, None, :] > y[:, None, :, :]).mean(axis=(1, 2))  # (reps, tasks)
    equal = (x[:, :, None, :] == y[:, None, :, :]).mean(axis=(1, 2))
    return (greater + 0.5 * equal).mean(axis=1)


def interval(replicates: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The percentile interval (rliable's default method)."""
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


def estimate(value: float, replicates: np.ndarray) -> dict[str, float]:
    low, high = interval(replicates)
    return {"value": float(value), "low": low, "high": high}


# --- reliable statistics ----------------------------------------------------------------------------------------


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
    from rliable import metrics

    samples = stratified_replicates(scores, reps, np.random.default_rng(seed))
    return {
        "iqm": estimate(metrics.aggregate_iqm(scores), iqm_of(samples)),
        "mean": estimate(metrics.aggregate_mean(scores), mean_of(samples)),
    }


def probability_of_improvement(x: np.ndarray, y: np.ndarray, reps: int = REPS, seed: int = 0) -> dict[str, float]:
    """P(X > Y) with its interval; x and y (runs, tasks) are resampled independently (rliable's
    StratifiedIndependentBootstrap)."""
    from rliable import metrics

    rng = np.random.default_rng(seed)
    replicates = improvement_of(stratified_replicates(x, reps, rng), stratified_replicates(y, reps, rng))
    return estimate(metrics.probability_of_improvement(x, y), replicates)


def iqm_curve(group: Group, metric: str = METRIC, reps: int = REPS, seed: int = 0) -> dict[str, list[float]] | None:
    """The IQM across seeds of `metric` at each evaluation step, with its interval. A run that stopped early
    (solved, or stopped by the scheduler) keeps its last evaluation: it is the policy that run ended with."""
    from rliable import metrics

    series = [found for run in group.runs if (found := run.series(metric)) is not None]
    if len(series) < 2:
        return None
    grid = np.unique(np.concatenate([steps for steps, _ in series]))
    rng = np.random.default_rng(seed)
    out: dict[str, list[float]] = {"steps": [], "iqm": [], "low": [], "high": []}
    for step in grid:
        in_force = [v[np.searchsorted(steps, step, side="right") - 1] for steps, v in series if steps[0] <= step]
        if len(in_force) < 2:  # an interval needs two runs
            continue
        scores = np.array(in_force).reshape(-1, 1)  # (runs, 1 task)
        low, high = interval(iqm_of(stratified_replicates(scores, reps, rng)))
        out["steps"].append(float(step))
        out["iqm"].append(float(metrics.aggregate_iqm(scores)))
        out["low"].append(low)
        out["high"].append(high)
    return out


def performance_profile(scores: np.ndarray, taus: np.ndarray, reps: int = REPS, seed: int = 0) -> dict:
    """The fraction of runs scoring above each threshold `tau`, with its interval per threshold."""
    samples = stratified_replicates(scores, reps, np.random.default_rng(seed)).reshape(reps, -1)  # (reps, runs)
    above = (samples[:, :, None] > taus[None, None, :]).mean(axis=1)  # (reps, taus)
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(above, [tail, 100 - tail], axis=0)
    fraction = (scores.reshape(-1, 1) > taus[None]).mean(axis=0)
    return {"fraction": fraction.tolist(), "low": low.tolist(), "high": high.tolist()}


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
