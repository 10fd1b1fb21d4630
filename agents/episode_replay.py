"""Sequence replay for recurrent agents (drqn): steps stored in order per env, windows sampled from them.

Layout, as in agents/frame_replay.py: one circular stream per vector-env slot. Slot t holds observation t, the
recurrent state the actor fed in with it (optional), and, when a transition starts there, the action, the reward
and the end flags. An episode's first observation is flagged FIRST; its final observation gets a slot of its own
(no action) so the unroll can bootstrap from it.

`sample` draws windows of `burn_in + seq_len + n_step` consecutive slots (Kapturowski et al. 2019, R2D2): the
first `burn_in` steps only warm up the state, the next `seq_len` are trained on, and the last `n_step` are only
there to value the n-step targets. As in R2D2, a window never carries a state across episodes: a window whose
burn-in would run into a new episode is moved to start at that episode's first step (where the state is zero),
and the steps from the next episode's start on are padding, masked out of the loss, as are steps without an
action (final observations) and steps whose n-step look-ahead is not in the buffer yet. So the only reset a
window needs is at its start, and the learner unrolls each window in one fused RNN call. The n-step returns,
discounts and bootstrap positions are worked out here, once, in NumPy; the learner only gathers.

Windows are drawn uniformly, or by priority (R2D2: eta * max |delta| + (1 - eta) * mean |delta| over the window,
kept in agents.replay.SumTree). A window is complete when all its slots were written after its first one; only
complete windows are ever drawn.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from agents.replay import SumTree
from networks.errors import CheckpointError

FIRST, ACTED, TERMINATED, TRUNCATED = 1, 2, 4, 8  # bits of `flags`
ENDED = TERMINATED | TRUNCATED


class SequenceBatch(NamedTuple):
    """B windows of L = burn_in + seq_len + n_step steps; targets for the T = seq_len trained steps."""

    obs: torch.Tensor  # (B, L, *obs_shape)
    first: torch.Tensor  # (B, L) bool: reset the state before this step (only ever at step 0: an episode start)
    initial_state: tuple[torch.Tensor, ...] | None  # each (layers, B, H): stored state at the window's start
    actions: torch.Tensor  # (B, T) int64
    rewards: torch.Tensor  # (B, T) float32: sum_{i<k} gamma^i r_i
    terminated: torch.Tensor  # (B, T) float32: the episode terminated within those k steps
    discounts: torch.Tensor  # (B, T) float32: gamma^k
    bootstrap: torch.Tensor  # (B, T) int64: position in the window of the state k steps on
    mask: torch.Tensor  # (B, T) float32: 1 where the step is a transition with a complete look-ahead
    weights: torch.Tensor | None  # (B,) importance weights (prioritized), else None
    indices: np.ndarray  # (B,) flat start slots, for priority updates


class EpisodeReplay:
    def __init__(
        self,
        *,
        capacity: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype = np.float32,
        burn_in: int,
        seq_len: int,
        n_step: int = 1,
        gamma: float = 0.99,
        state_shapes: tuple[tuple[int, ...], ...] | None = None,
        prioritized: bool = False,
        alpha: float = 0.6,
        priority_eta: float = 0.9,
        priority_eps: float = 1e-6,
        device: torch.device | str = "cpu",
        seed: int = 0,
    ):
        self.window = burn_in + seq_len + n_step
        self.slots = capacity // num_envs
        if self.slots < 2 * self.window:
            raise ValueError(f"capacity {capacity} is too small for {num_envs} envs and windows of {self.window}")
        self.num_envs, self.burn_in, self.seq_len, self.n_step, self.gamma = num_envs, burn_in, seq_len, n_step, gamma
        self.device = torch.device(device)
        self.rng = np.random.default_rng(seed)
        self.obs = np.zeros((num_envs, self.slots, *obs_shape), dtype=obs_dtype)
        self.actions = np.zeros((num_envs, self.slots), dtype=np.int64)
        self.rewards = np.zeros((num_envs, self.slots), dtype=np.float32)
        self.flags = np.zeros((num_envs, self.slots), dtype=np.uint8)
        # One array per state tensor, e.g. LSTM (h, c): each (E, C, layers, H). None: windows start from zeros.
        self.states = (
            None
            if state_shapes is None
            else [np.zeros((num_envs, self.slots, *shape), dtype=np.float32) for shape in state_shapes]
        )
        self.pos = np.zeros(num_envs, dtype=np.int64)
        self.written = np.zeros(num_envs, dtype=np.int64)
        self.pending = np.zeros(num_envs, dtype=bool)
        self.tree = SumTree(num_envs * self.slots) if prioritized else None
        self.alpha, self.priority_eta, self.priority_eps, self.max_priority = alpha, priority_eta, priority_eps, 1.0

    def __len__(self) -> int:
        return int(np.count_nonzero(self.flags & ACTED))

    def complete_windows(self) -> int:
        return int(np.maximum(np.minimum(self.written, self.slots) - self.window + 1, 0).sum())

    def can_sample(self, batch_size: int) -> bool:
        return self.complete_windows() > 0  # windows are drawn with replacement: one complete window will do

    # --- writing --------------------------------------------------------------------------------

    def add(self, obs, actions, rewards, next_obs, terminated, truncated, valid=None, states=None) -> None:
        """One vector-env step, arrays (N, ...). `states`: the recurrent state fed in with `obs`, each tensor
        (layers, N, H) (as the encoders hold it); `valid` leaves out autoreset steps."""
        if states is not None and self.states is not None:
            states = [s.detach().cpu().numpy() if isinstance(s, torch.Tensor) else np.asarray(s) for s in states]
        for env in range(self.num_envs) if valid is None else np.flatnonzero(valid):
            if not self.pending[env]:
                self._write(env, obs[env], first=True)
            current = (self.pos[env] - 1) % self.slots
            if states is not None and self.states is not None:
                for stored, state in zip(self.states, states):
                    stored[env, current] = state[:, env]
            ended = (TERMINATED if terminated[env] else 0) | (TRUNCATED if truncated[env] else 0)
            self.actions[env, current] = actions[env]
            self.rewards[env, current] = rewards[env]
            self.flags[env, current] |= ACTED | ended
            self._write(env, next_obs[env], first=False)  # the next (or final) observation
            self.pending[env] = not ended

    def _write(self, env: int, obs: np.ndarray, *, first: bool) -> None:
        slot = self.pos[env]
        self.obs[env, slot] = obs
        self.flags[env, slot] = FIRST if first else 0
        if self.states is not None:
            for stored in self.states:
                stored[env, slot] = 0.0
        self.pos[env] = (slot + 1) % self.slots
        self.written[env] += 1
        if self.tree is not None:  # the window starting here is broken; the one ending here is complete
            base = env * self.slots
            self.tree.update(np.array([base + slot]), np.zeros(1))
            if self.written[env] >= self.window:
                start = (slot - self.window + 1) % self.slots
                self.tree.update(np.array([base + start]), np.array([self.max_priority**self.alpha]))

    # --- sampling -------------------------------------------------------------------------------

    def _complete(self, envs: np.ndarray, starts: np.ndarray) -> np.ndarray:
        oldest = np.where(self.written[envs] > self.slots, self.pos[envs], 0)
        filled = np.minimum(self.written[envs], self.slots)
        return (starts - oldest) % self.slots + self.window <= filled

    def sample(self, batch_size: int, beta: float = 0.4) -> SequenceBatch:
        if self.complete_windows() == 0:
            raise RuntimeError("replay holds no complete window yet; add more steps first")
        weights = None
        if self.tree is None:
            envs, starts = self._draw_uniform(batch_size)
        else:
            total = self.tree.total
            prefix = (np.arange(batch_size) + self.rng.random(batch_size)) * (total / batch_size)
            flat = self.tree.find(np.minimum(prefix, total * (1 - 1e-12)))
            envs, starts = np.divmod(flat, self.slots)
            probabilities = self.tree.leaves[flat] / total
            size = self.complete_windows()
            positive = self.tree.leaves[self.tree.leaves > 0]
            weights = (size * probabilities) ** -beta / (size * positive.min() / total) ** -beta
            weights = torch.as_tensor(weights, dtype=torch.float32, device=self.device)
        return self._gather(envs, *self._align(envs, starts), weights)

    def _align(self, envs: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Move windows whose burn-in runs into a new episode to that episode's start.

        Returns (starts, drawn): the aligned starts, and the drawn ones (priorities stay keyed on those).
        Windows that cannot be aligned inside the buffer are redrawn (uniform) or kept whole-masked.
        """
        drawn = starts.copy()
        starts = starts.copy()
        if self.burn_in == 0:
            return starts, drawn
        offsets = 1 + np.arange(self.burn_in)  # a FIRST here would leave the trained steps in another episode
        for _ in range(self.window):
            first = self.flags[envs[:, None], (starts[:, None] + offsets) % self.slots] & FIRST  # (B, burn_in)
            move = first.any(axis=1) & self._complete(envs, starts)
            if not move.any():
                break
            starts[move] = (starts[move] + 1 + first[move].argmax(axis=1)) % self.slots
        broken = ~self._complete(envs, starts)  # moved past the newest complete window
        if broken.any() and self.tree is None:
            envs[broken], starts[broken] = self._draw_uniform(int(broken.sum()))
            new, drawn_new = self._align(envs[broken], starts[broken])
            starts[broken], drawn[broken] = new, drawn_new
        elif broken.any():
            starts[broken] = drawn[broken]  # rare: keep the drawn window; its steps past the boundary are masked
        return starts, drawn

    def _draw_uniform(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        windows = np.maximum(np.minimum(self.written, self.slots) - self.window + 1, 0)
        envs = self.rng.choice(self.num_envs, size=n, p=windows / windows.sum())
        oldest = np.where(self.written[envs] > self.slots, self.pos[envs], 0)
        starts = (oldest + (self.rng.random(n) * windows[envs]).astype(np.int64)) % self.slots
        return envs, starts

    def _gather(
        self, envs: np.ndarray, starts: np.ndarray, drawn: np.ndarray, weights: torch.Tensor | None
    ) -> SequenceBatch:
        idx = (starts[:, None] + np.arange(self.window)) % self.slots  # (B, L)
        rows = envs[:, None]
        flags = self.flags[rows, idx]  # (B, L)
        first = (flags & FIRST) != 0
        # Steps from the next episode's start on are padding: the window's state never crosses episodes.
        later_first = first[:, 1:]
        boundary = np.where(later_first.any(axis=1), later_first.argmax(axis=1) + 1, self.window)  # (B,)
        same_episode = np.arange(self.window) < boundary[:, None]  # (B, L)
        acted, ended = ((flags & ACTED) != 0) & same_episode, (flags & ENDED) != 0
        rewards_all = self.rewards[rows, idx]

        # n-step look-ahead for each trained step t: k = steps until the episode ended, at most n.
        trained = self.burn_in + np.arange(self.seq_len)  # (T,) positions in the window
        ahead = trained[:, None] + np.arange(self.n_step)  # (T, n)
        ended_ahead = ended[:, ahead]  # (B, T, n)
        steps = np.where(ended_ahead.any(-1), ended_ahead.argmax(-1) + 1, self.n_step)  # (B, T)
        taken = np.arange(self.n_step) < steps[..., None]  # (B, T, n)
        complete = (acted[:, ahead] | ~taken).all(-1)  # every step folded in had an action
        rewards = (rewards_all[:, ahead] * self.gamma ** np.arange(self.n_step) * taken).sum(-1)
        last = trained + steps - 1  # (B, T) position of the last step folded in
        terminated = (np.take_along_axis(flags, last, 1) & TERMINATED) != 0

        def tensor(array, dtype=None):
            return torch.as_tensor(np.ascontiguousarray(array), device=self.device, dtype=dtype)

        initial_state = None
        if self.states is not None:  # (B, layers, H) -> (layers, B, H)
            initial_state = tuple(tensor(s[envs, starts].swapaxes(0, 1)) for s in self.states)
        return SequenceBatch(
            obs=tensor(self.obs[rows, idx]),
            first=tensor(first & (np.arange(self.window) == 0)),
            initial_state=initial_state,
            actions=tensor(self.actions[rows, idx[:, trained]]),
            rewards=tensor(rewards.astype(np.float32)),
            terminated=tensor(terminated.astype(np.float32)),
            discounts=tensor((self.gamma**steps).astype(np.float32)),
            bootstrap=tensor(trained + steps),
            mask=tensor((acted[:, trained] & complete).astype(np.float32)),
            weights=weights,
            indices=envs * self.slots + drawn,
        )

    def update_priorities(self, indices: np.ndarray, td_errors: torch.Tensor, mask: torch.Tensor) -> None:
        """R2D2's sequence priority from the window's TD errors (B, T) over its masked steps."""
        errors = (td_errors.detach().abs() * mask).cpu().double().numpy()
        counts = np.maximum(mask.cpu().numpy().sum(1), 1)
        priorities = self.priority_eta * errors.max(1) + (1 - self.priority_eta) * errors.sum(1) / counts
        priorities += self.priority_eps
        priorities[~np.isfinite(priorities)] = self.max_priority  # a diverged update's windows, as ReplayBuffer
        self.max_priority = max(self.max_priority, float(priorities.max()))
        # A window may have been overwritten since it was sampled (not in a single-threaded loop, but cheap).
        still = self._complete(*np.divmod(indices, self.slots))
        self.tree.update(indices[still], priorities[still] ** self.alpha)

    # --- checkpointing --------------------------------------------------------------------------

    def state_dict(self) -> dict:
        state = {name: getattr(self, name) for name in ("obs", "actions", "rewards", "flags", "pos", "written")}
        if self.states is not None:
            state["states"] = list(self.states)
        if self.tree is not None:
            state["priorities"] = self.tree.leaves.copy()
            state["max_priority"] = self.max_priority
        return state

    def load_state_dict(self, state: dict) -> None:
        for name in ("obs", "actions", "rewards", "flags", "pos", "written"):
            value = np.asarray(state.get(name))
            if value.shape != getattr(self, name).shape:
                raise CheckpointError(
                    f"replay.{name}: checkpoint shape {value.shape} does not match {getattr(self, name).shape} "
                    "(was it saved with another buffer_size, num_envs or env?)"
                )
            getattr(self, name)[...] = value
        if self.states is not None and "states" in state:
            for stored, saved in zip(self.states, state["states"]):
                stored[...] = np.asarray(saved)
        if self.tree is not None and "priorities" in state:
            priorities = np.asarray(state["priorities"], dtype=np.float64)
            self.tree.update(np.arange(len(priorities)), priorities)
            self.max_priority = float(state.get("max_priority", 1.0))
        self.pending[:] = False  # envs restart their episodes on resume
