"""Does an encoder pretrained as an autoencoder help DQN? MiniGrid DoorKey, three ways, same budget.

    python benchmarks/pretrained_encoder.py                                  # 3 seeds x 3 ways, 50k steps
    python benchmarks/pretrained_encoder.py --steps 20000 --seeds 0          # a quick look
    python benchmarks/pretrained_encoder.py --env MiniGrid-DoorKey-6x6-v0    # the harder layout

For each seed:
1. a conv autoencoder (kind `ae`) learns to reconstruct `--frames` observations that a uniformly random policy
   collects in the env (`data: env:<id>`); its encoder is the DQN config's own conv stack (16-32-64 filters of
   2x2) with a 128-d code in place of the DQN's 128 hidden units;
2. DQN (configs/dqn/minigrid-doorkey.yaml) trains for `--steps` env steps three ways: from scratch, on the
   autoencoder's encoder frozen (`network: {init_from: AE_RUN, freeze: true}`), and on it fine-tuned
   (`freeze: false`). Everything else (replay, schedule, seed, budget) is the same.
The greedy evaluation every `--eval-every` steps (20 episodes) gives the steps to reach `--goal` (first
evaluation at or above it) and the return at the budget (the last evaluation). Runs go through
launch.run.train_run, exactly what `dlforge train` does. Results: printed, and <out>/pretrained_encoder.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
os.environ.setdefault("WANDB_SILENT", "true")

from launch.config import load_config  # noqa: E402
from launch.run import train_run  # noqa: E402
from launch.tracking import read_metrics  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DQN_CONFIG = REPO / "configs/dqn/minigrid-doorkey.yaml"
AE_CONFIG = REPO / "configs/ae/mnist5k-conv.yaml"  # the conv autoencoder, pointed at env frames below
WAYS = ("scratch", "frozen", "finetuned")


def autoencoder_overrides(env_id: str, frames: int, steps: int, seed: int) -> list[str]:
    return [
        f"data=env:{env_id}",
        f"env_frames={frames}",
        "encoder={type: cnn, conv: [[16, 2, 1], [32, 2, 1], [64, 2, 1]], activation: relu}",  # the DQN's convs
        "code_dim=128",  # the DQN's hidden width
        "decoder_channels=[64, 32]",  # 2x2 -> 4x4 -> 8x8, cropped to 7x7
        "decoder_blocks=0",
        "shift=0",  # a MiniGrid view is a grid of symbols: shifting it would misplace the agent
        f"total_steps={steps}",
        f"eval_every={steps}",
        "batch_size=128",
        f"seed={seed}",
        "torch_threads=1",
        "tracking.wandb=disabled",
    ]


def train(config: Path, overrides: list[str], run_dir: Path) -> float:
    if run_dir.exists():
        shutil.rmtree(run_dir)
    started = time.perf_counter()
    train_run(load_config(config, overrides), run_dir)
    return time.perf_counter() - started


def curve(run_dir: Path) -> list[tuple[int, float]]:
    return [
        (r["step"], r["eval/mean_return"]) for r in read_metrics(run_dir / "metrics.jsonl") if "eval/mean_return" in r
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="MiniGrid-DoorKey-5x5-v0")
    parser.add_argument("--steps", type=int, default=50_000, help="DQN env steps per run (the budget)")
    parser.add_argument("--eval-every", type=int, default=5_000)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated")
    parser.add_argument("--frames", type=int, default=5_000, help="random-policy frames for the autoencoder")
    parser.add_argument("--ae-steps", type=int, default=1_500)
    parser.add_argument("--goal", type=float, default=0.9)
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--out", type=Path, default=Path("/tmp/dlforge-pretrained-encoder"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        ae_dir = args.out / f"ae-seed{seed}"
        ae_s = train(AE_CONFIG, autoencoder_overrides(args.env, args.frames, args.ae_steps, seed), ae_dir)
        ae_bce = json.loads((ae_dir / "summary.json").read_text()).get("eval/bce_per_pixel")
        print(f"seed {seed}: autoencoder test BCE {ae_bce:.4f} in {ae_s:.0f} s", flush=True)
        for way in args.ways.split(","):
            overrides = [f"env_id={args.env}", f"total_steps={args.steps}", f"eval_every={args.eval_every}",
                         "eval_episodes=20", f"seed={seed}", "torch_threads=1", "tracking.wandb=disabled"]  # fmt: skip
            if way != "scratch":
                freeze = "true" if way == "frozen" else "false"
                overrides.append(f"network={{init_from: {ae_dir}, part: encoder, freeze: {freeze}}}")
            run_dir = args.out / f"{way}-seed{seed}"
            wall = train(DQN_CONFIG, overrides, run_dir)
            points = curve(run_dir)
            reached = next((step for step, value in points if value >= args.goal), None)
            row = {"way": way, "seed": seed, "steps_to_goal": reached, "final_return": points[-1][1],
                   "curve": points, "wall_s": wall}  # fmt: skip
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "curve"}), flush=True)

    print(f"\n{args.env}, {args.steps} steps, goal {args.goal}; per seed: steps to goal / return at the budget")
    summary = {}
    for way in args.ways.split(","):
        mine = [r for r in rows if r["way"] == way]
        reached = [r["steps_to_goal"] for r in mine if r["steps_to_goal"] is not None]
        summary[way] = {
            "steps_to_goal": [r["steps_to_goal"] for r in mine],
            "final_return": [r["final_return"] for r in mine],
            "median_steps_to_goal": statistics.median(reached) if len(reached) == len(mine) else None,
            "mean_final_return": statistics.mean(r["final_return"] for r in mine),
        }
        cells = "  ".join(f"{r['steps_to_goal'] or 'never'} / {r['final_return']:.3f}" for r in mine)
        print(f"{way:>10}: {cells}   mean return {summary[way]['mean_final_return']:.3f}")
    record = {"args": {**vars(args), "out": str(args.out)}, "runs": rows, "summary": summary}
    (args.out / "pretrained_encoder.json").write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
