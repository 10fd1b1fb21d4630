"""MiniGrid (`MiniGrid-*`) as an image env: the agent's 7x7 view, channels first, uint8; the mission is dropped.

MiniGrid's image is symbolic: per cell (object index 0-10, colour index 0-5, door state 0-2). Agents divide
uint8 observations by 255, which would squeeze these small integers into [0, 0.04], so by default each channel is
stretched to span 0-255 (object x25, colour x51, state x127). The values stay exact integers and keep their order.
"""

from __future__ import annotations

import gymnasium as gym
import minigrid  # noqa: F401  (registers the MiniGrid-* ids)
import numpy as np
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX
from minigrid.wrappers import ImgObsWrapper

# Per-channel factor that maps the largest index of that channel to <= 255.
SYMBOL_SCALE = np.array(
    [255 // max(OBJECT_TO_IDX.values()), 255 // max(COLOR_TO_IDX.values()), 255 // max(STATE_TO_IDX.values())],
    dtype=np.uint8,
)


class ChannelsFirstImage(gym.ObservationWrapper):
    """(H, W, C) uint8 -> (C, H, W) uint8, optionally scaling each channel by `scale` (C,)."""

    def __init__(self, env: gym.Env, scale: np.ndarray | None = None):
        super().__init__(env)
        h, w, c = env.observation_space.shape
        self.scale = scale
        self.observation_space = gym.spaces.Box(0, 255, (c, h, w), dtype=np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        if self.scale is not None:
            observation = observation * self.scale  # uint8 * uint8, no overflow: indices * scale <= 255
        return np.ascontiguousarray(observation.transpose(2, 0, 1))


def make_single(env_id: str, render_mode: str | None = None, *, scale_symbols: bool = True, **env_kwargs) -> gym.Env:
    """One MiniGrid env with a (3, 7, 7) uint8 observation. `env_kwargs` go to the MiniGrid env."""
    env = gym.make(env_id, render_mode=render_mode, **env_kwargs)
    env = ImgObsWrapper(env)  # drops 'mission' and 'direction'
    return ChannelsFirstImage(env, SYMBOL_SCALE if scale_symbols else None)
