"""Parallelised Q-Network (kind `pqn`): Q-learning with neither a replay buffer nor a target network.

Gallici et al., "Simplifying Deep Temporal Difference Learning" (ICLR 2025); reference code: purejaxql (JAX) and
CleanRL's `cleanrl/pqn.py` (PyTorch). Many vector envs decorrelate the data that a replay buffer would, LayerNorm
in the Q-network (`norm: layer` in the network spec) keeps TD learning stable without a target network, and
Peng's Q(λ) returns over short rollouts propagate rewards faster than one-step targets. Each iteration:

    (1) act                         `num_steps` vector steps on `num_envs` envs, ε-greedy from one forward pass
                                    each; the network does not change within a rollout, so the Q-values it acted
                                    on are the ones the targets bootstrap from
    (2) Q(λ) targets                agents/losses.py `q_lambda_targets` over the rollout, rewards x reward_scale
    (3) learn                       `update_epochs` passes over the rollout's transitions, each shuffled into
                                    `num_minibatches` minibatches: one RAdam step per minibatch, gradients
                                    clipped; then the non-finite check
    (4) log, evaluate, checkpoint   agents/bookkeeping.py `Bookkeeping`, as every agent on the off-policy loop

Counting follows the off-policy agents: `total_steps`, the ε and learning-rate schedules and the log / evaluate /
checkpoint cadence count transitions; the autoreset step after an episode's end holds none (it is stepped, then
neither counted nor learned from). The cadence is checked once per rollout, after its update.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch

import networks
from agents import bookkeeping, checkpoints, dqn, evaluation, losses, members
from agents.checkpoints import Counters
from agents.evaluation import EVAL_SEED_OFFSET
from agents.learning import LossMeter, gradient_step
from agents.schedules import Schedules
from networks.batched import Members
from networks.errors import ConfigError, TrainingDiverged
from networks.interfaces import Tracker


@dataclass
class Config:
    """PQN. Defaults are purejaxql's CartPole settings (`pqn_cartpole.yaml`) unless a comment says otherwise."""

    env_id: str = "CartPole-v1"  # any id envs.make accepts, with Box observations and Discrete actions
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # to the env, e.g. {max_episode_steps: 200}
    num_envs: int = field(default=32, metadata={"ge": 1})  # NUM_ENVS: envs stepped together, one forward pass
    num_steps: int = field(default=64, metadata={"ge": 1})  # NUM_STEPS: vector steps per rollout
    total_steps: int = field(default=500_000, metadata={"ge": 1})  # TOTAL_TIMESTEPS: env transitions
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    torch_threads: int = field(default=0, metadata={"ge": 0})  # CPU threads for torch; 0 = torch's default
    # HIDDEN_SIZE 256 x NUM_LAYERS 2, NORM_TYPE layer_norm: Linear -> LayerNorm -> ReLU
    network: dict[str, Any] = field(default_factory=lambda: {"type": "mlp", "hidden": [256, 256], "norm": "layer"})
    learning_rate: float = field(default=1e-4, metadata={"gt": 0})  # LR, for RAdam (Liu et al. 2020)
    learning_rate_final: float | None = field(default=0.0, metadata={"ge": 0})  # LR_LINEAR_DECAY; None = constant
    loss: Literal["mse", "huber"] = "mse"  # purejaxql: 0.5 · MSE; CleanRL: MSE (see max_grad_norm)
    max_grad_norm: float = field(default=10.0, metadata={"gt": 0})  # MAX_GRAD_NORM (on purejaxql's 0.5 · MSE)
    gamma: float = field(default=0.99, metadata={"ge": 0, "le": 1})  # GAMMA
    q_lambda: float = field(default=0.95, metadata={"ge": 0, "le": 1})  # LAMBDA: 0 = one-step, 1 = Monte Carlo
    reward_scale: float = field(default=1.0, metadata={"gt": 0})  # REW_SCALE: purejaxql's code default
    num_minibatches: int = field(default=16, metadata={"ge": 1})  # NUM_MINIBATCHES, per epoch
    update_epochs: int = field(default=4, metadata={"ge": 1})  # NUM_EPOCHS over each rollout
    exploration_initial_eps: float = field(default=1.0, metadata={"ge": 0, "le": 1})  # EPS_START
    exploration_final_eps: float = field(default=0.2, metadata={"ge": 0, "le": 1})  # EPS_FINISH
    exploration_fraction: float = field(default=0.2, metadata={"ge": 0, "le": 1})  # EPS_DECAY, of the run
    eval_every: int = field(default=25_000, metadata={"ge": 0})  # TEST_INTERVAL 0.05 of the run; 0 = at end
    eval_episodes: int = field(default=10, metadata={"ge": 1})
    stop_at_return: float | None = None  # dlforge: stop once an evaluation's mean return reaches this
    checkpoint_every: int = field(default=100_000, metadata={"ge": 1})  # env steps between checkpoints
    log_every: int = field(default=10_000, metadata={"ge": 1})  # env steps between chart points
    nan_policy: Literal["stop", "skip"] = "stop"  # a non-finite loss or Q: stop the run, or skip that update

    def validate(self) -> None:
        rollout = self.num_envs * self.num_steps
        if rollout % self.num_minibatches:
            raise ConfigError(
                "num_minibatches",
                f"must divide num_envs x num_steps ({self.num_envs} x {self.num_steps} = {rollout}), "
                f"got {self.num_minibatches}",
            )
        if self.exploration_final_eps > self.exploration_initial_eps:
            raise ConfigError(
                "exploration_final_eps",
                f"must be <= exploration_initial_eps ({self.exploration_initial_eps}), "
                f"got {self.exploration_final_eps}",
            )


