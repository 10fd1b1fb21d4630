"""Greedy evaluation for the off-policy agents: the envs a run makes (`make_env`, `make_eval_env`), a member's
greedy episodes during training (`evaluate_net`), and a checkpoint's (`evaluate_checkpoint`, `play`). The episodes
themselves are envs/evaluation.py's: env i of a sync vector env seeded seed + i, so the same seed gives the same
returns.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import envs
from envs.evaluation import Policy, StatefulPolicy, record_episode, run_episodes, run_member_episodes
from envs.members import MemberEnvs
from networks import io
from networks.batched import Members
from networks.errors import CheckpointError
from networks.runtime import resolve_device

EVAL_SEED_OFFSET = 10_000  # evaluation episodes never share seeds with training ones
MAX_EVAL_ENVS = 32


def make_env(config, num_envs: int, seed: int, **kwargs) -> gym.vector.VectorEnv:
    return envs.make(config.env_id, num_envs=num_envs, seed=seed, **kwargs, **config.env_kwargs)


def make_eval_env(config) -> gym.vector.VectorEnv:
    """Separate envs for greedy evaluations during training (sync: env i is seeded seed + i)."""
    return make_env(config, min(config.eval_episodes, MAX_EVAL_ENVS), config.seed, vectorization="sync")


def evaluate_net(q_net: nn.Module, env: gym.vector.VectorEnv, episodes: int, seed: int, policy: Policy) -> dict:
    """`episodes` episodes of `policy` (greedy on `q_net`) on a sync vector env: see envs/evaluation.py."""
    q_net.eval()
    result = run_episodes(env, policy, episodes, seed)
    q_net.train()
    return result


def evaluate_members(
    q_net: Members, envs: list[gym.vector.VectorEnv], rows: list[int], episodes: int, seeds: list[int], policy: Policy
) -> list[dict]:
    """The greedy episodes of the members `rows` at once, member rows[i] on its own eval env `envs[i]` (made by
    `make_eval_env`) seeded seeds[i]: one forward of `q_net` (every member) per step, `policy` its greedy policy,
    obs (P, n, ...) -> actions (P, n). Member rows[i]'s result is what `evaluate_net` gives on its own network
    (to float rounding of the batched forward; bit for bit with `exact`)."""
    q_net.eval()
    results = run_member_episodes(MemberEnvs(envs), _Rows(policy, rows, q_net.size), episodes, seeds)
    q_net.train()
    return results


class _Rows:
    """A policy of every member, (P, n, ...) -> (P, n), as one of the members `rows` only, (len(rows), n, ...):
    the other members see zeros and their actions are dropped."""

    def __init__(self, policy: Policy, rows: list[int], size: int):
        self.policy, self.rows, self.size = policy, np.asarray(rows), size
        self.every = list(rows) == list(range(size))
        self.stateful = isinstance(policy, StatefulPolicy)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        if self.every:
            return self.policy(obs)
        full = np.zeros((self.size, *obs.shape[1:]), dtype=obs.dtype)
        full[self.rows] = obs
        return self.policy(full)[self.rows]

    def episode_start(self, starting: np.ndarray) -> None:
        if not self.stateful:
            return
        if not self.every:
            starting, rows = np.ones((self.size, starting.shape[1]), dtype=bool), starting
            starting[self.rows] = rows
        self.policy.episode_start(starting)


def evaluate_checkpoint(
    config,
    tree: dict,
    kind: str,
    build_q_network: Callable[[Any, gym.vector.VectorEnv], nn.Module],
    greedy: Callable[[nn.Module, torch.device], Policy],
    episodes: int,
    seed: int,
    video_path: Path | None,
    trajectories: bool = False,
) -> dict:
    """Greedy episodes with a checkpoint's Q-network (built by `build_q_network`, played by `greedy(q_net, device)`):
    see `play`."""
    device = resolve_device(config.device)
    env = make_env(config, min(episodes, MAX_EVAL_ENVS), seed, vectorization="sync")
    q_net = build_q_network(config, env).to(device)
    if not isinstance(tree, dict) or "q_net" not in tree:
        raise CheckpointError(f"checkpoint holds no 'q_net' (is it a {kind} run?)")
    io.load_module_state(q_net, tree["q_net"], "q_net")
    q_net.eval()
    return play(config, env, lambda: greedy(q_net, device), episodes, seed, video_path, trajectories)


def play(
    config,
    env: gym.vector.VectorEnv,
    policy: Callable[[], Policy],
    episodes: int,
    seed: int,
    video_path: Path | None,
    trajectories: bool = False,
) -> dict:
    """`episodes` episodes of a fresh `policy()` on `env` (sync, made by `make_env` with up to MAX_EVAL_ENVS envs;
    closed here), env i seeded seed + i: the same seed gives the same returns. With `video_path`, also writes an
    mp4 of the first episode; with `trajectories`, returns the episodes' steps too (envs/evaluation.py)."""
    result = run_episodes(env, policy(), episodes, seed, trajectories=trajectories)
    env.close()
    if video_path is not None:
        video_env = make_env(config, 1, seed, vectorization="sync", render_mode="rgb_array")
        result["video"] = str(record_episode(video_env, policy(), seed, Path(video_path)))
        video_env.close()
    return result
