"""Deep Q-learning (kind `dqn`), with the Rainbow-era extensions as switches of one agent.

Double DQN (van Hasselt et al. 2016), Dueling heads (Wang et al. 2016), n-step returns and prioritized replay
(Schaul et al. 2016) are options; the maths is in agents/losses.py, the replay in agents/replay.py. Names
follow stable-baselines3 so rl-zoo3 settings carry over unchanged, and so do its counting rules: `train_freq`
and `target_update_interval` count vector-env steps; `total_steps`, `learning_starts` and the ε schedule count
transitions (the autoreset step after an episode ends is no transition: neither stored nor counted).

The loop (`train`) is agents/offpolicy.py's, shared with drqn: act ε-greedily on all envs in one forward pass ->
step -> store -> sync the target net every `target_update_interval` steps -> every `train_freq` steps run
`gradient_steps` updates -> log, evaluate, checkpoint. The update (`Learner.targets`, `Learner.update`) is plain
eager PyTorch; agents/fastpath.py runs the same updates faster (a phase's batches drawn at once; `compile: true`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import networks
from agents import fastpath, losses, offpolicy

# Counters, make_optimizer and MAX_EVAL_ENVS live in agents/offpolicy.py and stay importable from here.
from agents.offpolicy import EVAL_SEED_OFFSET, MAX_EVAL_ENVS, Counters, make_env, make_optimizer  # noqa: F401
from agents.replay import Batch, ReplayBuffer
from networks.errors import ConfigError
from networks.interfaces import Tracker

log = logging.getLogger(__name__)


@dataclass
class Prioritized:
    """Prioritized experience replay, proportional variant (Schaul et al. 2016)."""

    enabled: bool = False
    alpha: float = field(default=0.6, metadata={"ge": 0})  # priority exponent (paper: 0.6)
    beta0: float = field(default=0.4, metadata={"ge": 0, "le": 1})  # importance-weight exponent at start (0.4)
    anneal_beta: bool = True  # β -> 1 linearly over the run, as in the paper
    eps: float = field(default=1e-6, metadata={"gt": 0})  # added to |δ| so no transition has priority 0


@dataclass
class Config:
    """DQN. Defaults are stable-baselines3's DQN defaults unless a comment says otherwise."""

    env_id: str = "CartPole-v1"  # any id envs.make accepts, with Box observations and Discrete actions
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # to the env, e.g. {max_episode_steps: 200}
    num_envs: int = field(default=1, metadata={"ge": 1})  # vector envs, acting in one forward pass
    total_steps: int = field(default=100_000, metadata={"ge": 1})  # env transitions
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    torch_threads: int = field(default=0, metadata={"ge": 0})  # CPU threads for torch; 0 = torch's default
    network: dict[str, Any] = field(default_factory=lambda: {"type": "mlp", "hidden": [64, 64]})  # net_arch
    dueling: bool = False  # V + A - mean(A) head (Wang et al. 2016)
    dueling_hidden: int | None = field(default=None, metadata={"ge": 1})  # a hidden layer per dueling stream
    double_q: bool = False  # the online net picks a', the target net values it (van Hasselt et al. 2016)
    n_step: int = field(default=1, metadata={"ge": 1})  # rewards summed before bootstrapping
    learning_rate: float = field(default=1e-4, metadata={"gt": 0})
    learning_rate_final: float | None = field(default=None, metadata={"ge": 0})  # linear decay to this (zoo's lin_)
    optimizer: Literal["adam", "sgd", "rmsprop"] = "adam"
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)  # torch.optim options (offpolicy.OPTIMIZER_OPTIONS)
    loss: Literal["huber", "mse"] = "huber"  # huber = smooth L1, SB3's and the Nature paper's
    compile: bool = False  # dlforge: the update step as one compiled graph (agents/fastpath.py); long runs
    buffer_size: int = field(default=1_000_000, metadata={"ge": 1})
    compact_replay: bool = False  # stacked uint8 frames: store each frame once (agents/frame_replay.py)
    learning_starts: int = field(default=100, metadata={"ge": 0})  # random actions, no updates until then
    batch_size: int = field(default=32, metadata={"ge": 1})
    gamma: float = field(default=0.99, metadata={"ge": 0, "le": 1})
    tau: float = field(default=1.0, metadata={"gt": 0, "le": 1})  # target update: 1 = copy, < 1 = Polyak
    target_update_interval: int = field(default=10_000, metadata={"ge": 1})  # vector-env steps
    train_freq: int = field(default=4, metadata={"ge": 1})  # vector-env steps between training phases
    gradient_steps: int = field(default=1, metadata={"ge": -1})  # per phase; -1 = transitions since the last
    exploration_fraction: float = field(default=0.1, metadata={"ge": 0, "le": 1})  # of the run, ε decays
    exploration_initial_eps: float = field(default=1.0, metadata={"ge": 0, "le": 1})
    exploration_final_eps: float = field(default=0.05, metadata={"ge": 0, "le": 1})
    max_grad_norm: float = field(default=10.0, metadata={"gt": 0})
    prioritized: Prioritized = field(default_factory=Prioritized)
    eval_every: int = field(default=10_000, metadata={"ge": 0})  # env steps between greedy evals; 0 = at end
    eval_episodes: int = field(default=10, metadata={"ge": 1})
    stop_at_return: float | None = None  # dlforge: stop once an evaluation's mean return reaches this
    checkpoint_every: int = field(default=50_000, metadata={"ge": 1})  # env steps between checkpoints
    save_replay: bool = False  # put the replay in checkpoints, so a resume continues with it
    log_every: int = field(default=1_000, metadata={"ge": 1})  # env steps between chart points
    nan_policy: Literal["stop", "skip"] = "stop"  # a non-finite loss or Q: stop the run, or skip that update

    def validate(self) -> None:
        if self.buffer_size < self.batch_size:
            raise ConfigError("buffer_size", f"must be >= batch_size ({self.batch_size}), got {self.buffer_size}")
        if self.n_step < 1:
            raise ConfigError("n_step", f"must be >= 1 (1 = one-step DQN), got {self.n_step}")
        if self.gradient_steps == 0:
            raise ConfigError("gradient_steps", "must be >= 1, or -1 for as many as env steps since the last")
        if self.exploration_final_eps > self.exploration_initial_eps:
            raise ConfigError(
                "exploration_final_eps",
                f"must be <= exploration_initial_eps "
                f"({self.exploration_initial_eps}), got {self.exploration_final_eps}",
            )
        offpolicy.check_optimizer_kwargs(self.optimizer, self.optimizer_kwargs)
        if self.compile and self.optimizer != "adam":
            raise ConfigError("compile", f"compiles the Adam update only; set optimizer: adam (got {self.optimizer})")
        if self.compact_replay and self.prioritized.enabled:
            raise ConfigError("compact_replay", "samples uniformly; set prioritized.enabled: false to use it")


