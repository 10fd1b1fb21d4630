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
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch

from agents import losses
from networks.errors import CheckpointError


@runtime_checkable
class Replay(Protocol):
    """What the off-policy loop (agents/offpolicy.py) asks of a replay: ReplayBuffer here, and a single run's replay
    per member behind `PerMember` (EpisodeReplay of agents/episode_replay.py, FrameReplay of agents/frame_replay.py).
    Arrays carry the member axis first: (P, num_envs, ...) in, (P, ...) batches out."""

    def add(self, obs, actions, rewards, next_obs, terminated, truncated, valid) -> None:
        """One vector-env step of every member; rows where `valid` is False (autoreset steps) hold no transition."""

    def can_sample(self, batch_size: int) -> np.ndarray:
        """(P,) whether each member can draw a batch of `batch_size` now."""

    def __len__(self) -> int:
        """Transitions held, all members together."""

    def state_dict(self, member: int = 0) -> dict:
        """What member `member`'s checkpoint keeps, as its single run's replay (arrays and JSON values only)."""

    def load_state_dict(self, state: dict, member: int = 0) -> None:
        """Undo `state_dict`; CheckpointError when it does not fit this replay."""


class Batch(NamedTuple):
    """A sampled batch; leading dims (P, B) for every member's batch, or (P, G, B) for G batches at once."""

    obs: torch.Tensor  # (P, B, *obs_shape), the env's dtype (float32, or uint8 for pixels)
    actions: torch.Tensor  # (P, B) int64
    rewards: torch.Tensor  # (P, B) float32, Σ_{i<k} γ^i r_i
    next_obs: torch.Tensor  # (P, B, *obs_shape), the state k steps on, to bootstrap from
    terminated: torch.Tensor  # (P, B) float32, 1 when the episode terminated within those k steps
    discounts: torch.Tensor  # (P, B) float32, γ^k
    indices: torch.Tensor  # (P, B) int64 slots in each member's ring, for prioritized updates
    weights: torch.Tensor | None = None  # (P, B) float32 importance weights (prioritized only)


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
    """Fixed-capacity rings of transitions, one per member (see the module docstring): storage (P, capacity, ...),
    written and sampled for every member at once; each member's own position, size, n-step windows, discount γ and
    priorities (a SumTree and exponent α per member). A single run is a population of one (P = 1)."""

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype,
        num_envs: int,
        *,
        gamma: float | Sequence[float],
        n_step: int = 1,
        prioritized: bool = False,
        alpha: float | Sequence[float] = 0.6,
        priority_eps: float = 1e-6,
        device: torch.device | str = "cpu",
        members: int = 1,
        generators: Sequence[torch.Generator] | None = None,
        rngs: Sequence[np.random.Generator] | None = None,
    ):
        self.capacity, self.device, self.members = capacity, torch.device(device), members
        # each member's streams: torch's for uniform draws (None: the global one), NumPy's for prioritized ones (no
        # default: a fixed one would draw the same batches whatever the run's seed)
        if prioritized and (rngs is None or len(rngs) != members):
            raise ValueError(f"prioritized replay needs one NumPy generator per member in rngs ({members})")
        self.generators = list(generators) if generators is not None else [None] * members
        self.rngs = list(rngs) if rngs is not None else []
        gammas = np.broadcast_to(np.asarray(gamma, dtype=np.float64), (members,))
        self.alphas = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (members,)).copy()
        self.obs = np.zeros((members, capacity, *obs_shape), dtype=obs_dtype)
        self.next_obs = np.zeros((members, capacity, *obs_shape), dtype=obs_dtype)
        self.actions = np.zeros((members, capacity), dtype=np.int64)
        self.rewards = np.zeros((members, capacity), dtype=np.float32)
        self.terminated = np.zeros((members, capacity), dtype=np.float32)
        self.discounts = np.zeros((members, capacity), dtype=np.float32)
        self.fields = ("obs", "actions", "rewards", "next_obs", "terminated", "discounts")
        # (P * capacity, ...) torch views of the same memory: a batch of every member is one gather
        self.views = {name: torch.from_numpy(getattr(self, name)).flatten(0, 1) for name in self.fields}
        self.pos = np.zeros(members, dtype=np.int64)
        self.sizes = np.zeros(members, dtype=np.int64)
        self.folders = [NStepFolder(num_envs, n_step, float(g)) for g in gammas] if n_step > 1 else None
        self.one_step_discounts = np.repeat(gammas.astype(np.float32)[:, None], num_envs, axis=1)  # (P, num_envs)
        self.trees = [SumTree(capacity) for _ in range(members)] if prioritized else None
        self.priority_eps = priority_eps
        self.max_priority = np.ones(members)

    def __len__(self) -> int:
        return int(self.sizes.sum())

    def can_sample(self, batch_size: int) -> np.ndarray:
        """(P,) whether each member holds a batch."""
        return self.sizes >= batch_size

    # --- writing -------------------------------------------------------------------------------

    def add(self, obs, actions, rewards, next_obs, terminated, truncated, valid) -> None:
        """One vector-env step of every member; arrays are (P, num_envs, ...). Rows where `valid` is False are
        skipped."""
        if self.folders is None:  # one-step: every valid row is a finished transition with discount γ
            rows = (obs, actions, rewards, next_obs, terminated, self.one_step_discounts)
            if valid.all() and self.members == 1:  # a single run: its own rows, no member index
                self._write_alone(*(x[0] for x in rows))
            elif valid.all():
                self._write(
                    np.repeat(np.arange(self.members), valid.shape[1]), *(x.reshape(-1, *x.shape[2:]) for x in rows)
                )
            elif valid.any():
                self._write(np.nonzero(valid)[0], *(x[valid] for x in rows))
            return
        members, rows = [], []
        for member, env in zip(*np.nonzero(valid)):
            folded = self.folders[member].fold(
                env,
                obs[member, env],
                actions[member, env],
                rewards[member, env],
                next_obs[member, env],
                bool(terminated[member, env]),
                bool(truncated[member, env]),
            )
            members += [member] * len(folded)
            rows += folded
        if rows:
            columns = list(zip(*rows))
            self._write(np.asarray(members), *(np.stack(column) for column in columns[:5]), np.asarray(columns[5]))

    def _write(self, members: np.ndarray, obs, actions, rewards, next_obs, terminated, discounts) -> None:
        """Rows grouped by member (`members`: each row's member, in order), each member's at its own position."""
        if self.members == 1:  # a single run: a contiguous slice where the rows fit before the end, no index arrays
            self._write_alone(obs, actions, rewards, next_obs, terminated, discounts)
            return
        counts = np.bincount(members, minlength=self.members)
        rank = np.arange(len(members)) - (np.cumsum(counts) - counts)[members]  # place within its member's rows
        slots = (self.pos[members] + rank) % self.capacity
        self.obs[members, slots] = obs
        self.actions[members, slots] = actions
        self.rewards[members, slots] = rewards
        self.next_obs[members, slots] = next_obs
        self.terminated[members, slots] = terminated
        self.discounts[members, slots] = discounts
        if self.trees is not None:  # new transitions get the largest priority so far: each is seen once
            for member in np.flatnonzero(counts):
                new = slots[members == member]
                self.trees[member].update(new, np.full(len(new), self.max_priority[member] ** self.alphas[member]))
        self.pos = (self.pos + counts) % self.capacity
        self.sizes = np.minimum(self.sizes + counts, self.capacity)

    def _write_alone(self, obs, actions, rewards, next_obs, terminated, discounts) -> None:
        """`_write` for one member: the same rows at the same slots, written as a slice when they do not wrap."""
        n, pos = len(actions), int(self.pos[0])
        slots = slice(pos, pos + n) if pos + n <= self.capacity else (pos + np.arange(n)) % self.capacity
        self.obs[0, slots] = obs
        self.actions[0, slots] = actions
        self.rewards[0, slots] = rewards
        self.next_obs[0, slots] = next_obs
        self.terminated[0, slots] = terminated
        self.discounts[0, slots] = discounts
        if self.trees is not None:
            slot_ids = np.arange(pos, pos + n) if isinstance(slots, slice) else slots
            self.trees[0].update(slot_ids, np.full(n, self.max_priority[0] ** self.alphas[0]))
        self.pos[0] = (pos + n) % self.capacity
        self.sizes[0] = min(int(self.sizes[0]) + n, self.capacity)

    # --- sampling ------------------------------------------------------------------------------

    def sample(self, batch_size: int, num_batches: np.ndarray) -> Batch:
        """Uniform: `num_batches[k]` batches for member k, drawn from its own torch generator, all gathered at once as
        (P, G, B, ...) with G = max(num_batches); a member drawing fewer (or none) gets slot 0 in the rest."""
        most = int(num_batches.max())
        if self.members == 1 and most:  # a single run: its draws, with the member axis put on
            shape = (most, batch_size)
            return self._gather(torch.randint(0, int(self.sizes[0]), shape, generator=self.generators[0])[None], None)
        indices = torch.zeros((self.members, most, batch_size), dtype=torch.int64)
        for member in np.flatnonzero(num_batches):
            shape = (int(num_batches[member]), batch_size)
            indices[member, : shape[0]] = torch.randint(
                0, int(self.sizes[member]), shape, generator=self.generators[member]
            )
        return self._gather(indices, weights=None)

    def sample_prioritized(self, batch_size: int, betas: np.ndarray, active: np.ndarray) -> Batch:
        """One batch per active member, drawn ∝ p^α, one draw per equal slice of its total (stratified, as Schaul
        et al.), from its own NumPy stream: (P, B, ...); inactive members get slot 0 and weight 1 (and draw nothing)."""
        indices = np.zeros((self.members, batch_size), dtype=np.int64)
        weights = np.ones((self.members, batch_size), dtype=np.float32)
        for member in np.flatnonzero(active):
            tree, size, rng = self.trees[member], int(self.sizes[member]), self.rngs[member]
            total = tree.total
            prefix = (np.arange(batch_size) + rng.random(batch_size)) * (total / batch_size)
            drawn = np.minimum(tree.find(np.minimum(prefix, total * (1 - 1e-12))), size - 1)
            probabilities = tree.leaves[drawn] / total
            minimum = tree.leaves[:size].min() / total
            weights[member] = losses.importance_weights(probabilities, size, betas[member], minimum)
            indices[member] = drawn
        return self._gather(torch.from_numpy(indices), torch.from_numpy(weights))

    def update_priorities(self, indices: torch.Tensor, td_errors: torch.Tensor, active: np.ndarray) -> None:
        """p_i = |δ_i| + ε, stored as p_i^α, for the members in `active`; indices and errors (P, B)."""
        priorities = td_errors.detach().abs().cpu().double().numpy() + self.priority_eps
        indices = indices.cpu().numpy()
        for member in np.flatnonzero(active):
            found = priorities[member]
            found[~np.isfinite(found)] = self.max_priority[member]  # a non-finite update's batch
            self.max_priority[member] = max(self.max_priority[member], float(found.max()))
            self.trees[member].update(indices[member], found ** self.alphas[member])

    def _gather(self, indices: torch.Tensor, weights: torch.Tensor | None) -> Batch:
        """`indices` (P, ...) slots of each member -> the rows, as (P, ...) tensors on the learner's device."""
        if self.members == 1:  # member 0's slots are the flat ones
            flat = indices
        else:
            flat = indices + (torch.arange(self.members) * self.capacity).view(-1, *([1] * (indices.dim() - 1)))
        columns = {name: view[flat].to(self.device, non_blocking=True) for name, view in self.views.items()}
        if weights is not None:
            weights = weights.to(self.device, non_blocking=True)
        return Batch(**columns, indices=indices, weights=weights)

    # --- checkpoints ---------------------------------------------------------------------------

    def state_dict(self, member: int = 0) -> dict:
        """Member `member`'s rows (up to its size), position and priorities, as a single run's replay holds them;
        pending n-step windows are dropped."""
        size = int(self.sizes[member])
        state = {name: getattr(self, name)[member, :size].copy() for name in self.fields}
        state.update(pos=int(self.pos[member]), size=size, max_priority=float(self.max_priority[member]))
        if self.trees is not None:
            state["priorities"] = self.trees[member].leaves[:size].copy()
        return state

    def load_state_dict(self, state: dict, member: int = 0) -> None:
        size = state.get("size")
        if not isinstance(size, int) or not 0 <= size <= self.capacity:
            raise CheckpointError(f"replay: size {size!r} does not fit a buffer of {self.capacity}")
        for name in self.fields:
            array = np.asarray(state.get(name))
            target = getattr(self, name)[member]
            if array.shape != (size, *target.shape[1:]):
                raise CheckpointError(
                    f"replay.{name}: checkpoint shape {array.shape} does not match "
                    f"{(size, *target.shape[1:])} (was it saved with another config?)"
                )
            target[:size] = array
        self.pos[member], self.sizes[member] = int(state["pos"]) % self.capacity, size
        self.max_priority[member] = float(state.get("max_priority", 1.0))
        if self.trees is not None:
            priorities = state.get("priorities")
            alpha = self.alphas[member]
            priorities = np.full(size, self.max_priority[member] ** alpha) if priorities is None else priorities
            self.trees[member].update(np.arange(size), np.asarray(priorities, dtype=np.float64))
        if self.folders is not None:
            self.folders[member].reset()


