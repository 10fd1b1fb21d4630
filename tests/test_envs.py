"""envs.make: vectorisation choice, seeding, episode statistics, autoreset mode, errors, family dispatch."""

import sys
import types

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import envs
from envs.evaluation import run_episodes
from envs.members import MemberEnvs
from networks.errors import ConfigError


def test_cartpole_uses_its_native_vector_env_when_that_is_faster():
    env = envs.make("CartPole-v1", num_envs=4, seed=0)
    assert isinstance(env.unwrapped, CartPoleVectorEnv) and env.num_envs == 4
    assert isinstance(envs.make("CartPole-v1", num_envs=1).unwrapped, SyncVectorEnv)  # 1 env: sync is faster
    assert isinstance(envs.make("CartPole-v1", num_envs=1, vectorization="vector").unwrapped, CartPoleVectorEnv)
    assert env.observation_space.shape == (4, 4) and env.single_action_space == gym.spaces.Discrete(2)
    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP


def test_envs_without_a_vector_entry_point_are_sync_and_wrappers_force_sync():
    assert isinstance(envs.make("Acrobot-v1", num_envs=2).unwrapped, SyncVectorEnv)
    wrapped = envs.make("CartPole-v1", num_envs=2, wrappers=[gym.wrappers.TimeAwareObservation])
    assert isinstance(wrapped.unwrapped, SyncVectorEnv) and wrapped.single_observation_space.shape == (5,)


def test_env_kwargs_reach_the_env():
    env = envs.make("CartPole-v1", num_envs=1, seed=0, max_episode_steps=7)
    env.reset()
    truncated = [env.step(np.zeros(1, np.int64))[3][0] for _ in range(7)]
    assert truncated[-1] and not any(truncated[:-1])


def test_the_seed_makes_first_resets_reproducible():
    first = envs.make("CartPole-v1", num_envs=3, seed=5).reset()[0]
    again = envs.make("CartPole-v1", num_envs=3, seed=5).reset()[0]
    other = envs.make("CartPole-v1", num_envs=3, seed=6).reset()[0]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    sync = envs.make("Acrobot-v1", num_envs=2, seed=5, vectorization="sync")
    np.testing.assert_array_equal(sync.reset()[0], envs.make("Acrobot-v1", num_envs=2, seed=5).reset()[0])


def test_episode_statistics_are_recorded():
    env = envs.make("CartPole-v1", num_envs=1, seed=0, vectorization="vector")
    env.reset()
    total, info = 0.0, {}
    while "_episode" not in info or not info["_episode"][0]:
        _, reward, _, _, info = env.step(np.zeros(1, np.int64))  # always push left: a short episode
        total += reward[0]
    assert info["episode"]["r"][0] == total and info["episode"]["l"][0] == total  # CartPole pays 1 per step
    # NEXT_STEP autoreset: the following step only resets (reward 0, action ignored)
    _, reward, terminated, truncated, _ = env.step(np.zeros(1, np.int64))
    assert reward[0] == 0 and not terminated[0] and not truncated[0]


def test_unknown_ids_and_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match=r"unknown environment 'CartPol-v1' \(did you mean 'CartPole-v1'\?\)"):
        envs.make("CartPol-v1")
    with pytest.raises(ConfigError) as error:
        envs.make("lunarlander-v3")
    assert error.value.field == "env_id" and "did you mean 'LunarLander-v3'" in str(error.value)
    with pytest.raises(ConfigError, match="num_envs"):
        envs.make("CartPole-v1", num_envs=0)
    with pytest.raises(ConfigError, match="vectorization"):
        envs.make("CartPole-v1", vectorization="threads")


def test_families_dispatch_by_prefix_to_make_single(monkeypatch):
    calls = []

    def make_single(env_id, render_mode=None, **kwargs):
        calls.append((env_id, render_mode, kwargs))
        return gym.make("CartPole-v1")

    monkeypatch.setitem(sys.modules, "envs.atari", types.SimpleNamespace(make_single=make_single))
    monkeypatch.setitem(sys.modules, "envs.minigrid", types.SimpleNamespace(make_single=make_single))
    env = envs.make("ALE/Pong-v5", num_envs=2, seed=1, frame_stack=2)
    envs.make("MiniGrid-Empty-5x5-v0", num_envs=1)
    assert isinstance(env.unwrapped, SyncVectorEnv) and env.num_envs == 2
    assert calls[0] == ("ALE/Pong-v5", None, {"frame_stack": 2}) and calls[-1][0] == "MiniGrid-Empty-5x5-v0"


def test_dlforge_ids_are_registered_on_demand():
    env = envs.make("dlforge/CartPoleNoVel-v1", num_envs=2, seed=0)
    assert env.single_observation_space.shape == (2,)


def test_run_episodes_is_reproducible_and_splits_episodes_across_envs():
    env = envs.make("CartPole-v1", num_envs=3, seed=0, vectorization="sync")

    def policy(obs):
        return (obs[:, 2] > 0).astype(np.int64)  # push towards the pole's lean

    first = run_episodes(env, policy, episodes=5, seed=3)
    again = run_episodes(env, policy, episodes=5, seed=3)
    assert first == again and first["episodes"] == 5 and len(first["returns"]) == 5
    assert first["mean_return"] == pytest.approx(np.mean(first["returns"]))


@pytest.mark.parametrize("vectorization", ["vector", "sync", "async"])
def test_each_step_returns_fresh_observations(vectorization):
    """A single run's MemberEnvs hands on its env's observations without copying them: each step's must be new."""
    env = envs.make("CartPole-v1", 2, seed=0, vectorization=vectorization)
    env.reset()
    first, *_ = env.step(np.zeros(2, dtype=np.int64))
    kept = first.copy()
    second, *_ = env.step(np.ones(2, dtype=np.int64))
    env.close()
    assert not np.shares_memory(first, second) and np.array_equal(first, kept)


def test_member_envs_leave_the_last_observations_alone_and_a_left_out_member_where_it_was():
    seeds = (0, 1, 2)
    together = MemberEnvs([envs.make("CartPole-v1", 2, seed) for seed in seeds])
    alone = [envs.make("CartPole-v1", 2, seed) for seed in seeds]
    together.reset(seeds)
    for env, seed in zip(alone, seeds):
        env.reset(seed=seed)
    actions = np.array([[0, 1], [1, 0], [1, 1]])
    first, *_ = together.step(actions, np.ones(3, dtype=bool))
    kept = first.copy()
    second, rewards, *_ = together.step(actions, np.array([True, False, True]))
    assert np.array_equal(first, kept) and not np.shares_memory(first, second)  # the caller's last obs untouched
    assert np.array_equal(second[1], first[1]) and not rewards[1].any()  # member 1 left out
    for k in (0, 2):  # the members that stepped twice, as their own envs do
        alone[k].step(actions[k])
        assert np.array_equal(second[k], alone[k].step(actions[k])[0])
    together.close()
