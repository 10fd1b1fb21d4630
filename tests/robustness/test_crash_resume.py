"""Guarantee 2: crashes lose nothing beyond the last checkpoint.

- `dlforge train` is SIGKILLed at random moments and continued with `--resume` (benchmarks/chaos.py's
  `chaos_run`, a few kills here; the 20-kill run is `python benchmarks/chaos.py`): after each kill every
  checkpoint loads, the newest one is the resume point, and at the end metrics.jsonl holds every periodic step
  exactly once.
- A process writing checkpoints is SIGKILLed mid-write many times: what is on disk is always either a complete
  checkpoint or one its checksum refuses, and the newest complete one is what `--resume` takes.
- `dlforge sweep` is SIGKILLed once a trial has finished and others are mid-way, and continued with
  `dlforge sweep SWEEP.yaml --resume` (chaos.py's `sweep_chaos_run`; `python benchmarks/chaos.py --kinds sweep`
  kills the driver and trial workers 20 times): the finished trial is not touched, the interrupted ones continue
  from their checkpoints, results.csv lists each trial once, each metrics.jsonl holds every step once, and
  each trial's kept W&B offline runs hold every step once and end.
"""

from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import signal
import sys
import time

import numpy as np
import pytest
import torch
from robustkit import REPO, kind_params

from launch.tracking import checkpoint_stems, load_latest
from networks import io
from networks.errors import CheckpointError


def _chaos():
    spec = importlib.util.spec_from_file_location("chaos", REPO / "benchmarks" / "chaos.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["chaos"] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


# A few kills on a budget a little larger than robustkit.TINY, so kills land mid-training. drqn and gan get theirs
# in the 20-kill `python benchmarks/chaos.py` (each extra process costs CI seconds of startup).
CI_PLANS = {
    "dqn": ({"total_steps": 2500, "checkpoint_every": 100, "eval_every": 1250}, 3),
}


@pytest.mark.parametrize("kind", kind_params(list(CI_PLANS)))
def test_sigkill_then_resume_loses_nothing_beyond_the_last_checkpoint(kind, tmp_path):
    chaos = _chaos()
    plan = chaos.PLANS[kind]
    overrides, kills = CI_PLANS[kind]
    report = chaos.chaos_run(
        kind,
        {**plan["config"], **overrides},
        plan["periodic"],
        tmp_path,
        kills=kills,
        rng=np.random.default_rng(7),
        timeout_s=120,
        log=lambda *_: None,
    )
    assert not report.errors, report.errors
    assert report.finished and report.final_step == overrides["total_steps"]
    for kill in report.kills:
        assert kill.loaded == kill.checkpoints, f"a checkpoint did not load after kill {kill}"
        if kill.checkpoints:
            assert kill.resume_step is not None
    assert report.resumes >= 1
    assert not report.duplicates, f"duplicated (step, metric) after a resume: {report.duplicates[:5]}"
    assert not report.missing, f"periodic steps missing after a resume: {report.missing[:10]}"
    assert report.out_of_order == 0


def _write_forever(folder: str, size: int) -> None:
    """Child: continue the checkpoint numbering after the newest one, saving `size` floats each, flat out."""
    from launch.config import TrackingConfig
    from launch.tracking import LocalTracker

    latest = load_latest(folder)
    step = int(latest[1]["step"]) if latest else 0
    tracker = LocalTracker(folder, TrackingConfig(wandb="disabled"), resume_step=step)
    while True:
        step += 1
        tracker.checkpoint({"w": torch.full((size,), float(step)), "step": step}, step)


def test_a_checkpoint_killed_mid_write_is_never_half_loaded(tmp_path):
    rng = np.random.default_rng(0)
    context = multiprocessing.get_context("fork")
    newest = 0
    for _ in range(12):
        child = context.Process(target=_write_forever, args=(str(tmp_path), 400_000))  # 1.6 MB a file
        child.start()
        time.sleep(float(rng.uniform(0.05, 0.4)))
        os.kill(child.pid, signal.SIGKILL)
        child.join()
        for stem in checkpoint_stems(tmp_path):
            try:
                tree, meta = io.load(stem)
            except CheckpointError as e:
                assert "checksum" in str(e), e  # only a replaced-but-not-yet-described file is refused
                continue
            # a checkpoint that loads is whole: every value is its own step
            assert torch.all(tree["w"] == float(meta["step"])) and tree["step"] == meta["step"]
        latest = load_latest(tmp_path)
        if latest is not None:
            assert latest[1]["step"] >= newest, "the resume point went backwards"
            newest = latest[1]["step"]
    assert newest > 0, "no checkpoint was ever completed"
    # What interrupted writes leave behind (temporary files, a tensor file whose sidecar never came) goes on
    # resume; plant one of each in case no kill above landed mid-write.
    from launch.tracking import clear_interrupted_writes

    folder = tmp_path / "checkpoints"
    (folder / ".step-000999999.safetensors.abc123.tmp").write_bytes(b"partial")
    (folder / "step-000999999.safetensors").write_bytes(b"no sidecar")
    clear_interrupted_writes(tmp_path)
    assert not list(folder.glob(".*.tmp")), "temporary files of killed writes were left"
    sidecars = {p.name.removesuffix(".json") for p in folder.glob("*.json")}
    assert {p.name.removesuffix(".safetensors") for p in folder.glob("*.safetensors")} <= sidecars
    assert load_latest(tmp_path)[1]["step"] == newest


# `dlforge` with the sweeptest kind registered (tests/sweep_trainer.py; workers find it on PYTHONPATH).
SWEEP_DRIVER = [
    sys.executable,
    "-c",
    "import sys; from launch.registry import TRAINERS; TRAINERS['sweeptest'] = 'sweep_trainer'; "
    "from launch.cli import main; sys.exit(main(sys.argv[1:]))",
]


@pytest.mark.slow
def test_kill_9_of_the_sweep_driver_then_resume(tmp_path):
    pytest.importorskip("ray")
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
        driver=SWEEP_DRIVER,
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
    for label, (logged, checkpoint) in kill.running.items():  # continued from its checkpoint (0: it had none yet)
        record = json.loads((trials / label / "trial.json").read_text())
        assert record["start_step"] == (checkpoint or 0), (label, logged, checkpoint, record)
    assert any(checkpoint for _, checkpoint in kill.running.values()), kill.running  # one continued mid-way
    assert not report.duplicates and not report.missing
    assert report.wandb_complete == 4, report.wandb_problems
