"""Chaos: SIGKILL `dlforge train` and `dlforge sweep` (and a sweep's trial workers) at random moments, resume
each time, and check that nothing is lost beyond the last checkpoint.

    python benchmarks/chaos.py                       # 20 kills across dqn, drqn, gan and a sweep (5 each)
    python benchmarks/chaos.py --kinds sweep         # 20 kills of a sweep: 10 of its driver, 10 of trial workers
    python benchmarks/chaos.py --kills 6 --kinds dqn --seed 3

Each kind gets one run folder. A run is started with `dlforge train`, killed with SIGKILL, continued with
`dlforge train --resume RUN_DIR`, killed again, and so on; after its share of kills it runs to the end. Kill
moments are random: two in three wait until metrics.jsonl reaches a random step (mid-training, often while a
checkpoint is being written), one in three waits a random wall time from the start of the process (startup,
config and metrics rewrite, the resume itself). After every kill:

- every checkpoint in checkpoints/ loads (a half-written one would fail its checksum or its parse),
- the newest checkpoint loads and never goes back in steps,
- `steps lost` = the newest step in metrics.jsonl minus the step of the checkpoint the resume continues from
  (logged steps, so a lower bound by at most one logging interval; a kill that lands before the resumed
  process trained anything loses nothing new).

At the end metrics.jsonl must hold each (step, metric) once, in step order, with every periodic point present
(no duplicated and no missing steps after any resume point), and the last checkpoint must be at total_steps.
The CI test (tests/robustness/test_crash_resume.py) runs the same `chaos_run` with a few kills.

`sweep` runs a sweep of 6 classify trials (two at a time, W&B offline) and kills, in fours: the driver (`kill -9`
of `dlforge sweep`) once a running trial has trained a random 5-35% of its steps further; the restarted driver a
random 1-15 s after its start (Ray's start, Tune's restore, the trials' restart); then twice one trial's Ray
worker (found through the metrics.jsonl it holds open), each once a trial has trained a random 5-35% further. A
killed driver is continued with `dlforge sweep --resume` once its workers are gone; a killed worker is retried
by Tune. Steps lost per kill: each interrupted trial's newest logged step minus its newest checkpoint. At the
end: the driver exits 0; results.csv lists each trial once, all done; every trial's metrics.jsonl holds each
(step, metric) once with the periodic grid complete; the trials that had finished before a kill are byte for
byte as they were (metrics, checkpoints, trial.json); and each trial's kept W&B offline runs (read back from
the .wandb files) hold each (step, metric) of metrics.jsonl once, the newest one with its end record.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
DLFORGE = str(Path(sys.executable).parent / "dlforge")

# Per kind: a config that runs for several seconds with frequent checkpoints, and one metric logged at every
# multiple of a fixed interval (the grid that must be complete after all the resumes).
PLANS: dict[str, dict] = {
    "dqn": {
        "config": {
            "env_id": "CartPole-v1",
            "total_steps": 8000,
            "learning_starts": 200,
            "buffer_size": 5000,
            "batch_size": 32,
            "train_freq": 4,
            "target_update_interval": 200,
            "network": {"type": "mlp", "hidden": [32]},
            "eval_every": 4000,
            "eval_episodes": 2,
            "checkpoint_every": 250,
            "log_every": 50,
            "torch_threads": 1,
        },
        "periodic": ("charts/epsilon", 50),
    },
    "drqn": {
        "config": {
            "env_id": "dlforge/CartPoleNoVel-v1",
            "total_steps": 3000,
            "learning_starts": 200,
            "buffer_size": 3000,
            "batch_size": 8,
            "seq_len": 8,
            "burn_in": 2,
            "train_freq": 4,
            "target_update_interval": 200,
            "network": {"type": "lstm", "hidden_size": 16},
            "eval_every": 1500,
            "eval_episodes": 2,
            "checkpoint_every": 100,
            "log_every": 50,
            "torch_threads": 1,
        },
        "periodic": ("charts/epsilon", 50),
    },
    "gan": {
        "config": {
            "data": "digits",
            "total_steps": 1500,
            "batch_size": 32,
            "eval_every": 50,
            "eval_samples": 32,
            "judge_steps": 0,
            "generator": {"type": "mlp", "hidden": [64]},
            "discriminator": {"type": "mlp", "hidden": [64]},
            "torch_threads": 1,
        },
        "periodic": ("losses/discriminator", 50),
    },
    "classify": {
        "config": {"total_steps": 400, "eval_every": 20, "batch_size": 32, "network": {"type": "mlp", "hidden": [32]}},
        "periodic": ("eval/accuracy", 20),
    },
}


@dataclass
class Kill:
    kind: str
    attempt: int
    mode: str  # "step": at a random logged step; "time": at a random wall time after the process started
    after_s: float  # seconds from process start to the kill
    logged_step: int | None  # newest step in metrics.jsonl at the kill
    resume_step: int | None  # step of the newest checkpoint that loads (None: no checkpoint yet)
    checkpoints: int  # checkpoint files (json sidecars) present
    loaded: int  # of those, how many load
    lost: int  # logged_step - resume_step
    leftovers: int  # temporary files an interrupted atomic write left behind
    damaged: list[str] = field(default_factory=list)


@dataclass
class Report:
    kind: str
    kills: list[Kill]
    restarts: int = 0  # kills before the run folder held a config: started again from scratch
    resumes: int = 0
    finished: bool = False
    final_step: int | None = None
    duplicates: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    out_of_order: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.finished
            and not self.duplicates
            and not self.missing
            and not self.out_of_order
            and not self.errors
            and all(k.loaded == k.checkpoints for k in self.kills)
        )


def env() -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    base.update({"WANDB_SILENT": "true", "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"})
    return base


def newest_logged_step(run_dir: Path) -> int | None:
    path = run_dir / "metrics.jsonl"
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line
    return None


def inspect_checkpoints(run_dir: Path) -> tuple[int, int, list[str], int | None]:
    """(sidecars, how many load, errors, step of the newest that loads)."""
    from launch.tracking import checkpoint_stems
    from networks import io
    from networks.errors import CheckpointError

    stems = checkpoint_stems(run_dir, "any")
    loaded, errors, newest = 0, [], None
    for stem in stems:
        try:
            _, meta = io.load(stem)
        except CheckpointError as e:
            errors.append(str(e))
            continue
        loaded += 1
        newest = max(newest or 0, int(meta["step"]))
    return len(stems), loaded, errors, newest


def chaos_run(
    kind: str,
    config: dict,
    periodic: tuple[str, int],
    root: Path,
    *,
    kills: int,
    rng: np.random.Generator,
    timeout_s: float = 300,
    log=print,
) -> Report:
    """Kill a `kind` run `kills` times at random moments, resume it after each, then let it finish."""
    root.mkdir(parents=True, exist_ok=True)
    document = {"kind": kind, "tracking": {"wandb": "disabled"}, "device": "cpu", "seed": 0, **config}
    config_path = root / f"{kind}.yaml"
    config_path.write_text(yaml.safe_dump(document, sort_keys=False))
    run_dir = root / "runs" / kind
    total = int(config["total_steps"])
    report = Report(kind=kind, kills=[])
    resume_step = 0
    for attempt in range(kills + 1):
        fresh = not (run_dir / "config.yaml").exists()
        if fresh and run_dir.exists():  # killed before the run wrote its config: nothing to resume
            import shutil

            shutil.rmtree(run_dir)
        argv = (
            ["train", config_path, "--out", run_dir.parent, "--name", kind] if fresh else ["train", "--resume", run_dir]
        )
        report.resumes += not fresh
        last = attempt == kills
        mode = "none" if last else ("time" if attempt % 3 == 2 else "step")
        target = resume_step + int(rng.uniform(0.3, 1.7) * total / (kills + 2))
        delay = float(rng.uniform(0.2, 4.0))
        with open(root / f"{kind}-attempt{attempt:02d}.log", "w") as output:
            started = time.perf_counter()
            process = subprocess.Popen(
                [DLFORGE, *map(str, argv)], stdout=output, stderr=subprocess.STDOUT, env=env(), cwd=REPO
            )
            killed = False
            while process.poll() is None:
                elapsed = time.perf_counter() - started
                if elapsed > timeout_s:
                    process.kill()
                    report.errors.append(f"attempt {attempt}: no end after {timeout_s:.0f} s")
                    break
                if (
                    mode == "step"
                    and (newest_logged_step(run_dir) or 0) >= target
                    or (mode == "time" and elapsed >= delay)
                ):
                    process.send_signal(signal.SIGKILL)
                    killed = True
                    break
                time.sleep(0.01)
            code = process.wait()
            after = time.perf_counter() - started
        if not killed:
            if code != 0:
                report.errors.append(f"attempt {attempt}: exit {code} (see {kind}-attempt{attempt:02d}.log)")
                return report
            if not last:
                log(f"  {kind}: attempt {attempt} finished before its kill; {kills - attempt} kills left unused")
            report.finished = True
            break
        if not (run_dir / "config.yaml").exists():
            report.restarts += 1
        logged = newest_logged_step(run_dir)
        count, loaded, damaged, newest = inspect_checkpoints(run_dir)
        if newest is not None and newest < resume_step:
            report.errors.append(f"kill {attempt}: newest checkpoint went back from {resume_step} to {newest}")
        resume_step = newest if newest is not None else resume_step
        leftovers = len([p for p in run_dir.rglob("*.tmp")]) if run_dir.exists() else 0
        lost = max(0, (logged or 0) - (newest or 0))
        previous = report.kills[-1] if report.kills else None
        if previous and (previous.logged_step, previous.resume_step) == (logged, newest):
            lost = 0  # killed before it trained (or even truncated metrics.jsonl): those steps were counted already
        kill = Kill(
            kind=kind,
            attempt=attempt,
            mode=mode,
            after_s=round(after, 2),
            logged_step=logged,
            resume_step=newest,
            checkpoints=count,
            loaded=loaded,
            lost=lost,
            leftovers=leftovers,
            damaged=damaged,
        )
        report.kills.append(kill)
        log(
            f"  {kind} kill {attempt + 1}/{kills} ({mode}, {after:.1f} s): logged step {logged}, newest "
            f"checkpoint {newest}, {loaded}/{count} checkpoints load, {kill.lost} steps lost"
        )
    check_metrics(report, run_dir, periodic, total)
    return report


def check_metrics(report: Report, run_dir: Path, periodic: tuple[str, int], total: int) -> None:
    """After the last resume: each (step, metric) once, steps in order, the periodic grid complete."""
    from launch.tracking import load_latest

    report.duplicates, report.missing, report.out_of_order = metric_problems(run_dir, periodic, total)
    leftovers = [p.name for p in run_dir.rglob("*.tmp")]
    if leftovers:
        report.errors.append(f"temporary files left after the last resume: {leftovers[:3]}")
    latest = load_latest(run_dir, prefix="any")
    report.final_step = int(latest[1]["step"]) if latest else None
    if report.final_step != total:
        report.errors.append(f"last checkpoint at step {report.final_step}, expected {total}")


def metric_problems(run_dir: Path, periodic: tuple[str, int], total: int) -> tuple[list, list, int]:
    """(duplicated (step, key) pairs, missing periodic steps, steps out of order) in a run's metrics.jsonl."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records]
    seen: set = set()
    duplicates = []
    for record in records:
        for key in record:
            if key != "step" and (record["step"], key) in seen:
                duplicates.append((record["step"], key))
            seen.add((record["step"], key))
    key, every = periodic
    logged = {r["step"] for r in records if key in r}
    missing = sorted(set(range(every, total + 1, every)) - logged)
    return duplicates, missing, sum(b < a for a, b in zip(steps, steps[1:]))


