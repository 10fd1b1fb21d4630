"""The tracker: metrics.jsonl, W&B offline runs read back from disk, checkpoints in a run folder."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from wandb_reader import artifacts, history, offline_runs, run_config

from launch.cli import main
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


def _download(artifact: dict, folder: Path) -> Path:
    """What `artifact.download()` would give: the staged files under their paths in the artifact."""
    for name, staged in artifact["files"].items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(staged, folder / name)
    return folder


def test_best_and_final_checkpoints_are_logged_once_each_as_a_model_artifact(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("kind: dqn\n")
    tracker = LocalTracker(run_dir, TrackingConfig(wandb="offline"))
    tracker.checkpoint({"w": torch.zeros(2)}, 100, best=True, metric=1.5)
    for step in (100, 200, 300):
        tracker.checkpoint({"w": torch.full((2,), float(step)), "replay": {"obs": torch.ones(64)}}, step)
    tracker.summary({"eval/mean_return": 1.25, "charts/sps": 10.0})
    tracker.close()

    (wandb_file,) = offline_runs(run_dir)
    best, final = artifacts(wandb_file)
    run_id = (run_dir / "wandb_id.txt").read_text()
    assert best["name"] == final["name"] == f"model-{run_id}"
    assert best["type"] == final["type"] == "model"
    assert "best" in best["aliases"] and "final" in final["aliases"]
    assert best["metadata"] == {"checkpoint": "best", "step": 100, "metric": 1.5, "eval/mean_return": 1.25}
    assert final["metadata"] == {"checkpoint": "final", "step": 300, "eval/mean_return": 1.25}
    assert sorted(best["files"]) == [
        "checkpoints/best-000000100.json",
        "checkpoints/best-000000100.safetensors",
        "config.yaml",
    ]
    folder = _download(final, tmp_path / "final")
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == [
        "step-000000300.json",
        "step-000000300.safetensors",
    ]
    tree, meta = load_latest(folder)
    assert meta["step"] == 300 and torch.equal(tree["w"], torch.full((2,), 300.0))
    assert "replay" not in tree  # only a resume needs it; the run folder keeps it


def test_a_tracker_that_saved_nothing_logs_no_artifact(tmp_path):
    run_dir = tmp_path / "run"
    trained = LocalTracker(run_dir, TrackingConfig(wandb="disabled"))
    trained.checkpoint({"w": torch.ones(2)}, 10)
    trained.close()
    tracker = LocalTracker(run_dir, TrackingConfig(wandb="offline"), resume_step=10)  # e.g. `dlforge eval --video`
    tracker.summary({"eval/mean_return": 1.0})
    tracker.close()
    (wandb_file,) = offline_runs(run_dir)
    assert artifacts(wandb_file) == []


def test_a_downloaded_model_artifact_loads_like_a_run_folder(tmp_path, capsys):
    cartpole = str(Path(__file__).resolve().parents[1] / "configs/dqn/cartpole.yaml")
    tiny = ["total_steps=600", "learning_starts=100", "eval_every=300", "eval_episodes=2", "stop_at_return=null"]
    assert main(["train", cartpole, *tiny, "tracking.wandb=offline", "--out", str(tmp_path), "--name", "cp"]) == 0
    (wandb_file,) = offline_runs(tmp_path / "cp")
    logged = {alias: a for a in artifacts(wandb_file) for alias in a["aliases"] if alias in ("best", "final")}
    assert sorted(logged) == ["best", "final"]
    assert (
        logged["best"]["metadata"]["eval/mean_return"]
        == json.loads((tmp_path / "cp/summary.json").read_text())["eval/mean_return"]
    )
    for alias, which in (("best", "best"), ("final", "last")):
        folder = _download(logged[alias], tmp_path / f"model-{alias}")
        assert main(["eval", str(folder), "--episodes", "1", "--checkpoint", which]) == 0
        assert capsys.readouterr().out.strip().splitlines()[-1].startswith("mean_return=")


def test_several_wandb_runs_in_one_process_stay_apart(tmp_path):
    for name in "ab":
        (tmp_path / name).mkdir()
    import wandb

    from launch.wandb_run import finish_wandb, start_wandb

    runs = {name: start_wandb(tmp_path / name, TrackingConfig(wandb="offline"), {"member": name}) for name in "ab"}
    for step in (1, 2):
        for name, run in runs.items():
            run.log({"global_step": step, "x": ord(name) * step})
    assert all(finish_wandb(run, failed=False) for run in runs.values())
    wandb.teardown()
    for name in "ab":
        (wandb_file,) = offline_runs(tmp_path / name)
        assert [row["x"] for row in history(wandb_file)] == [ord(name), 2 * ord(name)]
        assert run_config(wandb_file)["member"] == name


def test_a_population_members_wandb_run_is_named_after_its_population():
    from launch.wandb_run import run_name

    assert run_name(Path("runs/cartpole/members/seed0")) == "cartpole/seed0"
    assert run_name(Path("runs/lr-test")) == "lr-test"
