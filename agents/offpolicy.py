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

A population (agents/population.py) runs on this same loop, with a member axis first wherever it exists: the
network's parameters (P, ...), the replay's storage (P, capacity, ...), the envs' arrays (P, num_envs, ...).
Each member has what a single run has: its equivalent single-run config (its seed and hyperparameters), its
`Counters`, `Schedules`, random streams, tracker and `Bookkeeping`; the `LossMeter` sums are (P,) and checked per
member. A single run is a population of one. Members stay exactly their single runs:
- a member whose every env only resets on a vector step (NEXT_STEP autoreset: no transition) steps again at once,
  so every running member's `vec_steps` advance together and the training phases and target syncs of all members
  fall on the same vector steps, as each single run's would;
- a member that stops (total_steps, stop_at_return, its tracker's stop, or a non-finite loss under nan_policy:
  stop) stops alone: its envs stop stepping and the optimizer leaves it out, while the others go on;
- checkpoints are taken for every running member on the same vector step, each in its single run's layout, so a
  population resumes from the newest vector step all of its running members saved (`counters.vec_steps`).
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
from agents.members import MemberAdam, MemberRun, adam_template
from agents.replay import Replay
from agents.schedules import Schedules, crossed
from envs.evaluation import Policy, record_episode, run_episodes
from envs.members import MemberEnvs
from networks import io
from networks.errors import CheckpointError, ConfigError, TrainingDiverged
from networks.interfaces import Tracker
from networks.runtime import resolve_device

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
    """The learning half of an agent: online and target nets (networks.batched.Members: every member), the
    optimizer (torch's for a single run, MemberAdam for a population), and its training phase."""

    q_net: nn.Module
    target_net: nn.Module | None  # None for an agent without one (pqn): its checkpoints hold no target_net
    optimizer: torch.optim.Optimizer | MemberAdam
    meter: LossMeter

    def train_phase(self, replay: Any, num_updates: np.ndarray, betas: np.ndarray) -> np.ndarray:
        """`num_updates[k]` gradient steps for member k (0: none), at prioritized replay's `betas`; returns how many
        were skipped as non-finite per member (nan_policy: skip)."""


# --- setup ------------------------------------------------------------------------------------------------


def make_env(config, num_envs: int, seed: int, **kwargs) -> gym.vector.VectorEnv:
    return envs.make(config.env_id, num_envs=num_envs, seed=seed, **kwargs, **config.env_kwargs)


def make_member_env(members: list[MemberRun]) -> MemberEnvs:
    """Every member's envs as one (P, num_envs) vector env, member k's made exactly as its single run makes them."""
    return MemberEnvs([make_env(member.config, member.config.num_envs, member.config.seed) for member in members])


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


def learning_rates(optimizer: torch.optim.Optimizer | MemberAdam) -> np.ndarray:
    """Each member's current learning rate, (P,)."""
    if isinstance(optimizer, MemberAdam):
        return optimizer.lr.copy()
    return np.array([optimizer.param_groups[0]["lr"]])


def set_learning_rates(optimizer: torch.optim.Optimizer | MemberAdam, rates: np.ndarray) -> None:
    if isinstance(optimizer, MemberAdam):
        optimizer.lr[:] = rates
    else:
        optimizer.param_groups[0]["lr"] = float(rates[0])


# --- learning ---------------------------------------------------------------------------------------------


