"""The off-policy loop that dqn and drqn share (`run`), made of functions and two small per-run objects; no base class.

An agent's `train` builds its network, `Learner` and replay, writes what only it does in one vector step as a
`step` function, and hands both to `run`. Each pass of the loop is five labelled phases:

    (1) act                         the agent's `step`, with ε from `Schedules`
    (2) step and store              the agent's `step`; then `Bookkeeping.record_step` counts the transitions and
                                    logs the episodes that ended
    (3) sync target                 `TargetSync`: every target_update_interval env steps, copy or Polyak average
    (4) learn                       `learn`: every train_freq vector steps, a training phase of the agent's updates
                                    (`Learner.train_phase`), then the non-finite check
    (5) log, evaluate, checkpoint   `Bookkeeping.after_step`; at the end `Bookkeeping.finish` writes the summary

The target is synced before learning within a step, as stable-baselines3 does (its `_on_step` runs before
`train`), so rl-zoo3 settings give SB3's schedule. Counting follows SB3 too: `train_freq` and
`target_update_interval` count vector-env steps (the interval divided by num_envs); `total_steps`,
`learning_starts` and the schedules count transitions (an autoreset step holds none).

Behaviours chosen once, for every agent on this loop:
- Target sync: parameters by copy (tau = 1) or Polyak averaging (tau < 1); buffers (BatchNorm statistics) are
  copied either way. A copy is skipped when no update has changed the online net since the last one.
- Non-finite check: the TD loss and mean Q of every update are summed on the device (no host sync per update) and
  checked once per training phase; `nan_policy: stop` raises TrainingDiverged there, before any checkpoint could
  hold the NaN; `skip` checks each update before it touches the network and counts it in `skipped_updates`.
- The end of a run: a greedy evaluation at the final step unless one ran at that step, a checkpoint whenever the
  run stops (total_steps reached, stop_at_return reached, or the tracker's `should_stop`), then the summary.

Where the member axis of a population goes (one network for P members): `Counters` stays per run (all members
step their envs together), while `episodes`, `skipped_updates` and `best_eval`, the `Schedules` numbers, `tau`,
the `LossMeter` sums and `Bookkeeping` (one tracker each) become per member, as (P,) arrays or tensors.
`linear_schedule` and `sync_target` are elementwise, so they take those as they are.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import envs
from agents.replay import Replay
from agents.schedules import Schedules, crossed
from envs.evaluation import Policy, record_episode, run_episodes
from networks import io
from networks.errors import CheckpointError, ConfigError, TrainingDiverged
from networks.interfaces import Tracker
from networks.runtime import resolve_device, restore_rng_state, rng_state, seed_everything

EVAL_SEED_OFFSET = 10_000  # evaluation episodes never share seeds with training ones
MAX_EVAL_ENVS = 32


@dataclass
class Counters:
    """Per-run counters, saved under `counters` in every checkpoint (the field names are that layout)."""

    step: int = 0  # env transitions
    vec_steps: int = 0  # vector-env steps that held a transition
    updates: int = 0  # gradient steps
    episodes: int = 0
    since_train: int = 0  # transitions since the last training phase
    skipped_updates: int = 0  # non-finite updates skipped (nan_policy: skip)
    best_eval: float = -float("inf")


class Learner(Protocol):
    """The learning half of an agent: online and target nets, the optimizer, and its training phase."""

    q_net: nn.Module
    target_net: nn.Module | None  # None for an agent without one (pqn): its checkpoints hold no target_net
    optimizer: torch.optim.Optimizer
    meter: LossMeter

    def train_phase(self, replay: Any, num_updates: int, beta: float, rng: np.random.Generator) -> int:
        """`num_updates` gradient steps; returns how many were skipped as non-finite (nan_policy: skip)."""


# --- setup ------------------------------------------------------------------------------------------------


def setup(config) -> tuple[torch.device, np.random.Generator]:
    """What every trainer does first: validate (bad input fails before any slow work), torch threads, device,
    seeds. Returns the device and the NumPy generator for the trainer's own sampling."""
    config.validate()
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    device = resolve_device(config.device)
    return device, seed_everything(config.seed)