def summarize(reports: list[Report]) -> dict:
    kills = [k for r in reports for k in r.kills]
    with_checkpoint = [k for k in kills if k.checkpoints]
    lost = [k.lost for k in kills]
    return {
        "kills": len(kills),
        "resumes": sum(r.resumes for r in reports),
        "restarts_from_scratch": sum(r.restarts for r in reports),
        "kills_with_a_checkpoint": len(with_checkpoint),
        "newest_checkpoint_loaded": sum(k.resume_step is not None for k in with_checkpoint),
        "checkpoint_files_checked": sum(k.checkpoints for k in kills),
        "checkpoint_files_loaded": sum(k.loaded for k in kills),
        "steps_lost_total": int(sum(lost)),
        "steps_lost_max": int(max(lost, default=0)),
        "steps_lost_mean": round(float(np.mean(lost)), 1) if lost else 0.0,
        "leftover_tmp_files": sum(k.leftovers for k in kills),
        "duplicated_steps": sum(len(r.duplicates) for r in reports),
        "missing_steps": sum(len(r.missing) for r in reports),
        "runs_finished_at_total_steps": sum(r.finished and not r.errors for r in reports),
        "runs": len(reports),
        "ok": all(r.ok for r in reports),
    }


# --- the sweep driver and its trial workers -------------------------------------------------------------------

