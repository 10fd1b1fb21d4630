"""Pixel and memory envs (Atari, MiniGrid, CartPoleNoVel, toy-text) and a few hundred steps of the CNN DQN configs.

The configs run on tiny budgets: they prove shapes, dtypes and preprocessing, not learning (benchmarks/ does that).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs
from agents import dqn, evaluation
from agents.frame_replay import FrameReplay
from launch.config import load_config
from launch.tracking import LocalTracker


def test_atari_preprocessing_and_frame_stack():
    from envs.atari import make_single

    env = make_single("ALE/Breakout-v5", clip_rewards=True)
    assert env.observation_space.shape == (4, 84, 84) and env.observation_space.dtype == np.uint8
    assert env.unwrapped._frameskip == 1  # the base env does not skip: AtariPreprocessing does (4)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.uint8 and all(np.array_equal(obs[i], obs[3]) for i in range(3))  # reset padding
    rewards = set()
    for _ in range(60):
        next_obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        np.testing.assert_array_equal(next_obs[:3], obs[1:])  # the stack shifts by one frame, newest last
        rewards.add(reward)
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
    assert rewards <= {-1.0, 0.0, 1.0}
    env.close()


def test_atari_through_the_factory_is_a_vector_env():
    env = envs.make("ALE/Pong-v5", num_envs=2, seed=0)
    obs, _ = env.reset()
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    assert env.single_action_space.n == 6
    env.close()


def test_minigrid_image_is_channels_first_uint8_without_mission():
    from envs.minigrid import SYMBOL_SCALE, make_single

    env = make_single("MiniGrid-DoorKey-5x5-v0")
    obs, _ = env.reset(seed=0)
    assert isinstance(obs, np.ndarray) and obs.shape == (3, 7, 7) and obs.dtype == np.uint8
    raw = env.unwrapped.gen_obs()["image"]  # (7, 7, 3) symbolic: object, colour, state
    np.testing.assert_array_equal(obs, (raw * SYMBOL_SCALE).transpose(2, 0, 1))
    assert obs.max() <= 255 and len(np.unique(obs[0])) > 2
    vec = envs.make("MiniGrid-DoorKey-5x5-v0", num_envs=2, seed=0)
    assert vec.reset()[0].shape == (2, 3, 7, 7)
    vec.close()


def test_cartpole_novel_drops_the_velocities():
    single = envs.make("dlforge/CartPoleNoVel-v1", num_envs=1, seed=3, vectorization="sync")
    full = envs.make("CartPole-v1", num_envs=1, seed=3, vectorization="sync")
    (novel, _), (cartpole, _) = single.reset(), full.reset()
    assert novel.shape == (1, 2)
    np.testing.assert_array_equal(novel, cartpole[:, [0, 2]])
    for _ in range(5):
        novel, *_ = single.step(np.array([1]))
        cartpole, *_ = full.step(np.array([1]))
        np.testing.assert_array_equal(novel, cartpole[:, [0, 2]])
    native = envs.make("dlforge/CartPoleNoVel-v1", num_envs=8, seed=0)  # the native vector entry point
    assert native.reset()[0].shape == (8, 2) and native.single_observation_space.shape == (2,)
    assert gym.spec("dlforge/CartPoleNoVel-v1").max_episode_steps == 500


@pytest.mark.parametrize(
    "env_id, kwargs", [("FrozenLake-v1", {"is_slippery": False}), ("Taxi-v4", {}), ("CliffWalking-v1", {})]
)
def test_toy_text_envs_are_discrete(env_id, kwargs):
    env = envs.make(env_id, seed=0, **kwargs)
    assert isinstance(env.single_observation_space, gym.spaces.Discrete)
    assert isinstance(env.single_action_space, gym.spaces.Discrete)
    env.close()


def run_config(tmp_path, path: str, overrides: list[str]):
    spec = load_config(path, ["device=cpu", "torch_threads=1", *overrides])
    tracker = LocalTracker(tmp_path / "run")
    env = evaluation.make_env(spec.config, 1, 0)
    q_net = dqn.build_q_network(spec.config, env)
    replay = dqn.make_replay(spec.config, env, "cpu")
    summary = dqn.train(spec.config, tracker)
    tracker.close()
    return spec, env, q_net, replay, summary


@pytest.mark.slow
def test_pong_config_runs_nature_cnn_on_uint8_stacks_with_compact_replay(tmp_path):
    spec, env, q_net, replay, summary = run_config(
        tmp_path,
        "configs/dqn/pong.yaml",
        [
            "total_steps=300",
            "learning_starts=100",
            "buffer_size=2000",
            "batch_size=8",
            "eval_every=0",
            "eval_episodes=1",
            "env_kwargs.max_episode_steps=400",  # 400 frames: a 100-step evaluation episode
        ],
    )
    assert spec.config.network["type"] == "nature_cnn" and spec.config.compact_replay
    assert env.single_observation_space.shape == (4, 84, 84) and env.single_observation_space.dtype == np.uint8
    assert q_net.pixels  # uint8 in, scaled by 1/255 inside the network
    assert isinstance(replay.replays[0], FrameReplay)  # behind the member-axis API (agents/replay.py PerMember)
    assert summary["global_step"] == 300 and summary["charts/updates"] > 0
    assert np.isfinite(summary["eval/mean_return"])


@pytest.mark.slow
def test_minigrid_config_runs_small_cnn(tmp_path):
    spec, env, q_net, replay, summary = run_config(
        tmp_path,
        "configs/dqn/minigrid-doorkey.yaml",
        [
            "total_steps=400",
            "learning_starts=100",
            "eval_every=0",
            "eval_episodes=2",
        ],
    )
    assert env.single_observation_space.shape == (3, 7, 7) and q_net.pixels
    assert summary["global_step"] >= 400 and summary["charts/updates"] > 0
    assert 0.0 <= summary["eval/mean_return"] <= 1.0
