"""Experience replay for DQN: preallocated arrays, n-step returns, uniform or prioritized sampling.

Transitions arrive from a vector env one step at a time, `(num_envs, ...)` arrays at once, with a
`valid` mask: in Gymnasium's NEXT_STEP autoreset mode the step after an episode ends only resets that
env (its action is ignored), so it is not a transition and is never stored.

n-step returns are folded in as transitions arrive (`NStepFolder`): each env keeps its last n steps,
and a transition is written once its n rewards are known, or as soon as its episode ends (then with
fewer rewards). Each stored row holds what the TD target needs: obs, action, the summed discounted
reward, the observation to bootstrap from, whether the episode terminated, and γ^k for the k rewards
folded in. Terminated episodes do not bootstrap; truncated ones (time limits) do.

Storage is one NumPy array per field, allocated up front, with a torch view of the same memory, so
writes are plain NumPy row copies and sampling is one torch gather per field (a whole training phase
of batches at once, for uniform sampling). Prioritized replay (Schaul et al. 2016, proportional) keeps
priorities in `SumTree`, a binary tree in one array whose updates and searches are vectorised over
the batch.
"""

from __future__ import annotations

from collections import deque
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch

from agents import losses
from networks.errors import CheckpointError


@runtime_checkable
class Replay(Protocol):
    """What the off-policy loop (agents/offpolicy.py) asks of a replay: ReplayBuffer here, FrameReplay
    (agents/frame_replay.py) and EpisodeReplay (agents/episode_replay.py). Arrays are (num_envs, ...)."""

    def add(self, obs, actions, rewards, next_obs, terminated, truncated, valid) -> None:
        """One vector-env step; rows where `valid` is False (autoreset steps) hold no transition."""

    def can_sample(self, batch_size: int) -> bool:
        """Whether `sample(batch_size)` can draw a batch now."""

    def sample(self, batch_size: int) -> Any:
        """A batch of `batch_size` transitions (or sequences), as tensors on the learner's device."""

    def __len__(self) -> int:
        """Transitions held."""

    def state_dict(self) -> dict:
        """What a checkpoint keeps (arrays and JSON values only)."""

    def load_state_dict(self, state: dict) -> None:
        """Undo `state_dict`; CheckpointError when it does not fit this replay."""


class Batch(NamedTuple):
    """A sampled batch; leading dims (B,) or (G, B) for G batches at once."""

    obs: torch.Tensor  # (B, *obs_shape), the env's dtype (float32, or uint8 for pixels)
    actions: torch.Tensor  # (B,) int64
    rewards: torch.Tensor  # (B,) float32, Σ_{i<k} γ^i r_i
    next_obs: torch.Tensor  # (B, *obs_shape), the state k steps on, to bootstrap from
    terminated: torch.Tensor  # (B,) float32, 1 when the episode terminated within those k steps
    discounts: torch.Tensor  # (B,) float32, γ^k
    indices: torch.Tensor  # (B,) int64 slots, for prioritized updates
    weights: torch.Tensor | None = None  # (B,) float32 importance weights (prioritized only)


class SumTree:
    """Leaves hold priorities, each inner node the sum of its two children; node 1 is the root.

    `nodes` has 2L entries for L leaves (L a power of two ≥ capacity); leaf i is node L + i.
    Updates rewrite the touched leaves, then recompute their ancestors level by level from the
    children (no running deltas, so no float drift); `find` walks all B prefixes down at once.
    """

    def __init__(self, capacity: int):
        self.num_leaves = 1 << max(capacity - 1, 0).bit_length()
        self.depth = self.num_leaves.bit_length() - 1
        self.nodes = np.zeros(2 * self.num_leaves, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self.nodes[1])

    @property
    def leaves(self) -> np.ndarray:
        return self.nodes[self.num_leaves :]

    def update(self, indices: np.ndarray, values: np.ndarray) -> None:
        nodes = np.asarray(indices, dtype=np.int64) + self.num_leaves
        self.nodes[nodes] = values
        for _ in range(self.depth):
            nodes = np.unique(nodes >> 1)
            self.nodes[nodes] = self.nodes[2 * nodes] + self.nodes[2 * nodes + 1]

    def find(self, prefix_sums: np.ndarray) -> np.ndarray:
        """For each value v in [0, total): the leaf i with Σ_{j<i} p_j <= v < Σ_{j<=i} p_j."""
        nodes = np.ones(len(prefix_sums), dtype=np.int64)
        remaining = np.asarray(prefix_sums, dtype=np.float64).copy()
        for _ in range(self.depth):
            left = 2 * nodes
            go_right = remaining >= self.nodes[left]
            remaining -= np.where(go_right, self.nodes[left], 0.0)
            nodes = left + go_right
        return nodes - self.num_leaves