class QNetwork(nn.Module):
    """obs (B, *obs_shape) -> Q (B, n_actions): a `networks.build` encoder, then a Q or dueling head.
    uint8 observations (pixels) are scaled to [0, 1] here, so replay keeps them one byte each."""

    def __init__(self, encoder: nn.Module, head: nn.Module, pixels: bool):
        super().__init__()
        self.encoder, self.head, self.pixels = encoder, head, pixels

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(obs.float() / 255.0 if self.pixels else obs))


def build_q_network(config: Config, env: gym.vector.VectorEnv) -> QNetwork:
    """The Q-network for `env`'s spaces; ConfigError when a space or the network spec does not fit."""
    obs_space, action_space = env.single_observation_space, env.single_action_space
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ConfigError("env_id", f"DQN needs a discrete action space; {config.env_id} has {action_space}")
    if not isinstance(obs_space, gym.spaces.Box):
        raise ConfigError(
            "env_id",
            f"DQN needs a Box observation space; {config.env_id} has {obs_space} "
            "(kind qlearning handles Discrete ones)",
        )
    if networks.resolve(config.network)["type"] in ("lstm", "gru"):
        raise ConfigError("network.type", "dqn takes feed-forward networks; lstm and gru need kind drqn")
    encoder = networks.build(config.network, obs_space.shape)
    n = int(action_space.n)
    head = networks.DuelingHead(encoder.output_dim, n, config.dueling_hidden) if config.dueling else None
    return QNetwork(encoder, head or networks.QHead(encoder.output_dim, n), pixels=obs_space.dtype == np.uint8)


