"""Tabular Q-learning: the update against hand-worked numbers, bad spaces, checkpoints, eval and the plot."""

from __future__ import annotations

import numpy as np
import pytest

from agents import qlearning
from launch.tracking import LocalTracker
from networks import io
from networks.errors import ConfigError


def test_q_update_matches_hand_worked_numbers():
    q = np.zeros((3, 2))
    q[1] = [0.5, 2.0]
    # Bootstrapped: target = 1 + 0.9 * max(0.5, 2.0) = 2.8; td = 2.8 - 0 = 2.8; Q <- 0 + 0.5 * 2.8 = 1.4
    td = qlearning.q_update(q, 0, 1, 1.0, 1, False, alpha=0.5, gamma=0.9)
    assert td == pytest.approx(2.8)
    assert q[0, 1] == pytest.approx(1.4)
    # Terminated: no bootstrap. target = 1; td = 1 - 1.4 = -0.4; Q <- 1.4 + 0.5 * -0.4 = 1.2
    td = qlearning.q_update(q, 0, 1, 1.0, 1, True, alpha=0.5, gamma=0.9)
    assert td == pytest.approx(-0.4)
    assert q[0, 1] == pytest.approx(1.2)
    # Back-propagation along a chain: s2 -a0-> s0 with r = 0. target = 0 + 0.9 * max(0, 1.2) = 1.08;
    # Q[2, 0] <- 0 + 0.5 * 1.08 = 0.54. Nothing else moved.
    qlearning.q_update(q, 2, 0, 0.0, 0, False, alpha=0.5, gamma=0.9)
    assert q[2, 0] == pytest.approx(0.54)
    np.testing.assert_allclose(q, [[0.0, 1.2], [0.5, 2.0], [0.54, 0.0]])


def test_schedules_and_tie_breaking():
    assert qlearning.linear_schedule(1.0, 0.1, 100, 0) == 1.0
    assert qlearning.linear_schedule(1.0, 0.1, 100, 50) == pytest.approx(0.55)
    assert qlearning.linear_schedule(1.0, 0.1, 100, 1000) == pytest.approx(0.1)
    rng = np.random.default_rng(0)
    picks = {qlearning.greedy_action(np.array([1.0, 3.0, 3.0, 0.0]), rng) for _ in range(50)}
    assert picks == {1, 2}


@pytest.mark.parametrize("env_id, space", [("CartPole-v1", "observation"), ("Pendulum-v1", "observation")])
def test_non_discrete_spaces_are_config_errors(tmp_path, env_id, space):
    tracker = LocalTracker(tmp_path / "run")
    with pytest.raises(ConfigError, match=f"Discrete {space} space") as error:
        qlearning.train(qlearning.Config(env_id=env_id, total_steps=10), tracker)
    assert error.value.field == "env_id"
    assert "\n" not in str(error.value)
    tracker.close()


def test_bad_schedule_is_a_config_error():
    with pytest.raises(ConfigError, match="exploration_final_eps"):
        qlearning.Config(exploration_initial_eps=0.1, exploration_final_eps=0.5).validate()


def test_train_checkpoint_evaluate_and_resume(tmp_path):
    config = qlearning.Config(
        env_id="FrozenLake-v1",
        env_kwargs={"is_slippery": False},
        total_steps=3000,
        checkpoint_every=1000,
        eval_episodes=5,
        log_every=500,
    )
    tracker = LocalTracker(tmp_path / "run")
    summary = qlearning.train(config, tracker)
    tracker.close()
    assert summary["eval/mean_return"] == 1.0  # the deterministic lake is learnt in a few thousand steps
    assert (tmp_path / "run" / "media" / "q_table-000003000.png").exists()  # picked up by `dlforge report`

    tree, meta = io.load(sorted((tmp_path / "run" / "checkpoints").glob("step-*.json"))[-1])
    assert meta["step"] == 3000 and tree["step"] == 3000
    assert tree["q_table"].shape == (16, 4) and tree["q_table"].dtype == np.float64

    first = qlearning.evaluate(config, tree, episodes=4, seed=3, video_path=tmp_path / "eval.mp4")
    second = qlearning.evaluate(config, tree, episodes=4, seed=3, video_path=None)
    assert first["returns"] == second["returns"] == [1.0] * 4
    assert (tmp_path / "eval.mp4").stat().st_size > 0

    # Resume: continues from the saved step with the saved table.
    longer = qlearning.Config(**{**config.__dict__, "total_steps": 4000})
    tracker = LocalTracker(tmp_path / "run", resume_step=3000)
    qlearning.train(longer, tracker, resume=tree)
    tracker.close()
    _, meta = io.load(sorted((tmp_path / "run" / "checkpoints").glob("step-*.json"))[-1])
    assert meta["step"] == 4000


def test_plot_q_table_grid_world_and_plain_table(tmp_path):
    table = np.random.default_rng(0).random((16, 4))
    grid = qlearning.plot_q_table({"q_table": table}, "FrozenLake-v1", tmp_path / "lake.png")
    plain = qlearning.plot_q_table(np.zeros((500, 6)), "Taxi-v4", tmp_path / "taxi.png")
    for path in (grid, plain):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_train_eval_and_a_non_discrete_env(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    dlforge = str(Path(sys.executable).parent / "dlforge")
    env = {**os.environ, "WANDB_SILENT": "true"}
    common = ["--out", str(tmp_path), "tracking.wandb=disabled", "total_steps=3000", "eval_episodes=5"]
    done = subprocess.run(
        [dlforge, "train", "--name", "lake", *common[:2], "configs/qlearning/frozenlake.yaml", *common[2:]],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [dlforge, "eval", str(tmp_path / "lake"), "--episodes", "20"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("mean_return=")
    # A Box observation space: exit 2, one line naming the field, no run folder left behind.
    done = subprocess.run(
        [
            dlforge,
            "train",
            "--name",
            "bad",
            *common[:2],
            "configs/qlearning/frozenlake.yaml",
            *common[2:],
            "env_id=CartPole-v1",
            "env_kwargs={}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 2
    error_lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "env_id" in error_lines[0] and "Discrete" in error_lines[0]
    assert not (tmp_path / "bad").exists()
