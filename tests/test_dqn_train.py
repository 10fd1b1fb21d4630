"""DQN end to end on tiny budgets: train through a LocalTracker, checkpoint, resume, evaluate, bad input."""

import json
import math
import time

import numpy as np
import pytest
import torch

from agents import dqn, learning, losses
from launch.tracking import LocalTracker, load_latest, read_metrics
from networks.errors import ConfigError, TrainingDiverged

TINY = dict(
    env_id="CartPole-v1",
    network={"type": "mlp", "hidden": [32, 32]},
    total_steps=1200,
    learning_starts=200,
    batch_size=32,
    buffer_size=5000,
    train_freq=4,
    gradient_steps=2,
    target_update_interval=100,
    learning_rate=1e-3,
    eval_every=600,
    eval_episodes=2,
    checkpoint_every=600,
    log_every=200,
    device="cpu",
    seed=3,
)


def tiny(**overrides) -> dqn.Config:
    return dqn.Config(**{**TINY, **overrides})


def test_train_logs_checkpoints_and_resume_continues_the_step_count(tmp_path):
    config = tiny(save_replay=True, double_q=True, n_step=3)
    tracker = LocalTracker(tmp_path)
    summary = dqn.train(config, tracker)
    tracker.close()
    assert summary["global_step"] == 1200 and summary["charts/updates"] > 0
    records = read_metrics(tmp_path / "metrics.jsonl")
    keys = set().union(*records)
    for key in (
        "charts/episodic_return",
        "charts/episodic_length",
        "charts/epsilon",
        "charts/sps",
        "losses/td_loss",
        "losses/q_values",
        "eval/mean_return",
    ):
        assert key in keys, key
    assert all(math.isfinite(r["losses/td_loss"]) for r in records if "losses/td_loss" in r)
    steps = [r["step"] for r in records]
    assert steps == sorted(steps) and steps[-1] <= 1200

    tree, meta = load_latest(tmp_path)
    assert meta["step"] == 1200 and tree["counters"]["step"] == 1200
    assert {"q_net", "target_net", "optimizer", "counters", "rng", "replay"} <= set(tree)
    assert len(tree["replay"]["actions"]) == tree["replay"]["size"] > 0
    assert list((tmp_path / "checkpoints").glob("best-*.json"))  # best by evaluation

    resumed = LocalTracker(tmp_path, resume_step=1200)
    summary = dqn.train(tiny(save_replay=True, double_q=True, n_step=3, total_steps=1800), resumed, resume=tree)
    resumed.close()
    assert summary["global_step"] == 1800
    assert summary["charts/updates"] > tree["counters"]["updates"]  # the update count continues too
    new_steps = [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl") if r["step"] > 1200]
    assert new_steps and min(new_steps) > 1200 and max(new_steps) == 1800
    assert load_latest(tmp_path)[1]["step"] == 1800


def test_prioritized_dueling_run_and_evaluate_is_reproducible_with_video(tmp_path):
    config = tiny(prioritized=dqn.Prioritized(enabled=True), dueling=True, total_steps=600, eval_every=0)
    tracker = LocalTracker(tmp_path)
    dqn.train(config, tracker)
    tracker.close()
    tree, _ = load_latest(tmp_path)
    first = dqn.evaluate(config, tree, episodes=3, seed=11)
    again = dqn.evaluate(config, tree, episodes=3, seed=11, video_path=tmp_path / "video.mp4")
    assert first["returns"] == again["returns"] and first["episodes"] == 3
    assert set(first) >= {"mean_return", "std_return", "episodes", "returns"}
    video = tmp_path / "video.mp4"
    assert video.stat().st_size > 1000 and video.read_bytes()[4:8] == b"ftyp"  # an mp4 container


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"env_id": "Pendulum-v1"}, "env_id", "DQN needs a discrete action space; Pendulum-v1 has Box("),
        ({"buffer_size": 16, "batch_size": 32}, "buffer_size", "must be >= batch_size (32), got 16"),
        ({"n_step": 0}, "n_step", "must be >= 1"),
        ({"network": {"type": "cnn", "conv": [[8, 3, 1, "valid"]]}}, "network", ""),
        ({"network": {"type": "lstm", "hidden_size": 8}}, "network.type", "need kind drqn"),
        ({"env_id": "CartPol-v1"}, "env_id", "did you mean 'CartPole-v1'"),
        ({"optimizer_kwargs": {"alpha": 0.9}}, "optimizer_kwargs.alpha", "not an option of adam; allowed: betas, eps"),
        ({"optimizer": "rmsprop", "optimizer_kwargs": {"eps": 0}}, "optimizer_kwargs.eps", "must be a number > 0"),
        ({"optimizer": "sgd", "optimizer_kwargs": {"nesterov": True}}, "optimizer_kwargs.nesterov", "momentum > 0"),
    ],
)
def test_bad_input_is_a_config_error_before_any_slow_work(tmp_path, overrides, field, words):
    tracker = LocalTracker(tmp_path)
    start = time.perf_counter()
    with pytest.raises(ConfigError) as error:
        dqn.train(tiny(**overrides), tracker)
    tracker.close()
    assert time.perf_counter() - start < 5
    assert error.value.field == field and words in str(error.value)
    assert read_metrics(tmp_path / "metrics.jsonl") == []  # nothing ran
    assert not (tmp_path / "checkpoints").exists()