def make_env(config, num_envs: int, seed: int, **kwargs) -> gym.vector.VectorEnv:
    return envs.make(config.env_id, num_envs=num_envs, seed=seed, **kwargs, **config.env_kwargs)


def make_eval_env(config) -> gym.vector.VectorEnv:
    """Separate envs for greedy evaluations during training (sync: env i is seeded seed + i)."""
    return make_env(config, min(config.eval_episodes, MAX_EVAL_ENVS), config.seed, vectorization="sync")


# The torch.optim options that `optimizer_kwargs` may set, per optimizer (the compiled Adam update reads these two).
OPTIMIZER_OPTIONS = {
    "adam": ("betas", "eps"),
    "rmsprop": ("alpha", "eps", "momentum", "centered"),
    "sgd": ("momentum", "nesterov"),
}


def make_optimizer(config, params: list[nn.Parameter], device: torch.device) -> torch.optim.Optimizer:
    """`config.optimizer` at `config.learning_rate`, with torch's defaults unless `config.optimizer_kwargs` sets
    one of OPTIMIZER_OPTIONS (checked by `check_optimizer_kwargs`)."""
    options = dict(config.optimizer_kwargs)
    if "betas" in options:
        options["betas"] = tuple(options["betas"])
    if config.optimizer == "adam":  # the fused kernel: one call updates every parameter
        return torch.optim.Adam(params, lr=config.learning_rate, fused=True, **options)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=config.learning_rate, foreach=True, **options)
    return torch.optim.SGD(params, lr=config.learning_rate, foreach=True, **options)


def check_optimizer_kwargs(optimizer: str, options: dict[str, Any]) -> None:
    """ConfigError naming `optimizer_kwargs.<key>` for an option `optimizer` lacks or a value torch would refuse."""
    allowed = OPTIMIZER_OPTIONS[optimizer]
    for key, value in options.items():
        where = f"optimizer_kwargs.{key}"
        if key not in allowed:
            raise ConfigError(where, f"not an option of {optimizer}; allowed: {', '.join(allowed)}")
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if key in ("centered", "nesterov") and not isinstance(value, bool):
            raise ConfigError(where, f"must be true or false, got {value!r}")
        if key == "betas" and not (
            isinstance(value, list | tuple) and len(value) == 2 and all(_fraction(b) for b in value)
        ):
            raise ConfigError(where, f"must be two numbers in [0, 1), got {value!r}")
        if key == "eps" and not (number and value > 0):
            raise ConfigError(where, f"must be a number > 0, got {value!r}")
        if key in ("alpha", "momentum") and not _fraction(value):
            raise ConfigError(where, f"must be a number in [0, 1), got {value!r}")
    if options.get("nesterov") and not options.get("momentum", 0) > 0:
        raise ConfigError("optimizer_kwargs.nesterov", "needs momentum > 0")


