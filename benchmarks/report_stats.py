"""How long `dlforge report` spends on its reliable statistics (rliable's bootstrap, 2,000 resamples each).

    python -P benchmarks/report_stats.py                          # 4 configs x 3 seeds x 20 evaluations
    python -P benchmarks/report_stats.py --configs 6 --seeds 5 --evaluations 40

Synthetic run folders (a dqn config per learning rate, random final returns), then each part of
`launch.report.stats.reliable` timed on its own: IQM and mean with intervals per config, the probability of
improvement per pair of configs, performance profiles per config, the IQM curve per config.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from itertools import combinations
from pathlib import Path

import numpy as np
import yaml

from launch.config import TrackingConfig
from launch.report import find_runs, group_runs, stats
from launch.tracking import LocalTracker


def write_runs(root: Path, configs: int, seeds: int, evaluations: int) -> None:
    rng = np.random.default_rng(0)
    for c in range(configs):
        for seed in range(seeds):
            run_dir = root / f"lr{c}-s{seed}"
            tracker = LocalTracker(run_dir, TrackingConfig(wandb="disabled"))
            config = {"kind": "dqn", "env_id": "CartPole-v1", "learning_rate": 10.0 ** -(c + 2), "seed": seed}
            (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
            for step in range(1, evaluations + 1):
                tracker.log({"eval/mean_return": float(rng.uniform(0, 500))}, step * 500)
            tracker.close()


def timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--evaluations", type=int, default=20)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="report-stats-")) / "runs"
    write_runs(root, args.configs, args.seeds, args.evaluations)
    groups = group_runs(find_runs([root]))
    scores = [stats.final_scores(g) for g in groups]
    taus = np.linspace(0, 500, 41)
    parts = {
        "IQM and mean": lambda: [stats.aggregates(s) for s in scores],
        "probability of improvement": lambda: [
            stats.probability_of_improvement(x, y) for x, y in combinations(scores, 2)
        ],
        "performance profiles": lambda: [stats.performance_profile(s, taus) for s in scores],
        "IQM curves": lambda: [stats.iqm_curve(g) for g in groups],
    }
    print(f"{args.configs} configs x {args.seeds} seeds x {args.evaluations} evaluations, {stats.REPS} resamples")
    total = 0.0
    for name, work in parts.items():
        seconds = timed(work)
        total += seconds
        print(f"  {name:28s} {seconds:6.1f} s")
    print(f"  {'all':28s} {total:6.1f} s")


if __name__ == "__main__":
    main()
