"""`dlforge eval RUN --save-trajectories PATH.npz`, and the seq2seq autoencoder trained on that file."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from trained_runs import REPO, tiny_run

import envs
from envs.evaluation import run_episodes
from generative.data import load_sequences
from launch.cli import main


def test_recorded_steps_are_the_counted_episodes():
    env = envs.make("CartPole-v1", num_envs=3, seed=0, vectorization="sync")

    def random_policy():
        rng = np.random.default_rng(0)
        return lambda obs: rng.integers(2, size=len(obs))

    played = run_episodes(env, random_policy(), episodes=7, seed=5, trajectories=True)
    steps = played["trajectories"]
    n = len(steps["dones"])
    assert steps["obs"].shape == (n, 4) and steps["actions"].shape == steps["rewards"].shape == (n,)
    assert steps["rewards"].dtype == np.float32 and steps["dones"].dtype == bool
    assert steps["dones"].sum() == 7 and steps["dones"][-1]
    # CartPole pays 1 per step, so each episode's steps sum to its return, in the order of the returns
    ends = np.flatnonzero(steps["dones"])
    per_episode = [part.sum() for part in np.split(steps["rewards"], ends[:-1] + 1)]
    assert per_episode == played["returns"] == [len(part) for part in np.split(steps["dones"], ends[:-1] + 1)]
    # every episode starts from its env's reset observation: |x|, |x'|, |θ|, |θ'| <= 0.05
    starts = np.concatenate([[0], ends[:-1] + 1])
    assert (np.abs(steps["obs"][starts]) <= 0.05).all()
    again = run_episodes(env, random_policy(), episodes=7, seed=5)
    assert again["returns"] == played["returns"] and "trajectories" not in again  # recording changes nothing
    env.close()


def test_a_dqn_runs_episodes_train_a_sequence_autoencoder(tmp_path, capsys):
    dqn = ["total_steps=600", "learning_starts=200", "eval_every=600", "eval_episodes=2", "tracking.wandb=disabled"]
    assert main(["train", "dqn/cartpole", *dqn, "--out", str(tmp_path), "--name", "dqn"]) == 0
    path = tmp_path / "episodes" / "cartpole.npz"  # its folder is created
    argv = ["eval", str(tmp_path / "dqn"), "--episodes", "6", "--save-trajectories", str(path)]
    assert main(argv) == 0
    assert f"trajectories: {path}" in capsys.readouterr().out
    evaluation = json.loads((tmp_path / "dqn" / "eval.json").read_text())
    assert evaluation["trajectories"] == str(path)
    with np.load(path) as saved:
        assert sorted(saved.files) == ["actions", "dones", "obs", "rewards"]
        assert saved["dones"].sum() == evaluation["episodes"] == 6
        assert saved["rewards"].sum() == pytest.approx(sum(evaluation["returns"]))
        shortest = int(min(evaluation["returns"]))  # CartPole: an episode's return is its length
        windows = load_sequences(f"npz:{path}", seed=0, seq_len=shortest)
        assert windows.x_train.shape[1:] == (shortest, 4)

    s2s = [f"data=npz:{path}", f"seq_len={min(shortest, 5)}", "total_steps=10", "eval_every=10"]
    argv = ["train", "seq2seq_ae/trajectories", *s2s, "tracking.wandb=disabled", "--out", str(tmp_path)]
    assert main([*argv, "--name", "s2s"]) == 0
    summary = json.loads((tmp_path / "s2s" / "summary.json").read_text())
    assert np.isfinite(summary["eval/mse"])


@pytest.mark.parametrize("name", ["novel-drqn", "frozenlake-q", "cartpole-pqn"])
def test_drqn_qlearning_and_pqn_runs_save_trajectories(name, tmp_path):
    run_dir = shutil.copytree(tiny_run(name), tmp_path / name)  # eval writes eval.json: not into the shared run
    path = tmp_path / "steps.npz"
    assert main(["eval", str(run_dir), "--episodes", "3", "--save-trajectories", str(path)]) == 0
    evaluation = json.loads((run_dir / "eval.json").read_text())
    with np.load(path) as saved:
        assert saved["dones"].sum() == 3 and saved["dones"][-1]
        assert len(saved["obs"]) == len(saved["actions"]) == len(saved["rewards"]) == len(saved["dones"])
        assert saved["rewards"].sum() == pytest.approx(sum(evaluation["returns"]))


@pytest.mark.parametrize(
    "where, expected",
    [
        ("steps.json", "error: --save-trajectories: expected a .npz path, got"),
        ("a-file/steps.npz", "is not a writable folder"),
        ("a-folder.npz", "is not a writable folder"),
    ],
)
def test_save_trajectories_to_a_bad_path_is_refused_before_evaluating(where, expected, tmp_path, capsys):
    run_dir = shutil.copytree(tiny_run("frozenlake-q"), tmp_path / "run")
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "a-folder.npz").mkdir()
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["eval", str(run_dir), "--save-trajectories", str(tmp_path / where)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --save-trajectories: ") and expected in err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # no eval.json, no npz


@pytest.mark.parametrize(
    "arrays, expected",
    [
        ({"obs": np.zeros((10, 4)), "actions": np.zeros(10)}, "has no 'dones' array"),
        ({"dones": np.zeros(10, bool), "rewards": np.zeros(10)}, "has no 'obs' array"),
        ({"obs": np.zeros((10, 4)), "dones": np.zeros(9, bool)}, "one entry per step in each array, got dones (9,)"),
        ({"obs": np.zeros((10, 4)), "dones": np.zeros(10, bool), "rewards": np.zeros(8)}, "rewards (8,)"),
        ({"obs": np.zeros((10, 4)), "dones": np.zeros((10, 2), bool)}, "dones (10, 2)"),
    ],
)
def test_a_broken_trajectory_file_is_one_line_and_exit_2(arrays, expected, tmp_path, capsys):
    path = tmp_path / "broken.npz"
    np.savez(path, **arrays)
    argv = ["train", str(REPO / "configs/seq2seq_ae/trajectories.yaml"), f"data=npz:{path}", "seq_len=2"]
    assert main([*argv, "tracking.wandb=disabled", "--out", str(tmp_path / "runs"), "--name", "s2s"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: data: trajectory file '{path}' ") and expected in err
    assert not (tmp_path / "runs" / "s2s").exists()
