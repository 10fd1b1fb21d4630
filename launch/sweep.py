"""`dlforge sweep`: hyperparameter sweeps on Ray Tune, every trial a `dlforge train` run tracked in W&B.

The driver reads the sweep file (launch/sweep_config.py), starts or joins Ray (launch/sweep_cluster.py), hands
Tune the trials (launch/sweep_tune.py; each trial runs launch/sweep_trial.py in a Ray worker) and writes the
results (launch/sweep_results.py):

    runs/sweeps/<name>/
        sweep.yaml          the resolved sweep: settings + the base config every trial starts from
        trials/<name>-000/  one run folder per trial (config.yaml, metrics.jsonl, checkpoints/, wandb/, trial.json);
                            a packed trial (a population) holds population.json and members/<member>/, one run
                            folder per member
        tune/               Ray Tune's experiment state (what --resume restores)
        results.csv/.json   config, metric, status and run folder per trial, its point's aggregate beside it
        best.json           the best point (the sampled values without the seed) by its mean over seeds:
                            every seed's value, run folder and checkpoint, and the aggregate (IQM from 4 seeds)
        best_config.yaml    that point's full config without a seed: `dlforge train best_config.yaml seed=N`

A driver that is interrupted (Ctrl+C) or killed (kill -9) is continued by `dlforge sweep SWEEP.yaml --resume`:
finished trials are kept as they are, the others continue from their run folders' newest checkpoints.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

import yaml

from launch.sweep_cluster import ClusterUnavailable, check_resources, cluster_environment, connect
from launch.sweep_config import SweepPlan, load_sweep, stored_plan
from launch.sweep_results import SweepOutcome, collect_results, print_results
from launch.sweep_trial import finish_cut_off_wandb
from networks import io
from networks.errors import ConfigError

LOCK_FILE = ".driver.lock"  # in the sweep folder: held by the driver that runs the sweep


def main(args) -> int:
    """`dlforge sweep SWEEP.yaml [overrides] [--address] [--cpus-per-trial] ... [--resume]`."""
    with cluster_environment(args.address):
        try:
            return _sweep_command(args)
        except ClusterUnavailable as e:  # the machine or the cluster, not the input: one line, exit 1
            print(f"failed: {e}", file=sys.stderr)
            return 1


def _sweep_command(args) -> int:
    plan = load_sweep(
        args.sweep_config,
        args.overrides,
        out=args.out,
        name=args.name,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_concurrent=args.max_concurrent,
        seeds=args.seeds,
        pack=args.pack,
        max_members=args.max_members,
    )
    if args.resume:
        if not plan.sweep_dir.is_dir():
            raise ConfigError("--resume", f"no sweep to continue at {plan.sweep_dir}")
        if args.overrides:
            raise ConfigError("--resume", "continues the sweep as it was started; overrides cannot change it")
        if (plan.sweep_dir / "sweep.yaml").is_file():  # else the driver died before writing it: start afresh
            plan = stored_plan(plan.sweep_dir)
    elif plan.sweep_dir.exists():
        raise ConfigError(
            "--name", f"sweep folder {plan.sweep_dir} already exists; continue it with --resume or pick another --name"
        )
    outcome = run_sweep(plan, address=args.address, resume=args.resume, bounded=True)
    print_results(outcome)
    if outcome.interrupted:
        print(
            f"interrupted; continue with: dlforge sweep {args.sweep_config} --resume"
            + (f" --name {plan.name}" if args.name else "")
            + (f" --out {args.out}" if args.out != "runs" else "")
        )
        return 130
    print(f"sweep: {plan.sweep_dir}")
    return 0 if outcome.best is not None else 1


def run_sweep(
    plan: SweepPlan, *, address: str | None = None, resume: bool = False, bounded: bool = False
) -> SweepOutcome:
    """Run (or continue) the sweep on Ray and write its results. Bad input removes a new sweep folder.
    `bounded`: give up on a Ray that does not start in time (see sweep_cluster.connect)."""
    from launch.sweep_tune import TUNE_DIR, can_restore, make_tuner

    created = [p for p in (plan.sweep_dir, *plan.sweep_dir.parents) if not p.exists()]  # to undo on bad input
    started_ray = False
    try:
        started_ray = connect(address, plan, bounded=bounded)
        check_resources(plan)
        plan.sweep_dir.mkdir(parents=True, exist_ok=True)
        with _one_driver(plan.sweep_dir):
            if not (plan.sweep_dir / "sweep.yaml").is_file():
                io.atomic_write_text(plan.sweep_dir / "sweep.yaml", yaml.safe_dump(plan.to_dict(), sort_keys=False))
            restore = resume and can_restore(plan.sweep_dir)
            if not restore:  # a driver killed before Tune's first save leaves at most an unusable start
                shutil.rmtree(plan.sweep_dir / TUNE_DIR, ignore_errors=True)
            grid = make_tuner(plan, restore=restore).fit()
            if started_ray:  # the trials' processes end with the cluster
                sys.modules["ray"].shutdown()
                started_ray = False
            outcome = collect_results(plan, grid)
            for row in outcome.rows:  # a stopped trial's process is ended while it closes its W&B run
                if row["status"] in ("done", "solved", "stopped", "diverged"):
                    finish_cut_off_wandb(Path(row["run_dir"]))
        errors = [row for row in outcome.rows if row.get("config_error")]
        if errors:
            raise ConfigError("", errors[0]["config_error"])
        return outcome
    except ConfigError:
        if created:
            shutil.rmtree(plan.sweep_dir, ignore_errors=True)
            for folder in created[1:]:  # runs/sweeps/ (and runs/) if this sweep made them
                with contextlib.suppress(OSError):
                    folder.rmdir()
        raise
    finally:
        if started_ray:
            sys.modules["ray"].shutdown()


@contextlib.contextmanager
def _one_driver(sweep_dir: Path):
    """One driver per sweep folder: two would run every unfinished trial twice, into the same run folders.
    The lock goes with the process, so a killed driver never blocks its --resume."""
    import fcntl

    with open(sweep_dir / LOCK_FILE, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise ConfigError(
                "--resume", f"{sweep_dir} is being run by another dlforge sweep (pid {holder}); let it end first"
            ) from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        yield
