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

import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import networks
from agents import dqn, losses
from agents.episode_replay import EpisodeReplay, SequenceBatch
from agents.schedules import crossed, linear_schedule
from envs.evaluation import write_mp4
from networks import io
from networks.errors import CheckpointError, ConfigError, TrainingDiverged
from networks.runtime import resolve_device, restore_rng_state, rng_state, seed_everything

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
    def __init__(self, config: Config, q_net: RecurrentQNetwork, device: torch.device):
        self.config, self.q_net = config, q_net
        self.target_net = copy.deepcopy(q_net).requires_grad_(False)
        self.params = list(q_net.parameters())
        self.optimizer = dqn.make_optimizer(config, self.params, device)
        self.loss_sum, self.q_sum, self.logged_updates = 0.0, 0.0, 0

    def update(self, replay: EpisodeReplay, beta: float) -> bool:
        """One gradient step on a batch of windows; False when skipped as non-finite (nan_policy: skip)."""
        batch = replay.sample(self.config.batch_size, beta)
        q_taken, targets = sequence_q_and_targets(
            self.q_net, self.target_net, batch, burn_in=self.config.burn_in, double_q=self.config.double_q
        )
        loss = sequence_loss(q_taken, targets, batch, self.config.loss)
        if not bool(torch.isfinite(loss)):
            if self.config.nan_policy == "skip":
                return False
            raise TrainingDiverged("non-finite TD loss; stopped, the last checkpoint is the last good one")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.params, self.config.max_grad_norm, foreach=True)
        self.optimizer.step()
        if replay.tree is not None:
            replay.update_priorities(batch.indices, q_taken.detach() - targets, batch.mask)
        self.loss_sum += float(loss.detach())
        self.q_sum += float(q_taken.detach().mean())
        self.logged_updates += 1
        return True

    def sync_target(self) -> None:
        if self.config.tau >= 1.0:
            self.target_net.load_state_dict(self.q_net.state_dict())
        else:
            with torch.no_grad():
                torch._foreach_lerp_(list(self.target_net.parameters()), self.params, self.config.tau)

    def read_losses(self) -> dict[str, float]:
        if self.logged_updates == 0:
            return {}
        metrics = {
            "losses/td_loss": self.loss_sum / self.logged_updates,
            "losses/q_values": self.q_sum / self.logged_updates,
        }
        self.loss_sum, self.q_sum, self.logged_updates = 0.0, 0.0, 0
        return metrics


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
        n_step=config.n_step,
        gamma=config.gamma,
        state_shapes=state_shapes,
        prioritized=config.prioritized.enabled,
        alpha=config.prioritized.alpha,
        priority_eta=config.priority_eta,
        priority_eps=config.prioritized.eps,
        device=device,
        seed=config.seed,
    )