# A sweep of 6 classify trials (LeNet-5 on sklearn digits, about a minute each on one busy core), two at a time,
# a checkpoint every 50 steps, W&B offline. The periodic grid is eval/accuracy every 50 steps.
SWEEP_PLAN: dict = {
    "document": {
        "base": {
            "kind": "classify",
            "total_steps": 1200,
            "eval_every": 50,
            "batch_size": 32,
            "torch_threads": 1,
            "device": "cpu",
            "tracking": {"wandb": "offline"},
        },
        "metric": "eval/accuracy",
        "space": {"lr": {"grid": [1e-3, 3e-3]}},
        "seeds": [0, 1, 2],
        "max_concurrent": 2,
        "resources": {"cpu": 1},
    },
    "periodic": ("eval/accuracy", 50),
}
SWEEP_NAME = "chaos-sweep"


@dataclass
class SweepKill:
    attempt: int
    target: str  # "driver": `dlforge sweep` itself, then `--resume`; "worker": one trial's Ray worker process
    mode: str  # "step": once a running trial reaches a random step; "time": a random wall time after the start
    after_s: float  # seconds from the driver's (re)start to the kill
    running: dict  # trial -> [newest logged step, newest checkpoint step] of each trial it interrupted, once dead
    lost: int  # logged minus checkpoint step, summed over those trials
    finished: int  # trials finished when the kill came


