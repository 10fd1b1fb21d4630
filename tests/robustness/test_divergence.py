"""Guarantee 4: divergence is caught.

A huge learning rate makes every kind's loss (or Q-values) NaN/inf within a few updates. By default the run
stops with exit 1 and one `failed: ...` line that says it diverged, and no checkpoint holding NaN/inf is ever
written (trainers with `nan_policy` stop at the non-finite loss; the tracker refuses a non-finite checkpoint for
every kind), so the newest checkpoint stays the last good one. With `nan_policy: skip` the bad updates are
skipped, counted in `losses/skipped_updates`, and the run finishes.
"""

from __future__ import annotations

import math

import pytest
import torch
from robustkit import TINY, has_field, kind_params, metrics, write_config

from launch.cli import main
from launch.config import TrackingConfig
from launch.tracking import LocalTracker, load_latest, non_finite_leaf
from networks import io
from networks.errors import TrainingDiverged

# Per kind: overrides that make training produce NaN/inf. Adam normalises its step, so lr 1e30 moves every weight
# by ~1e30 at once; drqn's LSTM saturates (tanh), so its Huber loss stays finite: MSE squares 1e31 into inf.
DIVERGE = {
    "dqn": ["learning_rate=1e30"],
    "drqn": ["learning_rate=1e30", "loss=mse"],
    "pqn": ["learning_rate=1e30"],
    "classify": ["lr=1e30"],
    "gan": ["lr_d=1e30", "lr_g=1e30"],
    "dcgan": ["lr_d=1e30", "lr_g=1e30"],
    "ae": ["lr=1e30"],
    "vae": ["lr=1e30"],
    "seq2seq_ae": ["lr=1e30"],
}
NO_DIVERGENCE = {"qlearning": "a table with learning_rate <= 1 and finite rewards cannot become non-finite"}


def _finite_checkpoints(run_dir) -> list[str]:
    """Names of checkpoints holding NaN/inf (should be none)."""
    bad = []
    for sidecar in sorted((run_dir / "checkpoints").glob("*.json")):
        tree, _ = io.load(sidecar.with_suffix(""))
        if non_finite_leaf(tree) is not None:
            bad.append(sidecar.name)
    return bad


@pytest.mark.parametrize("kind", kind_params())
def test_divergence_stops_the_run_with_a_clear_message(kind, tmp_path, capsys):
    if kind in NO_DIVERGENCE:
        pytest.skip(NO_DIVERGENCE[kind])
    if kind not in DIVERGE:
        pytest.skip(f"no divergence injection for '{kind}' yet")
    run_dir = tmp_path / "runs" / kind
    config = write_config(tmp_path, kind, **({"learning_starts": 150} if has_field(kind, "learning_starts") else {}))
    code = main(["train", str(config), *DIVERGE[kind], "--out", str(tmp_path / "runs"), "--name", kind])
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 1, f"a diverged run must not succeed: exit {code}\n{err}"
    assert len(lines) == 1 and lines[0].startswith("failed: "), err
    assert not _finite_checkpoints(run_dir), "a checkpoint holding NaN/inf was written"
    assert "non-finite" in lines[0] and "TrainingDiverged" in lines[0], lines[0]
    if has_field(kind, "learning_starts"):  # agents saved step 100 before their first update: it is kept
        tree, meta = load_latest(run_dir, prefix="any")
        assert meta["step"] == 100 and non_finite_leaf(tree) is None


@pytest.mark.parametrize("kind", kind_params())
def test_nan_policy_skip_skips_and_logs(kind, tmp_path, capsys):
    if not has_field(kind, "nan_policy"):
        pytest.skip(f"'{kind}' has no nan_policy field (divergence always stops it)")
    run_dir = tmp_path / "runs" / kind
    config = write_config(tmp_path, kind)
    code = main(
        ["train", str(config), *DIVERGE[kind], "nan_policy=skip", "--out", str(tmp_path / "runs"), "--name", kind]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    skipped = [r["losses/skipped_updates"] for r in metrics(run_dir) if "losses/skipped_updates" in r]
    assert skipped and skipped[-1] > 0, "skipped updates were not logged"
    assert skipped == sorted(skipped)
    assert not _finite_checkpoints(run_dir)
    tree, meta = load_latest(run_dir, prefix="any")
    assert meta["step"] == TINY[kind]["total_steps"]
    for record in metrics(run_dir):
        for key, value in record.items():
            if key.startswith("losses/"):
                assert isinstance(value, int | float) and math.isfinite(value), (key, value)


def test_the_tracker_never_writes_a_non_finite_checkpoint(tmp_path):
    tracker = LocalTracker(tmp_path, TrackingConfig(wandb="disabled"))
    tracker.checkpoint({"net": {"w": torch.ones(3)}, "best": -math.inf}, 10)  # a -inf scalar (no best yet) is fine
    for poison in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(TrainingDiverged, match=r"non-finite values in 'net\.w' at step 20.*step-000000010"):
            tracker.checkpoint({"net": {"w": torch.tensor([1.0, poison, 2.0])}}, 20)
    import numpy as np

    with pytest.raises(TrainingDiverged, match="'table'"):
        tracker.checkpoint({"table": np.array([[0.0, np.nan]])}, 30, best=True)
    tracker.checkpoint({"counts": torch.tensor([1, 2]), "table": np.zeros(2)}, 40)  # integers never fail
    tracker.close()
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.json")) == [
        "step-000000010.json",
        "step-000000040.json",
    ]