def gradient_step(
    optimizer: torch.optim.Optimizer, params: list[nn.Parameter], loss: torch.Tensor, max_grad_norm: float
) -> None:
    """Backward, clip the global gradient norm to `max_grad_norm` (SB3, Mnih et al.), one optimizer step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(params, max_grad_norm, foreach=True)
    optimizer.step()


def learning_state(
    config, q_net: nn.Module, device: torch.device, members: list[MemberRun] | None = None
) -> tuple[nn.Module, list[nn.Parameter], torch.optim.Optimizer | MemberAdam, LossMeter]:
    """What a learner holds beside its online net: the target net (a frozen copy), the parameters, the optimizer,
    and the meter of its losses. `q_net` holds `members` (networks.batched.Members): several take MemberAdam,
    with each member's max_grad_norm; one takes torch's optimizer, as a single run always did."""
    target_net = copy.deepcopy(q_net).requires_grad_(False)
    params = list(q_net.parameters())
    if members is None or len(members) == 1:
        optimizer = make_optimizer(config, params, device)
    else:
        rates = [m.config.learning_rate for m in members]
        optimizer = MemberAdam(params, np.array(rates), np.array([m.config.max_grad_norm for m in members]))
        optimizer.template = adam_template(q_net.template)
    return target_net, params, optimizer, LossMeter(device, len(members or [None]))


def member_step(learner: Learner, loss: torch.Tensor, max_grad_norm: float, changed: np.ndarray | None) -> None:
    """One optimizer step for every member from its loss (P,): a single run's `gradient_step`, or, for several
    members, one backward of the sum of the losses of the members in `changed` ((P,) bool; all when None) and
    MemberAdam's step for those members only."""
    if not isinstance(learner.optimizer, MemberAdam):
        gradient_step(learner.optimizer, learner.params, loss.sum(), max_grad_norm)
        return
    for param in learner.params:
        param.grad = None
    members = None if changed is None else np.flatnonzero(changed)
    (loss.sum() if members is None else loss[torch.as_tensor(members, device=loss.device)].sum()).backward()
    learner.optimizer.step(members)


class LossMeter:
    """The TD loss and mean Q of each update, per member (P,), summed on the learner's device and read when logged,
    so an update costs no host sync. A compiled update adds into `loss_sum` and `q_sum` itself."""

    def __init__(self, device: torch.device, members: int = 1):
        self.loss_sum = torch.zeros(members, device=device)
        self.q_sum = torch.zeros(members, device=device)
        self.counts = torch.zeros(members, dtype=torch.int64, device=device)  # updates per member since the last read

    def add(self, loss: torch.Tensor, q_mean: torch.Tensor, changed: np.ndarray | None = None) -> None:
        """One update's loss and mean Q per member (P,), for the members in `changed` ((P,) bool; all when None)."""
        if changed is None:
            self.loss_sum += loss.detach()
            self.q_sum += q_mean.detach()
            self.counts += 1
        else:
            mask = torch.as_tensor(changed, device=self.loss_sum.device)
            self.loss_sum += torch.where(mask, loss.detach(), 0.0)
            self.q_sum += torch.where(mask, q_mean.detach(), 0.0)
            self.counts += mask

    def finite_members(self) -> np.ndarray:
        """(P,) whether each member's losses and Q-values since the last read are finite (one host sync)."""
        return (torch.isfinite(self.loss_sum) & torch.isfinite(self.q_sum)).cpu().numpy()

    def read(self, member: int = 0) -> dict[str, float]:
        """Member `member`'s mean loss and Q since its last read (one host sync), or {} when it had no update."""
        count = int(self.counts[member])
        if count == 0:
            return {}
        loss, q_mean = (torch.stack([self.loss_sum[member], self.q_sum[member]]) / count).tolist()
        self.loss_sum[member] = 0.0
        self.q_sum[member] = 0.0
        self.counts[member] = 0
        return {"losses/td_loss": loss, "losses/q_values": q_mean}


def diverged_message(counters: Counters) -> str:
    return (
        f"non-finite TD loss or Q-value by update {counters.updates} (env step {counters.step}); stopped, "
        "the last checkpoint is the last good one. Lower learning_rate, check the rewards, or set nan_policy: skip"
    )


