"""CartPole without velocities: `dlforge/CartPoleNoVel-v1`, a task that needs memory.

CartPole's observation is (cart position, cart velocity, pole angle, pole angular velocity). Dropping the two
velocities leaves (x, theta): a single frame cannot tell which way the pole is falling, so a feed-forward Q
network is stuck near random play while a recurrent one can infer the velocities from the history.

Importing this module registers the id with Gymnasium, with both a single-env entry point and a native vector
entry point (Gymnasium's `CartPoleVectorEnv` plus one column selection), so `envs.make` is as fast here as on
CartPole-v1.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleEnv, CartPoleVectorEnv
from gymnasium.wrappers.vector import TransformObservation as VectorTransformObservation

ENV_ID = "dlforge/CartPoleNoVel-v1"
KEEP = [0, 2]  # cart position, pole angle; velocities at 1 and 3 are dropped


def _position_space(space: gym.spaces.Box) -> gym.spaces.Box:
    return gym.spaces.Box(low=space.low[..., KEEP], high=space.high[..., KEEP], dtype=space.dtype)


class NoVelocityObservation(gym.ObservationWrapper):
    """Keeps only the position entries of a CartPole observation: (4,) -> (2,)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.observation_space = _position_space(env.observation_space)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation[KEEP]


def make_cartpole_novel(**kwargs) -> gym.Env:
    """Single-env entry point (kwargs go to CartPoleEnv, e.g. render_mode)."""
    return NoVelocityObservation(CartPoleEnv(**kwargs))


def make_cartpole_novel_vector(num_envs: int = 1, **kwargs) -> gym.vector.VectorEnv:
    """Vector entry point: the native CartPoleVectorEnv with the velocity columns dropped."""
    env = CartPoleVectorEnv(num_envs=num_envs, **kwargs)
    return VectorTransformObservation(
        env,
        lambda obs: obs[:, KEEP],
        observation_space=_position_space(env.observation_space),
        single_observation_space=_position_space(env.single_observation_space),
    )


if ENV_ID not in gym.registry:
    gym.register(
        id=ENV_ID,
        entry_point="envs.novel:make_cartpole_novel",
        vector_entry_point="envs.novel:make_cartpole_novel_vector",
        max_episode_steps=500,  # as CartPole-v1
        reward_threshold=475.0,
    )
