"""dlforge DQN against stable-baselines3 DQN, side by side on the same machine, envs, seeds and settings.

    python benchmarks/dqn_vs_sb3.py --env CartPole-v1 --seeds 0 1 2 3 4              # equal work, zoo settings
    python benchmarks/dqn_vs_sb3.py --env LunarLander-v3 --seeds 0 1 2 3 4
    python benchmarks/dqn_vs_sb3.py --env CartPole-v1 --mode time-to-solve --seeds 0 1 2 3 4

Modes:
- equal-work: both run rl-zoo3's settings (configs/dqn/<env>-zoo.yaml, translated to SB3's arguments) for the
  same number of env steps.
- time-to-solve: each runs its own recommended config (dlforge: configs/dqn/<env>.yaml; SB3: rl-zoo3's, which
  is what SB3 recommends) until a greedy evaluation (`--solve-episodes` episodes every `--solve-every` steps)
  reaches `--threshold`. The evaluations' own time is left out of both wall times.

Each run is a fresh Python process; dlforge and SB3 alternate (the order flips every seed) so a machine whose
load drifts treats both alike. With `--threads N` both use N torch threads; without it each uses its own
default (SB3: torch's, all cores; dlforge: its config's `torch_threads`). Wall time runs from building the agent to
the end of training. The final score of both is the same deterministic evaluation: `--eval-episodes`
greedy episodes on the same seeded envs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"CartPole-v1": "cartpole", "LunarLander-v3": "lunarlander"}
# dlforge field -> SB3 DQN argument, for the fields both have under the same name
SHARED = (
    "learning_rate",
    "batch_size",
    "buffer_size",
    "learning_starts",
    "gamma",
    "tau",
    "target_update_interval",
    "train_freq",
    "gradient_steps",
    "exploration_fraction",
    "exploration_initial_eps",
    "exploration_final_eps",
    "max_grad_norm",
)
EVAL_SEED = 1_000_000  # final evaluation episodes use seeds no training run saw


def cpu_seconds() -> float:
    """CPU time of this process and of the children it waited for (the compiler, when torch.compile runs)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


# --- worker: one training run in its own process --------------------------------------------------


def worker(job: dict) -> dict:
    import torch

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    sys.path.insert(0, str(ROOT))
    import yaml

    document = yaml.safe_load((ROOT / job["config"]).read_text())
    document.pop("kind", None), document.pop("tracking", None)
    document["seed"] = job["seed"]
    if job["threads"]:
        document["torch_threads"] = job["threads"]
    if job.get("steps"):
        document["total_steps"] = job["steps"]
    if job["framework"] == "dlforge":
        for item in job.get("dlforge_set", []):
            key, _, value = item.partition("=")
            document[key] = yaml.safe_load(value)
    run = run_dlforge if job["framework"] == "dlforge" else run_sb3
    return run(document, job)


def run_dlforge(document: dict, job: dict) -> dict:
    from agents import dqn, evaluation
    from launch.config import from_dict

    eval_seconds = [0.0, 0.0]  # wall, cpu
    solved_at = None
    if job["mode"] == "time-to-solve":
        document.update(
            eval_every=job["solve_every"], eval_episodes=job["solve_episodes"], stop_at_return=job["threshold"]
        )
        timed = evaluation.evaluate_members  # the training loop's periodic evaluations

        def evaluate_net(*args, **kwargs):
            start, cpu = time.perf_counter(), cpu_seconds()
            result = timed(*args, **kwargs)
            eval_seconds[0] += time.perf_counter() - start
            eval_seconds[1] += cpu_seconds() - cpu
            return result

        evaluation.evaluate_members = evaluate_net
    else:
        document.update(eval_every=0, eval_episodes=1)  # one short greedy episode at the end, inside train
    config = from_dict(dqn.Config, document, "")
    tracker = MemoryTracker()
    start, cpu = time.perf_counter(), cpu_seconds()
    summary = dqn.train(config, tracker)
    wall = time.perf_counter() - start - eval_seconds[0]
    cpu = cpu_seconds() - cpu - eval_seconds[1]
    evals = [(step, m["eval/mean_return"]) for step, m in tracker.records if "eval/mean_return" in m]
    if job["mode"] == "time-to-solve":
        solved_at = next((step for step, value in evals if value >= job["threshold"]), None)
    policy = greedy_policy_dlforge(config, tracker.last_tree)
    return {
        "wall": wall,
        "cpu": cpu,
        "steps": summary["global_step"],
        "solved_at": solved_at,
        "final": final_eval(job["env"], policy, job["eval_episodes"]),
    }


