"""Does a sweep use the cores? 4 CPU-bound trials on a 2-CPU embedded Ray cluster vs the same 4 in a row.

    python -P benchmarks/sweep_scaling.py               # 4 classify trials of 2000 steps, 1 torch thread each
    python -P benchmarks/sweep_scaling.py --steps 800 --trials 4 --cpus 2

(-P keeps benchmarks/ off the import path, where benchmarks/generative.py would shadow the generative package.)

Each trial is `classify` (LeNet-5 on sklearn digits, `torch_threads: 1`): one core's worth of work.
Sequential: the 4 runs one after another through `launch.run.train_run`, in this process, after a
warm-up run, so imports and data loading are already paid (the fairest case for sequential).
Sweep: `launch.sweep.run_sweep` over the 4 seeds on `ray.init(address="local", num_cpus=2)`, one CPU per
trial, everything a sweep does included (Ray worker processes, W&B per trial, Tune reports, checkpoints).

Reports the speed-up of the sweep over sequential, with and without the one-off cluster start, and the
overhead Ray adds per trial: (cpus x sweep time - time spent in train_run inside the trials) / trials, the
slot-seconds a trial holds beyond its own training (actor start and imports, scheduling, Tune reports, W&B
teardown). The target is >= 1.7x. The machine must be otherwise idle: other processes on the same cores
take their share from both sides and the figure means nothing (the load average is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # embedded cluster on loopback only
os.environ.setdefault("WANDB_SILENT", "true")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2000, help="gradient steps per trial (about 15 s of one core)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the embedded cluster")
    parser.add_argument("--wandb", choices=["offline", "disabled"], default="offline")
    parser.add_argument("--out", default=None, help="folder for the runs (default: a temporary folder)")
    args = parser.parse_args()

    from launch.config import from_dict, parse_config
    from launch.run import train_run
    from launch.sweep import run_sweep
    from launch.sweep_config import SweepConfig, plan_sweep

    out = Path(args.out or tempfile.mkdtemp(prefix="sweep-scaling-"))
    base = {
        "kind": "classify",
        "total_steps": args.steps,
        "eval_every": max(args.steps // 3, 1),
        "torch_threads": 1,
        "tracking": {"wandb": args.wandb},
    }
    seeds = list(range(args.trials))

    load_before = os.getloadavg()[0]
    train_run(parse_config({**base, "total_steps": 5, "eval_every": 5}), out / "warmup")
    sequential, sequential_cpu = [], []
    for seed in seeds:
        start, cpu_start = time.perf_counter(), time.process_time()
        train_run(parse_config({**base, "seed": seed}), out / "sequential" / f"seed-{seed}")
        sequential.append(time.perf_counter() - start)
        sequential_cpu.append(time.process_time() - cpu_start)
        print(f"sequential seed {seed}: {sequential[-1]:.1f} s ({sequential_cpu[-1]:.1f} CPU s)", flush=True)
    total_sequential = sum(sequential)

    import ray

    start = time.perf_counter()
    ray.init(address="local", num_cpus=args.cpus, include_dashboard=False, logging_level="ERROR")
    cluster_start = time.perf_counter() - start
    settings = from_dict(SweepConfig, {"base": base, "metric": "eval/accuracy", "seeds": seeds}, "")
    plan = plan_sweep(settings, out=out, name="scaling")
    start = time.perf_counter()
    outcome = run_sweep(plan)
    sweep_time = time.perf_counter() - start
    ray.shutdown()
    assert all(row["status"] == "done" for row in outcome.rows), outcome.rows

    # Slot-seconds per trial not spent in train_run: process start, imports, scheduling, reports, W&B teardown.
    records = [json.loads((Path(row["run_dir"]) / "trial.json").read_text()) for row in outcome.rows]
    in_trials = sum(r["train_s"] for r in records)
    trial_cpu = sum(r["cpu_s"] for r in records) / args.trials
    overhead = (args.cpus * sweep_time - in_trials) / args.trials
    print()
    print(
        f"{args.trials} classify trials x {args.steps} steps, 1 torch thread each, W&B {args.wandb}, "
        f"{os.cpu_count()} cores on this machine, Ray cluster of {args.cpus} CPUs"
    )
    print(f"sequential (in-process, warm):  {total_sequential:7.1f} s  ({total_sequential / args.trials:.1f} s/trial)")
    print(f"sweep (trials only):            {sweep_time:7.1f} s  speed-up {total_sequential / sweep_time:.2f}x")
    print(
        f"sweep incl. cluster start:      {sweep_time + cluster_start:7.1f} s  speed-up "
        f"{total_sequential / (sweep_time + cluster_start):.2f}x  (ray.init {cluster_start:.1f} s)"
    )
    print(f"train_run inside the trials:    {in_trials:7.1f} s  ({in_trials / args.trials:.1f} s/trial)")
    print(
        f"Ray overhead per trial:         {overhead:7.1f} s   ({args.cpus} x sweep time - time in train_run) / trials"
    )
    print(f"CPU per trial: sequential {sum(sequential_cpu) / args.trials:.1f} s, in a Ray trial {trial_cpu:.1f} s")
    print(f"load average (1 min) before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f}")
    speedup = total_sequential / sweep_time
    print(f"target >= 1.7x on the trials: {'met' if speedup >= 1.7 else 'NOT met'} ({speedup:.2f}x)")
    print(f"runs: {out}")


if __name__ == "__main__":
    main()
