"""Deep Q-learning (kind `dqn`), with the Rainbow-era extensions as switches of one agent.

Double DQN (van Hasselt et al. 2016), Dueling heads (Wang et al. 2016), n-step returns and prioritized replay
(Schaul et al. 2016) are options; the maths is in agents/losses.py, the replay in agents/replay.py. Names
follow stable-baselines3 so rl-zoo3 settings carry over unchanged, and so do its counting rules: `train_freq`
and `target_update_interval` count vector-env steps; `total_steps`, `learning_starts` and the ε schedule count
transitions (the autoreset step after an episode ends is no transition: neither stored nor counted).

The loop: act ε-greedily on all envs in one forward pass -> step -> store -> every `train_freq` steps run
`gradient_steps` updates -> sync the target net every `target_update_interval` steps -> log, evaluate,
checkpoint. The target net only changes between training phases, so a phase draws all its batches at once
and values all their next states in one large forward pass; each update is then one small forward/backward
and a fused optimizer step, with no host sync (losses accumulate on the device and are read when logged).
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import envs
import networks
from agents import losses
from agents.replay import Batch, ReplayBuffer
from agents.schedules import crossed, linear_schedule
from envs.evaluation import record_episode, run_episodes
from networks import io
from networks.errors import CheckpointError, ConfigError, TrainingDiverged
from networks.runtime import resolve_device, restore_rng_state, rng_state, seed_everything

EVAL_SEED_OFFSET = 10_000  # evaluation episodes never share seeds with training ones
MAX_EVAL_ENVS = 32


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
    loss: Literal["huber", "mse"] = "huber"  # huber = smooth L1, SB3's and the Nature paper's
    compile: bool = False  # dlforge: the update step as one compiled graph (agents/compiled.py); long runs
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
        if self.compile and self.optimizer != "adam":
            raise ConfigError("compile", f"compiles the Adam update only; set optimizer: adam (got {self.optimizer})")
        if self.compact_replay and self.prioritized.enabled:
            raise ConfigError("compact_replay", "samples uniformly; set prioritized.enabled: false to use it")


@dataclass
class Counters:
    step: int = 0  # env transitions
    vec_steps: int = 0  # vector-env steps that held a transition
    updates: int = 0  # gradient steps
    episodes: int = 0
    since_train: int = 0  # transitions since the last training phase
    skipped_updates: int = 0  # non-finite updates skipped (nan_policy: skip)
    best_eval: float = -float("inf")


class QNetwork(nn.Module):
    """obs (B, *obs_shape) -> Q (B, n_actions): a `networks.build` encoder, then a Q or dueling head.
    uint8 observations (pixels) are scaled to [0, 1] here, so replay keeps them one byte each."""

    def __init__(self, encoder: nn.Module, head: nn.Module, pixels: bool):
        super().__init__()
        self.encoder, self.head, self.pixels = encoder, head, pixels

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(obs.float() / 255.0 if self.pixels else obs))


def make_env(config: Config, num_envs: int, seed: int, **kwargs) -> gym.vector.VectorEnv:
    return envs.make(config.env_id, num_envs=num_envs, seed=seed, **kwargs, **config.env_kwargs)


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
    per = config.prioritized
    return ReplayBuffer(
        config.buffer_size,
        space.shape,
        space.dtype,
        config.num_envs,
        gamma=config.gamma,
        n_step=config.n_step,
        prioritized=per.enabled,
        alpha=per.alpha,
        priority_eps=per.eps,
        device=device,
    )


class Learner:
    """The online and target Q-networks, the optimizer, and the update: the learning half of DQN."""

    def __init__(self, config: Config, q_net: QNetwork, device: torch.device):
        self.config, self.q_net = config, q_net
        self.target_net = copy.deepcopy(q_net).requires_grad_(False)
        self.params = list(q_net.parameters())
        self.optimizer = make_optimizer(config, self.params, device)
        self.loss_sum = torch.zeros((), device=device)  # since the last log; read only then (no host sync)
        self.q_sum = torch.zeros((), device=device)
        self.logged_updates = 0
        self.dirty = False  # updated since the last target sync
        self.compiled = None
        if config.compile:
            from agents.compiled import CompiledUpdate

            self.compiled = CompiledUpdate(
                q_net,
                self.optimizer,
                loss=config.loss,
                max_grad_norm=config.max_grad_norm,
                skip_nonfinite=config.nan_policy == "skip",
                loss_sum=self.loss_sum,
                q_sum=self.q_sum,
            )
            self.ones = torch.ones(config.batch_size, device=device)  # uniform replay's importance weights

    def train_phase(self, replay, num_updates: int, beta: float, rng: np.random.Generator) -> int:
        """`num_updates` gradient steps; returns how many were skipped as non-finite (nan_policy: skip).
        The target net is fixed during a phase, so uniform replay draws every batch at once and, without
        double_q, computes all their targets in one pass."""
        config, skipped = self.config, 0
        if config.prioritized.enabled:  # priorities change after every update: one batch at a time
            for _ in range(num_updates):
                batch = replay.sample_prioritized(config.batch_size, beta, rng)
                td_errors = self.update(batch, self.targets(batch))
                if td_errors is None:
                    skipped += 1
                else:
                    replay.update_priorities(batch.indices, td_errors)
        else:
            batches = replay.sample(config.batch_size, num_updates)  # (G, B, ...)
            targets = None if config.double_q else self.targets(batches)  # (G, B)
            for g, batch in enumerate(split(batches)):
                skipped += self.update(batch, self.targets(batch) if targets is None else targets[g]) is None
        if self.compiled is not None and self.compiled.skip_nonfinite:  # it counts its skips on the device
            skipped = int(self.compiled.skipped.item())
            self.compiled.skipped.zero_()
            self.logged_updates -= skipped
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
        if self.compiled is not None:  # the same step, as one compiled graph
            weights = self.ones if batch.weights is None else batch.weights
            try:
                td_errors = self.compiled(batch.obs, batch.actions, targets, weights)
            except Exception as e:  # compiling failed (no C++ compiler?): nothing ran; go on eagerly
                if self.compiled.calls:
                    raise
                warnings.warn(f"compile: true failed ({type(e).__name__}: {e}); using the eager update", stacklevel=2)
                self.compiled = None
                return self.update(batch, targets)
            self.dirty, self.logged_updates = True, self.logged_updates + 1
            return td_errors
        q_values = self.q_net(batch.obs)  # (B, A)
        q_taken = q_values.gather(1, batch.actions[:, None]).squeeze(1)  # (B,)
        loss = losses.td_loss(q_taken, targets, self.config.loss, batch.weights)
        q_mean = q_values.detach().mean()
        if self.config.nan_policy == "skip" and not bool(torch.isfinite(loss) & torch.isfinite(q_mean)):
            return None
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.params, self.config.max_grad_norm, foreach=True)
        self.optimizer.step()
        self.dirty = True
        self.loss_sum += loss.detach()
        self.q_sum += q_mean
        self.logged_updates += 1
        return (q_taken - targets).detach()

    def sync_target(self) -> None:
        if self.config.tau >= 1.0:
            if self.dirty:  # copying an unchanged net is a no-op: skip it
                self.target_net.load_state_dict(self.q_net.state_dict())
        else:
            with torch.no_grad():
                torch._foreach_lerp_(list(self.target_net.parameters()), self.params, self.config.tau)
                for target, online in zip(self.target_net.buffers(), self.q_net.buffers()):
                    target.copy_(online)
        self.dirty = False

    def read_losses(self) -> dict[str, float]:
        """Mean loss and Q since the last call (one host sync), or {} when there was no update."""
        if self.logged_updates == 0:
            return {}
        loss, q_mean = (torch.stack([self.loss_sum, self.q_sum]) / self.logged_updates).tolist()
        self.loss_sum.zero_(), self.q_sum.zero_()
        self.logged_updates = 0
        return {"losses/td_loss": loss, "losses/q_values": q_mean}

    def check_finite(self, counters: Counters) -> None:
        """nan_policy stop: raise on a non-finite loss or Q since the last log (the last checkpoint is kept)."""
        if self.config.nan_policy == "stop" and not bool(torch.isfinite(self.loss_sum + self.q_sum)):
            raise TrainingDiverged(
                f"non-finite TD loss or Q-value by update {counters.updates} (env step {counters.step}); stopped, "
                "the last checkpoint is the last good one. Lower learning_rate, check the rewards, or set "
                "nan_policy: skip"
            )


def split(batches: Batch) -> list[Batch]:
    """(G, B, ...) -> G batches of (B, ...), as views (no copies)."""
    columns = [x.unbind(0) if x is not None else [None] * len(batches.actions) for x in batches]
    return [type(batches)(*fields) for fields in zip(*columns)]


def make_optimizer(config: Config, params: list[nn.Parameter], device: torch.device) -> torch.optim.Optimizer:
    if config.optimizer == "adam":  # the fused kernel: one call updates every parameter
        return torch.optim.Adam(params, lr=config.learning_rate, fused=True)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=config.learning_rate, foreach=True)
    return torch.optim.SGD(params, lr=config.learning_rate, foreach=True)


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


def train(config: Config, tracker, *, resume: dict | None = None) -> dict[str, float]:
    config.validate()  # every check that bad input can fail comes first: config, env spaces, network shapes
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    device = resolve_device(config.device)
    rng = seed_everything(config.seed)
    env = make_env(config, config.num_envs, config.seed)
    q_net = build_q_network(config, env).to(device)
    learner, replay = Learner(config, q_net, device), make_replay(config, env, device)
    counters = restore(resume, learner, replay, rng) if resume is not None else Counters()
    eval_env = make_env(config, min(config.eval_episodes, MAX_EVAL_ENVS), config.seed, vectorization="sync")
    policy, n_actions = greedy(q_net, device), int(env.single_action_space.n)

    obs, _ = env.reset(seed=config.seed + counters.step)  # a resumed run starts fresh episodes
    after_end = np.zeros(config.num_envs, dtype=bool)  # NEXT_STEP autoreset: the next step only resets
    target_every = max(config.target_update_interval // config.num_envs, 1)  # in vector steps, as SB3
    start_time, start_step, last_eval = time.perf_counter(), counters.step, {}

    def epsilon_at(step: int) -> float:  # SB3: random actions until learning starts, then a linear decay
        if step < config.learning_starts:
            return 1.0
        decay_steps = config.exploration_fraction * config.total_steps
        return linear_schedule(config.exploration_initial_eps, config.exploration_final_eps, decay_steps, step)

    def checkpoint(best: bool = False) -> None:
        with_replay = replay if config.save_replay and not best else None
        tree = snapshot(learner, counters, rng, with_replay)
        tracker.checkpoint(tree, counters.step, best=best, metric=counters.best_eval if best else None)

    def evaluation() -> dict:  # logs it, and keeps the best network as a best-* checkpoint
        result = evaluate_net(q_net, eval_env, config.eval_episodes, config.seed + EVAL_SEED_OFFSET, device)
        mean, std = result["mean_return"], result["std_return"]
        tracker.log({"eval/mean_return": mean, "eval/std_return": std}, counters.step)
        if mean > counters.best_eval:
            counters.best_eval = mean
            checkpoint(best=True)
        return {**result, "step": counters.step}

    while counters.step < config.total_steps:
        before = counters.step
        epsilon = epsilon_at(counters.step)
        actions = act(policy, obs, epsilon, n_actions, rng)
        next_obs, rewards, terminated, truncated, info = env.step(actions)
        valid = ~after_end
        replay.add(obs, actions, rewards, next_obs, terminated, truncated, valid)
        obs, after_end, new = next_obs, terminated | truncated, int(valid.sum())
        if new == 0:
            continue
        counters.step += new
        counters.vec_steps += 1
        counters.since_train += new

        if "_episode" in info and info["_episode"].any():
            ended = info["_episode"]
            counters.episodes += int(ended.sum())
            returns, lengths = info["episode"]["r"][ended], info["episode"]["l"][ended]
            tracker.log(
                {"charts/episodic_return": float(returns.mean()), "charts/episodic_length": float(lengths.mean())},
                counters.step,
            )
        if counters.vec_steps % target_every == 0:
            learner.sync_target()
        training = counters.step > config.learning_starts and counters.vec_steps % config.train_freq == 0
        if training and len(replay) >= config.batch_size:
            num_updates = config.gradient_steps if config.gradient_steps > 0 else counters.since_train
            per = config.prioritized  # β anneals to 1 over the run
            beta = linear_schedule(per.beta0, 1.0, config.total_steps, counters.step) if per.anneal_beta else per.beta0
            if config.learning_rate_final is not None:
                lr = linear_schedule(
                    config.learning_rate, config.learning_rate_final, config.total_steps, counters.step
                )
                learner.optimizer.param_groups[0]["lr"] = lr
            skipped = learner.train_phase(replay, num_updates, beta, rng)
            counters.updates += num_updates - skipped
            counters.skipped_updates += skipped
            counters.since_train = 0
            learner.check_finite(counters)

        done = counters.step >= config.total_steps
        if crossed(before, counters.step, config.log_every):
            sps = (counters.step - start_step) / max(time.perf_counter() - start_time, 1e-9)
            lr = learner.optimizer.param_groups[0]["lr"]
            metrics = {"charts/epsilon": epsilon, "charts/learning_rate": lr, "charts/sps": sps}
            metrics["charts/updates"] = counters.updates
            if config.nan_policy == "skip":
                metrics["losses/skipped_updates"] = counters.skipped_updates
            tracker.log({**metrics, **learner.read_losses()}, counters.step)
        if crossed(before, counters.step, config.eval_every) or (done and last_eval.get("step") != counters.step):
            last_eval = evaluation()
            solved = config.stop_at_return is not None and last_eval["mean_return"] >= config.stop_at_return
            done = done or solved
        stop = done or tracker.should_stop()
        if crossed(before, counters.step, config.checkpoint_every) or stop:
            checkpoint()
        if stop:
            break

    env.close(), eval_env.close()
    elapsed = time.perf_counter() - start_time
    summary = {
        "global_step": counters.step,
        "charts/episodes": counters.episodes,
        "charts/updates": counters.updates,
        "charts/sps": (counters.step - start_step) / max(elapsed, 1e-9),
        "time/train_seconds": elapsed,
    }
    if last_eval:
        summary.update(
            {
                "eval/mean_return": last_eval["mean_return"],
                "eval/std_return": last_eval["std_return"],
                "eval/best_return": counters.best_eval,
            }
        )
    tracker.summary(summary)
    return summary


# --- checkpoints ------------------------------------------------------------------------------------------


def snapshot(learner: Learner, counters: Counters, rng: np.random.Generator, replay=None) -> dict:
    """Everything a resume needs: networks, optimizer, counters, RNG states, and the replay when asked."""
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


def restore(tree: dict, learner: Learner, replay, rng: np.random.Generator) -> Counters:
    missing = [key for key in ("q_net", "target_net", "optimizer", "counters", "rng") if key not in tree]
    if missing:
        raise CheckpointError(f"checkpoint lacks {missing} (is it a dqn run?)")
    io.load_module_state(learner.q_net, tree["q_net"], "q_net")
    io.load_module_state(learner.target_net, tree["target_net"], "target_net")
    io.load_optimizer_state(learner.optimizer, tree["optimizer"])
    if learner.compiled is not None:
        learner.compiled.rebind()
    try:
        counters = Counters(**tree["counters"])
    except TypeError as e:
        raise CheckpointError(f"counters: {e}") from None
    restore_rng_state(tree["rng"], rng)
    if "replay" in tree:
        replay.load_state_dict(tree["replay"])
    return counters


# --- evaluation -------------------------------------------------------------------------------------------


def evaluate(config: Config, tree: dict, *, episodes: int, seed: int, video_path: Path | None = None) -> dict:
    """Greedy episodes with the checkpoint's Q-network; the same seed gives the same returns.
    With `video_path`, also writes an mp4 of the first episode."""
    device = resolve_device(config.device)
    env = make_env(config, min(episodes, MAX_EVAL_ENVS), seed, vectorization="sync")
    q_net = build_q_network(config, env).to(device)
    if not isinstance(tree, dict) or "q_net" not in tree:
        raise CheckpointError("checkpoint holds no 'q_net' (is it a dqn run?)")
    io.load_module_state(q_net, tree["q_net"], "q_net")
    result = evaluate_net(q_net, env, episodes, seed, device)
    env.close()
    if video_path is not None:
        video_env = make_env(config, 1, seed, vectorization="sync", render_mode="rgb_array")
        result["video"] = str(record_episode(video_env, greedy(q_net.eval(), device), seed, Path(video_path)))
        video_env.close()
    return result


def evaluate_net(q_net: QNetwork, env: gym.vector.VectorEnv, episodes: int, seed: int, device: torch.device) -> dict:
    """`episodes` greedy episodes on a sync vector env (env i seeded seed + i): see envs/evaluation.py."""
    q_net.eval()
    result = run_episodes(env, greedy(q_net, device), episodes, seed)
    q_net.train()
    return result