def test_optimizer_kwargs_build_the_minatar_papers_centered_rmsprop():
    options = {"alpha": 0.95, "eps": 0.01, "momentum": 0.95, "centered": True}  # MinAtar's examples/dqn.py
    config = tiny(optimizer="rmsprop", optimizer_kwargs=options)
    config.validate()
    params, cpu = [torch.nn.Parameter(torch.zeros(2))], torch.device("cpu")
    optimizer = learning.make_optimizer(config, params, cpu)
    assert isinstance(optimizer, torch.optim.RMSprop)
    assert {key: optimizer.param_groups[0][key] for key in options} == options
    adam = learning.make_optimizer(tiny(optimizer_kwargs={"betas": [0.5, 0.9]}), params, cpu)
    assert adam.param_groups[0]["betas"] == (0.5, 0.9)  # a YAML list becomes torch's tuple


def nan_after(calls: int, monkeypatch):
    """Make td_loss return NaN from its `calls`-th call on, as a diverging run would."""
    real, count = losses.td_loss, [0]

    def td_loss(*args, **kwargs):
        count[0] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if count[0] >= calls else loss

    monkeypatch.setattr(losses, "td_loss", td_loss)


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    nan_after(200, monkeypatch)  # 2 updates per 4 env steps from step 204: NaN near step 600
    config = tiny(checkpoint_every=400, eval_every=0)
    tracker = LocalTracker(tmp_path)
    with pytest.raises(TrainingDiverged, match="non-finite"):
        dqn.train(config, tracker)
    tracker.close()
    tree, meta = load_latest(tmp_path)
    assert meta["step"] == 400
    assert all(np.isfinite(t.numpy()).all() for t in tree["q_net"].values())


def test_nan_policy_skip_skips_the_update_and_logs_it(tmp_path, monkeypatch):
    nan_after(100, monkeypatch)
    config = tiny(nan_policy="skip", total_steps=600, eval_every=0)
    tracker = LocalTracker(tmp_path)
    summary = dqn.train(config, tracker)
    tracker.close()
    skipped = [
        r["losses/skipped_updates"] for r in read_metrics(tmp_path / "metrics.jsonl") if "losses/skipped_updates" in r
    ]
    assert skipped[-1] > 0 and summary["global_step"] == 600
    tree, _ = load_latest(tmp_path)
    assert all(np.isfinite(t.numpy()).all() for t in tree["q_net"].values())
    assert json.loads((tmp_path / "summary.json").read_text())["global_step"] == 600


def test_two_runs_with_the_same_seed_log_the_same_metrics(tmp_path):
    def run(folder):
        tracker = LocalTracker(tmp_path / folder)
        dqn.train(tiny(total_steps=700, n_step=2), tracker)
        tracker.close()
        return [
            {k: v for k, v in r.items() if k != "charts/sps"} for r in read_metrics(tmp_path / folder / "metrics.jsonl")
        ]

    assert run("a") == run("b")