@dataclass
class SweepReport:
    kills: list[SweepKill]
    resumes: int = 0  # `dlforge sweep --resume` runs
    restarts: int = 0  # drivers killed before the sweep folder existed: started again without --resume
    finished: bool = False  # the last driver ended with exit 0
    trials: int = 0
    finished_before_a_kill: int = 0
    kept: int = 0  # of those, left untouched by every later driver (metrics, checkpoints, trial record)
    duplicates: list = field(default_factory=list)  # (trial, step, key) twice in a trial's metrics.jsonl
    missing: list = field(default_factory=list)  # (trial, step) of the periodic grid absent
    wandb_complete: int = 0  # trials whose kept W&B runs hold each (step, key) of metrics.jsonl once, and end
    wandb_problems: list = field(default_factory=list)
    results_rows: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.finished
            and not self.duplicates
            and not self.missing
            and not self.errors
            and self.kept == self.finished_before_a_kill
            and self.wandb_complete == self.trials == self.results_rows
        )


def sweep_chaos_run(
    document: dict,
    periodic: tuple[str, int],
    root: Path,
    *,
    kills: int,
    rng: np.random.Generator,
    driver: list[str] | None = None,
    env_extra: dict | None = None,
    min_finished: int = 0,
    timeout_s: float = 1800,
    log=print,
) -> SweepReport:
    """Kill a sweep's driver (then `--resume` it) and its trial workers `kills` times in turn, then let it end.
    `driver`: the command before `sweep` (default: the dlforge script); `min_finished`: kill only once that
    many trials have finished (so that keeping them is put to the test)."""
    root.mkdir(parents=True, exist_ok=True)
    sweep_file = root / f"{SWEEP_NAME}.yaml"
    sweep_file.write_text(yaml.safe_dump({**document, "max_failures": kills + 2}, sort_keys=False))
    sweep_dir = root / "runs" / "sweeps" / SWEEP_NAME
    trials = sweep_dir / "trials"
    total = int(document["base"]["total_steps"])
    report = SweepReport(kills=[])
    fingerprints: dict[str, tuple] = {}  # finished trial -> what it was when a kill first found it finished
    seen: dict[str, tuple] = {}  # interrupted trial -> (logged, checkpoint step) after its last kill
    deadline = time.monotonic() + timeout_s
    launches = 0

    def launch() -> tuple[subprocess.Popen, float]:
        nonlocal launches
        resume = sweep_dir.is_dir()
        report.resumes += resume
        report.restarts += launches > 0 and not resume
        argv = [*(driver or [DLFORGE]), "sweep", str(sweep_file), "--out", str(root / "runs")]
        output = open(root / f"sweep-driver{launches:02d}.log", "w")  # noqa: SIM115 (closed with the process)
        launches += 1
        process = subprocess.Popen(
            [*argv, *(["--resume"] if resume else [])],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**env(), **(env_extra or {})},
            cwd=root,
            start_new_session=True,  # its session holds its Ray cluster: waited for after a kill
        )
        return process, time.perf_counter()

    process, started = launch()
    for attempt in range(kills):
        # In fours: the driver mid-training, the restarted driver while it starts, then two trial workers.
        target = "driver" if attempt % 4 < 2 else "worker"
        mode = "time" if attempt % 4 == 1 else "step"
        advance = int(rng.uniform(0.05, 0.35) * total)  # steps a running trial trains past where it stood
        delay = float(rng.uniform(1.0, 15.0))
        stood = _running_trials(trials, total)  # after a kill, these are the steps the trials resume from or past
        victim = None
        while process.poll() is None and time.monotonic() < deadline:
            running = _running_trials(trials, total)
            if len(_finished_trials(trials)) < min_finished:
                pass
            elif mode == "time":
                if time.perf_counter() - started >= delay:
                    victim = process.pid
            else:
                for label, step in running.items():
                    if step >= stood.get(label, 0) + advance:
                        victim = process.pid if target == "driver" else _trial_worker(trials / label)
                        if victim is not None:
                            running = {label: step} if target == "worker" else running
                            break
            if victim is not None:
                break
            time.sleep(0.05)
        if victim is None:
            if process.poll() is None:
                report.errors.append(f"kill {attempt + 1}: no moment found before the time limit")
            else:
                log(f"  sweep: ended before kill {attempt + 1}; {kills - attempt} kills left unused")
            break
        finished = _finished_trials(trials)
        for label in finished:
            fingerprints.setdefault(label, _fingerprint(trials / label))
        os.kill(victim, signal.SIGKILL)
        after = time.perf_counter() - started
        if target == "driver":
            process.wait()
            _wait_until_released(sweep_dir, process.pid, deadline)
        else:
            while _alive(victim) and time.monotonic() < deadline:
                time.sleep(0.05)
        # What the interrupted trials hold once their processes are gone: what they logged up to the end.
        state = {
            label: [newest_logged_step(trials / label), inspect_checkpoints(trials / label)[3]] for label in running
        }
        lost = 0
        for label, (logged, newest) in state.items():
            if seen.get(label) != (logged, newest):  # unchanged: killed again before it trained, counted already
                lost += max(0, (logged or 0) - (newest or 0))
            seen[label] = (logged, newest)
        report.kills.append(SweepKill(attempt, target, mode, round(after, 2), state, lost, len(finished)))
        log(
            f"  sweep kill {attempt + 1}/{kills} ({target}, {mode}, {after:.1f} s): {len(finished)} trials "
            f"finished, interrupted {state or 'none'}, {lost} steps lost"
        )
        if target == "driver":
            process, started = launch()
    try:
        code = process.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        process.kill()
        code = process.wait()
        report.errors.append(f"the last driver did not end within {timeout_s:.0f} s")
    report.finished = code == 0
    if code != 0:
        report.errors.append(f"the last driver exited {code} (see sweep-driver{launches - 1:02d}.log)")
    check_sweep(report, sweep_dir, periodic, total, fingerprints)
    return report


