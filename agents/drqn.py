"""Recurrent DQN (kind `drqn`): an LSTM/GRU Q-network trained on sequences (Hausknecht & Stone 2015; R2D2,
Kapturowski et al. 2019).

The config is dqn's, field for field (a subclass), plus the sequence settings. The targets are dqn's pure
functions (agents/losses.py: Double, n-step); the n-step folding and sequence windows are agents/episode_replay.py.

Acting: the hidden state is carried per vector-env slot and zeroed where that slot's episode starts; the state fed
in with each observation is stored with it. Learning, per sampled window of burn_in + seq_len + n_step steps:

    (1) burn-in: unroll the first `burn_in` steps without gradient, from the stored state (or zeros), to warm it
    (2) unroll the rest with gradient; Q(s_t, a_t) for the seq_len trained steps
    (3) targets from the target net's unroll of the same steps, at the n-step bootstrap positions
    (4) masked TD loss over the trained steps (final observations and incomplete look-aheads masked out)

A window's state never crosses episodes (agents/episode_replay.py moves or pads windows at boundaries), so each
unroll is one fused RNN call; the `done` input still resets the state where a window starts an episode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import networks
from agents import dqn, evaluation, learning, losses, offpolicy
from agents.episode_replay import EpisodeReplay, SequenceBatch
from agents.members import network, setup
from agents.replay import PerMember
from networks.batched import Members
from networks.errors import ConfigError

State = tuple[torch.Tensor, ...]


@dataclass
class Config(dqn.Config):
    """DRQN: every dqn field with the same name and default, plus sequences. batch_size counts sequences."""

    network: dict[str, Any] = field(  # a recurrent networks.build spec; `pre` runs on each step first
        default_factory=lambda: {"type": "lstm", "hidden_size": 64, "pre": {"type": "mlp", "hidden": [64]}}
    )
    seq_len: int = field(default=16, metadata={"ge": 1})  # trained steps per sampled window
    burn_in: int = field(default=8, metadata={"ge": 0})  # steps that only warm the state (R2D2: 40 of 120)
    store_hidden_state: bool = True  # start windows from the actor's stored state (R2D2), else from zeros
    priority_eta: float = field(default=0.9, metadata={"ge": 0, "le": 1})  # R2D2: eta*max + (1-eta)*mean |delta|

    def validate(self) -> None:
        super().validate()
        kind = networks.resolve(self.network)["type"]
        if kind not in ("lstm", "gru"):
            raise ConfigError("network.type", f"drqn needs a recurrent network (lstm or gru), got '{kind}'")
        for name in ("compile", "compact_replay"):  # dqn options for its feed-forward update and frame replay
            if getattr(self, name):
                raise ConfigError(name, "is a dqn option that drqn does not support; set it to false")
        window = self.burn_in + self.seq_len + self.n_step
        if self.buffer_size < 2 * window * self.num_envs:
            raise ConfigError(
                "buffer_size", f"must hold 2 windows of {window} steps per env ({2 * window * self.num_envs})"
            )


class RecurrentQNetwork(nn.Module):
    """obs (B, T, *obs) or (B, *obs), state, done -> (Q (B, T, A) or (B, A), state). uint8 obs are scaled by 1/255."""

    def __init__(self, encoder: networks.RecurrentEncoder, head: nn.Module, pixels: bool):
        super().__init__()
        self.encoder, self.head, self.pixels = encoder, head, pixels

    def forward(
        self, obs: torch.Tensor, state: State | None = None, done: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, State]:
        x = obs.float() / 255.0 if self.pixels else obs
        features, state = self.encoder(x, state, done)
        return self.head(features), state

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        return self.encoder.initial_state(batch_size, device)


def build_q_network(config: Config, env: gym.vector.VectorEnv) -> RecurrentQNetwork:
    obs_space, action_space = env.single_observation_space, env.single_action_space
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ConfigError("env_id", f"DRQN needs a discrete action space; {config.env_id} has {action_space}")
    if not isinstance(obs_space, gym.spaces.Box):
        raise ConfigError("env_id", f"DRQN needs a Box observation space; {config.env_id} has {obs_space}")
    encoder = networks.build(config.network, obs_space.shape)
    n_actions = int(action_space.n)
    head = (
        networks.DuelingHead(encoder.output_dim, n_actions, hidden=config.dueling_hidden)
        if config.dueling
        else networks.QHead(encoder.output_dim, n_actions)
    )
    return RecurrentQNetwork(encoder, head, pixels=obs_space.dtype == np.uint8)


# --- acting -----------------------------------------------------------------------------------------
# Every member at once: obs (P, N, ...), states (P, layers, N, H) each, a member's rows its own envs.


def initial_state(q_net: Members, batch_size: int, device: torch.device) -> State:
    """Every member's all-zero state, (P, layers, batch_size, H) each."""
    return tuple(s.expand(q_net.size, *s.shape).clone() for s in q_net.template.initial_state(batch_size, device))


