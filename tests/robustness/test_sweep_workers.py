"""Guarantee 8: sweeps survive lost workers.

`dlforge sweep` runs on an embedded Ray cluster in its own process; once a trial has logged a few steps, the Ray
worker process running it is found (it holds the trial's metrics.jsonl open) and SIGKILLed. Tune retries the
trial (max_failures), the retry resumes the trial's run folder from its newest checkpoint, and the sweep completes:
exit 0, every trial done, the killed trial's metrics holding each step exactly once. The whole sweep runs
without network (`unshare -n`, loopback only), which is also test_offline's check of `dlforge sweep`.
Uses the `sweeptest` kind (tests/sweep_trainer.py), a contract-following trainer that only sleeps and logs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from robustkit import REPO, env

pytest.importorskip("ray")
if not Path("/proc/self/fd").is_dir():
    pytest.skip("finds the worker through /proc (Linux)", allow_module_level=True)

TESTS = REPO / "tests"
DRIVER = """
import sys
from launch.registry import TRAINERS
TRAINERS["sweeptest"] = "sweep_trainer"
from launch.cli import main
sys.exit(main(["sweep", sys.argv[1], "--out", sys.argv[2]]))
"""


def _holder_of(path: Path) -> int | None:
    """The pid of the Ray worker process that has `path` open (read from /proc)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if b"ray::" not in (proc / "cmdline").read_bytes():
                continue
            if any(os.readlink(fd) == str(path) for fd in (proc / "fd").iterdir()):
                return int(proc.name)
        except OSError:  # gone, or not ours to read
            continue
    return None


def _can_unshare() -> bool:
    done = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True)
    return done.returncode == 0


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _steps(path: Path) -> list[int]:
    try:
        return [json.loads(line)["step"] for line in path.read_text().splitlines() if "eval/score" in line]
    except (OSError, ValueError):
        return []


def test_a_killed_worker_is_retried_and_the_sweep_completes(tmp_path):
    sweep_file = tmp_path / "w.yaml"
    sweep_file.write_text(
        yaml.safe_dump(
            {
                "base": {
                    "kind": "sweeptest",
                    "tracking": {"wandb": "disabled"},
                    "total_steps": 100,
                    "eval_every": 10,
                    "sleep_s": 0.4,
                },
                "metric": "eval/score",
                "space": {"quality": {"grid": [0.5, 1.0]}},
                "max_failures": 2,
                "resources": {"cpu": 1},
            }
        )
    )
    out = tmp_path / "runs"
    pythonpath = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    # No network either (guarantee 6): the driver, its Ray cluster and the trials run in a namespace with only
    # loopback, where the embedded cluster talks to itself.
    offline = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"'] if _can_unshare() else []
    driver = subprocess.Popen(
        [*offline, sys.executable, "-c", DRIVER, str(sweep_file), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env=env(PYTHONPATH=pythonpath),
    )
    metrics = out / "sweeps" / "w" / "trials" / "w-000" / "metrics.jsonl"
    killed, killed_at = None, None
    deadline = time.monotonic() + 240
    try:
        while killed is None and time.monotonic() < deadline and driver.poll() is None:
            steps = _steps(metrics)
            if steps and 30 <= steps[-1] < 90:
                worker = _holder_of(metrics)
                if worker is not None:
                    killed_at = steps[-1]
                    os.kill(worker, signal.SIGKILL)
                    killed = worker
            time.sleep(0.05)
        output, _ = driver.communicate(timeout=max(deadline - time.monotonic(), 30))
    finally:
        if driver.poll() is None:
            driver.kill()
    assert killed is not None, "never caught the trial's worker mid-trial (it finished first?)"
    assert not _alive(killed)
    assert driver.returncode == 0, output[-4000:]
    results = json.loads((out / "sweeps" / "w" / "results.json").read_text())
    assert [row["status"] for row in results["trials"]] == ["done", "done"], results["trials"]
    steps = _steps(metrics)
    assert steps == list(range(10, 101, 10)), f"killed at step {killed_at}; metrics steps after the retry: {steps}"
    assert (out / "sweeps" / "w" / "best.json").exists()