def make_replay(config: Config, env: gym.vector.VectorEnv, device: torch.device):
    space = env.single_observation_space
    if config.compact_replay:
        if space.dtype != np.uint8 or len(space.shape) != 3:
            raise ConfigError(
                "compact_replay", f"needs stacked uint8 frames (stack, H, W); {config.env_id} gives {space}"
            )
        from agents.frame_replay import FrameReplay

        return FrameReplay(
            capacity=config.buffer_size,
            num_envs=config.num_envs,
            frame_shape=space.shape[1:],
            stack=space.shape[0],
            n_actions=int(env.single_action_space.n),
            n_step=config.n_step,
            gamma=config.gamma,
            device=device,
            seed=config.seed,
        )
    return ReplayBuffer(
        config.buffer_size, space.shape, space.dtype, config.num_envs, **offpolicy.replay_options(config, device)
    )


class Learner:
    """The online and target Q-networks, the optimizer, and the update: the learning half of DQN."""

    def __init__(self, config: Config, q_net: QNetwork, device: torch.device):
        self.config, self.q_net = config, q_net
        self.target_net, self.params, self.optimizer, self.meter = offpolicy.learning_state(config, q_net, device)
        self.compiled = None
        if config.compile:
            self.compiled = fastpath.CompiledUpdate(
                q_net,
                self.optimizer,
                self.meter,
                loss=config.loss,
                max_grad_norm=config.max_grad_norm,
                skip_nonfinite=config.nan_policy == "skip",
                batch_size=config.batch_size,
            )

    def train_phase(self, replay, num_updates: int, beta: float, rng: np.random.Generator) -> int:
        """`num_updates` gradient steps; returns how many were skipped as non-finite (nan_policy: skip).
        Prioritized replay draws one batch per update (priorities change after each); uniform replay takes
        agents/fastpath.py's phase: the same updates, every batch drawn at once."""
        if not self.config.prioritized.enabled:
            skipped = fastpath.uniform_phase(self, replay, num_updates)
        else:
            skipped = 0
            for _ in range(num_updates):
                batch = replay.sample_prioritized(self.config.batch_size, beta, rng)
                td_errors = self.update(batch, self.targets(batch))
                if td_errors is None:
                    skipped += 1
                else:
                    replay.update_priorities(batch.indices, td_errors)
        if self.compiled is not None:  # it counts its skips on the device
            skipped += self.compiled.take_skipped()
        return skipped

    @torch.no_grad()
    def targets(self, batch: Batch) -> torch.Tensor:
        """y = r + γ^k (1 − terminated) Q_target(s', a'), a' = argmax of Q_target (or of Q_online: double_q)."""
        lead = batch.actions.shape  # (B,) or (G, B)
        next_obs = batch.next_obs.flatten(0, len(lead) - 1)  # (N, *obs_shape)
        next_q_target = self.target_net(next_obs).unflatten(0, lead)  # (*lead, A)
        next_q_online = self.q_net(next_obs).unflatten(0, lead) if self.config.double_q else None
        return losses.td_target(batch.rewards, next_q_target, batch.terminated, batch.discounts, next_q_online)

    def update(self, batch: Batch, targets: torch.Tensor) -> torch.Tensor | None:
        """One gradient step towards `targets` (B,); returns the TD errors, or None if skipped as non-finite."""
        if self.compiled is not None:  # the same step as one compiled graph
            try:
                return self.compiled(batch, targets)
            except fastpath.CompileFailed as e:  # raised by the first call only, before anything ran
                log.warning("compile: true failed (%s); training with the eager update", e)
                self.compiled = None
        q_values = self.q_net(batch.obs)  # (B, A)
        q_taken = q_values.gather(1, batch.actions[:, None]).squeeze(1)  # (B,) Q(s, a) of the actions taken
        loss = losses.td_loss(q_taken, targets, self.config.loss, batch.weights)
        q_mean = q_values.detach().mean()
        if self.config.nan_policy == "skip" and not offpolicy.finite(loss, q_mean):
            return None
        offpolicy.gradient_step(self.optimizer, self.params, loss, self.config.max_grad_norm)
        self.meter.add(loss, q_mean)
        return (q_taken - targets).detach()

    def read_losses(self) -> dict[str, float]:
        """Mean loss and Q since the last call (one host sync), or {} when there was no update."""
        return self.meter.read()