def reset_where(state: State, episode_start: np.ndarray) -> State:
    """Zero the state of the slots whose episode starts now; state tensors are (P, layers, N, H), episode_start
    (P, N)."""
    keep = torch.as_tensor(~episode_start, dtype=state[0].dtype, device=state[0].device)
    return tuple(s * keep[:, None, :, None] for s in state)


def act(
    q_net: Members,
    obs: np.ndarray,
    state: State,
    episode_start: np.ndarray,
    epsilons: np.ndarray,
    rngs: list[np.random.Generator],
    device: torch.device,
    stepping: np.ndarray | None = None,
) -> tuple[np.ndarray, State, State]:
    """ε-greedy on every env of every member in one step. Returns (actions (P, N), the state fed in with obs, the
    next state). Each member in `stepping` (all when None) draws from its own stream, as its single run does."""
    state = reset_where(state, episode_start)
    with torch.inference_mode():
        q_values, next_state = q_net(torch.as_tensor(obs, device=device), state)  # (P, N, A)
    actions = q_values.argmax(dim=-1).cpu().numpy()
    size, n = actions.shape
    for k in range(size) if stepping is None else np.flatnonzero(stepping):
        explore = rngs[k].random(n) < epsilons[k]
        actions[k] = np.where(explore, rngs[k].integers(q_values.shape[-1], size=n), actions[k])
    return actions, state, next_state


class RecurrentGreedy:
    """The greedy policy for envs/evaluation.py: a state per env, reset where `episode_start` says one starts.
    On a plain network obs are (n, ...); on a `Members` network, every member at once, (P, n, ...)."""

    def __init__(self, q_net: RecurrentQNetwork | Members, device: torch.device):
        self.batched = isinstance(q_net, Members)
        self.q_net, self.device = q_net if self.batched else Members([q_net]), device
        self.greedy = np.zeros(self.q_net.size, dtype=bool)  # `act` draws for no member: no exploration
        self.state: State | None = None
        self.starting: np.ndarray | None = None

    def episode_start(self, starting: np.ndarray) -> None:
        self.starting = starting if self.batched else starting[None]

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        obs = obs if self.batched else obs[None]  # (P, n, ...)
        if self.state is None:
            self.state = initial_state(self.q_net, obs.shape[1], self.device)
        epsilons = np.zeros(self.q_net.size)
        actions, _, self.state = act(self.q_net, obs, self.state, self.starting, epsilons, [], self.device, self.greedy)
        return actions if self.batched else actions[0]


# --- learning ---------------------------------------------------------------------------------------


