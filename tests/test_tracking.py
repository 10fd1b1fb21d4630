"""The tracker: metrics.jsonl, W&B offline runs read back from disk, checkpoints in a run folder."""

import json

import numpy as np
import pytest
import torch
from wandb_reader import history, offline_runs, run_config

from launch.config import TrackingConfig
from launch.tracking import LocalTracker, checkpoint_stems, load_latest, read_metrics, truncate_metrics
from networks.errors import CheckpointError, ConfigError


def test_metrics_jsonl_and_wandb_offline_history(tmp_path):
    tracker = LocalTracker(tmp_path / "run", TrackingConfig(wandb="offline", tags=["t"]), config={"lr": 0.1})
    for step in (10, 20, 30):
        tracker.log({"charts/episodic_return": step / 10, "losses/td_loss": 1.0 / step}, step=step)
    tracker.summary({"eval/mean_return": 3.0})
    tracker.close()

    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records] == [10, 20, 30]
    assert records[-1]["charts/episodic_return"] == 3.0
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == {"eval/mean_return": 3.0}

    (wandb_file,) = offline_runs(tmp_path / "run")
    rows = history(wandb_file)
    assert [r["global_step"] for r in rows] == [10, 20, 30]
    assert [r["charts/episodic_return"] for r in rows] == [1.0, 2.0, 3.0]
    assert run_config(wandb_file)["lr"] == 0.1


def test_checkpoints_keep_last_two_and_one_best(tmp_path):
    tracker = LocalTracker(tmp_path, TrackingConfig(wandb="disabled"))
    for step in (100, 200, 300):
        tracker.checkpoint({"w": torch.full((2,), float(step)), "step": step}, step)
    tracker.checkpoint({"w": torch.zeros(2)}, 150, best=True)
    tracker.checkpoint({"w": torch.ones(2)}, 250, best=True)
    tracker.close()
    assert [p.name for p in checkpoint_stems(tmp_path)] == ["step-000000300", "step-000000200"]
    assert [p.name for p in checkpoint_stems(tmp_path, "best")] == ["best-000000250"]
    tree, meta = load_latest(tmp_path)
    assert meta["step"] == 300 and tree["step"] == 300 and torch.equal(tree["w"], torch.full((2,), 300.0))


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path):
    tracker = LocalTracker(tmp_path, TrackingConfig(wandb="disabled"))
    tracker.checkpoint({"w": torch.ones(3)}, 1)
    stem = tracker.checkpoint({"w": torch.ones(3) * 2}, 2)
    tracker.close()
    data = stem.with_suffix(".safetensors").read_bytes()
    stem.with_suffix(".safetensors").write_bytes(data[: len(data) // 2])
    _, meta = load_latest(tmp_path)
    assert meta["step"] == 1
    for stem in checkpoint_stems(tmp_path):
        stem.with_suffix(".safetensors").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="no loadable checkpoint"):
        load_latest(tmp_path)


def test_resume_truncates_metrics_after_the_checkpoint_and_a_torn_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "a": 1}\n{"step": 2, "a": 2}\n{"step": 3, "a": 3}\n{"step": 4, "a"')
    truncate_metrics(path, 2)
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
    tracker = LocalTracker(tmp_path, TrackingConfig(wandb="disabled"), resume_step=2)
    tracker.log({"a": 3}, step=3)
    tracker.close()
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]


def test_images_are_saved_as_png(tmp_path):
    tracker = LocalTracker(tmp_path, TrackingConfig(wandb="offline"))
    path = tracker.image("samples/grid", np.random.rand(1, 8, 8), step=5)
    tracker.close()
    assert path.exists() and path.read_bytes()[:4] == b"\x89PNG"
    (wandb_file,) = offline_runs(tmp_path)
    assert any("samples/grid" in row for row in history(wandb_file))


def test_online_without_an_api_key_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    with pytest.raises(ConfigError, match="tracking.wandb: online needs a W&B API key"):
        LocalTracker(tmp_path / "run", TrackingConfig(wandb="online"))