def greedy(q_net: QNetwork, device: torch.device):
    """obs (n, ...) -> argmax_a Q(obs, a) (n,), without autograd."""

    def policy(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return q_net(torch.as_tensor(obs, device=device)).argmax(dim=1).cpu().numpy()

    return policy


def act(policy, obs: np.ndarray, epsilon: float, n_actions: int, rng: np.random.Generator) -> np.ndarray:
    """ε-greedy on every env at once: one forward pass, skipped when every env explores."""
    explore = rng.random(len(obs)) < epsilon
    random_actions = rng.integers(n_actions, size=len(obs))
    return random_actions if explore.all() else np.where(explore, random_actions, policy(obs))


def train(config: Config, tracker: Tracker, *, resume: dict | None = None) -> dict[str, float]:
    device, rng = offpolicy.setup(config)  # bad input fails here and in the next lines, before any slow work
    env = make_env(config, config.num_envs, config.seed)
    q_net = build_q_network(config, env).to(device)
    learner, replay = Learner(config, q_net, device), make_replay(config, env, device)
    policy, n_actions = greedy(q_net, device), int(env.single_action_space.n)

    def step(obs: np.ndarray, valid: np.ndarray, epsilon: float) -> tuple[np.ndarray, np.ndarray, dict]:
        # (1) act: ε-greedy on every env in one forward pass
        actions = act(policy, obs, epsilon, n_actions, rng)
        # (2) step and store the transitions (`valid`: the envs whose step is no reset after an episode's end)
        next_obs, rewards, terminated, truncated, info = env.step(actions)
        replay.add(obs, actions, rewards, next_obs, terminated, truncated, valid)
        return next_obs, terminated | truncated, info

    def evaluation(eval_env: gym.vector.VectorEnv) -> dict:
        return evaluate_net(q_net, eval_env, config.eval_episodes, config.seed + EVAL_SEED_OFFSET, device)

    # (3) sync target, (4) learn, (5) log, evaluate, checkpoint: agents/offpolicy.py's loop, every agent's
    return offpolicy.run(config, tracker, env, learner, replay, rng, step, evaluation, kind="dqn", resume=resume)


# --- evaluation -------------------------------------------------------------------------------------------


def evaluate(
    config: Config, tree: dict, *, episodes: int, seed: int, video_path: Path | None = None, trajectories: bool = False
) -> dict:
    """Greedy episodes with the checkpoint's Q-network; the same seed gives the same returns.
    With `video_path`, also writes an mp4 of the first episode; with `trajectories`, returns the episodes' steps."""
    return offpolicy.evaluate_checkpoint(
        config, tree, "dqn", build_q_network, greedy, episodes, seed, video_path, trajectories
    )


def evaluate_net(q_net: QNetwork, env: gym.vector.VectorEnv, episodes: int, seed: int, device: torch.device) -> dict:
    """`episodes` greedy episodes on a sync vector env (env i seeded seed + i): see envs/evaluation.py."""
    return offpolicy.evaluate_net(q_net, env, episodes, seed, greedy(q_net, device))