def check_sweep(report: SweepReport, sweep_dir: Path, periodic, total: int, fingerprints: dict) -> None:
    """results.csv: a row per trial; each trial: metrics once and complete, W&B complete, finished ones kept."""
    import csv

    rows = list(csv.DictReader((sweep_dir / "results.csv").open())) if (sweep_dir / "results.csv").exists() else []
    report.results_rows = len({row["trial"] for row in rows})
    if len(rows) != report.results_rows:
        report.errors.append(f"results.csv lists a trial twice: {[row['trial'] for row in rows]}")
    if any(row["status"] != "done" for row in rows):
        report.errors.append(f"trials not done: {[(row['trial'], row['status'], row['error']) for row in rows]}")
    labels = sorted(path.parent.name for path in (sweep_dir / "trials").glob("*/config.yaml"))
    report.trials = len(labels)
    report.finished_before_a_kill = len(fingerprints)
    report.kept = sum(_fingerprint(sweep_dir / "trials" / label) == print_ for label, print_ in fingerprints.items())
    for label in labels:
        run_dir = sweep_dir / "trials" / label
        duplicates, missing, _ = metric_problems(run_dir, periodic, total)
        report.duplicates += [(label, *d) for d in duplicates]
        report.missing += [(label, m) for m in missing]
        problem = wandb_problem(run_dir)
        report.wandb_complete += problem is None
        if problem:
            report.wandb_problems.append(f"{label}: {problem}")


