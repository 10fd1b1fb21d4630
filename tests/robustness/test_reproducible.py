"""Guarantee 5: two CPU runs of the same config and seed give identical metrics (wall-clock fields aside) and
identical checkpoints, for every kind: dqn, drqn, qlearning, the classifier and each generator.

The first run of each kind is the session's `finished_runs` (in this process); the second is a fresh run in this
process (leftover state from the first must not matter), and a third runs the RL kinds and two generators in
another process with another PYTHONHASHSEED (nothing may depend on the process).
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from robustkit import REPO, TINY, comparable, env, kind_params, metrics, write_config

from launch.cli import main
from launch.registry import TRAINERS
from networks import io


def first_difference(a, b, path: str = "") -> str | None:
    """The tree path where two checkpoint trees differ, else None (NaN equals NaN)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{path}: keys {sorted(set(a) ^ set(b), key=str)[:3]}"
        return next((d for k in a if (d := first_difference(a[k], b[k], f"{path}.{k}")) is not None), None)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            return f"{path}: lengths {len(a)} != {len(b)}"
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := first_difference(x, y, f"{path}.{i}"))), None)
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        same = a.shape == b.shape and a.dtype == b.dtype and torch.equal(a.nan_to_num(), b.nan_to_num())
        return None if same else f"{path}: tensors differ"
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return None if a.shape == b.shape and np.array_equal(a, b, equal_nan=True) else f"{path}: arrays differ"
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"


def assert_same_run(first, second) -> None:
    a, b = comparable(metrics(first)), comparable(metrics(second))
    assert a, "the run logged nothing comparable"
    for i, (x, y) in enumerate(zip(a, b)):
        assert x == y, f"record {i} differs:\n{x}\n{y}"
    assert len(a) == len(b)
    stems = sorted(p.name for p in (first / "checkpoints").glob("*.json"))
    assert stems == sorted(p.name for p in (second / "checkpoints").glob("*.json"))
    for name in stems:
        tree_a, _ = io.load(first / "checkpoints" / name)
        tree_b, _ = io.load(second / "checkpoints" / name)
        difference = first_difference(tree_a, tree_b)
        assert difference is None, f"{name} differs at {difference}"


MUST_COVER = ["dqn", "drqn", "qlearning", "classify", "gan", "dcgan", "ae", "vae", "seq2seq_ae"]


@pytest.mark.parametrize("kind", kind_params(sorted(set(MUST_COVER) | set(TRAINERS))))
def test_same_config_and_seed_twice_in_one_process(kind, finished_runs, tmp_path):
    first = finished_runs(kind)
    code = main(["train", str(write_config(tmp_path, kind)), "--out", str(tmp_path / "runs"), "--name", kind])
    assert code == 0
    assert_same_run(first, tmp_path / "runs" / kind)


def test_same_config_and_seed_in_another_process(finished_runs, tmp_path):
    kinds = [k for k in ("dqn", "drqn", "qlearning", "vae", "gan") if k in TRAINERS and k in TINY]
    configs = {kind: str(write_config(tmp_path, kind)) for kind in kinds}
    script = (
        "import json, sys\nfrom launch.cli import main\n"
        f"for kind, config in json.loads({json.dumps(json.dumps(configs))}).items():\n"
        f"    assert main(['train', config, '--out', {str(tmp_path / 'runs')!r}, '--name', kind]) == 0, kind\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env=env(PYTHONHASHSEED="12345"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for kind in kinds:
        assert_same_run(finished_runs(kind), tmp_path / "runs" / kind)
