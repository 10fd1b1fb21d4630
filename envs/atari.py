"""Atari through ale-py, with the standard DQN preprocessing (Mnih et al. 2015; Machado et al. 2018).

`make_single("ALE/Pong-v5")` builds the base env with `frameskip=1` (as AtariPreprocessing requires), then:
no-op starts (up to 30), frame skip 4 with a max over the last two frames, 84x84 grayscale uint8, optional
episode end on life loss, optional reward clipping to {-1, 0, +1}, and a stack of the last 4 frames.

Observations are (4, 84, 84) uint8, oldest frame first. At reset the stack is the first frame repeated
(`FrameStackObservation(padding_type="reset")`), so `obs[-1]` is always the newest frame: compact replay
(agents/frame_replay.py) stores only that frame and rebuilds the stack the same way when it samples.
The ROMs ship inside the ale-py wheel, so this works offline.
"""

from __future__ import annotations

import ale_py
import gymnasium as gym
import numpy as np
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation, TransformReward

gym.register_envs(ale_py)

FRAME_STACK = 4  # Mnih et al. 2015, rl-zoo3's Atari block


def make_single(
    env_id: str,
    render_mode: str | None = None,
    *,
    frame_stack: int = FRAME_STACK,
    noop_max: int = 30,  # Mnih et al. 2015
    frame_skip: int = 4,  # Mnih et al. 2015
    screen_size: int = 84,
    terminal_on_life_loss: bool = False,  # Gymnasium's: a life lost ends (and resets) the episode
    clip_rewards: bool = False,  # sign of the reward; Pong's rewards are already in {-1, 0, 1}
    **env_kwargs,
) -> gym.Env:
    """One preprocessed Atari env. `env_kwargs` go to the ALE env (e.g. repeat_action_probability=0.0)."""
    env = gym.make(env_id, render_mode=render_mode, frameskip=1, **env_kwargs)
    env = AtariPreprocessing(
        env,
        noop_max=noop_max,
        frame_skip=frame_skip,
        screen_size=screen_size,
        terminal_on_life_loss=terminal_on_life_loss,
        grayscale_obs=True,
        scale_obs=False,  # keep uint8: agents divide by 255 on the device, replay stays 1 byte per pixel
    )
    if clip_rewards:
        env = TransformReward(env, lambda r: float(np.sign(r)))
    if frame_stack > 1:
        env = FrameStackObservation(env, frame_stack, padding_type="reset")
    return env