def learn(
    config,
    counters: list[Counters],
    learner: Learner,
    replay: Replay,
    schedules: list[Schedules],
    running: np.ndarray,
) -> np.ndarray:
    """(4) Every `train_freq` vector steps after `learning_starts` transitions: a training phase of
    `gradient_steps` updates (-1: as many as transitions since the last phase) for each running member, then the
    non-finite check. Returns the members that went non-finite under nan_policy: stop, (P,) (none for skip)."""
    members = np.flatnonzero(running)
    if not len(members) or counters[members[0]].vec_steps % config.train_freq:  # running members step together
        return np.zeros(len(counters), bool)
    due = running & replay.can_sample(config.batch_size)
    due &= np.array([c.step > config.learning_starts for c in counters])
    if not due.any():
        return np.zeros(len(counters), bool)
    since = np.array([c.since_train for c in counters])
    num_updates = np.where(due, config.gradient_steps if config.gradient_steps > 0 else since, 0)
    steps = [c.step for c in counters]
    rates = np.array([s.lr(step) for s, step in zip(schedules, steps)])
    set_learning_rates(learner.optimizer, np.where(due, rates, learning_rates(learner.optimizer)))
    skipped = learner.train_phase(replay, num_updates, np.array([s.beta(step) for s, step in zip(schedules, steps)]))
    for k in np.flatnonzero(due):
        counters[k].updates += int(num_updates[k] - skipped[k])
        counters[k].skipped_updates += int(skipped[k])
        counters[k].since_train = 0
    if config.nan_policy != "stop":
        return np.zeros(len(counters), bool)
    return due & ~learner.meter.finite_members()


@torch.no_grad()
def sync_target(target: nn.Module, online: nn.Module, tau: float | np.ndarray) -> None:
    """θ_target <- τ θ + (1 - τ) θ_target for every parameter: τ = 1 is a copy (Mnih et al. 2015), τ < 1 Polyak
    averaging (Lillicrap et al. 2016). Buffers (BatchNorm statistics) are copied. The lerp is elementwise, so a
    population's per-member τ, (P,), weighs each member's slice of every (P, ...) parameter (a lerp by 1 copies)."""
    targets, onlines = list(target.parameters()), list(online.parameters())
    taus = np.atleast_1d(np.asarray(tau, dtype=np.float64))
    if (taus >= 1.0).all():
        torch._foreach_copy_(targets, onlines)
    elif len(set(taus.tolist())) == 1:
        torch._foreach_lerp_(targets, onlines, float(taus[0]))
    else:
        weights = torch.as_tensor(taus, dtype=targets[0].dtype, device=targets[0].device)
        shaped = [weights.view(-1, *([1] * (t.dim() - 1))).expand_as(t) for t in targets]
        torch._foreach_lerp_(targets, onlines, shaped)
    for target_buffer, online_buffer in zip(target.buffers(), online.buffers()):
        target_buffer.copy_(online_buffer)


class TargetSync:
    """(3) Every `target_update_interval` env steps (in vector steps, interval // num_envs, as SB3), the target
    net follows the online one, each member with its own τ (`taus`, (P,); the config's τ when None). A copy is
    skipped when no running member's online net changed since its own last copy (each member's update count at
    its last sync): it would change nothing for them (the first one after a start or resume always runs). A copy
    that one member's updates call for is a no-op for the running members whose count did not move (their target
    already equals their online net). Running members step together, so one cadence serves them all."""

    def __init__(self, config, learner: Learner, taus: np.ndarray | None = None):
        self.target_net, self.q_net = learner.target_net, learner.q_net
        self.tau = np.array([config.tau]) if taus is None else np.asarray(taus, dtype=np.float64)
        self.every = max(config.target_update_interval // config.num_envs, 1)
        self.synced_at = np.full(len(self.tau), -1)  # each member's updates at its last sync (-1: none yet)

    def __call__(self, counters: Counters | list[Counters], running: np.ndarray | None = None) -> None:
        """`counters`: every member's (a single run's own); `running` (P,): the members still training (all)."""
        counters = [counters] if isinstance(counters, Counters) else counters
        members = np.arange(len(counters)) if running is None else np.flatnonzero(running)
        if counters[members[0]].vec_steps % self.every:
            return
        updates = np.array([counters[k].updates for k in members])
        if (self.tau >= 1.0).all() and (updates == self.synced_at[members]).all():
            return
        sync_target(self.target_net, self.q_net, self.tau)
        self.synced_at[members] = updates


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
        self.status = "running"  # then done | solved | stopped (the tracker's stop) | diverged
        self.summary: dict | None = None  # set by `finish`

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

    def after_step(self, before: int, checkpoint: bool | None = None) -> bool:
        """Log, evaluate and checkpoint where their cadence falls in (before, step]; True when the run stops now
        (its checkpoint is written, `status` says why). `checkpoint`: whether to checkpoint now, when a population
        decides for all its members at once (None: this run's own cadence)."""
        config, step = self.config, self.counters.step
        done = step >= config.total_steps
        if crossed(before, step, config.log_every):
            self.tracker.log({"charts/sps": self.steps_per_second(), **self.metrics(before)}, step)
        solved = False
        if crossed(before, step, config.eval_every) or (done and self.last_eval.get("step") != step):
            solved = self.evaluation()
        stopped = not (done or solved) and self.tracker.should_stop()
        stop = done or solved or stopped
        if stop:
            self.status = "solved" if solved else "done" if done else "stopped"
        due = crossed(before, step, config.checkpoint_every) if checkpoint is None else checkpoint
        if due or stop:
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
        self.summary = summary
        return summary


# --- the loop ---------------------------------------------------------------------------------------------

# (obs, valid, ε, stepping) -> (next_obs, ended, infos): the agent's (1) act and (2) step and store, for one vector
# step of the members in `stepping` (P,) (the others keep their observation and end nothing). Arrays have the member
# axis first: obs (P, num_envs, ...); `valid` (P, num_envs) marks the envs whose step is a transition (not the
# reset step after an episode ended); ε (P,); `ended` is terminated | truncated of this step; `infos` holds each
# member's vector-env info.
Step = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, list[dict]]]


