"""Schedules over training progress (exploration ε, prioritized replay's β, the learning rate) and the cadence test.

`Schedules` holds a run's numbers (from its config) and gives each schedule's value at an env step. A population of
runs trained as one network will hold one value per member, so `linear_schedule` is elementwise, taking NumPy
arrays for `start`, `end` and `duration` as well as floats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def linear_schedule(start, end, duration, step: float):
    """`start` at step 0, `end` from `duration` on, linear in between (SB3's `get_linear_fn`)."""
    if isinstance(duration, int | float):  # one run: plain floats (this runs every env step; NumPy costs more)
        if duration <= 0:
            return end
        return start + (end - start) * min(1.0, step / duration)
    duration = np.asarray(duration, dtype=np.float64)  # one value per member
    fraction = np.minimum(1.0, step / np.where(duration > 0, duration, 1.0))
    return np.where(duration > 0, start + (np.asarray(end) - start) * fraction, end)


def crossed(before: int, after: int, every: int) -> bool:
    """True when a multiple of `every` lies in (before, after]: a step counter that moves by more than 1
    (num_envs transitions per vector step) still hits each 'every N steps' event exactly once."""
    return every > 0 and after // every > before // every


@dataclass(frozen=True)
class Schedules:
    """ε, β and the learning rate at an env step, each linear over the run as in SB3 / rl-zoo3. The numbers
    come from the config; a population will give one per member (arrays: `linear_schedule` is elementwise)."""

    total_steps: int
    learning_starts: int
    epsilon_initial: float
    epsilon_final: float
    epsilon_steps: float  # exploration_fraction of the run
    beta0: float
    anneal_beta: bool
    learning_rate: float
    learning_rate_final: float | None

    @classmethod
    def of(cls, config) -> Schedules:
        return cls(
            total_steps=config.total_steps,
            learning_starts=config.learning_starts,
            epsilon_initial=config.exploration_initial_eps,
            epsilon_final=config.exploration_final_eps,
            epsilon_steps=config.exploration_fraction * config.total_steps,
            beta0=config.prioritized.beta0,
            anneal_beta=config.prioritized.anneal_beta,
            learning_rate=config.learning_rate,
            learning_rate_final=config.learning_rate_final,
        )

    def epsilon(self, step: int) -> float:
        """SB3: random actions until learning starts, then a linear decay counted from step 0."""
        if step < self.learning_starts:
            return 1.0
        return linear_schedule(self.epsilon_initial, self.epsilon_final, self.epsilon_steps, step)

    def beta(self, step: int) -> float:
        """Prioritized replay's importance exponent: beta0 -> 1 over the run (Schaul et al. 2016)."""
        return linear_schedule(self.beta0, 1.0, self.total_steps, step) if self.anneal_beta else self.beta0

    def lr(self, step: int) -> float:
        """Linear decay to learning_rate_final over the run (rl-zoo3's `lin_`), else constant."""
        if self.learning_rate_final is None:
            return self.learning_rate
        return linear_schedule(self.learning_rate, self.learning_rate_final, self.total_steps, step)
