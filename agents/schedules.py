"""Schedules over training progress (exploration ε, prioritized replay's β, the learning rate) and the cadence test.

A population of runs trained as one network will pass one value per member, so `linear_schedule` is elementwise,
taking NumPy arrays (one value per member) for `start`, `end` and `duration` as well as floats.
"""

from __future__ import annotations

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
