"""PQN against DQN, side by side on the same machine, envs and seeds: dlforge's recommended config of each.

    python -P benchmarks/pqn_vs_dqn.py all --json /tmp/pqn_vs_dqn.json     # the three parts below, in one run
    python -P benchmarks/pqn_vs_dqn.py solve --seeds 0 1 2                   # one part, fewer seeds
    python -P benchmarks/pqn_vs_dqn.py report --results a.json b.json        # the tables again, from saved runs
    python -P benchmarks/pqn_vs_dqn.py budget --agents dqn --set dqn.compile=false   # a config field changed

Parts:
- solve: CartPole-v1, configs/dqn/cartpole.yaml against configs/pqn/cartpole.yaml, each until a 10-episode greedy
  evaluation (its config's cadence) reaches 475. Wall time of training until then; the evaluations' own time is
  left out of both. Goal: PQN's median <= 0.5 x DQN's, every seed solved.
- budget: LunarLander-v3, configs/dqn/lunarlander.yaml against configs/pqn/lunarlander.yaml, each stopped after
  `--seconds` of training wall time (or at its total_steps); then 20 greedy episodes of the last network.
- minatar: MinAtar Breakout and Space Invaders, configs/{dqn,pqn}/minatar-*.yaml at `--steps` agent steps each
  (both with their schedules fitted to that budget, see `minatar_job`), a 10-episode greedy evaluation every
  tenth of the budget (the learning curve), 20 greedy episodes at the end, and steps per second.

Every run is a fresh process with one torch thread; DQN and PQN alternate, the order flipping every seed, so a
machine whose load drifts treats both alike. `torch._dynamo`, which the constructor of any torch optimizer imports
(about 1.3 s), is imported before the clock starts in both; the script reports what that import cost. The final
score is the same for both: greedy episodes on envs seeded 1,000,000 + i, which no training run saw.
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
sys.path.insert(0, str(ROOT))

from benchmarks import dqn_vs_sb3  # noqa: E402  (its in-memory tracker)

EVAL_SEED = 1_000_000
FINAL_EPISODES = 20
AGENTS = ("dqn", "pqn")
MINATAR = {"MinAtar/Breakout-v1": "minatar-breakout", "MinAtar/SpaceInvaders-v1": "minatar-space-invaders"}
PQN_MINATAR = "configs/pqn/minatar-breakout.yaml"  # one PQN config for both games: only env_id changes


# --- worker: one training run in its own process ----------------------------------------------------------


class BenchTracker(dqn_vs_sb3.MemoryTracker):
    """dqn_vs_sb3's in-memory tracker, whose records also hold the training time at which each was logged, and
    which stops once `budget` seconds of training (evaluations left out) have passed."""

    def __init__(self, clock, budget: float | None):
        super().__init__()
        self.clock, self.budget = clock, budget

    def log(self, metrics, step):
        self.records.append({"step": step, "seconds": self.clock(), **metrics})

    def should_stop(self):
        return self.budget is not None and self.clock() >= self.budget


def worker(job: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    import torch._dynamo  # noqa: F401  (what every optimizer's constructor imports: paid before the clock)

    dynamo_seconds = time.perf_counter() - start
    import yaml

    from agents import evaluation
    from launch.config import from_dict
    from launch.registry import trainer_module

    document = yaml.safe_load((ROOT / job["config"]).read_text())
    document.pop("tracking", None)
    module = trainer_module(document.pop("kind"))
    document.update(job["set"], seed=job["seed"], device="cpu", torch_threads=1)
    config = from_dict(module.Config, document, "")

    evaluating = [0.0]  # seconds spent in evaluations, left out of the training time
    timed = evaluation.evaluate_net  # dqn's and pqn's periodic evaluations both call it

    def evaluate_net(*args, **kwargs):
        begin = time.perf_counter()
        result = timed(*args, **kwargs)
        evaluating[0] += time.perf_counter() - begin
        return result

    evaluation.evaluate_net = evaluate_net
    begin, cpu = time.perf_counter(), cpu_seconds()
    tracker = BenchTracker(lambda: time.perf_counter() - begin - evaluating[0], job.get("seconds"))
    summary = module.train(config, tracker)
    wall, cpu = tracker.clock(), cpu_seconds() - cpu
    evaluations = [r for r in tracker.records if "eval/mean_return" in r]
    threshold = job.get("threshold")
    solved = next((r for r in evaluations if threshold is not None and r["eval/mean_return"] >= threshold), None)
    final = module.evaluate(config, tracker.last_tree, episodes=FINAL_EPISODES, seed=EVAL_SEED)
    return {
        "wall": wall,
        "cpu": cpu,
        "dynamo_import": dynamo_seconds,
        "steps": summary["global_step"],
        "updates": summary["charts/updates"],
        "solved_at": None if solved is None else solved["step"],
        "solved_seconds": None if solved is None else solved["seconds"],
        "curve": [(r["step"], r["seconds"], r["eval/mean_return"]) for r in evaluations],
        "final": final["mean_return"],
    }


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


# --- the three parts --------------------------------------------------------------------------------------


def solve_jobs(seeds: list[int]) -> list[dict]:
    return [
        {
            "part": "solve",
            "agent": agent,
            "env": "CartPole-v1",
            "seed": seed,
            "config": f"configs/{agent}/cartpole.yaml",
        }
        | {"set": {}, "threshold": 475.0}
        for k, seed in enumerate(seeds)
        for agent in alternate(k)
    ]


def budget_jobs(seeds: list[int], seconds: float) -> list[dict]:
    return [
        {"part": "budget", "agent": agent, "env": "LunarLander-v3", "seed": seed, "seconds": seconds}
        | {"config": f"configs/{agent}/lunarlander.yaml", "set": {"eval_every": 0}}
        for k, seed in enumerate(seeds)
        for agent in alternate(k)
    ]


def minatar_job(agent: str, env_id: str, seed: int, steps: int) -> dict:
    """Both agents at `steps` agent steps. PQN's schedules are fractions of the run, so they shrink with it; DQN
    keeps the MinAtar paper's ε decay over the first 100k frames (exploration_fraction x total_steps = 100k)."""
    budget = {"total_steps": steps, "eval_every": steps // 10, "eval_episodes": 10, "log_every": steps // 10}
    if agent == "dqn":
        config, extra = f"configs/dqn/{MINATAR[env_id]}.yaml", {"exploration_fraction": min(1.0, 100_000 / steps)}
    else:
        config, extra = PQN_MINATAR, {"env_id": env_id}
    return {"part": "minatar", "agent": agent, "env": env_id, "seed": seed, "config": config, "set": budget | extra}


def minatar_jobs(seeds: list[int], steps: int, games: list[str]) -> list[dict]:
    return [
        minatar_job(agent, env_id, seed, steps)
        for env_id in games
        for k, seed in enumerate(seeds)
        for agent in alternate(k)
    ]


def alternate(k: int) -> tuple[str, ...]:
    return AGENTS if k % 2 == 0 else AGENTS[::-1]


# --- driver -----------------------------------------------------------------------------------------------


def launch(job: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TORCHINDUCTOR_COMPILE_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-P", __file__, "--worker", json.dumps(job)], capture_output=True, text=True, env=env, cwd=ROOT
    )
    if done.returncode != 0:
        raise SystemExit(f"{job['agent']} {job['env']} seed {job['seed']} failed:\n{done.stderr[-3000:]}")
    return {**job, **json.loads(done.stdout.strip().splitlines()[-1])}


def with_changes(job: dict, changes: list[str]) -> dict:
    """The job with each `AGENT.FIELD=VALUE` of `changes` for its agent set in its config (VALUE read as YAML)."""
    import yaml

    for change in changes:
        target, _, value = change.partition("=")
        agent, _, name = target.partition(".")
        if agent not in AGENTS or not name or not value:
            raise SystemExit(f"error: --set: expected AGENT.FIELD=VALUE with AGENT in {AGENTS}, got '{change}'")
        if agent == job["agent"]:
            job = {**job, "set": {**job["set"], name: yaml.safe_load(value)}}
    return job


def uptime() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=["all", "solve", "budget", "minatar", "report"])
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default: 10 / 5 / 3 seeds per part")
    parser.add_argument("--seconds", type=float, default=240.0, help="budget: training wall time per run")
    parser.add_argument("--steps", type=int, default=100_000, help="minatar: agent steps per run")
    parser.add_argument("--json", type=Path, default=None, help="also write every run's result here")
    parser.add_argument("--results", nargs="+", type=Path, default=[], help="report: --json files of earlier runs")
    parser.add_argument("--set", nargs="+", default=[], metavar="AGENT.FIELD=VALUE", help="change a config field")
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=AGENTS, help="default: both")
    parser.add_argument("--games", nargs="+", default=list(MINATAR), choices=list(MINATAR), help="minatar: games")
    if sys.argv[1:2] == ["--worker"]:
        print(json.dumps(worker(json.loads(sys.argv[2]))))
        return
    args = parser.parse_args()
    if args.part == "report":
        saved = [result for path in args.results for result in json.loads(path.read_text())]
        for part in ("solve", "budget", "minatar"):
            if any(r["part"] == part for r in saved):
                report(part, [r for r in saved if r["part"] == part])
        return

    parts = ["solve", "budget", "minatar"] if args.part == "all" else [args.part]
    jobs = {
        "solve": lambda: solve_jobs(args.seeds or list(range(10))),
        "budget": lambda: budget_jobs(args.seeds or list(range(5)), args.seconds),
        "minatar": lambda: minatar_jobs(args.seeds or [0, 1, 2], args.steps, args.games),
    }
    results = []
    print(f"parts={parts} cpu_count={os.cpu_count()} {uptime()}", flush=True)
    for part in parts:
        started = time.perf_counter()
        for job in [with_changes(job, args.set) for job in jobs[part]() if job["agent"] in args.agents]:
            result = launch(job)
            results.append(result)
            print(
                f"  {part} {result['env']} seed {result['seed']} {result['agent']}: wall {result['wall']:.1f}s "
                f"steps {result['steps']} solved_at {result['solved_at']} final {result['final']:.1f}  {uptime()}",
                flush=True,
            )
            if args.json:
                args.json.write_text(json.dumps(results, indent=1))
        report(part, [r for r in results if r["part"] == part])
        print(f"{part}: {time.perf_counter() - started:.0f} s in all, {uptime()}\n", flush=True)