def _fraction(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1


def replay_options(config, device: torch.device) -> dict[str, Any]:
    """What every replay takes from the config: n-step returns, prioritized replay, the learner's device."""
    per = config.prioritized
    return {
        "gamma": config.gamma,
        "n_step": config.n_step,
        "prioritized": per.enabled,
        "alpha": per.alpha,
        "priority_eps": per.eps,
        "device": device,
    }


# --- learning ---------------------------------------------------------------------------------------------


def finite(loss: torch.Tensor, q_mean: torch.Tensor) -> bool:
    """Whether an update's loss and mean Q are finite (one host sync)."""
    return bool(torch.isfinite(loss) & torch.isfinite(q_mean))


def gradient_step(
    optimizer: torch.optim.Optimizer, params: list[nn.Parameter], loss: torch.Tensor, max_grad_norm: float
) -> None:
    """Backward, clip the global gradient norm to `max_grad_norm` (SB3, Mnih et al.), one optimizer step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(params, max_grad_norm, foreach=True)
    optimizer.step()


def learning_state(
    config, q_net: nn.Module, device: torch.device
) -> tuple[nn.Module, list[nn.Parameter], torch.optim.Optimizer, LossMeter]:
    """What a learner holds beside its online net: the target net (a frozen copy), the parameters, the optimizer,
    and the meter of its losses."""
    target_net = copy.deepcopy(q_net).requires_grad_(False)
    params = list(q_net.parameters())
    return target_net, params, make_optimizer(config, params, device), LossMeter(device)


class LossMeter:
    """The TD loss and mean Q of each update, summed on the learner's device and read when logged, so an update
    costs no host sync. A compiled update adds into `loss_sum` and `q_sum` itself."""

    def __init__(self, device: torch.device):
        self.loss_sum = torch.zeros((), device=device)
        self.q_sum = torch.zeros((), device=device)
        self.updates = 0

    def add(self, loss: torch.Tensor, q_mean: torch.Tensor) -> None:
        self.loss_sum += loss.detach()
        self.q_sum += q_mean.detach()
        self.updates += 1

    def finite(self) -> bool:
        return finite(self.loss_sum, self.q_sum)

    def read(self) -> dict[str, float]:
        """Mean loss and Q since the last read (one host sync), or {} when there was no update."""
        if self.updates == 0:
            return {}
        loss, q_mean = (torch.stack([self.loss_sum, self.q_sum]) / self.updates).tolist()
        self.loss_sum.zero_(), self.q_sum.zero_()
        self.updates = 0
        return {"losses/td_loss": loss, "losses/q_values": q_mean}


def check_finite(meter: LossMeter, counters: Counters, nan_policy: str) -> None:
    """nan_policy stop: raise on a non-finite loss or Q since the last log; the last checkpoint is kept."""
    if nan_policy == "stop" and not meter.finite():
        raise TrainingDiverged(
            f"non-finite TD loss or Q-value by update {counters.updates} (env step {counters.step}); stopped, "
            "the last checkpoint is the last good one. Lower learning_rate, check the rewards, or set "
            "nan_policy: skip"
        )


def learn(config, counters: Counters, learner: Learner, replay: Replay, schedules: Schedules, rng) -> None:
    """(4) Every `train_freq` vector steps after `learning_starts` transitions: a training phase of
    `gradient_steps` updates (-1: as many as transitions since the last phase), then the non-finite check."""
    if counters.step <= config.learning_starts or counters.vec_steps % config.train_freq:
        return
    if not replay.can_sample(config.batch_size):
        return
    num_updates = config.gradient_steps if config.gradient_steps > 0 else counters.since_train
    learner.optimizer.param_groups[0]["lr"] = schedules.lr(counters.step)
    skipped = learner.train_phase(replay, num_updates, schedules.beta(counters.step), rng)
    counters.updates += num_updates - skipped
    counters.skipped_updates += skipped
    counters.since_train = 0
    check_finite(learner.meter, counters, config.nan_policy)


@torch.no_grad()
def sync_target(target: nn.Module, online: nn.Module, tau: float) -> None:
    """θ_target <- τ θ + (1 - τ) θ_target for every parameter: τ = 1 is a copy (Mnih et al. 2015), τ < 1 Polyak
    averaging (Lillicrap et al. 2016). Buffers (BatchNorm statistics) are copied. The lerp is elementwise, so a
    population's per-member τ is a (P, 1, ...) tensor per parameter."""
    targets, onlines = list(target.parameters()), list(online.parameters())
    if tau >= 1.0:
        torch._foreach_copy_(targets, onlines)
    else:
        torch._foreach_lerp_(targets, onlines, tau)
    for target_buffer, online_buffer in zip(target.buffers(), online.buffers()):
        target_buffer.copy_(online_buffer)


class TargetSync:
    """(3) Every `target_update_interval` env steps (in vector steps, interval // num_envs, as SB3), the target
    net follows the online one. A copy is skipped when no update has changed the online net since the last copy:
    it would change nothing (the first one after a start or resume always runs)."""

    def __init__(self, config, learner: Learner):
        self.target_net, self.q_net, self.tau = learner.target_net, learner.q_net, config.tau
        self.every = max(config.target_update_interval // config.num_envs, 1)
        self.synced_at: int | None = None  # counters.updates at the last sync

    def __call__(self, counters: Counters) -> None:
        if counters.vec_steps % self.every:
            return
        if self.tau >= 1.0 and counters.updates == self.synced_at:
            return
        sync_target(self.target_net, self.q_net, self.tau)
        self.synced_at = counters.updates


# --- bookkeeping: episodes, the log / evaluate / checkpoint cadence, the summary -------------------------


class Bookkeeping:
    """(5) and the end of a run: counts and episode statistics, log / evaluate / checkpoint on their cadence,
    the best evaluation, the summary. What only the agent knows comes as callables, each called only when due:
    `metrics(step)` (its charts and losses, `step` being the one the vector step began at), `evaluate()`
    (greedy episodes -> {"mean_return", "std_return", ...}) and `snapshot(with_replay)` (a checkpoint tree)."""

    def __init__(
        self,
        config,
        tracker: Tracker,
        counters: Counters,
        *,
        metrics: Callable[[int], dict],
        evaluate: Callable[[], dict],
        snapshot: Callable[[bool], dict],
        stop_at_return: float | None = None,
    ):
        self.config, self.tracker, self.counters = config, tracker, counters
        self.metrics, self.evaluate, self.snapshot, self.stop_at_return = metrics, evaluate, snapshot, stop_at_return
        self.start_time, self.start_step = time.perf_counter(), counters.step
        self.last_eval: dict = {}

    def record_step(self, valid: np.ndarray, info: dict) -> int:
        """Count a vector step's transitions (0 on a step where every env only reset) and log ended episodes."""
        new = int(valid.sum())
        if new == 0:
            return 0
        counters = self.counters
        counters.step += new
        counters.vec_steps += 1
        counters.since_train += new
        if "_episode" in info and info["_episode"].any():
            ended = info["_episode"]
            counters.episodes += int(ended.sum())
            returns, lengths = info["episode"]["r"][ended], info["episode"]["l"][ended]
            self.tracker.log(
                {"charts/episodic_return": float(returns.mean()), "charts/episodic_length": float(lengths.mean())},
                counters.step,
            )
        return new

    def after_step(self, before: int) -> bool:
        """Log, evaluate and checkpoint where their cadence falls in (before, step]; True when the run stops now
        (its checkpoint is written)."""
        config, step = self.config, self.counters.step
        done = step >= config.total_steps
        if crossed(before, step, config.log_every):
            self.tracker.log({"charts/sps": self.steps_per_second(), **self.metrics(before)}, step)
        if crossed(before, step, config.eval_every) or (done and self.last_eval.get("step") != step):
            done = self.evaluation() or done
        stop = done or self.tracker.should_stop()
        if crossed(before, step, config.checkpoint_every) or stop:
            self.tracker.checkpoint(self.snapshot(True), step)
        return stop

    def evaluation(self) -> bool:
        """Greedy episodes, logged; a new best is kept as the best-* checkpoint. True when stop_at_return is met."""
        counters, result = self.counters, self.evaluate()
        mean = result["mean_return"]
        self.tracker.log({"eval/mean_return": mean, "eval/std_return": result["std_return"]}, counters.step)
        if mean > counters.best_eval:
            counters.best_eval = mean
            self.tracker.checkpoint(self.snapshot(False), counters.step, best=True, metric=mean)
        self.last_eval = {**result, "step": counters.step}
        return self.stop_at_return is not None and mean >= self.stop_at_return

    def steps_per_second(self) -> float:
        return (self.counters.step - self.start_step) / max(time.perf_counter() - self.start_time, 1e-9)

    def finish(self, *closing: gym.vector.VectorEnv, extra: dict | None = None) -> dict[str, float]:
        """Close the envs, write and return the summary."""
        for env in closing:
            env.close()
        counters = self.counters
        summary = {
            "global_step": counters.step,
            "charts/episodes": counters.episodes,
            "charts/updates": counters.updates,
            "charts/sps": self.steps_per_second(),
            "time/train_seconds": time.perf_counter() - self.start_time,
        }
        if self.last_eval:
            summary["eval/mean_return"] = self.last_eval["mean_return"]
            summary["eval/std_return"] = self.last_eval["std_return"]
            summary["eval/best_return"] = counters.best_eval
        summary.update(extra or {})
        self.tracker.summary(summary)
        return summary


# --- the loop ---------------------------------------------------------------------------------------------

# (obs, valid, ε) -> (next_obs, ended, info): the agent's (1) act and (2) step and store, for one vector step.
# `valid` marks the envs whose step is a transition (not the reset step after an episode ended); `ended` is
# terminated | truncated of this step; `info` is the vector env's.
Step = Callable[[np.ndarray, np.ndarray, float], tuple[np.ndarray, np.ndarray, dict]]


def run(
    config,
    tracker: Tracker,
    env: gym.vector.VectorEnv,
    learner: Learner,
    replay: Replay,
    rng: np.random.Generator,
    step: Step,
    evaluate: Callable[[gym.vector.VectorEnv], dict],
    *,
    kind: str,
    resume: dict | None = None,
) -> dict[str, float]:
    """Train until `total_steps` transitions, a solved evaluation or the tracker's stop; returns the summary.
    `evaluate(eval_env)` plays the agent's greedy episodes on envs this loop owns."""
    counters = Counters() if resume is None else restore(resume, learner, replay, rng, kind)
    eval_env, schedules = make_eval_env(config), Schedules.of(config)
    target_sync = TargetSync(config, learner)

    def metrics(step: int) -> dict:
        charts = {
            "charts/epsilon": schedules.epsilon(step),
            "charts/learning_rate": learner.optimizer.param_groups[0]["lr"],
            "charts/updates": counters.updates,
        }
        if config.nan_policy == "skip":
            charts["losses/skipped_updates"] = counters.skipped_updates
        return {**charts, **learner.meter.read()}

    def checkpoint_tree(with_replay: bool) -> dict:  # the replay only in step checkpoints, with save_replay
        return snapshot(learner, counters, rng, replay if with_replay and config.save_replay else None)

    book = Bookkeeping(
        config,
        tracker,
        counters,
        metrics=metrics,
        evaluate=lambda: evaluate(eval_env),
        snapshot=checkpoint_tree,
        stop_at_return=config.stop_at_return,
    )
    obs, _ = env.reset(seed=config.seed + counters.step)  # a resumed run starts fresh episodes
    ended = np.zeros(env.num_envs, dtype=bool)  # NEXT_STEP autoreset: an env's step after its end only resets it
    while counters.step < config.total_steps:
        before, valid = counters.step, ~ended
        # (1) act, (2) step and store: the agent's own
        obs, ended, info = step(obs, valid, schedules.epsilon(counters.step))
        if not book.record_step(valid, info):
            continue
        # (3) sync target (before learning, as SB3)
        target_sync(counters)
        # (4) learn
        learn(config, counters, learner, replay, schedules, rng)
        # (5) log, evaluate, checkpoint
        if book.after_step(before):
            break
    return book.finish(env, eval_env)


# --- checkpoints ------------------------------------------------------------------------------------------


def snapshot(learner: Learner, counters: Counters, rng: np.random.Generator, replay: Replay | None = None) -> dict:
    """Everything a resume needs: networks, optimizer, counters, RNG states, and the replay when asked. A learner
    without a target net (`target_net` None: pqn) has no `target_net` key."""
    tree = {"q_net": learner.q_net.state_dict()}
    if learner.target_net is not None:
        tree["target_net"] = learner.target_net.state_dict()
    tree.update(optimizer=learner.optimizer.state_dict(), counters=asdict(counters), rng=rng_state(rng))
    if replay is not None:
        tree["replay"] = replay.state_dict()
    return tree


def restore(tree: dict, learner: Learner, replay: Replay | None, rng: np.random.Generator, kind: str) -> Counters:
    """Undo `snapshot` in place; returns the counters. CheckpointError when the tree does not fit."""
    keys = ("q_net", "target_net", "optimizer", "counters", "rng")
    missing = [key for key in keys if key not in tree and (key != "target_net" or learner.target_net is not None)]
    if missing:
        raise CheckpointError(f"checkpoint lacks {missing} (is it a {kind} run?)")
    io.load_module_state(learner.q_net, tree["q_net"], "q_net")
    if learner.target_net is not None:
        io.load_module_state(learner.target_net, tree["target_net"], "target_net")
    io.load_optimizer_state(learner.optimizer, tree["optimizer"])
    try:
        counters = Counters(**tree["counters"])
    except TypeError as e:
        raise CheckpointError(f"counters: {e}") from None
    restore_rng_state(tree["rng"], rng)
    if "replay" in tree and replay is not None:
        replay.load_state_dict(tree["replay"])
    return counters


# --- evaluation -------------------------------------------------------------------------------------------


def evaluate_net(q_net: nn.Module, env: gym.vector.VectorEnv, episodes: int, seed: int, policy: Policy) -> dict:
    """`episodes` episodes of `policy` (greedy on `q_net`) on a sync vector env: see envs/evaluation.py."""
    q_net.eval()
    result = run_episodes(env, policy, episodes, seed)
    q_net.train()
    return result


def evaluate_checkpoint(
    config,
    tree: dict,
    kind: str,
    build_q_network: Callable[[Any, gym.vector.VectorEnv], nn.Module],
    greedy: Callable[[nn.Module, torch.device], Policy],
    episodes: int,
    seed: int,
    video_path: Path | None,
    trajectories: bool = False,
) -> dict:
    """Greedy episodes with a checkpoint's Q-network (built by `build_q_network`, played by `greedy(q_net, device)`):
    see `play`."""
    device = resolve_device(config.device)
    env = make_env(config, min(episodes, MAX_EVAL_ENVS), seed, vectorization="sync")
    q_net = build_q_network(config, env).to(device)
    if not isinstance(tree, dict) or "q_net" not in tree:
        raise CheckpointError(f"checkpoint holds no 'q_net' (is it a {kind} run?)")
    io.load_module_state(q_net, tree["q_net"], "q_net")
    q_net.eval()
    return play(config, env, lambda: greedy(q_net, device), episodes, seed, video_path, trajectories)


def play(
    config,
    env: gym.vector.VectorEnv,
    policy: Callable[[], Policy],
    episodes: int,
    seed: int,
    video_path: Path | None,
    trajectories: bool = False,
) -> dict:
    """`episodes` episodes of a fresh `policy()` on `env` (sync, made by `make_env` with up to MAX_EVAL_ENVS envs;
    closed here), env i seeded seed + i: the same seed gives the same returns. With `video_path`, also writes an
    mp4 of the first episode; with `trajectories`, returns the episodes' steps too (envs/evaluation.py)."""
    result = run_episodes(env, policy(), episodes, seed, trajectories=trajectories)
    env.close()
    if video_path is not None:
        video_env = make_env(config, 1, seed, vectorization="sync", render_mode="rgb_array")
        result["video"] = str(record_episode(video_env, policy(), seed, Path(video_path)))
        video_env.close()
    return result