class PerMember:
    """A single run's replay per member (EpisodeReplay, FrameReplay) behind the member-axis API: arrays (P, num_envs,
    ...) in, each member's rows to its own replay; `sample` draws from the members in `active` (each from its own
    stream) and stacks their batches (P, ...), a copy of an active member's batch standing in for the others (valid
    indices; the learner leaves those members out)."""

    def __init__(self, replays: list):
        self.replays, self.members = replays, len(replays)

    def __len__(self) -> int:
        return sum(len(replay) for replay in self.replays)

    def can_sample(self, batch_size: int) -> np.ndarray:
        return np.array([replay.can_sample(batch_size) for replay in self.replays])

    def add(self, *columns, **extra) -> None:
        """Every positional and keyword array (or tuple of arrays, e.g. a recurrent state) has the member axis first."""
        for k, replay in enumerate(self.replays):
            replay.add(*(_member(c, k) for c in columns), **{name: _member(v, k) for name, v in extra.items()})

    def sample(self, batch_size: int, *per_member, active: np.ndarray | None = None):
        """`replays[k].sample(batch_size, *(a[k] for a in per_member))` for each active member, stacked."""
        active = np.ones(self.members, bool) if active is None else np.asarray(active)
        drawn = {k: self.replays[k].sample(batch_size, *(a[k] for a in per_member)) for k in np.flatnonzero(active)}
        some = next(iter(drawn.values()))
        return _stack([drawn.get(k) for k in range(self.members)], some)

    def state_dict(self, member: int = 0) -> dict:
        return self.replays[member].state_dict()

    def load_state_dict(self, state: dict, member: int = 0) -> None:
        self.replays[member].load_state_dict(state)


def _member(value: Any, k: int) -> Any:
    if isinstance(value, tuple | list):
        return type(value)(_member(v, k) for v in value)
    return None if value is None else value[k]


def _stack(values: list, some: Any) -> Any:
    """Stack P batches of one structure (None where a member drew nothing: `some` in its place)."""
    if isinstance(some, torch.Tensor):
        return torch.stack([some if v is None else v for v in values])
    if isinstance(some, np.ndarray):
        return np.stack([some if v is None else v for v in values])
    if isinstance(some, tuple):  # a NamedTuple batch, or a tuple of state tensors
        parts = [_stack([None if v is None else v[i] for v in values], part) for i, part in enumerate(some)]
        return type(some)(*parts) if hasattr(some, "_fields") else tuple(parts)
    if isinstance(some, int | float | bool) or some is None:
        return some
    raise TypeError(f"cannot stack {type(some).__name__}")