def report(part: str, results: list[dict]) -> None:
    for env_id in sorted({r["env"] for r in results}):
        runs = {
            agent: sorted((r for r in results if r["env"] == env_id and r["agent"] == agent), key=seed_of)
            for agent in AGENTS
        }
        seeds = sorted({r["seed"] for rows in runs.values() for r in rows})
        print(f"\n{part}: {env_id}, medians over seeds {seeds}")
        print("| agent | wall s | CPU s | steps | steps/s | updates | final eval (20 ep.) | by seed | solved at |")
        print("|---|---|---|---|---|---|---|---|---|")
        for agent, rows in runs.items():
            if not rows:
                continue
            wall, cpu, steps, updates, final = (
                statistics.median(r[k] for r in rows) for k in ("wall", "cpu", "steps", "updates", "final")
            )
            sps = statistics.median(r["steps"] / r["wall"] for r in rows)
            finals = " ".join(f"{r['final']:.0f}" for r in rows)
            solved = " ".join(str(r["solved_at"]) for r in rows)
            print(
                f"| {agent} | {wall:.1f} | {cpu:.1f} | {steps:.0f} | {sps:.0f} | {updates:.0f} | {final:.1f} "
                f"| {finals} | {solved} |"
            )
        dynamo = statistics.median(r["dynamo_import"] for r in results)
        if part == "solve" and runs["dqn"] and runs["pqn"]:
            solved = {agent: sum(r["solved_at"] is not None for r in rows) for agent, rows in runs.items()}
            pqn, dqn = (statistics.median(r["wall"] for r in runs[a]) for a in ("pqn", "dqn"))
            print(
                f"seeds solved: pqn {solved['pqn']}/{len(runs['pqn'])}, dqn {solved['dqn']}/{len(runs['dqn'])}; median "
                f"wall pqn/dqn {pqn / dqn:.2f} ({pqn:.2f} s / {dqn:.2f} s); with the torch._dynamo import "
                f"({dynamo:.2f} s) counted in both: {(pqn + dynamo) / (dqn + dynamo):.2f}"
            )
        if part == "minatar":
            print_curves(runs)


def print_curves(runs: dict[str, list[dict]]) -> None:
    """Median greedy return over seeds at each evaluation, per agent. PQN evaluates after the rollout in which
    a multiple of eval_every falls, so each evaluation is put at the nearest multiple."""
    every = next(r["set"]["eval_every"] for rows in runs.values() for r in rows)
    curves = {
        agent: [{every * round(s / every): ret for s, _, ret in r["curve"]} for r in rows]
        for agent, rows in runs.items()
    }
    steps = sorted({step for per_seed in curves.values() for curve in per_seed for step in curve})
    print("| steps | " + " | ".join(AGENTS) + " |")
    print("|---" * (len(AGENTS) + 1) + "|")
    for step in steps:
        cells = []
        for agent in AGENTS:
            values = [curve[step] for curve in curves[agent] if step in curve]
            cells.append(f"{statistics.median(values):.1f}" if values else "-")
        print(f"| {step} | " + " | ".join(cells) + " |")


def seed_of(result: dict) -> int:
    return result["seed"]


if __name__ == "__main__":
    main()