def build_q_network(config: Config, env: gym.vector.VectorEnv) -> dqn.QNetwork:
    """obs (B, *obs_shape) -> Q (B, n_actions): a `networks.build` encoder and a linear Q head (uint8 pixels are
    scaled to [0, 1] inside). ConfigError when a space or the network spec does not fit."""
    obs_space, action_space = env.single_observation_space, env.single_action_space
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ConfigError("env_id", f"PQN needs a discrete action space; {config.env_id} has {action_space}")
    if not isinstance(obs_space, gym.spaces.Box):
        raise ConfigError("env_id", f"PQN needs a Box observation space; {config.env_id} has {obs_space}")
    if networks.resolve(config.network)["type"] in ("lstm", "gru"):
        raise ConfigError("network.type", "pqn takes feed-forward networks (mlp, cnn, presets), not lstm or gru")
    encoder = networks.build(config.network, obs_space.shape)
    head = networks.QHead(encoder.output_dim, int(action_space.n))
    return dqn.QNetwork(encoder, head, pixels=obs_space.dtype == np.uint8)


class Rollout:
    """One rollout's (T, N, ...) tensors: observations, the Q-values acted on, actions, rewards, episode ends, and
    `valid`, the steps that hold a transition (not an autoreset step). `q` has T + 1 rows: row T is Q of the
    observation after the last step, so `q[1:]` is Q(s_{t+1}) for every step t."""

    def __init__(self, config: Config, env: gym.vector.VectorEnv, device: torch.device):
        space, (steps, n) = env.single_observation_space, (config.num_steps, config.num_envs)
        obs_dtype = torch.uint8 if space.dtype == np.uint8 else torch.float32
        self.obs = torch.zeros((steps, n, *space.shape), dtype=obs_dtype, device=device)
        self.q = torch.zeros((steps + 1, n, int(env.single_action_space.n)), device=device)
        self.actions = np.zeros((steps, n), dtype=np.int64)
        self.rewards = np.zeros((steps, n), dtype=np.float32)
        self.terminated, self.truncated, self.valid = (np.zeros((steps, n), dtype=bool) for _ in range(3))
        self.length, self.device = 0, device  # steps filled; the run's last rollout may stop short

    def store(self, obs: torch.Tensor, q: torch.Tensor, actions, rewards, terminated, truncated, valid) -> None:
        t = self.length
        self.obs[t], self.q[t] = obs, q
        self.actions[t], self.rewards[t], self.terminated[t], self.truncated[t], self.valid[t] = (
            actions,
            rewards,
            terminated,
            truncated,
            valid,
        )
        self.length += 1

    def tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(array[: self.length], device=self.device)