def run_sb3(document: dict, job: dict) -> dict:
    import gymnasium as gym
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy

    kwargs = {name: document[name] for name in SHARED if name in document}
    hidden = document.get("network", {}).get("hidden", [64, 64])
    model_start, model_cpu = time.perf_counter(), cpu_seconds()
    model = DQN(
        "MlpPolicy",
        job["env"],
        policy_kwargs={"net_arch": list(hidden)},
        seed=job["seed"],
        verbose=0,
        device="cpu",
        **kwargs,
    )
    eval_seconds = eval_cpu = 0.0
    solved_at = None

    class SolveCallback(BaseCallback):
        def _on_step(self) -> bool:
            nonlocal eval_seconds, eval_cpu, solved_at
            if self.num_timesteps % job["solve_every"] != 0:
                return True
            start, cpu = time.perf_counter(), cpu_seconds()
            env = gym.make(job["env"])
            env.reset(seed=job["seed"] + 10_000)
            mean, _ = evaluate_policy(self.model, env, n_eval_episodes=job["solve_episodes"], deterministic=True)
            eval_seconds += time.perf_counter() - start
            eval_cpu += cpu_seconds() - cpu
            if mean >= job["threshold"]:
                solved_at = self.num_timesteps
                return False
            return True

    callback = SolveCallback() if job["mode"] == "time-to-solve" else None
    model.learn(total_timesteps=document["total_steps"], callback=callback)
    wall = time.perf_counter() - model_start - eval_seconds
    cpu = cpu_seconds() - model_cpu - eval_cpu

    def policy(obs):
        return model.predict(obs, deterministic=True)[0]

    return {
        "wall": wall,
        "cpu": cpu,
        "steps": int(model.num_timesteps),
        "solved_at": solved_at,
        "final": final_eval(job["env"], policy, job["eval_episodes"]),
    }


class MemoryTracker:
    """Just enough of the tracker API for a benchmark: metrics and the last checkpoint in memory."""

    def __init__(self):
        self.records, self.last_tree, self.run_dir = [], None, None

    def log(self, metrics, step):
        self.records.append((step, metrics))

    def checkpoint(self, tree, step, *, best=False, metric=None):
        if not best:
            self.last_tree = tree

    def summary(self, metrics):
        pass

    def image(self, *args, **kwargs):
        pass

    def video(self, *args, **kwargs):
        pass

    def should_stop(self):
        return False


def greedy_policy_dlforge(config, tree):
    import torch

    from agents import dqn, evaluation

    env = evaluation.make_env(config, 1, 0)
    q_net = dqn.build_q_network(config, env)
    q_net.load_state_dict(tree["q_net"])
    q_net.eval()

    def policy(obs):
        with torch.inference_mode():
            return q_net(torch.as_tensor(obs)).argmax(dim=1).numpy()

    return policy


def final_eval(env_id: str, policy, episodes: int) -> float:
    """Mean return of `episodes` greedy episodes, one per env of a sync vector env seeded EVAL_SEED + i."""
    import numpy as np

    import envs

    env = envs.make(env_id, num_envs=episodes, seed=EVAL_SEED, vectorization="sync")
    obs, _ = env.reset(seed=EVAL_SEED)
    returns = np.full(episodes, np.nan)
    while np.isnan(returns).any():
        obs, _, _, _, info = env.step(policy(obs))
        for i in np.flatnonzero(info.get("_episode", np.zeros(episodes, bool))):
            if np.isnan(returns[i]):
                returns[i] = info["episode"]["r"][i]
    env.close()
    return float(returns.mean())


# --- driver -----------------------------------------------------------------------------------------


