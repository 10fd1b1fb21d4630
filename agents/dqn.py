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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import networks
from agents import evaluation, fastpath, learning, losses, offpolicy, population
from agents.members import MemberRun, network, per_member, setup
from agents.replay import Batch, PerMember, ReplayBuffer
from networks.batched import Members
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
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)  # torch.optim options (learning.OPTIMIZER_OPTIONS)
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
    # dlforge: several seeds and per-member hyperparameters as one batched network, {seeds: [...]} or {size: N}
    # plus per-member lists (agents/population.py); None: one run
    population: dict[str, Any] | None = None

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
        learning.check_optimizer_kwargs(self.optimizer, self.optimizer_kwargs)
        if self.compile and self.optimizer != "adam":
            raise ConfigError("compile", f"compiles the Adam update only; set optimizer: adam (got {self.optimizer})")
        if self.compact_replay and self.prioritized.enabled:
            raise ConfigError("compact_replay", "samples uniformly; set prioritized.enabled: false to use it")
        population.check(self)


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


def make_replay(config: Config, env, device: torch.device, members: list[MemberRun] | None = None):
    """Every member's replay, member axis first: a ReplayBuffer of P rings (each member's gamma, α and streams), or,
    for compact_replay (a single run only), a FrameReplay behind `PerMember`. No `members`: a single run's, drawing
    from the global streams (uniform only: prioritized draws need the members' NumPy streams)."""
    space = env.single_observation_space
    if config.compact_replay:
        if space.dtype != np.uint8 or len(space.shape) != 3:
            raise ConfigError(
                "compact_replay", f"needs stacked uint8 frames (stack, H, W); {config.env_id} gives {space}"
            )
        from agents.frame_replay import FrameReplay

        frames = FrameReplay(
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
        return PerMember([frames])
    options = offpolicy.replay_options(config, device)
    if members is None:
        return ReplayBuffer(config.buffer_size, space.shape, space.dtype, config.num_envs, **options)
    options.update(gamma=per_member(members, "gamma"), alpha=per_member(members, "prioritized.alpha"))
    return ReplayBuffer(
        config.buffer_size,
        space.shape,
        space.dtype,
        config.num_envs,
        **options,
        members=len(members),
        generators=[m.generator for m in members],
        rngs=[m.rng for m in members],
    )


class Learner:
    """The online and target Q-networks of every member, the optimizer, and the update: the learning half of DQN.
    Batches carry the member axis first, (P, B, ...); each member's loss is its own batch's mean, and one backward
    of their sum trains all of them (networks.batched: no member's output depends on another's parameters)."""

    def __init__(
        self, config: Config, q_net: Members | nn.Module, device: torch.device, members: list[MemberRun] | None = None
    ):
        q_net = q_net if isinstance(q_net, Members) else Members([q_net])  # a plain module: a single run
        self.config, self.q_net, self.members = config, q_net, q_net.size
        self.target_net, self.params, self.optimizer, self.meter = learning.learning_state(
            config, q_net, device, members
        )
        self.skipped = np.zeros(self.members, dtype=np.int64)  # per member, this phase
        self.last_ok = np.ones(self.members, dtype=bool)  # the members whose last update was finite
        self.compiled = None
        if config.compile:  # a single run only (agents/population.py refuses it for populations)
            self.compiled = fastpath.CompiledUpdate(
                q_net.net,
                self.optimizer,
                self.meter,
                loss=config.loss,
                max_grad_norm=config.max_grad_norm,
                skip_nonfinite=config.nan_policy == "skip",
                batch_size=config.batch_size,
            )

    def train_phase(self, replay, num_updates: np.ndarray, betas: np.ndarray) -> np.ndarray:
        """`num_updates[k]` gradient steps for member k; returns how many were skipped as non-finite, (P,).
        Prioritized replay draws one batch per update (priorities change after each); uniform replay takes
        agents/fastpath.py's phase: the same updates, every batch drawn at once."""
        if not self.config.prioritized.enabled:
            fastpath.uniform_phase(self, replay, num_updates)
        else:
            for g in range(int(num_updates.max())):
                active = num_updates > g
                batch = replay.sample_prioritized(self.config.batch_size, betas, active)
                td_errors = self.update(batch, self.targets(batch), active)
                if td_errors is not None:  # the members it changed (not skipped as non-finite) get new priorities
                    changed = active if self.config.nan_policy != "skip" else active & self.last_ok
                    replay.update_priorities(batch.indices, td_errors, changed)
        if self.compiled is not None:  # it counts its skips on the device
            self.skipped[0] += self.compiled.take_skipped()
        skipped = self.skipped.copy()
        self.skipped[:] = 0
        return skipped

    @torch.no_grad()
    def targets(self, batch: Batch) -> torch.Tensor:
        """y = r + γ^k (1 − terminated) Q_target(s', a'), a' = argmax of Q_target (or of Q_online: double_q)."""
        lead = batch.actions.shape  # (P, B) or (P, G, B)
        next_obs = batch.next_obs.flatten(1, len(lead) - 1)  # (P, N, *obs_shape)
        next_q_target = self.target_net(next_obs).unflatten(1, lead[1:])  # (*lead, A)
        next_q_online = self.q_net(next_obs).unflatten(1, lead[1:]) if self.config.double_q else None
        return losses.td_target(batch.rewards, next_q_target, batch.terminated, batch.discounts, next_q_online)

    def update(self, batch: Batch, targets: torch.Tensor, active: np.ndarray | None = None) -> torch.Tensor | None:
        """One gradient step towards `targets` (P, B) for the members in `active` (all when None); returns the TD
        errors (P, B), or None when a single run skipped it as non-finite (a population skips per member)."""
        if self.compiled is not None:  # the same step as one compiled graph
            try:
                return self.compiled(fastpath.alone(batch), targets[0])[None]
            except fastpath.CompileFailed as e:  # raised by the first call only, before anything ran
                log.warning("compile: true failed (%s); training with the eager update", e)
                self.compiled = None
        q_values = self.q_net(batch.obs)  # (P, B, A)
        q_taken = q_values.gather(2, batch.actions[..., None]).squeeze(2)  # (P, B) Q(s, a) of the actions taken
        loss = losses.td_loss(q_taken, targets, self.config.loss, batch.weights)  # (P,) each member's mean
        q_mean = q_values.detach().mean((1, 2))  # (P,)
        changed = None if active is None or active.all() else active
        if self.config.nan_policy == "skip":  # skip only the members that went non-finite (one host sync)
            self.last_ok = (torch.isfinite(loss) & torch.isfinite(q_mean)).cpu().numpy()
            skipped = ~self.last_ok if changed is None else changed & ~self.last_ok
            self.skipped += skipped
            if skipped.all():  # a single run's update skipped whole, as always
                return None
            if skipped.any():
                changed = self.last_ok if changed is None else changed & self.last_ok
        learning.member_step(self, loss, self.config.max_grad_norm, changed)
        self.meter.add(loss, q_mean, changed)
        return (q_taken - targets).detach()

    def read_losses(self, member: int = 0) -> dict[str, float]:
        """Member `member`'s mean loss and Q since the last call (one host sync), or {} when it had no update."""
        return self.meter.read(member)


def greedy(q_net: nn.Module, device: torch.device):
    """obs (n, ...) -> argmax_a Q(obs, a) (n,), without autograd; obs (P, n, ...) -> (P, n) for a Members net."""

    def policy(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return q_net(torch.as_tensor(obs, device=device)).argmax(dim=-1).cpu().numpy()

    return policy


def act(
    policy,
    obs: np.ndarray,
    epsilons: np.ndarray,
    n_actions: int,
    rngs: list[np.random.Generator],
    stepping: np.ndarray,
) -> np.ndarray:
    """ε-greedy on every env of the members in `stepping` at once: obs (P, E, ...) -> actions (P, E). Each member
    draws from its own stream (as its single run: whether to explore, then the random actions); one forward pass for
    every member, skipped when every env explores."""
    size, num_envs = obs.shape[:2]
    if size == 1 and stepping[0]:  # a single run: its draws, with the member axis put on
        explore = rngs[0].random(num_envs) < epsilons[0]
        random_actions = rngs[0].integers(n_actions, size=num_envs)
        return (random_actions if explore.all() else np.where(explore, random_actions, policy(obs)[0]))[None]
    explore = np.ones((size, num_envs), dtype=bool)
    random_actions = np.zeros((size, num_envs), dtype=np.int64)
    for k in np.flatnonzero(stepping):
        explore[k] = rngs[k].random(num_envs) < epsilons[k]
        random_actions[k] = rngs[k].integers(n_actions, size=num_envs)
    return random_actions if explore.all() else np.where(explore, random_actions, policy(obs))


def train(
    config: Config,
    tracker: Tracker | Sequence[Tracker],
    *,
    resume: dict | Sequence[dict | None] | None = None,
    finished: Sequence[bool] | None = None,
) -> dict[str, float] | list[dict | None]:
    """Train `config`; a population (`population:`) takes one tracker and one resume tree (or None) per member and
    returns one summary per member. `finished[k]`: member k ended before (a resume), so it does not train again
    (its summary is None)."""
    device, members = setup(config, tracker, resume, finished)  # bad input fails here and below, before any slow work
    env = offpolicy.make_member_env(members)
    q_net = network(members, lambda member_config: build_q_network(member_config, env), (QNetwork,)).to(device)
    learner, replay = Learner(config, q_net, device, members), make_replay(config, env, device, members)
    policy, n_actions, rngs = greedy(q_net, device), int(env.single_action_space.n), [m.rng for m in members]

    def step(obs: np.ndarray, valid: np.ndarray, epsilons: np.ndarray, stepping: np.ndarray):
        # (1) act: ε-greedy on every env of every member in one forward pass
        actions = act(policy, obs, epsilons, n_actions, rngs, stepping)
        # (2) step and store the transitions (`valid`: the envs whose step is no reset after an episode's end)
        next_obs, rewards, terminated, truncated, infos = env.step(actions, stepping)
        replay.add(obs, actions, rewards, next_obs, terminated, truncated, valid)
        return next_obs, terminated | truncated, infos

    # (3) sync target, (4) learn, (5) log, evaluate, checkpoint: agents/offpolicy.py's loop, every agent's
    return offpolicy.run(config, env, learner, replay, members, step, lambda: policy, kind="dqn")


# --- evaluation -------------------------------------------------------------------------------------------


def evaluate(
    config: Config, tree: dict, *, episodes: int, seed: int, video_path: Path | None = None, trajectories: bool = False
) -> dict:
    """Greedy episodes with the checkpoint's Q-network; the same seed gives the same returns.
    With `video_path`, also writes an mp4 of the first episode; with `trajectories`, returns the episodes' steps."""
    return evaluation.evaluate_checkpoint(
        config, tree, "dqn", build_q_network, greedy, episodes, seed, video_path, trajectories
    )


def evaluate_net(q_net: QNetwork, env: gym.vector.VectorEnv, episodes: int, seed: int, device: torch.device) -> dict:
    """`episodes` greedy episodes on a sync vector env (env i seeded seed + i): see envs/evaluation.py."""
    return evaluation.evaluate_net(q_net, env, episodes, seed, greedy(q_net, device))
