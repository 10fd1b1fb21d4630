"""agents.load: a trained run (or a downloaded-artifact-shaped folder) as a policy with SB3's predict."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import yaml
from trained_runs import artifact_folder, tiny_run

import agents
from agents import dqn, drqn, evaluation, qlearning
from envs.evaluation import run_episodes
from networks import io
from networks.errors import CheckpointError, ConfigError
from networks.run_folder import load_checkpoint


@pytest.mark.parametrize("name", ["cartpole-mlp", "doorkey-cnn"])
def test_dqn_policy_plays_exactly_as_the_evaluation(name):
    policy = agents.load(tiny_run(name), checkpoint="last")
    assert policy.checkpoint["which"] == "last"
    env = evaluation.make_env(policy.config, 3, 7, vectorization="sync")
    played = run_episodes(env, lambda obs: policy.predict(obs, deterministic=True)[0], episodes=3, seed=7)
    env.close()
    tree, _, _ = load_checkpoint(tiny_run(name), "last")
    assert played == dqn.evaluate(policy.config, tree, episodes=3, seed=7)


def test_one_observation_or_a_batch_and_q_values_agree():
    policy = agents.load(tiny_run("doorkey-cnn"))
    assert policy.observation_space.shape == (3, 7, 7) and policy.observation_space.dtype == np.uint8
    batch = np.stack([policy.observation_space.sample() for _ in range(5)])  # uint8 pixels, as the env gives
    actions, state = policy.predict(batch)
    assert state is None and actions.shape == (5,)
    q = policy.q_values(batch)
    assert q.shape == (5, 7) and (q.argmax(1) == actions).all()
    one, _ = policy.predict(batch[2])
    assert one.shape == () and int(one) == actions[2]
    np.testing.assert_allclose(policy.q_values(batch[2]), q[2], rtol=1e-6)
    with torch.no_grad():  # the pixels are scaled inside, exactly as in training
        expected = policy.q_net(torch.as_tensor(batch)).numpy()
    np.testing.assert_allclose(q, expected, rtol=1e-6)


def test_a_wrong_shaped_observation_is_one_line_naming_the_shapes():
    policy = agents.load(tiny_run("cartpole-mlp"))
    for bad in (np.zeros(3), np.zeros((2, 5)), np.zeros((1, 2, 4))):
        with pytest.raises(ConfigError) as error:
            policy.predict(bad)
        message = str(error.value)
        assert message == f"observation: expected shape (4,) or (N, 4) for CartPole-v1, got {bad.shape}"


def test_non_deterministic_predict_explores_with_the_final_epsilon():
    policy = agents.load(tiny_run("cartpole-mlp"))
    obs = np.zeros((4000, 4), np.float32)
    greedy = policy.predict(obs)[0]
    explored = policy.predict(obs, deterministic=False)[0]
    changed = (explored != greedy).mean()  # eps / 2 of the actions change: a random pick may equal the greedy one
    assert 0.005 < changed < 0.06, changed
    assert policy.config.exploration_final_eps == pytest.approx(0.04)


def test_drqn_policy_carries_its_state_and_plays_as_the_evaluation():
    policy = agents.load(tiny_run("novel-drqn"))
    env = evaluation.make_env(policy.config, 1, 11, vectorization="sync")
    obs, _ = env.reset(seed=11)
    state, start, total, seen, done = None, True, 0.0, [], False
    q_carried = []
    while not done:
        seen.append(obs[0])
        q_carried.append(policy.q_values(obs[0], state, episode_start=start))
        action, state = policy.predict(obs[0], state, episode_start=start)
        assert [s.shape for s in state] == [(1, 1, 64), (1, 1, 64)]
        obs, reward, terminated, truncated, _ = env.step(np.array([action]))
        total, start, done = total + float(reward[0]), False, bool(terminated[0] or truncated[0])
    env.close()
    tree, _, _ = load_checkpoint(tiny_run("novel-drqn"), "best")
    assert total == drqn.evaluate(policy.config, tree, episodes=1, seed=11)["returns"][0]
    with torch.no_grad():  # one unroll of the whole episode gives the Q-values the carried state gave
        unrolled, _ = policy.q_net(torch.as_tensor(np.stack(seen))[None])
    np.testing.assert_allclose(np.stack(q_carried), unrolled[0].numpy(), rtol=1e-5, atol=1e-6)
    # episode_start zeroes the state: the same as starting from none
    fresh = policy.q_values(seen[0])
    np.testing.assert_allclose(policy.q_values(seen[0], state, episode_start=True), fresh, rtol=1e-6)
    assert not np.allclose(policy.q_values(seen[0], state, episode_start=False), fresh)


def test_qlearning_policy_plays_its_table_greedily():
    run_dir = tiny_run("frozenlake-q")
    policy = agents.load(run_dir)
    tree, _, _ = load_checkpoint(run_dir, "best")
    states = np.arange(16)
    np.testing.assert_array_equal(policy.q_values(states), tree["q_table"])
    np.testing.assert_array_equal(policy.predict(states)[0], tree["q_table"].argmax(1))
    assert policy.predict(5)[0].shape == ()
    with pytest.raises(ConfigError, match="states of FrozenLake-v1 are 0..15"):
        policy.predict(16)
    assert isinstance(qlearning.evaluate(policy.config, tree, episodes=2, seed=0)["mean_return"], float)


@pytest.mark.parametrize("stem", [None, "model"])
def test_an_artifact_shaped_folder_loads_like_the_run(tmp_path, stem):
    run_dir = tiny_run("cartpole-mlp")
    folder = artifact_folder(run_dir, tmp_path / "artifact", stem=stem)
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == sorted(
        ["config.yaml", f"{stem or 'best-000001500'}.json", f"{stem or 'best-000001500'}.safetensors"]
    )
    from_run, from_artifact = agents.load(run_dir), agents.load(folder)
    obs = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    np.testing.assert_array_equal(from_run.q_values(obs), from_artifact.q_values(obs))
    assert from_artifact.checkpoint["step"] == 1500


def test_load_refuses_what_holds_no_policy(tmp_path):
    with pytest.raises(ConfigError, match="holds no dlforge run"):
        agents.load(tmp_path)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"kind": "vae", "data": "digits"}))
    with pytest.raises(ConfigError, match="'vae' run, which holds no policy; agents.load takes dqn, drqn, qlearning"):
        agents.load(tmp_path)
    shutil.copy(tiny_run("cartpole-mlp") / "config.yaml", tmp_path / "config.yaml")
    with pytest.raises(ConfigError, match="holds no checkpoint yet"):
        agents.load(tmp_path)
    with pytest.raises(ConfigError, match="--checkpoint: expected best or last"):
        agents.load(tiny_run("cartpole-mlp"), checkpoint="first")
    broken = artifact_folder(tiny_run("cartpole-mlp"), tmp_path / "broken")
    tensors = next((broken / "checkpoints").glob("*.safetensors"))
    tensors.write_bytes(tensors.read_bytes()[:100])
    with pytest.raises(CheckpointError):
        agents.load(broken)
    qtable = artifact_folder(tiny_run("frozenlake-q"), tmp_path / "q")
    stem = next((qtable / "checkpoints").glob("*.json")).with_suffix("")
    io.save(stem, {"q_net": {}})  # a dqn-shaped tree in a qlearning run
    with pytest.raises(CheckpointError, match="holds no 'q_table'"):
        agents.load(qtable)
