"""Guarantee: a sweep survives its driver.

`dlforge sweep` is SIGKILLed mid-sweep, once a trial has finished and others are mid-way, and continued with
`dlforge sweep SWEEP.yaml --resume` (benchmarks/chaos.py's `sweep_chaos_run`; `python benchmarks/chaos.py
--kinds sweep` kills the driver and trial workers 20 times). Then: the finished trial was not touched, the
interrupted ones continued from their checkpoints, results.csv lists each trial once, each trial's
metrics.jsonl holds every step once, and each trial's kept W&B offline runs hold every step once and end.
Uses the `sweeptest` kind (tests/sweep_trainer.py), a contract-following trainer that only sleeps and logs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import numpy as np
import pytest
from robustkit import REPO

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

DRIVER = [
    sys.executable,
    "-c",
    "import sys; from launch.registry import TRAINERS; TRAINERS['sweeptest'] = 'sweep_trainer'; "
    "from launch.cli import main; sys.exit(main(sys.argv[1:]))",
]


def _chaos():
    spec = importlib.util.spec_from_file_location("chaos", REPO / "benchmarks" / "chaos.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["chaos"] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def test_kill_9_of_the_sweep_driver_then_resume(tmp_path):
    document = {
        "base": {"kind": "sweeptest", "total_steps": 100, "eval_every": 10, "tracking": {"wandb": "offline"}},
        "metric": "eval/score",
        "space": {"sleep_s": {"grid": [0.0, 0.4]}},  # a quick trial and a slow one, per seed
        "seeds": [0, 1],
        "max_concurrent": 2,
        "resources": {"cpu": 1},
    }
    pythonpath = os.pathsep.join(p for p in (str(REPO / "tests"), os.environ.get("PYTHONPATH")) if p)
    report = _chaos().sweep_chaos_run(
        document,
        ("eval/score", 10),
        tmp_path,
        kills=1,
        rng=np.random.default_rng(0),
        driver=DRIVER,
        env_extra={"PYTHONPATH": pythonpath},
        min_finished=1,
        timeout_s=600,
        log=lambda *_: None,
    )
    assert not report.errors, report.errors
    (kill,) = report.kills
    assert kill.target == "driver" and kill.running, kill  # it interrupted trials mid-way
    assert report.finished and report.resumes == 1
    assert report.results_rows == report.trials == 4
    assert report.finished_before_a_kill >= 1 and report.kept == report.finished_before_a_kill
    trials = tmp_path / "runs" / "sweeps" / "chaos-sweep" / "trials"
    for label, (logged, checkpoint) in kill.running.items():  # continued from the checkpoint, not from 0
        record = json.loads((trials / label / "trial.json").read_text())
        assert record["start_step"] == checkpoint and checkpoint > 0, (label, logged, checkpoint, record)
    assert not report.duplicates and not report.missing
    assert report.wandb_complete == 4, report.wandb_problems
