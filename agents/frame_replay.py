"""Compact replay for stacked pixel observations: each frame is stored once, stacks are rebuilt when sampling.

An Atari observation is a stack of the last 4 frames (4, 84, 84) uint8, and consecutive stacks share 3 of them.
Storing (obs, next_obs) per transition costs 8 frames (56 GB for 1M transitions); SB3's optimize_memory_usage 4.
Here each env step writes one frame, so 1M transitions take about 7.06 GB.

Layout: one circular stream per vector-env slot, `capacity // num_envs` slots each. Slot t holds the newest frame
of observation t; when a transition starts there it also holds the action, the reward and the end flags, and its
next observation is slot t+1, written in the same `add` call. A stream is a run of chunks; a chunk starts at a slot
flagged FIRST (an episode's first observation) and ends with the episode. A truncated episode's final observation
gets a slot of its own (the target bootstraps from it) but takes no action; a terminated episode's final
observation is never bootstrapped from, so it is not stored at all and terminations cost no memory. The stack for
slot t is slots t-3..t, cut at the chunk's FIRST slot and padded with that frame, which is exactly what
`FrameStackObservation(padding_type="reset")` shows the agent. So stacks never mix episodes.

A slot can be sampled when a transition starts there and the stack and n-step look-ahead it needs are all still
in the buffer: not cut by the wrap-around (the oldest slots' predecessors were overwritten) and not waiting for
an action that has not happened yet (the newest slot). Sampling draws slots uniformly and redraws the few that
cannot be sampled.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from networks.errors import CheckpointError

FIRST, ACTED, TERMINATED, TRUNCATED = 1, 2, 4, 8  # bits of `flags`
ENDED = TERMINATED | TRUNCATED


class FrameBatch(NamedTuple):
    """A sampled batch, field for field agents.replay.Batch; leading dims (B,) or (G, B). Stacks stay uint8."""

    obs: torch.Tensor  # (B, stack, H, W) uint8
    actions: torch.Tensor  # (B,) int64
    rewards: torch.Tensor  # (B,) float32, n-step discounted sum of rewards
    next_obs: torch.Tensor  # (B, stack, H, W) uint8, n steps later or at truncation; where terminated: a stand-in
    terminated: torch.Tensor  # (B,) float32, 1 where the episode terminated within the n steps (no bootstrap)
    discounts: torch.Tensor  # (B,) float32, gamma ** (steps actually taken)
    indices: torch.Tensor  # (B,) int64 flat slot index env * slots_per_env + slot
    weights: torch.Tensor | None = None  # uniform sampling: no importance weights


class FrameReplay:
    """Uniform replay over stacked uint8 frames that stores one frame per env step."""

    def __init__(
        self,
        *,
        capacity: int,
        num_envs: int,
        frame_shape: tuple[int, ...],
        stack: int = 4,
        n_actions: int = 256,
        n_step: int = 1,
        gamma: float = 0.99,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ):
        if capacity < num_envs * (stack + n_step + 1):
            raise ValueError(f"capacity {capacity} is too small for {num_envs} envs with stack {stack}")
        self.num_envs, self.stack, self.n_step, self.gamma = num_envs, stack, n_step, gamma
        self.slots = capacity // num_envs  # per env stream
        self.device = torch.device(device)
        self.rng = np.random.default_rng(seed)
        action_dtype = np.uint8 if n_actions <= 256 else np.int32
        self.frames = np.zeros((num_envs, self.slots, *frame_shape), dtype=np.uint8)
        self.actions = np.zeros((num_envs, self.slots), dtype=action_dtype)
        self.rewards = np.zeros((num_envs, self.slots), dtype=np.float32)
        self.flags = np.zeros((num_envs, self.slots), dtype=np.uint8)
        self.pos = np.zeros(num_envs, dtype=np.int64)  # next slot to write, per stream
        self.written = np.zeros(num_envs, dtype=np.int64)  # slots ever written, per stream
        self.pending = np.zeros(num_envs, dtype=bool)  # slot pos-1 is the current obs, awaiting its action
        self.size = 0  # transitions held: acted slots, a little under the slots in use
        self.transitions = 0  # transitions ever added

    def __len__(self) -> int:
        return self.size

    def can_sample(self, batch_size: int) -> bool:
        return self.size >= batch_size

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.frames, self.actions, self.rewards, self.flags))

    # --- writing --------------------------------------------------------------------------------

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        next_obs: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        valid: np.ndarray | None = None,
    ) -> None:
        """One vector-env step: obs/next_obs (N, stack, H, W) uint8 stacks, the rest (N,).

        `valid` (N,) bool leaves out envs whose step was an autoreset step (NEXT_STEP mode), which are no
        transitions. `next_obs` must be the real next observation (the final one when an episode ended).
        """
        for env in range(self.num_envs) if valid is None else np.flatnonzero(valid):
            if not self.pending[env]:
                self._start_chunk(env, obs[env])
            current = (self.pos[env] - 1) % self.slots
            ended = (TERMINATED if terminated[env] else 0) | (TRUNCATED if truncated[env] else 0)
            self.actions[env, current] = actions[env]
            self.rewards[env, current] = rewards[env]
            self.flags[env, current] |= ACTED | ended
            self.size += 1
            if not terminated[env]:  # a terminal observation is never bootstrapped from: not stored
                self._write(env, next_obs[env][-1], first=False)
            self.pending[env] = not ended
            self.transitions += 1

    def _start_chunk(self, env: int, stack: np.ndarray) -> None:
        """Write the frames of a stack that does not continue the stream: the padding once, then the rest."""
        repeats = 1
        while repeats < len(stack) and np.array_equal(stack[repeats], stack[0]):
            repeats += 1  # leading copies of the first frame are the reset padding
        self._write(env, stack[0], first=True)
        for frame in stack[repeats:]:
            self._write(env, frame, first=False)

    def _write(self, env: int, frame: np.ndarray, *, first: bool) -> None:
        slot = self.pos[env]
        self.frames[env, slot] = frame
        self.size -= int(self.flags[env, slot] & ACTED != 0)  # the overwritten slot's transition is gone
        self.flags[env, slot] = FIRST if first else 0
        self.pos[env] = (slot + 1) % self.slots
        self.written[env] += 1

    # --- sampling -------------------------------------------------------------------------------

    def sample(self, batch_size: int, num_batches: int | None = None) -> FrameBatch:
        """Uniform: one batch (B, ...), or `num_batches` at once (G, B, ...)."""
        count = batch_size * (num_batches or 1)
        envs, slots = self._draw(count)
        for _ in range(100):
            bad = ~self._samplable(envs, slots)
            if not bad.any():
                break
            envs[bad], slots[bad] = self._draw(int(bad.sum()))
        else:
            raise RuntimeError("replay holds too few complete transitions to sample; add more steps first")
        batch = self._gather(envs, slots)
        if num_batches is None:
            return batch
        return FrameBatch(*(x.view(num_batches, batch_size, *x.shape[1:]) for x in batch[:7]))

    def _draw(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        filled = np.minimum(self.written, self.slots)
        envs = self.rng.choice(self.num_envs, size=n, p=filled / filled.sum())
        slots = (self.rng.random(n) * filled[envs]).astype(np.int64)
        return envs, slots

    def _oldest(self, envs: np.ndarray) -> np.ndarray:
        return np.where(self.written[envs] > self.slots, self.pos[envs], 0)

    def _stack_reach(self, envs: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """How many slots back each stack reaches: up to its chunk's FIRST slot, at most stack - 1."""
        back = np.arange(self.stack - 1)  # (S-1,) offsets 0..S-2 whose FIRST flag stops the walk
        is_first = self.flags[envs[:, None], (slots[:, None] - back) % self.slots] & FIRST  # (B, S-1)
        return np.where(is_first.any(axis=1), is_first.argmax(axis=1), self.stack - 1)

    def _lookahead(self, envs: np.ndarray, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(steps taken <= n, complete?, flags) of each n-step look-ahead (B, n)."""
        ahead = np.arange(self.n_step)
        flags = self.flags[envs[:, None], (slots[:, None] + ahead) % self.slots]  # (B, n)
        ended = (flags & ENDED) != 0
        steps = np.where(ended.any(axis=1), ended.argmax(axis=1) + 1, self.n_step)  # (B,) in 1..n
        acted = (flags & ACTED) != 0
        complete = (acted | (ahead >= steps[:, None])).all(axis=1)
        return steps, complete, flags

    def _samplable(self, envs: np.ndarray, slots: np.ndarray) -> np.ndarray:
        starts = (self.flags[envs, slots] & ACTED) != 0
        age = (slots - self._oldest(envs)) % self.slots  # slots older than this one still in the buffer
        stack_ok = age >= self._stack_reach(envs, slots)
        _, complete, _ = self._lookahead(envs, slots)
        return starts & stack_ok & complete

    def stacks(self, envs: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """(B, stack, H, W) uint8: the observation stack that ends at each slot, oldest frame first."""
        reach = self._stack_reach(envs, slots)  # (B,)
        back = np.minimum(np.arange(self.stack - 1, -1, -1)[None, :], reach[:, None])  # (B, S): S-1 .. 0
        return self.frames[envs[:, None], (slots[:, None] - back) % self.slots]

    def _gather(self, envs: np.ndarray, slots: np.ndarray) -> FrameBatch:
        steps, _, _ = self._lookahead(envs, slots)
        ahead = np.arange(self.n_step)
        taken = ahead[None, :] < steps[:, None]  # (B, n)
        idx = (slots[:, None] + ahead) % self.slots
        rewards = (self.rewards[envs[:, None], idx] * self.gamma**ahead * taken).sum(axis=1)
        last = (slots + steps - 1) % self.slots
        dones = (self.flags[envs, last] & TERMINATED) != 0
        # A terminated look-ahead has no next observation (its value is multiplied by 0): the last stack stands in.
        next_slots = np.where(dones, last, (slots + steps) % self.slots)

        def tensor(array: np.ndarray, dtype: torch.dtype | None = None) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(array)).to(self.device, dtype=dtype)

        return FrameBatch(
            obs=tensor(self.stacks(envs, slots)),
            actions=tensor(self.actions[envs, slots], torch.int64),
            rewards=tensor(rewards.astype(np.float32)),
            next_obs=tensor(self.stacks(envs, next_slots)),
            terminated=tensor(dones.astype(np.float32)),
            discounts=tensor((self.gamma**steps).astype(np.float32)),
            indices=torch.from_numpy(envs * self.slots + slots),
        )

    # --- checkpointing --------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {
            "frames": self.frames,
            "actions": self.actions,
            "rewards": self.rewards,
            "flags": self.flags,
            "pos": self.pos,
            "written": self.written,
            "pending": self.pending.astype(np.uint8),
            "transitions": self.transitions,
        }

    def load_state_dict(self, state: dict) -> None:
        for name in ("frames", "actions", "rewards", "flags", "pos", "written"):
            value = np.asarray(state.get(name))
            if value.shape != getattr(self, name).shape:
                raise CheckpointError(
                    f"replay.{name}: checkpoint shape {value.shape} does not match {getattr(self, name).shape} "
                    "(was it saved with another buffer_size, num_envs or env?)"
                )
            getattr(self, name)[...] = value
        # The env restarts its episodes on resume, so no stream continues: each starts a new chunk.
        self.pending[:] = False
        self.size = int(np.count_nonzero(self.flags & ACTED))
        self.transitions = int(state.get("transitions", self.size))