def run(
    config,
    env: MemberEnvs,
    learner: Learner,
    replay: Replay,
    members: list[MemberRun],
    step: Step,
    evaluate: Callable[[int, gym.vector.VectorEnv], dict],
    *,
    kind: str,
) -> dict[str, float] | list[dict[str, float]]:
    """Train every member until its `total_steps` transitions, a solved evaluation or its tracker's stop; returns
    the summary (a population: one per member, None for a member that had `finished`). `evaluate(k, eval_env)`
    plays member k's greedy episodes on envs this loop owns."""
    size = len(members)
    counters = [Counters() if m.resume is None else restore_member(m, learner, replay, kind) for m in members]
    eval_envs = [make_eval_env(m.config) for m in members]
    schedules = [Schedules.of(m.config) for m in members]
    target_sync = TargetSync(config, learner, np.array([m.config.tau for m in members]))
    books = [
        _bookkeeping(config, m, counters[m.index], learner, replay, schedules[m.index], evaluate, eval_envs)
        for m in members
    ]
    running = np.array([c.step < config.total_steps and not m.finished for m, c in zip(members, counters)])
    for k in np.flatnonzero(~running & ~np.array([m.finished for m in members])):
        books[k].status = "done"  # resumed at total_steps (cut off before its summary): it ends with one now
        _finish(config, books[k])
    obs, _ = env.reset([m.config.seed + c.step for m, c in zip(members, counters)])  # a resume starts new episodes
    ended = np.zeros((size, env.num_envs), dtype=bool)  # NEXT_STEP autoreset: an env's step after its end only resets
    while running.any():
        epsilons = np.array([s.epsilon(c.step) for s, c in zip(schedules, counters)])
        # A member whose every env ended on its last step only resets them on this one: no transition. It steps
        # again at once, as its single run's next pass would, so running members' vector steps stay together.
        resetting = running & ended.all(axis=1)
        if resetting.any():
            obs, _, _ = step(obs, np.zeros_like(ended), epsilons, resetting)
            ended[resetting] = False
        valid = ~ended & running[:, None]
        before = [c.step for c in counters]
        # (1) act, (2) step and store: the agent's own
        obs, now_ended, infos = step(obs, valid, epsilons, running)
        ended = np.where(running[:, None], now_ended, ended)
        for k in np.flatnonzero(running):
            books[k].record_step(valid[k], infos[k])
        # (3) sync target (before learning, as SB3)
        target_sync(counters, running)
        # (4) learn
        diverged = learn(config, counters, learner, replay, schedules, running)
        # (5) log, evaluate, checkpoint: every running member on the same vector step
        due = any(crossed(before[k], counters[k].step, config.checkpoint_every) for k in np.flatnonzero(running))
        for k in np.flatnonzero(running):
            if diverged[k]:
                running[k] = False
                _diverged(config, books[k], members[k])
            elif books[k].after_step(before[k], checkpoint=due if size > 1 else None):
                running[k] = False
                _finish(config, books[k])
    env.close()
    for eval_env in eval_envs:
        eval_env.close()
    summaries = [book.summary for book in books]
    return summaries[0] if config.population is None else summaries