def train(config: Config, tracker, *, resume: dict | None = None) -> dict[str, float]:
    config.validate()
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    device = resolve_device(config.device)
    rng = seed_everything(config.seed)
    env = dqn.make_env(config, config.num_envs, config.seed)
    q_net = build_q_network(config, env).to(device)
    learner = Learner(config, q_net, device)
    replay = make_replay(config, env, q_net, device)
    counters = dqn.Counters()
    if resume is not None:
        counters = restore(resume, learner, replay, rng)
    eval_env = dqn.make_env(config, min(config.eval_episodes, dqn.MAX_EVAL_ENVS), config.seed, vectorization="sync")

    obs, _ = env.reset(seed=config.seed + counters.step)
    state = q_net.initial_state(config.num_envs, device)
    episode_start = np.ones(config.num_envs, dtype=bool)  # reset each slot's state before its next step
    after_end = np.zeros(config.num_envs, dtype=bool)  # NEXT_STEP autoreset: the next step only resets
    target_every = max(config.target_update_interval // config.num_envs, 1)
    epsilon_steps = config.exploration_fraction * config.total_steps
    start_time, start_step = time.perf_counter(), counters.step
    last_eval = None

    def checkpoint(best: bool = False, metric: float | None = None) -> None:
        tree = snapshot(learner, counters, rng, replay if config.save_replay and not best else None)
        tracker.checkpoint(tree, counters.step, best=best, metric=metric)

    while counters.step < config.total_steps:
        before = counters.step
        learning = counters.step >= config.learning_starts
        epsilon = linear_schedule(
            config.exploration_initial_eps, config.exploration_final_eps, epsilon_steps, counters.step
        )
        actions, fed_state, state = act(q_net, obs, state, episode_start, epsilon if learning else 1.0, rng, device)
        next_obs, rewards, terminated, truncated, info = env.step(actions)
        valid = ~after_end
        replay.add(obs, actions, rewards, next_obs, terminated, truncated, valid, fed_state)
        episode_start = ~valid  # this step was an autoreset: obs is a first observation
        after_end = terminated | truncated
        obs = next_obs
        new = int(valid.sum())
        if new == 0:
            continue
        counters.step += new
        counters.vec_steps += 1
        counters.since_train += new

        if "_episode" in info and info["_episode"].any():
            ended = info["_episode"]
            counters.episodes += int(ended.sum())
            tracker.log(
                {
                    "charts/episodic_return": float(info["episode"]["r"][ended].mean()),
                    "charts/episodic_length": float(info["episode"]["l"][ended].mean()),
                },
                counters.step,
            )
        if counters.vec_steps % target_every == 0:
            learner.sync_target()
        if (
            counters.step > config.learning_starts
            and counters.vec_steps % config.train_freq == 0
            and replay.complete_windows() > 0
        ):
            num_updates = config.gradient_steps if config.gradient_steps > 0 else counters.since_train
            beta = (
                linear_schedule(config.prioritized.beta0, 1.0, config.total_steps, counters.step)
                if config.prioritized.anneal_beta
                else config.prioritized.beta0
            )
            if config.learning_rate_final is not None:  # as dqn: linear decay over the run
                learner.optimizer.param_groups[0]["lr"] = linear_schedule(
                    config.learning_rate, config.learning_rate_final, config.total_steps, counters.step
                )
            done_updates = sum(learner.update(replay, beta) for _ in range(num_updates))
            counters.updates += done_updates
            counters.skipped_updates += num_updates - done_updates
            counters.since_train = 0

        if crossed(before, counters.step, config.log_every):
            sps = (counters.step - start_step) / max(time.perf_counter() - start_time, 1e-9)
            tracker.log(
                {
                    "charts/epsilon": epsilon,
                    "charts/sps": sps,
                    "charts/updates": counters.updates,
                    **learner.read_losses(),
                    **({"losses/skipped_updates": counters.skipped_updates} if config.nan_policy == "skip" else {}),
                },
                counters.step,
            )
        done = counters.step >= config.total_steps
        if crossed(before, counters.step, config.eval_every) or (done and config.eval_every == 0):
            last_eval = evaluate_net(q_net, eval_env, config.eval_episodes, config.seed + dqn.EVAL_SEED_OFFSET, device)
            tracker.log(
                {"eval/mean_return": last_eval["mean_return"], "eval/std_return": last_eval["std_return"]},
                counters.step,
            )
            if last_eval["mean_return"] > counters.best_eval:
                counters.best_eval = last_eval["mean_return"]
                checkpoint(best=True, metric=counters.best_eval)
            if config.stop_at_return is not None and last_eval["mean_return"] >= config.stop_at_return:
                done = True
        if crossed(before, counters.step, config.checkpoint_every) or done:
            checkpoint()
        if done or tracker.should_stop():
            break

    env.close()
    eval_env.close()
    elapsed = time.perf_counter() - start_time
    summary = {
        "charts/episodes": counters.episodes,
        "charts/updates": counters.updates,
        "charts/sps": (counters.step - start_step) / max(elapsed, 1e-9),
        "time/train_seconds": elapsed,
        "global_step": counters.step,
    }
    if last_eval is not None:
        summary.update(
            {
                "eval/mean_return": last_eval["mean_return"],
                "eval/std_return": last_eval["std_return"],
                "eval/best_return": counters.best_eval,
            }
        )
    tracker.summary(summary)
    return summary


def snapshot(learner: Learner, counters, rng: np.random.Generator, replay: EpisodeReplay | None) -> dict:
    tree = {
        "q_net": learner.q_net.state_dict(),
        "target_net": learner.target_net.state_dict(),
        "optimizer": learner.optimizer.state_dict(),
        "counters": asdict(counters),
        "rng": rng_state(rng),
    }
    if replay is not None:
        tree["replay"] = replay.state_dict()
    return tree


def restore(tree: dict, learner: Learner, replay: EpisodeReplay, rng: np.random.Generator):
    missing = [key for key in ("q_net", "target_net", "optimizer", "counters", "rng") if key not in tree]
    if missing:
        raise CheckpointError(f"checkpoint lacks {missing} (is it a drqn run?)")
    io.load_module_state(learner.q_net, tree["q_net"], "q_net")
    io.load_module_state(learner.target_net, tree["target_net"], "target_net")
    io.load_optimizer_state(learner.optimizer, tree["optimizer"])
    try:
        counters = dqn.Counters(**tree["counters"])
    except TypeError as e:
        raise CheckpointError(f"counters: {e}") from None
    restore_rng_state(tree["rng"], rng)
    if "replay" in tree:
        replay.load_state_dict(tree["replay"])
    return counters


# --- evaluation -------------------------------------------------------------------------------------


def evaluate(config: Config, tree: dict, *, episodes: int, seed: int, video_path: Path | None = None) -> dict:
    """Greedy episodes with the checkpoint's network, its state reset at each episode start."""
    device = resolve_device(config.device)
    env = dqn.make_env(config, min(episodes, dqn.MAX_EVAL_ENVS), seed, vectorization="sync")
    q_net = build_q_network(config, env).to(device)
    if not isinstance(tree, dict) or "q_net" not in tree:
        raise CheckpointError("checkpoint holds no 'q_net' (is it a drqn run?)")
    io.load_module_state(q_net, tree["q_net"], "q_net")
    result = evaluate_net(q_net, env, episodes, seed, device)
    env.close()
    if video_path is not None:
        video_env = dqn.make_env(config, 1, seed, vectorization="sync", render_mode="rgb_array")
        frames: list[np.ndarray] = []
        evaluate_net(q_net, video_env, 1, seed, device, frames=frames)
        video_env.close()
        write_mp4(frames, Path(video_path), fps=video_env.metadata.get("render_fps") or 30)
        result["video"] = str(video_path)
    return result


def evaluate_net(
    q_net: RecurrentQNetwork,
    env: gym.vector.VectorEnv,
    episodes: int,
    seed: int,
    device: torch.device,
    frames: list | None = None,
) -> dict:
    """`episodes` greedy episodes split across the env's slots (as dqn.evaluate_net), state reset per slot."""
    n = env.num_envs
    wanted = np.array([(episodes + i) // n for i in range(n)])
    returns: list[list[float]] = [[] for _ in range(n)]
    obs, _ = env.reset(seed=seed)
    state = q_net.initial_state(n, device)
    episode_start, after_end = np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
    while any(len(r) < w for r, w in zip(returns, wanted)):
        if frames is not None:
            frames.append(env.render()[0])
        actions, _, state = act(q_net, obs, state, episode_start, 0.0, np.random.default_rng(0), device)
        obs, _, terminated, truncated, info = env.step(actions)
        episode_start, after_end = after_end, terminated | truncated
        for i in np.flatnonzero(info.get("_episode", np.zeros(n, bool))):
            if len(returns[i]) < wanted[i]:
                returns[i].append(float(info["episode"]["r"][i]))
    flat = [r for per_env in returns for r in per_env]
    return {
        "mean_return": float(np.mean(flat)),
        "std_return": float(np.std(flat)),
        "episodes": len(flat),
        "returns": flat,
    }
