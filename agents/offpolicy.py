"""The off-policy loop that dqn and drqn share (`run`), made of functions and two small per-run objects; no base class.

An agent's `train` builds its network, `Learner` (agents/learning.py) and replay, writes what only it does in one
vector step as a `step` function, and hands both to `run` with its greedy policy. Each pass of the loop is five
labelled phases:

    (1) act                         the agent's `step`, with ε from `Schedules`
    (2) step and store              the agent's `step`; then `Bookkeeping.record_step` counts the transitions and
                                    logs the episodes that ended
    (3) sync target                 `TargetSync`: every target_update_interval env steps, copy or Polyak average
    (4) learn                       `learn`: every train_freq vector steps, a training phase of the agent's updates
                                    (`Learner.train_phase`), then the non-finite check
    (5) log, evaluate, checkpoint   `Bookkeeping.after_step` (agents/bookkeeping.py), given the greedy episodes of
                                    every member due to evaluate, played at once (`evaluation.evaluate_members`);
                                    at the end `Bookkeeping.finish` writes the summary

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

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from agents import evaluation
from agents.bookkeeping import finish_member, member_bookkeeping, stop_diverged
from agents.checkpoints import Counters, restore_member
from agents.evaluation import EVAL_SEED_OFFSET, make_env, make_eval_env
from agents.learning import Learner, learning_rates, set_learning_rates
from agents.members import MemberRun
from agents.replay import Replay
from agents.schedules import Schedules, crossed
from envs.evaluation import Policy
from envs.members import MemberEnvs

# --- setup ------------------------------------------------------------------------------------------------


def make_member_env(members: list[MemberRun]) -> MemberEnvs:
    """Every member's envs as one (P, num_envs) vector env, member k's made exactly as its single run makes them."""
    return MemberEnvs([make_env(member.config, member.config.num_envs, member.config.seed) for member in members])


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


def learn(
    config,
    counters: list[Counters],
    learner: Learner,
    replay: Replay,
    schedules: list[Schedules],
    members: list[int],
) -> list[int]:
    """(4) Every `train_freq` vector steps after `learning_starts` transitions: a training phase of
    `gradient_steps` updates (-1: as many as transitions since the last phase) for each of the running `members`
    (indices), then the non-finite check. Returns the members that went non-finite under nan_policy: stop (none for
    skip)."""
    if not members or counters[members[0]].vec_steps % config.train_freq:  # running members step together
        return []
    due = np.zeros(len(counters), dtype=bool)
    due[members] = True
    due &= replay.can_sample(config.batch_size) & np.array([c.step > config.learning_starts for c in counters])
    if not due.any():
        return []
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
        return []
    return np.flatnonzero(due & ~learner.meter.finite_members()).tolist()


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
        self.copies = bool((self.tau >= 1.0).all())

    def __call__(self, counters: Counters | list[Counters], members: list[int] | None = None) -> None:
        """`counters`: every member's (a single run's own); `members`: the indices of those still training (all)."""
        counters = [counters] if isinstance(counters, Counters) else counters
        members = list(range(len(counters))) if members is None else members
        if counters[members[0]].vec_steps % self.every:
            return
        updates = [counters[k].updates for k in members]
        if self.copies and updates == self.synced_at[members].tolist():
            return
        sync_target(self.target_net, self.q_net, self.tau)
        self.synced_at[members] = updates


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
    greedy: Callable[[], Policy],
    *,
    kind: str,
) -> dict[str, float] | list[dict[str, float]]:
    """Train every member until its `total_steps` transitions, a solved evaluation or its tracker's stop; returns
    the summary (a population: one per member, None for a member that had `finished`). `greedy()`: a fresh greedy
    policy of every member at once, obs (P, n, ...) -> actions (P, n), for the evaluations this loop plays on its
    own envs."""
    size = len(members)
    counters = [Counters() if m.resume is None else restore_member(m, learner, replay, kind) for m in members]
    schedules = [Schedules.of(m.config) for m in members]
    target_sync = TargetSync(config, learner, np.array([m.config.tau for m in members]))
    books = [member_bookkeeping(config, m, counters[m.index], learner, replay, schedules[m.index]) for m in members]
    running = np.array([c.step < config.total_steps and not m.finished for m, c in zip(members, counters)])
    eval_envs = {k: make_eval_env(members[k].config) for k in np.flatnonzero(running)}  # for the members that run
    for k in np.flatnonzero(~running & ~np.array([m.finished for m in members])):
        books[k].status = "done"  # resumed at total_steps (cut off before its summary): it ends with one now
        finish_member(config, books[k])
    obs, _ = env.reset([m.config.seed + c.step for m, c in zip(members, counters)])  # a resume starts new episodes
    ended = np.zeros((size, env.num_envs), dtype=bool)  # NEXT_STEP autoreset: an env's step after its end only resets
    while running.any():
        alive = np.flatnonzero(running).tolist()  # the running members: they step together
        everyone = len(alive) == size
        epsilons = np.array([s.epsilon(c.step) for s, c in zip(schedules, counters)])
        # A member whose every env ended on its last step only resets them on this one: no transition. It steps
        # again at once, as its single run's next pass would, so running members' vector steps stay together.
        resetting = running & ended.all(axis=1)
        if resetting.any():
            obs, _, _ = step(obs, np.zeros_like(ended), epsilons, resetting)
            ended[resetting] = False
        valid = ~ended if everyone else ~ended & running[:, None]
        before = [c.step for c in counters]
        # (1) act, (2) step and store: the agent's own
        obs, now_ended, infos = step(obs, valid, epsilons, running)
        ended = now_ended if everyone else np.where(running[:, None], now_ended, ended)
        for k in alive:
            books[k].record_step(valid[k], infos[k])
        # (3) sync target (before learning, as SB3)
        target_sync(counters, alive)
        # (4) learn
        diverged = learn(config, counters, learner, replay, schedules, alive)
        # (5) log, evaluate, checkpoint: every running member on the same vector step; the greedy episodes of the
        # members due to evaluate are played together (one forward of every member per step)
        evaluating = [k for k in alive if k not in diverged and books[k].evaluation_due(before[k])]
        evaluated = {}
        if evaluating:
            seeds = [members[k].config.seed + EVAL_SEED_OFFSET for k in evaluating]
            envs = [eval_envs[k] for k in evaluating]
            results = evaluation.evaluate_members(
                learner.q_net, envs, evaluating, config.eval_episodes, seeds, greedy()
            )
            evaluated = dict(zip(evaluating, results))
        # a population checkpoints all its members on one step; a single run keeps its own cadence (None)
        due = any(crossed(before[k], counters[k].step, config.checkpoint_every) for k in alive) if size > 1 else None
        for k in alive:
            if k in diverged:
                stop_diverged(config, books[k])
            elif books[k].after_step(before[k], checkpoint=due, evaluated=evaluated.get(k)):
                finish_member(config, books[k])
            else:
                continue
            running[k] = False
            eval_envs.pop(k).close()  # an ended member evaluates no more
    env.close()
    for eval_env in eval_envs.values():
        eval_env.close()
    summaries = [book.summary for book in books]
    return summaries[0] if config.population is None else summaries