def wandb_problem(run_dir: Path) -> str | None:
    """None if the run folder's kept offline W&B runs hold each (step, key) of metrics.jsonl exactly once and
    the newest of them ended (an exit record); else what is wrong."""
    sys.path.insert(0, str(REPO / "tests"))
    from wandb_reader import history, offline_runs, records

    from launch.tracking import read_metrics

    expected = sorted((r["step"], k) for r in read_metrics(run_dir / "metrics.jsonl") for k in r if k != "step")
    files = offline_runs(run_dir)
    if not files:
        return "no offline run"
    logged = [
        (row["global_step"], key)
        for path in files
        for row in history(path)
        for key in row
        if key != "global_step" and not key.startswith("_")  # W&B's own _step, _runtime, _timestamp
    ]
    if not any(r.WhichOneof("record_type") == "exit" for r in records(files[-1])):
        return f"the newest run ({files[-1].parent.name}) has no end"
    if sorted(logged) != expected:
        extra, lacking = Counter(logged) - Counter(expected), Counter(expected) - Counter(logged)
        return f"{sum(extra.values())} (step, key) logged twice or unknown, {sum(lacking.values())} missing"
    return None


def _running_trials(trials: Path, total: int) -> dict[str, int]:
    """Unfinished trials -> newest logged step."""
    running = {}
    for folder in sorted(trials.glob("*")) if trials.is_dir() else []:
        step = newest_logged_step(folder)
        if step is not None and not (folder / "trial.json").exists():
            running[folder.name] = step
    return running


def _finished_trials(trials: Path) -> list[str]:
    finished = []
    for record in sorted(trials.glob("*/trial.json")) if trials.is_dir() else []:
        try:
            if json.loads(record.read_text()).get("status") == "done":
                finished.append(record.parent.name)
        except (OSError, ValueError):
            continue
    return finished


def _fingerprint(run_dir: Path) -> tuple:
    """What a finished trial holds: metrics, checkpoints and its trial record, by content."""
    files = [run_dir / "metrics.jsonl", run_dir / "trial.json", *sorted((run_dir / "checkpoints").glob("*.json"))]
    return tuple((path.name, path.read_bytes()) for path in files if path.exists())


def _trial_worker(run_dir: Path) -> int | None:
    """The pid of the Ray worker that runs the trial in `run_dir` (it holds the trial's metrics.jsonl open)."""
    target = str(run_dir / "metrics.jsonl")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if b"ray::" in (proc / "cmdline").read_bytes() and any(
                os.readlink(fd) == target for fd in (proc / "fd").iterdir()
            ):
                return int(proc.name)
        except OSError:
            continue
    return None


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _wait_until_released(sweep_dir: Path, session: int, deadline: float) -> None:
    """Wait until the killed driver's trial workers are gone and no process holds a file of the sweep open. A
    killed driver takes its cluster, and the cluster its workers, with it within seconds (its DashboardAgent
    and RuntimeEnvAgent linger a minute or two, idle)."""
    prefix = str(sweep_dir.resolve()) + os.sep
    lingering = (b"ray::DashboardAgent", b"ray::RuntimeEnvAgent")
    while time.monotonic() < deadline:
        busy = False
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes()
                in_session = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[3]) == session
                if (in_session and cmdline.startswith(b"ray::") and not cmdline.startswith(lingering)) or any(
                    os.readlink(fd).startswith(prefix) for fd in (proc / "fd").iterdir()
                ):
                    busy = True
                    break
            except (OSError, ValueError, IndexError):
                continue
        if not busy:
            return
        time.sleep(0.2)


