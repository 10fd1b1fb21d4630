"""Memory matters: recurrent DQN vs feed-forward DQN on CartPole without velocities (dlforge/CartPoleNoVel-v1).

    python benchmarks/drqn_novel.py --steps 200000 --seeds 0

Trains configs/drqn/cartpole-novel.yaml (LSTM), then dqn with the same settings and observations but a
feed-forward MLP of the same width in place of the LSTM (the drqn-only fields are dropped). Each run is then
evaluated greedily over `--eval-episodes` fresh episodes twice: from its final checkpoint (step 200k) and from
its best checkpoint (the best 10-episode periodic evaluation during the run). Goal: drqn >= 400, dqn <= 200.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WANDB_SILENT", "true")

from agents import dqn, drqn  # noqa: E402
from launch.config import load_config  # noqa: E402
from launch.tracking import LocalTracker, load_latest  # noqa: E402

DRQN_ONLY = {"seq_len", "burn_in", "store_hidden_state", "priority_eta"}


def feed_forward_twin(config: drqn.Config) -> dqn.Config:
    """dqn with every shared setting of `config`, and an MLP as wide as the recurrent net (pre + hidden)."""
    shared = {f.name: getattr(config, f.name) for f in dataclasses.fields(dqn.Config)}
    network = config.network
    pre = (network.get("pre") or {}).get("hidden", [])
    shared["network"] = {"type": "mlp", "hidden": [*pre, network.get("hidden_size", 64)]}
    return dqn.Config(**shared)


def run(name: str, module, config, out: Path, episodes: int, seed: int) -> dict:
    run_dir = out / f"{name}-seed{seed}"
    tracker = LocalTracker(run_dir)
    start = time.perf_counter()
    summary = module.train(config, tracker)
    tracker.close()
    wall = time.perf_counter() - start
    tree, meta = load_latest(run_dir)
    final = module.evaluate(config, tree, episodes=episodes, seed=10_000 + seed, video_path=None)
    best_tree, best_meta = load_latest(run_dir, prefix="best")  # the best periodic eval's checkpoint, re-evaluated
    best = module.evaluate(config, best_tree, episodes=episodes, seed=10_000 + seed, video_path=None)
    return {
        "best_step": best_meta["step"],
        "best_mean": best["mean_return"],
        "best_std": best["std_return"],
        "agent": name,
        "seed": seed,
        "steps": meta["step"],
        "wall_s": wall,
        "final_mean": final["mean_return"],
        "final_std": final["std_return"],
        "best_eval": summary.get("eval/best_return", float("nan")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/drqn/cartpole-novel.yaml")
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--seeds", default="0", help="comma-separated")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--agents", default="drqn,dqn")
    parser.add_argument("--out", default=None, help="run folders (default: a temporary folder)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides of the drqn config (shared with dqn)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="drqn-novel-"))

    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        spec = load_config(args.config, [f"total_steps={args.steps}", f"seed={seed}", "device=cpu", *args.overrides])
        recurrent = spec.config
        for name in args.agents.split(","):
            module, config = (drqn, recurrent) if name == "drqn" else (dqn, feed_forward_twin(recurrent))
            rows.append(run(name, module, config, out, args.eval_episodes, seed))
            row = rows[-1]
            print(
                f"{row['agent']:5s} seed {seed}: final {row['final_mean']:.1f} +- {row['final_std']:.1f} "
                f"(best periodic eval {row['best_eval']:.1f}) in {row['wall_s']:.0f} s",
                flush=True,
            )

    print(f"\n{args.config}, {args.steps} steps, final greedy eval over {args.eval_episodes} episodes; runs in {out}")
    print("| agent | seed | steps | wall s | final checkpoint | best checkpoint (step) | goal on final / best |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        drqn_row = row["agent"] == "drqn"
        met = [(value >= 400) if drqn_row else (value <= 200) for value in (row["final_mean"], row["best_mean"])]
        print(
            f"| {row['agent']} | {row['seed']} | {row['steps']} | {row['wall_s']:.0f} | "
            f"{row['final_mean']:.1f} +- {row['final_std']:.1f} | {row['best_mean']:.1f} +- {row['best_std']:.1f} "
            f"({row['best_step']}) | {' / '.join('met' if m else 'not met' for m in met)} "
            f"({'>= 400' if drqn_row else '<= 200'}) |"
        )


if __name__ == "__main__":
    main()
