"""Every member's envs of a population, stepped as one vector env: arrays (P, num_envs, ...).

Member k's envs are the very vector env its single run makes (`envs.make(env_id, num_envs, seed_k, ...)`), so each
member sees its single run's episodes. One vector env of P x num_envs copies would not: Gymnasium's native CartPole
vector env draws every sub-env's state from one generator, and a sync env would seed sub-env i with seed + i across
all members. `step` can leave members out (a stopped member, or one that is not resetting): their rows keep their
last observation and report no transition.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np


class MemberEnvs:
    """P vector envs of one env id, each with `num_envs` copies, stepped together."""

    def __init__(self, member_envs: Sequence[gym.vector.VectorEnv]):
        self.envs = list(member_envs)
        self.members, self.num_envs = len(self.envs), self.envs[0].num_envs
        self.single_observation_space = self.envs[0].single_observation_space
        self.single_action_space = self.envs[0].single_action_space
        self.obs: np.ndarray | None = None  # (P, num_envs, ...): each member's latest observation

    def reset(self, seeds: Sequence[int]) -> tuple[np.ndarray, list[dict]]:
        """Reset member k's envs with `seeds[k]` (its single run's `env.reset(seed=...)`)."""
        results = [env.reset(seed=int(seed)) for env, seed in zip(self.envs, seeds)]
        self.obs = self._stack([obs for obs, _ in results])
        return self.obs, [info for _, info in results]

    def step(self, actions: np.ndarray, stepping: np.ndarray) -> tuple[np.ndarray, ...]:
        """Step the members where `stepping` (P,) is true with their `actions` (P, num_envs). Returns obs, rewards,
        terminated, truncated (P, num_envs, ...) and one info per member ({} for a member left out)."""
        members = np.flatnonzero(stepping)
        if len(members) == self.members == 1:  # a single run: its own env's arrays (fresh each step), member axis on
            obs, rewards, terminated, truncated, info = self.envs[0].step(actions[0])
            self.obs = obs[None]
            return self.obs, rewards[None], terminated[None], truncated[None], [info]
        shape = (self.members, self.num_envs)
        rewards, terminated, truncated = np.zeros(shape), np.zeros(shape, bool), np.zeros(shape, bool)
        # A new array, as the caller still holds the last one (the transition's obs); each row is written once:
        # a member's new observation, or the last one of a member left out
        obs, infos = np.empty_like(self.obs), [{} for _ in range(self.members)]
        left_out = ~np.asarray(stepping, dtype=bool)
        obs[left_out] = self.obs[left_out]
        for k in members:
            obs[k], rewards[k], terminated[k], truncated[k], infos[k] = self.envs[k].step(actions[k])
        self.obs = obs
        return obs, rewards, terminated, truncated, infos

    def close(self) -> None:
        for env in self.envs:
            env.close()

    @staticmethod
    def _stack(arrays: list[np.ndarray]) -> np.ndarray:
        return arrays[0][None] if len(arrays) == 1 else np.stack(arrays)