def sequence_q_and_targets(
    q_net: Members, target_net: Members, batch: SequenceBatch, *, burn_in: int, double_q: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Q(s_t, a_t) with gradient and the TD targets y_t, both (P, B, T), for the trained steps of each window."""
    obs, first = batch.obs, batch.first  # (P, B, L, ...), (P, B, L)
    seq_len = batch.actions.shape[-1]
    state = batch.initial_state or initial_state(q_net, batch.actions.shape[1], obs.device)
    target_state = state
    # (1) burn-in: warm both nets' states; no gradient flows into these steps.
    if burn_in:
        with torch.no_grad():
            _, state = q_net(obs[:, :, :burn_in], state, first[:, :, :burn_in])
            _, target_state = target_net(obs[:, :, :burn_in], target_state, first[:, :, :burn_in])
    # (2) the trained steps, plus n_step look-ahead steps: (P, B, T + n, A)
    q_all, _ = q_net(obs[:, :, burn_in:], state, first[:, :, burn_in:])
    q_taken = q_all[:, :, :seq_len].gather(3, batch.actions[..., None]).squeeze(-1)  # (P, B, T)
    # (3) targets at the bootstrap positions (k <= n steps on)
    with torch.no_grad():
        target_all, _ = target_net(obs[:, :, burn_in:], target_state)
        at = (batch.bootstrap - burn_in)[..., None].expand(-1, -1, -1, q_all.shape[-1])  # (P, B, T, A)
        next_q_target = target_all.gather(2, at)
        next_q_online = q_all.detach().gather(2, at) if double_q else None
        targets = losses.td_target(batch.rewards, next_q_target, batch.terminated, batch.discounts, next_q_online)
    return q_taken, targets


def sequence_loss(q_taken: torch.Tensor, targets: torch.Tensor, batch: SequenceBatch, kind: str) -> torch.Tensor:
    """(4) dqn's TD loss over the steps the mask keeps, each weighted by its window's importance weight: (P,), each
    member's mean over its kept steps (0 for a member whose batch keeps none: losses.td_loss)."""
    weights = None if batch.weights is None else batch.weights[..., None].expand_as(q_taken).flatten(1)
    return losses.td_loss(q_taken.flatten(1), targets.flatten(1), kind, weights, mask=batch.mask.flatten(1))


class Learner:
    """Online and target recurrent Q-networks of every member, the optimizer, and the sequence update."""

    def __init__(self, config: Config, q_net: Members | nn.Module, device: torch.device, members: list | None = None):
        q_net = q_net if isinstance(q_net, Members) else Members([q_net])  # a plain module: a single run
        self.config, self.q_net, self.members = config, q_net, q_net.size
        self.target_net, self.params, self.optimizer, self.meter = learning.learning_state(
            config, q_net, device, members
        )
        self.skipped = np.zeros(self.members, dtype=np.int64)

    def train_phase(self, replay: PerMember, num_updates: np.ndarray, betas: np.ndarray) -> np.ndarray:
        """`num_updates[k]` gradient steps for member k; returns how many were skipped as non-finite, (P,)."""
        self.skipped[:] = 0
        for g in range(int(num_updates.max())):
            self.update(replay, betas, num_updates > g)
        return self.skipped.copy()

    def update(self, replay: PerMember, betas: np.ndarray, active: np.ndarray) -> None:
        """One gradient step on a batch of windows for each member in `active`; a member whose loss or Q is not
        finite is skipped alone (nan_policy: skip)."""
        batch = replay.sample(self.config.batch_size, betas, active=active)
        q_taken, targets = sequence_q_and_targets(
            self.q_net, self.target_net, batch, burn_in=self.config.burn_in, double_q=self.config.double_q
        )
        loss = sequence_loss(q_taken, targets, batch, self.config.loss)  # (P,)
        q_mean = q_taken.detach().mean((1, 2))  # (P,)
        changed = active.copy()
        if self.config.nan_policy == "skip":
            changed &= (torch.isfinite(loss) & torch.isfinite(q_mean)).cpu().numpy()
            self.skipped += active & ~changed
        if not changed.any():
            return
        learning.member_step(self, loss, self.config.max_grad_norm, None if changed.all() else changed)
        if self.config.prioritized.enabled:
            errors = q_taken.detach() - targets
            for k in np.flatnonzero(changed):
                replay.replays[k].update_priorities(batch.indices[k], errors[k], batch.mask[k])
        self.meter.add(loss, q_mean, None if changed.all() else changed)


# --- training ---------------------------------------------------------------------------------------


def make_replay(config: Config, env, q_net: Members, device, members: list) -> PerMember:
    """Each member's EpisodeReplay (its own seed, gamma and α), behind the member-axis API."""
    state_shapes = None
    if config.store_hidden_state:
        state_shapes = tuple((s.shape[0], s.shape[2]) for s in q_net.template.initial_state(1))  # (layers, H) each
    space = env.single_observation_space
    replays = []
    for member in members:
        options = offpolicy.replay_options(member.config, device)
        replays.append(
            EpisodeReplay(
                capacity=config.buffer_size,
                num_envs=config.num_envs,
                obs_shape=space.shape,
                obs_dtype=space.dtype,
                burn_in=config.burn_in,
                seq_len=config.seq_len,
                state_shapes=state_shapes,
                priority_eta=config.priority_eta,
                seed=member.config.seed,
                **options,
            )
        )
    return PerMember(replays)


def train(config: Config, tracker, *, resume=None, finished=None) -> dict[str, float] | list[dict | None]:
    """Train `config`; a population (`population:`) takes one tracker and one resume tree (or None) per member and
    returns one summary per member. `finished[k]`: member k ended before (a resume), so it does not train again
    (its summary is None)."""
    device, members = setup(config, tracker, resume, finished)  # bad input fails here and below, before any slow work
    env = offpolicy.make_member_env(members)
    q_net = network(members, lambda member_config: build_q_network(member_config, env), (RecurrentQNetwork,))
    q_net = q_net.to(device)
    learner, replay = Learner(config, q_net, device, members), make_replay(config, env, q_net, device, members)
    rngs = [m.rng for m in members]
    state = initial_state(q_net, config.num_envs, device)  # (P, layers, num_envs, H) each
    episode_start = np.ones((len(members), config.num_envs), dtype=bool)  # zero an env's state before its next step

    def step(obs: np.ndarray, valid: np.ndarray, epsilons: np.ndarray, stepping: np.ndarray):
        nonlocal state, episode_start
        # (1) act: ε-greedy on every env, each carrying its hidden state (zeroed where its episode starts)
        actions, fed_state, next_state = act(q_net, obs, state, episode_start, epsilons, rngs, device, stepping)
        # (2) step and store, each observation with the state fed in beside it (R2D2's stored state)
        next_obs, rewards, terminated, truncated, infos = env.step(actions, stepping)
        replay.add(obs, actions, rewards, next_obs, terminated, truncated, valid, states=fed_state)
        keep = torch.as_tensor(stepping, device=device)[:, None, None, None]  # the others keep their state
        state = tuple(torch.where(keep, new, old) for new, old in zip(next_state, state))
        # an env's reset step: next_obs is its new episode's first observation
        episode_start = np.where(stepping[:, None], ~valid, episode_start)
        return next_obs, terminated | truncated, infos

    # (3) sync target, (4) learn on windows of burn-in + trained steps, (5) log, evaluate, checkpoint:
    # agents/offpolicy.py's loop, every agent's
    return offpolicy.run(
        config, env, learner, replay, members, step, lambda: RecurrentGreedy(q_net, device), kind="drqn"
    )


# --- evaluation -------------------------------------------------------------------------------------


def evaluate(
    config: Config, tree: dict, *, episodes: int, seed: int, video_path: Path | None = None, trajectories: bool = False
) -> dict:
    """Greedy episodes with the checkpoint's network, its state reset at each episode start."""
    return evaluation.evaluate_checkpoint(
        config, tree, "drqn", build_q_network, RecurrentGreedy, episodes, seed, video_path, trajectories
    )
