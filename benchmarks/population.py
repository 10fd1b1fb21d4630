"""Populations (`population:` in a dqn config: many seeds as one batched network in one process) against separate
runs, side by side on the same machine, with the same configs, seeds and final evaluation.

    python benchmarks/population.py scaling --plot docs/population-scaling.png  # 4: members 1 .. 64, 10k steps
    python benchmarks/population.py separate                                    # 2: vs 16 dlforge runs, 2 at a time
    python benchmarks/population.py sb3                                         # 1: vs 16 SB3 runs, 2 at a time
    python benchmarks/population.py one                                         # a population of one vs a run
    python benchmarks/population.py sweep                                       # 3: dlforge sweep, packed vs not
    python benchmarks/population.py gpu --device cuda                           # 5: 256/1024 CartPole, 64 Lunar
    python benchmarks/population.py separate --seeds 4 --steps 10000            # any part at a reduced size

Parts:
- sb3 (equal work against SB3): `--seeds` seeds of configs/dqn/cartpole-zoo.yaml as one population against SB3 with
  the same settings (benchmarks/dqn_vs_sb3.py's translation), `--slots` processes at a time, one torch thread each.
- separate (against our own runs): configs/dqn/cartpole.yaml with stop_at_return off, one population against
  `--seeds` single dlforge runs, `--slots` at a time.
- sweep: `dlforge sweep configs/sweeps/cartpole-lr.yaml` with `--seeds` seeds per point, `pack: seeds` against
  `pack: none` (refused, exit 1, when this checkout's sweeps cannot pack).
- scaling: populations of `--sizes` members of configs/dqn/cartpole.yaml (stop_at_return off) for `--scaling-steps`
  steps each: training wall per 10k steps per member, and that cost relative to a run of one.
- one: a population of one (`population: {seeds: [s]}`) against the same config without `population:`.
- gpu (`--device cuda` only): populations of 1, 256 and 1024 CartPole members and 1 and 64 LunarLander members.

Every run is a fresh process with one torch thread (OMP_NUM_THREADS=1). A set's wall time is the elapsed time from
starting its first process to the end of its last (imports, env and network building included: a user pays them
once per run), less the final evaluation (20 greedy episodes per seed on the seeds dqn_vs_sb3.py uses), which is
timed in each process and taken off as its share of the slots: all of it for the population (one process), half of
it for two runs at a time. The two sides alternate which goes first from one `--repeats` to the next; `uptime` is
printed before and after each part.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import dqn_vs_sb3  # noqa: E402  (its SB3 translation, in-memory tracker and final evaluation)

ZOO, OWN, LUNAR = "configs/dqn/cartpole-zoo.yaml", "configs/dqn/cartpole.yaml", "configs/dqn/lunarlander.yaml"
SWEEP = "configs/sweeps/cartpole-lr.yaml"
SOLVED = 500.0  # CartPole-v1's maximum return: a seed "ends at 500" when all its final greedy episodes reach it
PER = 10_000  # scaling figures are per 10k env steps per member


# --- worker: one process trains a population, a single dlforge run, or an SB3 run, then evaluates it ------------


def worker(job: dict) -> dict:
    import torch
    import yaml

    torch.set_num_threads(1)
    document = yaml.safe_load((ROOT / job["config"]).read_text())
    document.pop("kind", None), document.pop("tracking", None)
    document.update(seed=job["seeds"][0], torch_threads=1, **job.get("set", {}))
    if job.get("steps"):
        document["total_steps"] = job["steps"]
    if job["framework"] == "sb3":
        return run_sb3(document, job)
    return run_dlforge(document, job)


def run_dlforge(document: dict, job: dict) -> dict:
    from agents import dqn, population
    from launch.config import from_dict

    # no evaluation during training; the one greedy episode train plays at its end is left in the wall time
    document.update(eval_every=0, eval_episodes=1, device=job.get("device", "cpu"))
    if job["population"]:
        document["population"] = {"seeds": job["seeds"]}
    config = from_dict(dqn.Config, document, "")
    members = population.members(config)
    trackers = [dqn_vs_sb3.MemoryTracker() for _ in members]
    phases = time_the_hot_path() if job.get("profile") else None
    start, cpu = time.perf_counter(), time.process_time()
    summaries = dqn.train(config, trackers if job["population"] else trackers[0])
    train, train_cpu = time.perf_counter() - start, time.process_time() - cpu
    summaries = summaries if isinstance(summaries, list) else [summaries]
    start, cpu, finals = time.perf_counter(), time.process_time(), []
    if job["eval_episodes"]:
        for member, tracker in zip(members, trackers):
            single = population.member_config(config, member) if job["population"] else config
            policy = dqn_vs_sb3.greedy_policy_dlforge(single, tracker.last_tree)
            finals.append(dqn_vs_sb3.final_eval(config.env_id, policy, job["eval_episodes"]))
    result = {
        "train": train,
        "train_cpu": train_cpu,
        "eval": time.perf_counter() - start,
        "eval_cpu": time.process_time() - cpu,
        "finals": finals,
        "steps": [int(s["global_step"]) for s in summaries],
    }
    if phases is not None:
        result["phases"] = {**phases, "other (logging, schedules, target sync, setup)": train - sum(phases.values())}
    return result


def run_sb3(document: dict, job: dict) -> dict:
    evaluation = [0.0, 0.0]  # wall, cpu
    timed = dqn_vs_sb3.final_eval

    def final_eval(*args, **kwargs):  # dqn_vs_sb3.run_sb3 evaluates inside; time it to take it off
        start, cpu = time.perf_counter(), time.process_time()
        value = timed(*args, **kwargs)
        evaluation[0] += time.perf_counter() - start
        evaluation[1] += time.process_time() - cpu
        return value

    dqn_vs_sb3.final_eval = final_eval
    env_id = document["env_id"]
    sb3_job = {"env": env_id, "seed": job["seeds"][0], "mode": "equal-work", "solve_every": 0}
    result = dqn_vs_sb3.run_sb3(document, {**sb3_job, "eval_episodes": job["eval_episodes"]})
    return {
        "train": result["wall"],
        "train_cpu": result["cpu"],
        "eval": evaluation[0],
        "eval_cpu": evaluation[1],
        "finals": [result["final"]],
        "steps": [result["steps"]],
    }


def time_the_hot_path() -> dict[str, float]:
    """Wrap the population loop's phases in timers: seconds spent acting (ε-greedy and the batched forward),
    stepping every member's envs, adding to replay, and learning (sampling, targets, updates). Import-time names
    are patched where the loop looks them up (`dqn.act` is a module global; the rest are methods)."""
    from agents import dqn, replay
    from envs import members

    seconds = {"act": 0.0, "env step": 0.0, "replay add": 0.0, "learn": 0.0}

    def timed(function, name):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[name] += time.perf_counter() - start

        return wrapper

    dqn.act = timed(dqn.act, "act")
    members.MemberEnvs.step = timed(members.MemberEnvs.step, "env step")
    replay.ReplayBuffer.add = timed(replay.ReplayBuffer.add, "replay add")
    dqn.Learner.train_phase = timed(dqn.Learner.train_phase, "learn")
    return seconds


# --- driver ---------------------------------------------------------------------------------------------------


def launch(job: dict) -> dict:
    """Run `job` in a fresh process with one thread; its result and the process's elapsed wall time."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(job)], capture_output=True, text=True, env=env, cwd=ROOT
    )
    if proc.returncode != 0:
        raise SystemExit(f"{job['framework']} seeds {job['seeds']} failed:\n{proc.stderr[-3000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "elapsed": time.perf_counter() - start}


def run_set(jobs: list[dict], slots: int) -> dict:
    """Run `jobs`, `slots` processes at a time; the set's wall time less its final evaluation (see the docstring)."""
    start, children = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    with ThreadPoolExecutor(slots) as pool:
        results = list(pool.map(launch, jobs))
    elapsed, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    evaluation = sum(r["eval"] for r in results) / min(slots, len(jobs))
    cpu = after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    return {
        "wall": elapsed - evaluation,
        "cpu": cpu - sum(r["eval_cpu"] for r in results),  # every process's CPU, imports included, less evaluation
        "elapsed": elapsed,
        "train_per_process": statistics.median(r["train"] for r in results),
        "finals": [f for r in results for f in r["finals"]],
        "steps": [s for r in results for s in r["steps"]],
        "results": results,
    }


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def side_by_side(label: str, population_job: dict, separate_jobs: list[dict], args, goal: float) -> dict:
    """The population and the separate runs, alternating which goes first; printed with their wall ratio."""
    print(f"\n== {label}: {len(population_job['seeds'])} seeds, {args.slots} separate runs at a time", flush=True)
    print(f"   before: {uptime()}", flush=True)
    rows = []
    for repeat in range(args.repeats):
        sides = [("population", lambda: run_set([population_job], 1)), ("separate", lambda: run_set(separate_jobs, 2))]
        measured = dict((name, run()) for name, run in (sides if repeat % 2 == 0 else sides[::-1]))
        ratio = measured["population"]["wall"] / measured["separate"]["wall"]
        cpu_ratio = measured["population"]["cpu"] / measured["separate"]["cpu"]
        rows.append({"repeat": repeat, "ratio": ratio, "cpu_ratio": cpu_ratio, **measured})
        for name, m in measured.items():
            solved = sum(f >= SOLVED for f in m["finals"])
            print(
                f"   {name:10s} wall {m['wall']:7.1f}s  CPU {m['cpu']:7.1f}s  (elapsed {m['elapsed']:.1f}s, "
                f"per process train "
                f"{m['train_per_process']:.1f}s)  seeds at {SOLVED:.0f}: {solved}/{len(m['finals'])}  "
                f"finals {' '.join(f'{f:.0f}' for f in m['finals'])}",
                flush=True,
            )
        print(
            f"   repeat {repeat}: wall ratio population/separate {ratio:.3f} (goal <= {goal}); "
            f"CPU ratio {cpu_ratio:.3f}",
            flush=True,
        )
    print(f"   after: {uptime()}", flush=True)
    profile = launch({**population_job, "profile": True, "eval_episodes": 0}) if args.profile else None
    if profile:
        print(f"   where the population's {profile['train']:.1f} s of training go (a separate, timed run):")
        for phase, seconds in profile["phases"].items():
            print(f"     {phase:48s} {seconds:7.1f} s  {seconds / profile['train']:6.1%}", flush=True)
    return {"part": label, "rows": rows, "profile": profile}


def job(framework: str, config: str, seeds: list[int], args, *, population: bool, **extra) -> dict:
    return {
        "framework": framework,
        "config": config,
        "seeds": seeds,
        "population": population,
        "steps": args.steps,
        "eval_episodes": args.eval_episodes,
        **extra,
    }


def part_sb3(args) -> dict:
    seeds = list(range(args.seeds))
    together = job("dlforge", ZOO, seeds, args, population=True)
    alone = [job("sb3", ZOO, [s], args, population=False) for s in seeds]
    return side_by_side("1. equal work vs SB3 (cartpole-zoo.yaml)", together, alone, args, goal=0.35)


def part_separate(args) -> dict:
    seeds, off = list(range(args.seeds)), {"stop_at_return": None}
    together = job("dlforge", OWN, seeds, args, population=True, set=off)
    alone = [job("dlforge", OWN, [s], args, population=False, set=off) for s in seeds]
    return side_by_side("2. vs separate dlforge runs (cartpole.yaml, stop_at_return off)", together, alone, args, 0.15)


def part_one(args) -> dict:
    """A population of one against the same config without `population:`, in turn, `--repeats` x 2 times; with
    `--baseline TREE`, also the single run of another checkout (e.g. one without populations) against this one's,
    both through their own benchmarks/dqn_vs_sb3.py worker (the same measuring code on both sides)."""
    print(f"\n== population of one vs a single run ({ZOO}), seed 0\n   before: {uptime()}", flush=True)
    contenders = {
        "population of one": lambda: launch(job("dlforge", ZOO, [0], args, population=True)),
        "single run": lambda: launch(job("dlforge", ZOO, [0], args, population=False)),
    }
    if args.baseline:
        contenders["single run, dqn_vs_sb3 worker"] = lambda: launch_dqn_vs_sb3(ROOT, args)
        contenders[f"single run, {args.baseline}"] = lambda: launch_dqn_vs_sb3(args.baseline.resolve(), args)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    for repeat in range(2 * args.repeats):
        for name in list(contenders) if repeat % 2 == 0 else list(contenders)[::-1]:
            result = contenders[name]()
            times[name].append(result["train"])
            cpu[name].append(result["train_cpu"])
    for name, values in times.items():
        walls_cpus = f"{' '.join(f'{v:.1f}' for v in values)} s, CPU {' '.join(f'{v:.1f}' for v in cpu[name])} s"
        print(f"   {name:40s} train wall {walls_cpus}", flush=True)
    pairs = [("population of one", "single run")]
    if args.baseline:
        pairs.append(("single run, dqn_vs_sb3 worker", f"single run, {args.baseline}"))
    ratios = {}
    for mine, theirs in pairs:
        wall = [a / b for a, b in zip(times[mine], times[theirs])]
        cpus = [a / b for a, b in zip(cpu[mine], cpu[theirs])]
        ratios[f"{mine} / {theirs}"] = {"wall": wall, "cpu": cpus}
        print(f"   {mine} / {theirs}: wall median {statistics.median(wall):.3f} "
              f"(each {' '.join(f'{r:.3f}' for r in wall)}); CPU median {statistics.median(cpus):.3f} "
              f"(each {' '.join(f'{r:.3f}' for r in cpus)})", flush=True)  # fmt: skip
    print(f"   after: {uptime()}", flush=True)
    return {"part": "one", "times": times, "cpu": cpu, "ratios": ratios}


def launch_dqn_vs_sb3(tree: Path, args) -> dict:
    """One single dlforge run of the zoo config through `tree`'s benchmarks/dqn_vs_sb3.py worker, in its own process
    with `tree` first on the path; its training wall and CPU time."""
    job = {
        "framework": "dlforge",
        "env": "CartPole-v1",
        "seed": 0,
        "mode": "equal-work",
        "steps": args.steps,
        "threads": 1,
        "eval_episodes": max(args.eval_episodes, 1),
        "threshold": 475.0,
        "solve_every": 1000,
        "solve_episodes": 10,
        "dlforge_set": [],
        "config": ZOO,
    }
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "TORCHINDUCTOR_COMPILE_THREADS": "1"}
    script = tree / "benchmarks" / "dqn_vs_sb3.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--worker", json.dumps(job)], capture_output=True, text=True, env=env, cwd=tree
    )
    if proc.returncode != 0:
        raise SystemExit(f"{script} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"train": result["wall"], "train_cpu": result["cpu"]}


def scaling(label: str, config: str, sizes: list[int], steps: int, args, device: str, extra: dict) -> dict:
    """Populations of each size in `sizes`, run in an interleaved order (small, large, ...) `--repeats` times."""
    order = [x for pair in zip(sizes, sizes[::-1]) for x in pair][: len(sizes)]
    print(f"\n== {label}: {config}, {steps} steps, device {device}, order {order}\n   before: {uptime()}", flush=True)
    walls: dict[int, list[float]] = {size: [] for size in sizes}
    cpus: dict[int, list[float]] = {size: [] for size in sizes}
    for repeat in range(args.repeats):
        for size in order if repeat % 2 == 0 else order[::-1]:
            seeds = list(range(size))
            result = launch(
                {**job("dlforge", config, seeds, args, population=True, set=extra, device=device), "steps": steps}
            )
            walls[size].append(result["train"])
            cpus[size].append(result["train_cpu"])
            print(
                f"   P={size:5d}  train {result['train']:8.2f}s  CPU {result['train_cpu']:8.2f}s  {uptime()}",
                flush=True,
            )
    one = statistics.median(walls[sizes[0]]) * PER / steps / sizes[0]
    one_cpu = statistics.median(cpus[sizes[0]]) * PER / steps / sizes[0]
    rows = []
    print("   | members | train wall s | CPU s | wall s per 10k steps per member | vs a run of one | CPU s per 10k "
          "steps per member | vs a run of one | member-steps/s |")  # fmt: skip
    print("   |---|---|---|---|---|---|---|---|")
    for size in sizes:
        wall, cpu = statistics.median(walls[size]), statistics.median(cpus[size])
        per_member, per_member_cpu = wall * PER / steps / size, cpu * PER / steps / size
        rows.append(
            {
                "members": size,
                "wall": wall,
                "cpu": cpu,
                "per_member": per_member,
                "relative": per_member / one,
                "per_member_cpu": per_member_cpu,
                "relative_cpu": per_member_cpu / one_cpu,
            }
        )
        print(
            f"   | {size} | {wall:.1f} | {cpu:.1f} | {per_member:.3f} | {per_member / one:.3f} | {per_member_cpu:.3f} "
            f"| {per_member_cpu / one_cpu:.3f} | {size * steps / wall:.0f} |"
        )
    print(f"   after: {uptime()}", flush=True)
    return {
        "part": label,
        "config": config,
        "steps": steps,
        "device": device,
        "rows": rows,
        "walls": walls,
        "cpus": cpus,
    }


def part_scaling(args) -> dict:
    off = {"stop_at_return": None}
    quiet = argparse.Namespace(**{**vars(args), "eval_episodes": 0})
    return scaling("4. scaling", OWN, args.sizes, args.scaling_steps, quiet, "cpu", off)


def part_gpu(args) -> list[dict]:
    quiet = argparse.Namespace(**{**vars(args), "eval_episodes": 0})
    off = {"stop_at_return": None}
    return [
        scaling("5. GPU CartPole", OWN, [1, 256, 1024], args.scaling_steps, quiet, "cuda", off),
        # compile: a single run's fast path, which populations refuse
        scaling("5. GPU LunarLander", LUNAR, [1, 64], args.scaling_steps, quiet, "cuda", {**off, "compile": False}),
    ]


def packing_supported() -> bool:
    from launch.sweep_config import SweepConfig

    return "pack" in {f.name for f in dataclasses.fields(SweepConfig)}


def part_sweep(args) -> dict:
    import yaml

    dlforge = str(Path(sys.executable).parent / "dlforge")
    work = Path(tempfile.mkdtemp(prefix="population-sweep-"))
    sweep = yaml.safe_load((ROOT / SWEEP).read_text())
    sweep["base"] = str((ROOT / SWEEP).parent / sweep["base"])
    sweep["seeds"] = list(range(args.seeds))
    overrides = [f"total_steps={args.steps}"] if args.steps else []
    print(f"\n== 3. sweep packing: {SWEEP}, seeds {sweep['seeds']} {' '.join(overrides)}", flush=True)
    print(f"   before: {uptime()}", flush=True)
    walls: dict[str, list[float]] = {"seeds": [], "none": []}
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for repeat in range(args.repeats):
        for pack in ("seeds", "none") if repeat % 2 == 0 else ("none", "seeds"):
            path = work / f"pack-{pack}.yaml"
            path.write_text(yaml.safe_dump({**sweep, "pack": pack}))
            command = [dlforge, "sweep", str(path), *overrides, "--out", str(work), "--name", f"{pack}-{repeat}"]
            start = time.perf_counter()
            proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
            if proc.returncode != 0:
                raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
            walls[pack].append(time.perf_counter() - start)
            print(f"   pack: {pack:5s} wall {walls[pack][-1]:.1f}s   ({' '.join(command[1:])})", flush=True)
    ratios = [p / n for p, n in zip(walls["seeds"], walls["none"])]
    print(f"   wall ratio packed/unpacked: {' '.join(f'{r:.3f}' for r in ratios)} (goal <= 0.25)", flush=True)
    print(f"   after: {uptime()}", flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return {"part": "sweep", "walls": walls, "ratios": ratios}


def plot(path: Path, result: dict, measures: tuple[str, ...] = ("wall", "CPU")) -> None:
    """The scaling curve: time per 10k steps per member, and relative to a run of one, for each of `measures`
    (under other load, wall time measures that load: plot CPU alone)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    rows = result["rows"]
    members = [r["members"] for r in rows]
    keys = {"wall": ("per_member", "relative", "o-"), "CPU": ("per_member_cpu", "relative_cpu", "s--")}
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for measure in measures:
        per_member, relative, style = keys[measure]
        left.plot(members, [r[per_member] for r in rows], style, label=measure)
        right.plot(members, [r[relative] for r in rows], style, label=measure)
    left.set(xscale="log", xlabel="members in the population", ylabel="s per 10k env steps per member")
    left.set_title("training time per member")
    right.axhline(1.0, color="grey", linestyle=":")
    right.set(xscale="log", xlabel="members in the population", ylabel="cost of a member / a run of one")
    right.set_title("one member's cost, relative")
    for axis in (left, right):
        axis.legend()
        axis.set_ylim(bottom=0)
        axis.set_xticks(members, [str(m) for m in members])
        axis.xaxis.set_minor_locator(ticker.NullLocator())
    figure.suptitle(f"DQN population on CartPole-v1 ({result['config']}, {result['steps']} steps, one CPU thread)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    print(f"   plot: {path}", flush=True)


PARTS = {"sb3": part_sb3, "separate": part_separate, "sweep": part_sweep, "scaling": part_scaling, "one": part_one}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="+", choices=[*PARTS, "gpu"])
    parser.add_argument("--seeds", type=int, default=16, help="seeds (members) in parts sb3, separate and sweep")
    parser.add_argument("--steps", type=int, default=None, help="env steps per seed (default: the config's, 50k)")
    parser.add_argument("--slots", type=int, default=2, help="separate runs at a time (one per core)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64], help="scaling: members")
    parser.add_argument("--scaling-steps", type=int, default=10_000, help="scaling and gpu: env steps per member")
    parser.add_argument("--repeats", type=int, default=1, help="measure each part this many times, order alternating")
    parser.add_argument("--eval-episodes", type=int, default=20, help="final greedy episodes per seed")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="cuda: the gpu part")
    parser.add_argument("--profile", action="store_true", help="parts sb3, separate: where the population's time goes")
    parser.add_argument(
        "--baseline", type=Path, default=None, help="one: also time the single run of this checkout (e.g. main's)"
    )
    parser.add_argument("--plot", type=Path, default=None, help="scaling: write the plot here (PNG)")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    if "--worker" in sys.argv:
        print(json.dumps(worker(json.loads(sys.argv[sys.argv.index("--worker") + 1]))))
        return
    args = parser.parse_args()
    # refuse what cannot be measured here before measuring anything
    if ("gpu" in args.parts) != (args.device == "cuda"):
        parser.error("the gpu part runs with --device cuda, and --device cuda only with the gpu part")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            sys.exit(f"error: --device cuda: CUDA is not available here (torch {torch.__version__}); nothing was run")
    if "sweep" in args.parts and not packing_supported():
        sys.exit(
            "error: sweep: this checkout's `dlforge sweep` cannot pack seeds (launch/sweep_config.py has no `pack` "
            "field), so there is no packed figure to measure; nothing was run"
        )
    print(f"parts {args.parts}, cpu_count {os.cpu_count()}, {uptime()}", flush=True)
    results = []
    for part in args.parts:
        result = part_gpu(args) if part == "gpu" else PARTS[part](args)
        results.append(result)
        if part == "scaling" and args.plot:
            plot(args.plot, result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