class Learner:
    """The Q-network, RAdam and the update over one rollout: the learning half of PQN. No target network: Q(λ)
    bootstraps from the online network's own Q-values, which LayerNorm keeps from diverging."""

    target_net = None  # checkpoints.snapshot_member / restore_member: PQN checkpoints hold no target_net

    def __init__(self, config: Config, q_net: dqn.QNetwork, device: torch.device):
        self.config, self.net = config, q_net
        self.q_net = Members([q_net])  # the checkpoint view the shared loop's snapshot and restore use
        self.params = list(q_net.parameters())
        self.optimizer = torch.optim.RAdam(self.params, lr=config.learning_rate, foreach=True)  # purejaxql, CleanRL
        self.meter = LossMeter(device)

    def targets(self, rollout: Rollout) -> torch.Tensor:
        """Peng's Q(λ) return of every step of the rollout, (T, N)."""
        config, t = self.config, rollout.length
        return losses.q_lambda_targets(
            rollout.tensor(rollout.rewards) * config.reward_scale,
            rollout.q[1 : t + 1],  # Q(s_{t+1}), (T, N, A)
            rollout.tensor(rollout.terminated),
            rollout.tensor(rollout.truncated),
            config.gamma,
            config.q_lambda,
        )

    def train_phase(self, rollout: Rollout, targets: torch.Tensor, rng: np.random.Generator) -> tuple[int, int]:
        """`update_epochs` passes over the rollout's transitions (autoreset steps left out), each shuffled into
        `num_minibatches` minibatches; returns (updates made, updates skipped as non-finite)."""
        valid = rollout.tensor(rollout.valid).flatten()  # (T·N,)
        obs = rollout.obs[: rollout.length].flatten(0, 1)[valid]  # (M, *obs_shape)
        actions = rollout.tensor(rollout.actions).flatten()[valid]  # (M,)
        targets = targets.flatten()[valid]  # (M,)
        made = skipped = 0
        for _ in range(self.config.update_epochs):
            order = torch.as_tensor(rng.permutation(len(actions)), device=actions.device)
            for minibatch in order.tensor_split(self.config.num_minibatches):
                if len(minibatch) == 0:  # a short last rollout: fewer transitions than minibatches
                    continue
                if self.update(obs[minibatch], actions[minibatch], targets[minibatch]):
                    made += 1
                else:
                    skipped += 1
        return made, skipped

    def update(self, obs: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor) -> bool:
        """One gradient step towards `targets` (B,); False when skipped as non-finite (nan_policy: skip)."""
        q_values = self.net(obs)  # (B, A)
        q_taken = q_values.gather(1, actions[:, None]).squeeze(1)  # (B,) Q(s, a) of the actions taken
        loss = losses.td_loss(q_taken, targets, self.config.loss)
        q_mean = q_values.detach().mean()
        if self.config.nan_policy == "skip" and not bool(torch.isfinite(loss) & torch.isfinite(q_mean)):
            return False
        gradient_step(self.optimizer, self.params, loss, self.config.max_grad_norm)
        self.meter.add(loss, q_mean)
        return True


def schedules(config: Config) -> Schedules:
    """ε: initial -> final over exploration_fraction of the run; learning rate: linear to learning_rate_final."""
    return Schedules(
        total_steps=config.total_steps,
        learning_starts=0,  # no replay to fill: learning starts with the first rollout
        epsilon_initial=config.exploration_initial_eps,
        epsilon_final=config.exploration_final_eps,
        epsilon_steps=config.exploration_fraction * config.total_steps,
        beta0=1.0,  # no prioritized replay
        anneal_beta=False,
        learning_rate=config.learning_rate,
        learning_rate_final=config.learning_rate_final,
    )


