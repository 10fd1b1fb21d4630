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
from agents import dqn, losses, offpolicy
from agents.episode_replay import EpisodeReplay, SequenceBatch
from agents.offpolicy import EVAL_SEED_OFFSET, make_env
from networks.errors import ConfigError
from networks.interfaces import Tracker

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


def reset_where(state: State, episode_start: np.ndarray) -> State:
    """Zero the state of the slots whose episode starts now; state tensors are (layers, N, H)."""
    keep = torch.as_tensor(~episode_start, dtype=state[0].dtype, device=state[0].device).view(1, -1, 1)
    return tuple(s * keep for s in state)


def act(
    q_net: RecurrentQNetwork,
    obs: np.ndarray,
    state: State,
    episode_start: np.ndarray,
    epsilon: float,
    rng: np.random.Generator,
    device: torch.device,
) -> tuple[np.ndarray, State, State]:
    """epsilon-greedy on all envs in one step. Returns (actions, the state fed in with obs, the next state)."""
    state = reset_where(state, episode_start)
    with torch.inference_mode():
        q_values, next_state = q_net(torch.as_tensor(obs, device=device), state)  # (N, A)
    greedy = q_values.argmax(dim=1).cpu().numpy()
    explore = rng.random(len(obs)) < epsilon
    actions = np.where(explore, rng.integers(q_values.shape[1], size=len(obs)), greedy)
    return actions, state, next_state


class RecurrentGreedy:
    """The greedy policy for envs/evaluation.py: a state per env, reset where `episode_start` says one starts."""

    def __init__(self, q_net: RecurrentQNetwork, device: torch.device):
        self.q_net, self.device, self.rng = q_net, device, np.random.default_rng(0)  # rng: ε = 0 never explores
        self.state: State | None = None
        self.starting: np.ndarray | None = None

    def episode_start(self, starting: np.ndarray) -> None:
        self.starting = starting

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        if self.state is None:
            self.state = self.q_net.initial_state(len(obs), self.device)
        actions, _, self.state = act(self.q_net, obs, self.state, self.starting, 0.0, self.rng, self.device)
        return actions


# --- learning ---------------------------------------------------------------------------------------