def _bookkeeping(
    config,
    member: MemberRun,
    counters: Counters,
    learner: Learner,
    replay: Replay,
    schedules: Schedules,
    evaluate: Callable,
    eval_envs: list,
) -> Bookkeeping:
    """Member k's Bookkeeping: its charts and losses, its greedy evaluation, its checkpoint tree."""
    k = member.index

    def metrics(step: int) -> dict:
        charts = {
            "charts/epsilon": schedules.epsilon(step),
            "charts/learning_rate": float(learning_rates(learner.optimizer)[k]),
            "charts/updates": counters.updates,
        }
        if config.nan_policy == "skip":
            charts["losses/skipped_updates"] = counters.skipped_updates
        return {**charts, **learner.meter.read(k)}

    def checkpoint_tree(with_replay: bool) -> dict:  # the replay only in step checkpoints, with save_replay
        return snapshot_member(learner, member, counters, replay if with_replay and config.save_replay else None)

    book = Bookkeeping(
        member.config,
        member.tracker,
        counters,
        metrics=metrics,
        evaluate=lambda: evaluate(k, eval_envs[k]),
        snapshot=checkpoint_tree,
        stop_at_return=config.stop_at_return,
    )
    return book


def _finish(config, book: Bookkeeping) -> None:
    """A member's summary; a population's members also say why they stopped (`status`)."""
    book.finish(extra=None if config.population is None else {"status": book.status})


def _diverged(config, book: Bookkeeping, member: MemberRun) -> None:
    """A member went non-finite (nan_policy: stop): a single run raises, as it always did; a member stops alone,
    its summary saying why and at which step (its last checkpoint is its last good one)."""
    message = diverged_message(book.counters)
    if config.population is None:
        raise TrainingDiverged(message)
    book.status = "diverged"
    book.finish(extra={"status": "diverged", "status/reason": message})


# --- checkpoints ------------------------------------------------------------------------------------------


def snapshot_member(learner: Learner, member: MemberRun, counters: Counters, replay: Replay | None = None) -> dict:
    """Member k's checkpoint tree in its single run's layout (a single run's is member 0's): its network, target
    network (when the learner has one) and optimizer state, its counters and random streams, and its replay when
    asked."""
    k = member.index
    optimizer = learner.optimizer
    tree = {"q_net": learner.q_net.member_state(k)}
    if learner.target_net is not None:  # an agent without one (pqn) checkpoints none
        tree["target_net"] = learner.target_net.member_state(k)
    tree.update(
        optimizer=optimizer.member_state_dict(k) if isinstance(optimizer, MemberAdam) else optimizer.state_dict(),
        counters=asdict(counters),
        rng=member.rng_tree(),
    )
    if replay is not None:
        tree["replay"] = replay.state_dict(k)
    return tree


def restore_member(member: MemberRun, learner: Learner, replay: Replay | None, kind: str) -> Counters:
    """Undo `snapshot_member` from `member.resume`; returns its counters. CheckpointError when the tree does not fit
    (it is checked against a single run's network of the same config)."""
    tree, k = member.resume, member.index
    nets = {"q_net": learner.q_net, "target_net": learner.target_net}
    nets = {name: net for name, net in nets.items() if net is not None}
    missing = [key for key in (*nets, "optimizer", "counters", "rng") if key not in tree]
    if missing:
        raise CheckpointError(f"checkpoint lacks {missing} (is it a {kind} run?)")
    for name, net in nets.items():
        io.load_module_state(net.template, tree[name], name)  # keys and shapes checked on a single member's module
        net.load_member_state(k, tree[name])
    if isinstance(learner.optimizer, MemberAdam):
        learner.optimizer.load_member_state_dict(k, tree["optimizer"])
    else:
        io.load_optimizer_state(learner.optimizer, tree["optimizer"])
    try:
        counters = Counters(**tree["counters"])
    except TypeError as e:
        raise CheckpointError(f"counters: {e}") from None
    member.restore_rng(tree["rng"])
    if "replay" in tree and replay is not None:
        replay.load_state_dict(tree["replay"], k)
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
