"""(5) and the end of a run, for every agent on the off-policy loop: counts and episode statistics, the log /
evaluate / checkpoint cadence, the best evaluation and the summary (`Bookkeeping`), a member's wiring of it
(`member_bookkeeping`), and how a member ends (`finish_member`, `stop_diverged`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np

from agents.checkpoints import Counters, snapshot_member
from agents.learning import Learner, learning_rates
from agents.members import MemberRun
from agents.replay import Replay
from agents.schedules import Schedules, crossed
from networks.errors import TrainingDiverged
from networks.interfaces import Tracker


class Bookkeeping:
    """(5) and the end of a run: counts and episode statistics, log / evaluate / checkpoint on their cadence,
    the best evaluation, the summary. What only the agent knows comes as callables, each called only when due:
    `metrics(step)` (its charts and losses, `step` being the one the vector step began at), `evaluate()`
    (greedy episodes -> {"mean_return", "std_return", ...}; None when the caller hands each result to `after_step`)
    and `snapshot(with_replay)` (a checkpoint tree)."""

    def __init__(
        self,
        config,
        tracker: Tracker,
        counters: Counters,
        *,
        metrics: Callable[[int], dict],
        evaluate: Callable[[], dict] | None = None,
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

    def after_step(self, before: int, checkpoint: bool | None = None, evaluated: dict | None = None) -> bool:
        """Log, evaluate and checkpoint where their cadence falls in (before, step]; True when the run stops now
        (its checkpoint is written, `status` says why). `checkpoint`: whether to checkpoint now, when a population
        decides for all its members at once (None: this run's own cadence). `evaluated`: the greedy episodes' result
        when the caller played them (a population plays its due members' at once; None: `evaluate()` when due)."""
        config, step = self.config, self.counters.step
        done = step >= config.total_steps
        if crossed(before, step, config.log_every):
            self.tracker.log({"charts/sps": self.steps_per_second(), **self.metrics(before)}, step)
        solved = self.evaluation(evaluated) if self.evaluation_due(before) else False
        stopped = not (done or solved) and self.tracker.should_stop()
        stop = done or solved or stopped
        if stop:
            self.status = "solved" if solved else "done" if done else "stopped"
        due = crossed(before, step, config.checkpoint_every) if checkpoint is None else checkpoint
        if due or stop:
            self.tracker.checkpoint(self.snapshot(True), step)
        return stop

    def evaluation_due(self, before: int) -> bool:
        """Whether `after_step(before)` evaluates: on the eval_every cadence, and at the last step unless done there."""
        step = self.counters.step
        done = step >= self.config.total_steps
        return crossed(before, step, self.config.eval_every) or (done and self.last_eval.get("step") != step)

    def evaluation(self, result: dict | None = None) -> bool:
        """Greedy episodes (`result`, or `evaluate()`'s), logged; a new best is kept as the best-* checkpoint. True
        when stop_at_return is met."""
        counters = self.counters
        result = self.evaluate() if result is None else result
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


def diverged_message(counters: Counters) -> str:
    return (
        f"non-finite TD loss or Q-value by update {counters.updates} (env step {counters.step}); stopped, "
        "the last checkpoint is the last good one. Lower learning_rate, check the rewards, or set nan_policy: skip"
    )


def member_bookkeeping(
    config,
    member: MemberRun,
    counters: Counters,
    learner: Learner,
    replay: Replay,
    schedules: Schedules,
) -> Bookkeeping:
    """Member k's Bookkeeping: its charts and losses and its checkpoint tree (the loop plays its greedy evaluations,
    every due member's at once, and hands each result to `after_step`)."""
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

    return Bookkeeping(
        member.config,
        member.tracker,
        counters,
        metrics=metrics,
        snapshot=checkpoint_tree,
        stop_at_return=config.stop_at_return,
    )


def finish_member(config, book: Bookkeeping) -> None:
    """A member's summary; a population's members also say why they stopped (`status`)."""
    book.finish(extra=None if config.population is None else {"status": book.status})


def stop_diverged(config, book: Bookkeeping) -> None:
    """A member went non-finite (nan_policy: stop): a single run raises, as it always did; a member stops alone,
    its summary saying why and at which step (its last checkpoint is its last good one)."""
    message = diverged_message(book.counters)
    if config.population is None:
        raise TrainingDiverged(message)
    book.status = "diverged"
    book.finish(extra={"status": "diverged", "status/reason": message})
