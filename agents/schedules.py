"""Schedules over training progress (exploration ε, prioritized replay's β)."""

from __future__ import annotations


def linear_schedule(start: float, end: float, duration: float, step: float) -> float:
    """`start` at step 0, `end` from `duration` on, linear in between (SB3's `get_linear_fn`)."""
    if duration <= 0:
        return end
    return start + (end - start) * min(1.0, step / duration)


def crossed(before: int, after: int, every: int) -> bool:
    """True when a multiple of `every` lies in (before, after]: a step counter that moves by more than 1
    (num_envs transitions per vector step) still hits each 'every N steps' event exactly once."""
    return every > 0 and after // every > before // every
