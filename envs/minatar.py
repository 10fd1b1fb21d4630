"""MinAtar (Young & Tian 2019): five Atari games on a 10x10 grid, small enough to train a pixel agent on a CPU.

Importing this module registers `MinAtar/<Game>-v1` for Asterix, Breakout, Freeway, Seaquest and SpaceInvaders,
with the game's minimal action set (the package's v1 ids; gymnax and purejaxql use these sets too).
`minimal_actions=False` (env_kwargs) gives all 6 actions, as the paper's experiments use (its `examples/dqn.py`
takes `env.num_actions()`). The games themselves come from the `minatar` package (GPL-3.0); its own Gymnasium
registration is not used, because its observations are channels-last bool arrays.

- Observations are (C, 10, 10) uint8, one channel per object kind, each cell 0 or 255: agents divide uint8
  observations by 255, which gives back the paper's binary input.
- Sticky actions: with probability `sticky_action_prob` (the paper's 0.1, after Machado et al. 2018) the
  previous action is repeated instead of the chosen one. The previous action restarts as no-op at every reset,
  as in the ALE, so a seeded reset replays exactly.
- Episodes end by the game's own rules (terminated). The paper sets no time limit; `MAX_EPISODE_STEPS` is added
  as a truncation so that greedy evaluation of a strong agent always ends (`max_episode_steps` in env_kwargs
  changes it, `None` removes it).
- `render_mode="rgb_array"` draws each cell as a CELL_PIXELS square in MinAtar's own palette (cubehelix, black
  background), so `dlforge eval --video` works.

Speed (benchmarks/minatar_speed.py): the games are pure Python, 6-27 us a step bare (Space Invaders the slowest),
13-47 us through a 64-env vector env; training the paper's CNN costs more per agent step, so stepping is not
batched natively.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from minatar import Environment

# registered name -> the minatar package's module name
GAMES = {
    "Asterix": "asterix",
    "Breakout": "breakout",
    "Freeway": "freeway",
    "Seaquest": "seaquest",
    "SpaceInvaders": "space_invaders",
}
STICKY_ACTION_PROB = 0.1  # Young & Tian 2019, as Machado et al. 2018 recommend for the ALE
MAX_EPISODE_STEPS = 10_000  # dlforge: not in the paper; far beyond a DQN agent's episodes (a few hundred steps)
CELL_PIXELS = 16  # a 10x10 grid renders as 160x160 RGB
ON = 255  # the value of an occupied cell


class MinAtarEnv(gym.Env):
    """One MinAtar game as a Gymnasium env: (C, 10, 10) uint8 observations, sticky actions, rgb_array render."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(
        self,
        game: str,
        *,
        minimal_actions: bool = True,
        sticky_action_prob: float = STICKY_ACTION_PROB,
        difficulty_ramping: bool = True,  # the package's default: some games speed up as the episode goes on
        render_mode: str | None = None,
    ):
        if game not in GAMES.values():
            raise ValueError(f"unknown MinAtar game {game!r}; allowed: {', '.join(GAMES.values())}")
        if not 0 <= sticky_action_prob <= 1:
            raise ValueError(f"sticky_action_prob must be in [0, 1], got {sticky_action_prob!r}")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.game = Environment(game, sticky_action_prob=sticky_action_prob, difficulty_ramping=difficulty_ramping)
        self.render_mode = render_mode
        self.actions = self.game.minimal_action_set() if minimal_actions else list(range(self.game.num_actions()))
        height, width, channels = self.game.state_shape()
        self.action_space = gym.spaces.Discrete(len(self.actions))
        self.observation_space = gym.spaces.Box(0, ON, (channels, height, width), dtype=np.uint8)
        self._seeded = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or not self._seeded:  # the game's own RNG (starts, spawns, sticky draws) from ours
            self.game.seed(int(self.np_random.integers(2**31)))
            self._seeded = True
        self.game.reset()
        self.game.last_action = 0  # no-op: the sticky action does not leak across episodes
        return self._observation(), {}

    def step(self, action):
        reward, terminated = self.game.act(self.actions[int(action)])
        return self._observation(), float(reward), bool(terminated), False, {}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        state = self.game.state()  # (10, 10, C) bool
        channels = state.shape[-1]
        # Each cell shows its highest occupied channel (0 = empty), as MinAtar's own display does.
        index = np.amax(state * np.arange(1, channels + 1, dtype=np.uint8), axis=2)  # (10, 10)
        cells = _palette(channels)[index]  # (10, 10, 3)
        return np.repeat(np.repeat(cells, CELL_PIXELS, axis=0), CELL_PIXELS, axis=1)  # (160, 160, 3)

    def _observation(self) -> np.ndarray:
        return np.ascontiguousarray(self.game.state().transpose(2, 0, 1)).view(np.uint8) * np.uint8(ON)


def _palette(channels: int) -> np.ndarray:
    """(channels + 1, 3) uint8: black for empty cells, then seaborn's cubehelix colours, as minatar's display."""
    import seaborn  # only for rendering; the minatar package depends on it

    colours = [(0.0, 0.0, 0.0), *seaborn.color_palette("cubehelix", channels)]
    return np.round(np.asarray(colours) * 255).astype(np.uint8)


def _register() -> None:
    for name, game in GAMES.items():
        env_id = f"MinAtar/{name}-v1"
        spec = gym.registry.get(env_id)
        if spec is not None and spec.entry_point == "envs.minatar:MinAtarEnv":
            continue
        # overrides minatar.gym's registration of the same id, if something registered that first
        gym.register(
            id=env_id,
            entry_point="envs.minatar:MinAtarEnv",
            kwargs={"game": game},
            max_episode_steps=MAX_EPISODE_STEPS,
        )


_register()