class NStepFolder:
    """Per env, the last n steps; emits (obs, action, Σγ^i r_i, next_obs, terminated, γ^k) rows."""

    def __init__(self, num_envs: int, n_step: int, gamma: float):
        self.n_step, self.gamma = n_step, gamma
        self.windows = [deque() for _ in range(num_envs)]  # (obs, action, reward) per pending step

    def fold(self, env: int, obs, action, reward: float, next_obs, terminated: bool, truncated: bool) -> list:
        window = self.windows[env]
        window.append((obs, action, float(reward)))
        rows = []
        episode_over = terminated or truncated
        while window and (episode_over or len(window) == self.n_step):
            rewards = [step[2] for step in window]
            first_obs, first_action, _ = window.popleft()
            rows.append(
                (
                    first_obs,
                    first_action,
                    losses.n_step_return(rewards, self.gamma),
                    next_obs,
                    terminated,
                    self.gamma ** len(rewards),
                )
            )
        return rows

    def reset(self) -> None:
        for window in self.windows:
            window.clear()


class ReplayBuffer:
    """Fixed-capacity ring of transitions (see the module docstring)."""

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype,
        num_envs: int,
        *,
        gamma: float,
        n_step: int = 1,
        prioritized: bool = False,
        alpha: float = 0.6,
        priority_eps: float = 1e-6,
        device: torch.device | str = "cpu",
    ):
        self.capacity, self.device = capacity, torch.device(device)
        self.obs = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.next_obs = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.discounts = np.zeros(capacity, dtype=np.float32)
        self.fields = ("obs", "actions", "rewards", "next_obs", "terminated", "discounts")
        self.views = {name: torch.from_numpy(getattr(self, name)) for name in self.fields}  # same memory
        self.pos, self.size = 0, 0
        self.folder = NStepFolder(num_envs, n_step, gamma) if n_step > 1 else None
        self.one_step_discounts = np.full(num_envs, gamma, dtype=np.float32)
        self.tree = SumTree(capacity) if prioritized else None
        self.alpha, self.priority_eps, self.max_priority = alpha, priority_eps, 1.0

    def __len__(self) -> int:
        return self.size

    def can_sample(self, batch_size: int) -> bool:
        return self.size >= batch_size

    # --- writing -------------------------------------------------------------------------------

    def add(self, obs, actions, rewards, next_obs, terminated, truncated, valid) -> None:
        """One vector-env step; arrays are (num_envs, ...). Rows where `valid` is False are skipped."""
        if self.folder is None:  # one-step: every valid row is a finished transition with discount γ
            if valid.all():
                self._write(obs, actions, rewards, next_obs, terminated, self.one_step_discounts)
            elif valid.any():
                self._write(
                    obs[valid],
                    actions[valid],
                    rewards[valid],
                    next_obs[valid],
                    terminated[valid],
                    self.one_step_discounts[valid],
                )
            return
        rows = []
        for env in np.flatnonzero(valid):
            rows += self.folder.fold(
                env, obs[env], actions[env], rewards[env], next_obs[env], bool(terminated[env]), bool(truncated[env])
            )
        if rows:
            columns = list(zip(*rows))
            self._write(*(np.stack(column) for column in columns[:5]), np.asarray(columns[5]))

    def _write(self, obs, actions, rewards, next_obs, terminated, discounts) -> None:
        n = len(actions)
        if self.pos + n <= self.capacity:  # the common case: a contiguous slice, no index arrays
            slots = slice(self.pos, self.pos + n)
            slot_ids = np.arange(self.pos, self.pos + n)
        else:
            slots = slot_ids = (self.pos + np.arange(n)) % self.capacity
        self.obs[slots] = obs
        self.actions[slots] = actions
        self.rewards[slots] = rewards
        self.next_obs[slots] = next_obs
        self.terminated[slots] = terminated
        self.discounts[slots] = discounts
        if self.tree is not None:  # new transitions get the largest priority so far: each is seen once
            self.tree.update(slot_ids, np.full(n, self.max_priority**self.alpha))
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    # --- sampling ------------------------------------------------------------------------------

    def sample(self, batch_size: int, num_batches: int | None = None) -> Batch:
        """Uniform: `num_batches` batches at once, (G, B, ...), or one batch (B, ...)."""
        shape = (batch_size,) if num_batches is None else (num_batches, batch_size)
        indices = torch.randint(0, self.size, shape)
        return self._gather(indices, weights=None)

    def sample_prioritized(self, batch_size: int, beta: float, rng: np.random.Generator) -> Batch:
        """One batch drawn ∝ p^α, one draw per equal slice of the total (stratified, as Schaul et al.)."""
        total = self.tree.total
        prefix = (np.arange(batch_size) + rng.random(batch_size)) * (total / batch_size)
        indices = np.minimum(self.tree.find(np.minimum(prefix, total * (1 - 1e-12))), self.size - 1)
        leaves = self.tree.leaves[: self.size]
        probabilities = self.tree.leaves[indices] / total
        weights = losses.importance_weights(probabilities, self.size, beta, leaves.min() / total)
        return self._gather(torch.from_numpy(indices), torch.from_numpy(weights.astype(np.float32)))

    def update_priorities(self, indices: torch.Tensor, td_errors: torch.Tensor) -> None:
        """p_i = |δ_i| + ε, stored as p_i^α."""
        priorities = td_errors.detach().abs().cpu().double().numpy() + self.priority_eps
        priorities[~np.isfinite(priorities)] = self.max_priority  # a skipped (non-finite) update's batch
        self.max_priority = max(self.max_priority, float(priorities.max()))
        self.tree.update(indices.cpu().numpy(), priorities**self.alpha)

    def _gather(self, indices: torch.Tensor, weights: torch.Tensor | None) -> Batch:
        columns = {name: view[indices].to(self.device, non_blocking=True) for name, view in self.views.items()}
        if weights is not None:
            weights = weights.to(self.device, non_blocking=True)
        return Batch(**columns, indices=indices, weights=weights)

    # --- checkpoints ---------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The stored rows (up to `size`), position and priorities; pending n-step windows are dropped."""
        state = {name: getattr(self, name)[: self.size].copy() for name in self.fields}
        state.update(pos=self.pos, size=self.size, max_priority=self.max_priority)
        if self.tree is not None:
            state["priorities"] = self.tree.leaves[: self.size].copy()
        return state

    def load_state_dict(self, state: dict) -> None:
        size = state.get("size")
        if not isinstance(size, int) or not 0 <= size <= self.capacity:
            raise CheckpointError(f"replay: size {size!r} does not fit a buffer of {self.capacity}")
        for name in self.fields:
            array = np.asarray(state.get(name))
            target = getattr(self, name)
            if array.shape != (size, *target.shape[1:]):
                raise CheckpointError(
                    f"replay.{name}: checkpoint shape {array.shape} does not match "
                    f"{(size, *target.shape[1:])} (was it saved with another config?)"
                )
            target[:size] = array
        self.pos, self.size = int(state["pos"]) % self.capacity, size
        self.max_priority = float(state.get("max_priority", 1.0))
        if self.tree is not None:
            priorities = state.get("priorities")
            priorities = np.full(size, self.max_priority**self.alpha) if priorities is None else priorities
            self.tree.update(np.arange(size), np.asarray(priorities, dtype=np.float64))
        if self.folder is not None:
            self.folder.reset()
