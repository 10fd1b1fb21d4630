"""PQN (agents/pqn.py): its targets and minibatches against hand-worked numbers, then end to end through the CLI on
CartPole and MinAtar (train, eval, resume, agents.load, ONNX export), and bad configs (exit 2, one line)."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from trained_runs import tiny_run

import agents
from agents import evaluation, pqn
from envs.evaluation import run_episodes
from launch.cli import main
from launch.tracking import load_latest, read_metrics

REPO = Path(__file__).resolve().parents[1]
DLFORGE = str(Path(sys.executable).parent / "dlforge")
CARTPOLE = str(REPO / "configs/pqn/cartpole.yaml")
QUIET = ["tracking.wandb=disabled"]


def hand_rollout(valid, **config) -> tuple[pqn.Rollout, pqn.Learner]:
    """An empty rollout of T = len(valid) steps of one env (obs (1,), two actions), and a learner, to fill by hand."""
    config = pqn.Config(num_envs=1, num_steps=len(valid), num_minibatches=1, device="cpu", **config)
    spaces = SimpleNamespace(
        single_observation_space=gym.spaces.Box(-1, 1, (1,), dtype=np.float32),
        single_action_space=gym.spaces.Discrete(2),
    )
    rollout = pqn.Rollout(config, spaces, torch.device("cpu"))
    return rollout, pqn.Learner(config, torch.nn.Linear(1, 2), torch.device("cpu"))


def test_targets_bootstrap_from_the_q_values_of_the_next_observation_with_rewards_scaled():
    # T = 2, γ = λ = 0.5, reward_scale 0.1: rewards 1, 2 -> 0.1, 0.2. Q rows (acted on, then after the last step):
    # s0 [1, 3], s1 [2, 5], s2 [4, 0]. G1 = 0.2 + 0.5·4 = 2.2;  G0 = 0.1 + 0.5·(0.5·2.2 + 0.5·5) = 1.9
    rollout, learner = hand_rollout([True, True], gamma=0.5, q_lambda=0.5, reward_scale=0.1)
    for q, reward in [([1.0, 3.0], 1.0), ([2.0, 5.0], 2.0)]:
        rollout.store(torch.zeros(1, 1), torch.tensor([q]), [0], [reward], [False], [False], [True])
    rollout.q[2] = torch.tensor([[4.0, 0.0]])
    assert learner.targets(rollout)[:, 0].tolist() == pytest.approx([1.9, 2.2])


def test_minibatches_hold_every_transition_once_per_epoch_and_no_autoreset_step():
    # 8 steps, of which steps 3 and 6 are autoreset steps (the step after an episode's end): 6 transitions,
    # 3 epochs of 2 minibatches of 3
    valid = [True, True, True, False, True, True, False, True]
    rollout, learner = hand_rollout(valid, update_epochs=3)
    learner.config.num_minibatches = 2
    for t, is_valid in enumerate(valid):
        obs = torch.tensor([[float(t)]])  # the step number as the observation, to see which steps were used
        rollout.store(obs, torch.zeros(1, 2), [t % 2], [0.0], [False], [False], [is_valid])
    seen = []
    learner.update = lambda obs, actions, targets: seen.append(obs[:, 0].tolist()) or True
    made, skipped = learner.train_phase(rollout, torch.zeros(8, 1), np.random.default_rng(0))
    assert (made, skipped) == (6, 0)
    assert [len(batch) for batch in seen] == [3] * 6
    for epoch in range(3):
        assert sorted(seen[2 * epoch] + seen[2 * epoch + 1]) == [0, 1, 2, 4, 5, 7]


def test_a_cartpole_run_trains_evaluates_resumes_and_keeps_no_target_net(tmp_path, capsys):
    tiny = ["total_steps=1500", "eval_every=500", "eval_episodes=2", "checkpoint_every=500", "log_every=500"]
    tiny += ["stop_at_return=null"]
    assert main(["train", CARTPOLE, *tiny, *QUIET, "--out", str(tmp_path), "--name", "cp"]) == 0
    run_dir = tmp_path / "cp"
    summary = json.loads((run_dir / "summary.json").read_text())
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert 1500 <= summary["global_step"] < 1500 + config["num_envs"]  # the last rollout stops at total_steps
    tree, meta = load_latest(run_dir)
    # each rollout of num_steps vector steps (the last one may stop short) makes epochs x minibatches updates
    rollouts = -(-tree["counters"]["vec_steps"] // config["num_steps"])
    assert summary["charts/updates"] == rollouts * config["update_epochs"] * config["num_minibatches"]
    keys = set().union(*read_metrics(run_dir / "metrics.jsonl"))
    for key in ("charts/episodic_return", "charts/epsilon", "charts/sps", "losses/td_loss", "eval/mean_return"):
        assert key in keys, key
    assert set(tree) == {"q_net", "optimizer", "counters", "rng"} and meta["step"] == summary["global_step"]

    assert main(["eval", str(run_dir), "--episodes", "3", "--checkpoint", "last", "--seed", "4"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith("episodes=3")
    assert main(["train", "--resume", str(run_dir), "total_steps=2500"]) == 0
    steps = [r["step"] for r in read_metrics(run_dir / "metrics.jsonl")]
    assert steps == sorted(steps) and 2500 <= max(steps) < 2500 + config["num_envs"]
    resumed = json.loads((run_dir / "summary.json").read_text())
    assert resumed["charts/updates"] > summary["charts/updates"]  # the update count continues


@pytest.mark.slow
def test_a_minatar_run_trains_through_the_cli_and_evaluates_with_video(tmp_path):
    path = str(REPO / "configs/pqn/minatar-breakout.yaml")
    tiny = ["num_envs=4", "num_steps=16", "num_minibatches=4", "total_steps=300", "eval_every=0", "eval_episodes=1"]
    assert main(["train", path, *tiny, *QUIET, "--out", str(tmp_path), "--name", "run"]) == 0
    run_dir = tmp_path / "run"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["global_step"] >= 300 and summary["charts/updates"] > 0
    policy = agents.load(run_dir, checkpoint="last")
    assert policy.kind == "pqn" and policy.observation_space.dtype == np.uint8
    assert main(["eval", str(run_dir), "--episodes", "1", "--checkpoint", "last", "--video"]) == 0
    video = Path(json.loads((run_dir / "eval.json").read_text())["video"])
    assert video.suffix == ".mp4" and video.stat().st_size > 1000


def test_agents_load_plays_a_pqn_run_as_its_evaluation():
    run_dir = tiny_run("cartpole-pqn")
    policy = agents.load(run_dir, checkpoint="last")
    assert policy.kind == "pqn" and "pqn policy on CartPole-v1" in repr(policy)
    env = evaluation.make_env(policy.config, 3, 7, vectorization="sync")
    played = run_episodes(env, lambda obs: policy.predict(obs)[0], episodes=3, seed=7)
    env.close()
    tree, _ = load_latest(run_dir)
    assert played == pqn.evaluate(policy.config, tree, episodes=3, seed=7)


@pytest.mark.slow
def test_a_pqn_run_exports_to_onnx_that_acts_as_torch(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime", reason="the export extra: pip install 'dlforge[export]'")
    run_dir = tiny_run("cartpole-pqn")
    assert main(["export", str(run_dir), "--format", "onnx", "--out", str(tmp_path / "policy.onnx")]) == 0
    policy = agents.load(run_dir)
    session = onnxruntime.InferenceSession(str(tmp_path / "policy.onnx"), providers=["CPUExecutionProvider"])
    obs, _ = policy.env_observations(500)
    actions, q_values = session.run(None, {"obs": obs})
    np.testing.assert_array_equal(actions, policy.predict(obs)[0])
    np.testing.assert_allclose(q_values, policy.q_values(obs), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("q_lambda=1.5", "error: q_lambda: must be >= 0 and <= 1, got 1.5"),
        ("q_lambda=-0.1", "error: q_lambda: must be >= 0 and <= 1, got -0.1"),
        ("env_id=Pendulum-v1", "error: env_id: PQN needs a discrete action space; Pendulum-v1 has Box("),
        ("network={type: lstm, hidden_size: 8}", "error: network.type: pqn takes feed-forward networks"),
    ],
)
def test_bad_configs_exit_2_with_one_line_and_no_run_folder(tmp_path, capsys, override, message):
    assert main(["train", CARTPOLE, override, *QUIET, "--out", str(tmp_path), "--name", "bad"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and len(err.splitlines()) == 1, err
    assert not (tmp_path / "bad").exists()


def test_minibatches_that_do_not_divide_the_rollout_exit_2_in_a_real_process(tmp_path):
    done = subprocess.run(
        [DLFORGE, "train", CARTPOLE, "num_minibatches=5", *QUIET, "--out", str(tmp_path), "--name", "bad"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert done.returncode == 2, done.stderr
    message = "error: num_minibatches: must divide num_envs x num_steps (16 x 32 = 512), got 5"
    assert done.stderr.strip() == message
    assert not (tmp_path / "bad").exists()
