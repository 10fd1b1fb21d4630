"""Kind `sweeptest`: a trainer that follows the trainer contract but learns nothing, for sweep tests.

Its score climbs towards `quality` as steps pass, so a sweep has a clear best and a clearly bad trial.
`crash_once` names a marker file: the first run that reaches `crash_at` creates it and raises, so a
retry (which finds the file) completes. The sweep tests register it under TRAINERS["sweeptest"] and put
tests/ on the workers' PYTHONPATH.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

METRICS = ("eval/score", "losses/loss")


@dataclass
class Config:
    total_steps: int = field(default=100, metadata={"gt": 0})  # steps of the fake training loop
    quality: float = 1.0  # the score this trial converges to
    eval_every: int = field(default=10, metadata={"gt": 0})  # steps between log + checkpoint
    sleep_s: float = field(default=0.0, metadata={"ge": 0})  # wall time per eval, to make trials overlap
    crash_once: str | None = None  # marker file; raise once at crash_at if it does not exist yet
    crash_at: int = 50  # step of that one crash
    seed: int = 0  # recorded, shifts the score a little
    device: str = "auto"  # unused


def train(config: Config, tracker, *, resume: dict | None = None) -> dict[str, float]:
    step = int(resume["step"]) if resume else 0
    score = 0.0
    while step < config.total_steps:
        step = min(step + config.eval_every, config.total_steps)
        if config.crash_once and step >= config.crash_at and not Path(config.crash_once).exists():
            Path(config.crash_once).write_text(f"crashed at {step}\n")
            raise RuntimeError(f"injected crash at step {step}")
        time.sleep(config.sleep_s)
        score = config.quality * step / config.total_steps + 0.001 * config.seed
        tracker.log({"eval/score": score, "losses/loss": 1.0 - score}, step)
        tracker.checkpoint({"step": step, "score": score}, step)
        if tracker.should_stop():
            break
    summary = {"eval/score": score}
    tracker.summary(summary)
    return summary