def train(config: Config, tracker: Tracker, *, resume: dict | None = None) -> dict[str, float]:
    device, (member,) = members.setup(config, tracker, resume)  # bad input fails here and below, before slow work
    rng = member.rng
    env = evaluation.make_env(config, config.num_envs, config.seed)
    q_net = build_q_network(config, env).to(device)
    learner, rollout = Learner(config, q_net, device), Rollout(config, env, device)
    counters = Counters() if resume is None else checkpoints.restore_member(member, learner, None, "pqn")
    eval_env, schedule = evaluation.make_eval_env(config), schedules(config)
    n_actions = int(env.single_action_space.n)

    def metrics(step: int) -> dict:
        charts = {
            "charts/epsilon": schedule.epsilon(step),
            "charts/learning_rate": learner.optimizer.param_groups[0]["lr"],
            "charts/updates": counters.updates,
        }
        if config.nan_policy == "skip":
            charts["losses/skipped_updates"] = counters.skipped_updates
        return {**charts, **learner.meter.read()}

    def evaluate_now() -> dict:
        seed = config.seed + EVAL_SEED_OFFSET
        return dqn.evaluate_net(q_net, eval_env, config.eval_episodes, seed, device)

    book = bookkeeping.Bookkeeping(
        config,
        tracker,
        counters,
        metrics=metrics,
        evaluate=evaluate_now,
        snapshot=lambda _: checkpoints.snapshot_member(learner, member, counters),
        stop_at_return=config.stop_at_return,
    )
    obs, _ = env.reset(seed=config.seed + counters.step)  # a resumed run starts fresh episodes
    ended = np.zeros(config.num_envs, dtype=bool)  # NEXT_STEP autoreset: an env's step after its end only resets
    while counters.step < config.total_steps:
        before, epsilon = counters.step, schedule.epsilon(counters.step)
        # (1) act: ε-greedy from one forward pass per vector step; Q-values kept for the targets
        q_net.eval()
        rollout.length = 0
        with torch.no_grad():
            while rollout.length < config.num_steps and counters.step < config.total_steps:
                obs_tensor = torch.as_tensor(obs, device=device)
                q = q_net(obs_tensor)  # (N, A)
                explore = rng.random(config.num_envs) < epsilon
                actions = np.where(explore, rng.integers(n_actions, size=config.num_envs), q.argmax(1).cpu().numpy())
                next_obs, rewards, terminated, truncated, info = env.step(actions)
                rollout.store(obs_tensor, q, actions, rewards, terminated, truncated, valid=~ended)
                book.record_step(~ended, info)
                obs, ended = next_obs, terminated | truncated
            rollout.q[rollout.length] = q_net(torch.as_tensor(obs, device=device))  # Q(s_T) of the last step
            # (2) Q(λ) targets, with this rollout's network
            targets = learner.targets(rollout)
        # (3) learn: update_epochs x num_minibatches RAdam steps, then the non-finite check
        q_net.train()
        learner.optimizer.param_groups[0]["lr"] = schedule.lr(counters.step)
        made, skipped = learner.train_phase(rollout, targets, rng)
        counters.updates += made
        counters.skipped_updates += skipped
        if config.nan_policy == "stop" and not learner.meter.finite_members()[0]:
            raise TrainingDiverged(bookkeeping.diverged_message(counters))
        # (4) log, evaluate, checkpoint
        if book.after_step(before):
            break
    return book.finish(env, eval_env)


# --- evaluation -------------------------------------------------------------------------------------------


def evaluate(
    config: Config, tree: dict, *, episodes: int, seed: int, video_path: Path | None = None, trajectories: bool = False
) -> dict:
    """Greedy episodes with the checkpoint's Q-network; the same seed gives the same returns.
    With `video_path`, also writes an mp4 of the first episode; with `trajectories`, returns the episodes' steps."""
    return evaluation.evaluate_checkpoint(
        config, tree, "pqn", build_q_network, dqn.greedy, episodes, seed, video_path, trajectories
    )