def launch(job: dict) -> dict:
    # compile in this process (no worker pool), so the compiler's CPU time is counted with the run's
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TORCHINDUCTOR_COMPILE_THREADS": "1"}
    if job["threads"]:
        env["OMP_NUM_THREADS"] = str(job["threads"])
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True, env=env, cwd=ROOT
    )
    if proc.returncode != 0:
        raise SystemExit(f"{job['framework']} seed {job['seed']} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", nargs="+", default=["CartPole-v1"], choices=sorted(CONFIGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--mode", choices=["equal-work", "time-to-solve"], default="equal-work")
    parser.add_argument("--steps", type=int, default=None, help="override total env steps (default: the config's)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for both (default: each one's own: SB3 torch's, dlforge its config's)",
    )
    parser.add_argument("--eval-episodes", type=int, default=20, help="final deterministic evaluation episodes")
    parser.add_argument("--threshold", type=float, default=475.0, help="time-to-solve: mean eval return to reach")
    parser.add_argument("--solve-every", type=int, default=1000, help="time-to-solve: env steps between evals")
    parser.add_argument("--solve-episodes", type=int, default=10, help="time-to-solve: episodes per eval")
    parser.add_argument("--frameworks", nargs="+", default=["dlforge", "sb3"], choices=["dlforge", "sb3"])
    parser.add_argument(
        "--dlforge-set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="override dlforge config fields, e.g. compile=false",
    )
    parser.add_argument(
        "--dlforge-config",
        default=None,
        metavar="PATH",
        help="run dlforge with this config instead (e.g. configs/dqn/lunarlander.yaml)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write every run's result here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    results = []
    print(f"mode={args.mode} threads={args.threads} seeds={args.seeds} cpu_count={os.cpu_count()}", flush=True)
    for env_id in args.env:
        name = CONFIGS[env_id]
        for k, seed in enumerate(args.seeds):
            order = args.frameworks if k % 2 == 0 else args.frameworks[::-1]
            for framework in order:
                own = args.mode == "time-to-solve" and framework == "dlforge"
                job = {
                    "framework": framework,
                    "env": env_id,
                    "seed": seed,
                    "mode": args.mode,
                    "steps": args.steps,
                    "threads": args.threads,
                    "eval_episodes": args.eval_episodes,
                    "threshold": args.threshold,
                    "solve_every": args.solve_every,
                    "solve_episodes": args.solve_episodes,
                    "dlforge_set": args.dlforge_set,
                    "config": f"configs/dqn/{name}.yaml" if own else f"configs/dqn/{name}-zoo.yaml",
                    **({"config": args.dlforge_config} if args.dlforge_config and framework == "dlforge" else {}),
                }
                result = {**job, **launch(job)}
                results.append(result)
                print(
                    f"  {env_id} seed {seed} {framework:8s} wall {result['wall']:7.1f}s  cpu {result['cpu']:7.1f}s"
                    f"  steps {result['steps']:7d}"
                    f"  solved_at {result['solved_at']}  final {result['final']:8.1f}",
                    flush=True,
                )
        print_table(env_id, [r for r in results if r["env"] == env_id], args.mode)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def print_table(env_id: str, results: list[dict], mode: str) -> None:
    by = {fw: [r for r in results if r["framework"] == fw] for fw in ("dlforge", "sb3")}
    print(f"\n{env_id} ({mode}), medians over seeds")
    print("| | wall s | CPU s | steps | steps/s | final eval (20 ep.) | final eval by seed | solved at (steps) |")
    print("|---|---|---|---|---|---|---|---|")
    for fw, runs in by.items():
        if not runs:
            continue
        runs = sorted(runs, key=lambda r: r["seed"])
        wall = statistics.median(r["wall"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs)
        steps = statistics.median(r["steps"] for r in runs)
        sps = statistics.median(r["steps"] / r["wall"] for r in runs)
        final = statistics.median(r["final"] for r in runs)
        seeds = " ".join(f"{r['final']:.0f}" for r in runs)
        solved = " ".join(str(r["solved_at"]) for r in runs) if mode == "time-to-solve" else "-"
        print(f"| {fw} | {wall:.1f} | {cpu:.1f} | {steps:.0f} | {sps:.0f} | {final:.1f} | {seeds} | {solved} |")
    if by["dlforge"] and by["sb3"]:
        pairs = {r["seed"]: r for r in by["sb3"]}
        for what in ("wall", "cpu"):
            ratios = [r[what] / pairs[r["seed"]][what] for r in by["dlforge"] if r["seed"] in pairs]
            print(
                f"{what} ratio dlforge/SB3: median {statistics.median(ratios):.2f} "
                f"(by seed {' '.join(f'{x:.2f}' for x in ratios)})",
                flush=True,
            )
    print()


if __name__ == "__main__":
    main()