def summarize_sweep(report: SweepReport) -> dict:
    lost = [k.lost for k in report.kills]
    return {
        "kills": len(report.kills),
        "driver_kills": sum(k.target == "driver" for k in report.kills),
        "worker_kills": sum(k.target == "worker" for k in report.kills),
        "resumes": report.resumes,
        "restarts_from_scratch": report.restarts,
        "trials": report.trials,
        "trials_finished_before_a_kill": report.finished_before_a_kill,
        "of_those_kept_untouched": report.kept,
        "steps_lost_total": int(sum(lost)),
        "steps_lost_max": int(max(lost, default=0)),
        "steps_lost_mean": round(float(np.mean(lost)), 1) if lost else 0.0,
        "duplicated_steps": len(report.duplicates),
        "missing_steps": len(report.missing),
        "wandb_runs_complete": report.wandb_complete,
        "results_csv_rows": report.results_rows,
        "sweep_finished": report.finished,
        "ok": report.ok,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20, help="kills in all, shared across the kinds")
    parser.add_argument("--kinds", default="dqn,drqn,gan,sweep", help="trainer kinds, and `sweep` (driver + workers)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="/tmp/dlforge-chaos", help="scratch folder (replaced)")
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    from launch.registry import TRAINERS

    unknown = [k for k in kinds if k != "sweep" and (k not in PLANS or k not in TRAINERS)]
    if unknown:
        print(
            f"error: --kinds: no chaos plan or trainer for {unknown}; planned: {', '.join(PLANS)}, sweep",
            file=sys.stderr,
        )
        return 2
    import shutil

    root = Path(args.out)
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(args.seed)
    shares = [args.kills // len(kinds) + (i < args.kills % len(kinds)) for i in range(len(kinds))]
    started = time.perf_counter()
    reports, sweep_report = [], None
    for kind, share in zip(kinds, shares):
        if kind == "sweep":
            print(f"sweep: {share} kills of the driver and of trial workers, {SWEEP_PLAN['document']['base']}")
            sweep_report = sweep_chaos_run(
                SWEEP_PLAN["document"], SWEEP_PLAN["periodic"], root / "sweep", kills=share, rng=rng
            )
            continue
        plan = PLANS[kind]
        print(f"{kind}: {share} kills, total_steps {plan['config']['total_steps']}")
        reports.append(chaos_run(kind, plan["config"], plan["periodic"], root, kills=share, rng=rng))
    summary = summarize(reports) if reports else {"ok": True}
    if sweep_report is not None:
        summary["sweep"] = summarize_sweep(sweep_report)
        summary["ok"] = summary["ok"] and sweep_report.ok
    summary["seconds"] = round(time.perf_counter() - started, 1)
    summary["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(summary, indent=2))
    (root / "chaos.json").write_text(
        json.dumps(
            {
                "summary": summary,
                "reports": [asdict(r) for r in reports],
                "sweep": asdict(sweep_report) if sweep_report else None,
            },
            indent=2,
            default=str,
        )
    )
    for report in reports:
        for problem in (
            report.errors
            + [f"duplicated {d}" for d in report.duplicates[:5]]
            + ([f"missing steps {report.missing[:10]}"] if report.missing else [])
        ):
            print(f"{report.kind}: {problem}", file=sys.stderr)
    if sweep_report is not None:
        for problem in (
            sweep_report.errors
            + sweep_report.wandb_problems
            + [f"duplicated {d}" for d in sweep_report.duplicates[:5]]
            + ([f"missing steps {sweep_report.missing[:10]}"] if sweep_report.missing else [])
        ):
            print(f"sweep: {problem}", file=sys.stderr)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