def sequence_q_and_targets(
    q_net: RecurrentQNetwork, target_net: RecurrentQNetwork, batch: SequenceBatch, *, burn_in: int, double_q: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Q(s_t, a_t) with gradient and the TD targets y_t, both (B, T), for the trained steps of each window."""
    obs, first = batch.obs, batch.first
    batch_size, seq_len = batch.actions.shape
    state = batch.initial_state or q_net.initial_state(batch_size, obs.device)
    target_state = state
    # (1) burn-in: warm both nets' states; no gradient flows into these steps.
    if burn_in:
        with torch.no_grad():
            _, state = q_net(obs[:, :burn_in], state, first[:, :burn_in])
            _, target_state = target_net(obs[:, :burn_in], target_state, first[:, :burn_in])
    # (2) the trained steps, plus n_step look-ahead steps: (B, T + n, A)
    q_all, _ = q_net(obs[:, burn_in:], state, first[:, burn_in:])
    q_taken = q_all[:, :seq_len].gather(2, batch.actions[..., None]).squeeze(-1)  # (B, T)
    # (3) targets at the bootstrap positions (k <= n steps on)
    with torch.no_grad():
        target_all, _ = target_net(obs[:, burn_in:], target_state)
        at = (batch.bootstrap - burn_in)[..., None].expand(-1, -1, q_all.shape[-1])  # (B, T, A)
        next_q_target = target_all.gather(1, at)
        next_q_online = q_all.detach().gather(1, at) if double_q else None
        targets = losses.td_target(batch.rewards, next_q_target, batch.terminated, batch.discounts, next_q_online)
    return q_taken, targets


def sequence_loss(q_taken: torch.Tensor, targets: torch.Tensor, batch: SequenceBatch, kind: str) -> torch.Tensor:
    """(4) dqn's TD loss over the steps the mask keeps, each weighted by its window's importance weight."""
    keep = batch.mask.bool()
    weights = None if batch.weights is None else batch.weights[:, None].expand_as(q_taken)[keep]
    return losses.td_loss(q_taken[keep], targets[keep], kind, weights)


class Learner:
    """Online and target recurrent Q-networks, the optimizer, and the sequence update."""

    def __init__(self, config: Config, q_net: RecurrentQNetwork, device: torch.device):
        self.config, self.q_net = config, q_net
        self.target_net, self.params, self.optimizer, self.meter = offpolicy.learning_state(config, q_net, device)

    def train_phase(self, replay: EpisodeReplay, num_updates: int, beta: float, rng: np.random.Generator) -> int:
        """`num_updates` gradient steps; returns how many were skipped as non-finite (nan_policy: skip)."""
        return sum(not self.update(replay, beta) for _ in range(num_updates))

    def update(self, replay: EpisodeReplay, beta: float) -> bool:
        """One gradient step on a batch of windows; False when skipped as non-finite (nan_policy: skip)."""
        batch = replay.sample(self.config.batch_size, beta)
        q_taken, targets = sequence_q_and_targets(
            self.q_net, self.target_net, batch, burn_in=self.config.burn_in, double_q=self.config.double_q
        )
        loss = sequence_loss(q_taken, targets, batch, self.config.loss)
        q_mean = q_taken.detach().mean()
        if self.config.nan_policy == "skip" and not offpolicy.finite(loss, q_mean):
            return False
        offpolicy.gradient_step(self.optimizer, self.params, loss, self.config.max_grad_norm)
        if replay.tree is not None:
            replay.update_priorities(batch.indices, q_taken.detach() - targets, batch.mask)
        self.meter.add(loss, q_mean)
        return True


# --- training ---------------------------------------------------------------------------------------


def make_replay(config: Config, env: gym.vector.VectorEnv, q_net: RecurrentQNetwork, device) -> EpisodeReplay:
    state_shapes = None
    if config.store_hidden_state:
        state_shapes = tuple((s.shape[0], s.shape[2]) for s in q_net.initial_state(1))  # (layers, H) each
    space = env.single_observation_space
    return EpisodeReplay(
        capacity=config.buffer_size,
        num_envs=config.num_envs,
        obs_shape=space.shape,
        obs_dtype=space.dtype,
        burn_in=config.burn_in,
        seq_len=config.seq_len,
        state_shapes=state_shapes,
        priority_eta=config.priority_eta,
        seed=config.seed,
        **offpolicy.replay_options(config, device),
    )


def train(config: Config, tracker: Tracker, *, resume: dict | None = None) -> dict[str, float]:
    device, rng = offpolicy.setup(config)  # bad input fails here and in the next lines, before any slow work
    env = make_env(config, config.num_envs, config.seed)
    q_net = build_q_network(config, env).to(device)
    learner, replay = Learner(config, q_net, device), make_replay(config, env, q_net, device)
    state = q_net.initial_state(config.num_envs, device)  # (layers, num_envs, H) each
    episode_start = np.ones(config.num_envs, dtype=bool)  # zero an env's state before its next step

    def step(obs: np.ndarray, valid: np.ndarray, epsilon: float) -> tuple[np.ndarray, np.ndarray, dict]:
        nonlocal state, episode_start
        # (1) act: ε-greedy on every env, each carrying its hidden state (zeroed where its episode starts)
        actions, fed_state, state = act(q_net, obs, state, episode_start, epsilon, rng, device)
        # (2) step and store, each observation with the state fed in beside it (R2D2's stored state)
        next_obs, rewards, terminated, truncated, info = env.step(actions)
        replay.add(obs, actions, rewards, next_obs, terminated, truncated, valid, fed_state)
        episode_start = ~valid  # an env's reset step: next_obs is its new episode's first observation
        return next_obs, terminated | truncated, info

    def evaluation(eval_env: gym.vector.VectorEnv) -> dict:
        policy = RecurrentGreedy(q_net, device)  # fresh states
        return offpolicy.evaluate_net(q_net, eval_env, config.eval_episodes, config.seed + EVAL_SEED_OFFSET, policy)

    # (3) sync target, (4) learn on windows of burn-in + trained steps, (5) log, evaluate, checkpoint:
    # agents/offpolicy.py's loop, every agent's
    return offpolicy.run(config, tracker, env, learner, replay, rng, step, evaluation, kind="drqn", resume=resume)


# --- evaluation -------------------------------------------------------------------------------------


def evaluate(
    config: Config, tree: dict, *, episodes: int, seed: int, video_path: Path | None = None, trajectories: bool = False
) -> dict:
    """Greedy episodes with the checkpoint's network, its state reset at each episode start."""
    return offpolicy.evaluate_checkpoint(
        config, tree, "drqn", build_q_network, RecurrentGreedy, episodes, seed, video_path, trajectories
    )
