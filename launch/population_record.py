"""What a population records while it trains: population.json (`Record`), each member's tracker as the trainer sees
it (`MemberTracker`: the member's own run folder tracker, which also feeds the record and the progress line), and the
progress line (`Progress`). launch/population.py trains and resumes the population around them.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from agents import population
from launch.config import RunSpec
from networks import io
from networks.run_folder import MEMBERS

POPULATION_FILE = "population.json"
ENDED = ("done", "solved", "stopped", "diverged")  # a member's status once it stopped training


class Record:
    """population.json: written at the start, whenever a member ends, and at the end (atomically each time)."""

    def __init__(self, run_dir: Path, spec: RunSpec, found: list[population.Member]):
        self.path = run_dir / POPULATION_FILE
        self.name, self.kind = run_dir.name, spec.kind
        self.members = [
            {
                "name": member.name,
                "folder": f"{MEMBERS}/{member.name}",
                "seed": member.seed,
                "hyperparameters": member.hyperparameters,
                "status": "running",
                "reason": None,
                "step": None,
                "metrics": {},
            }
            for member in found
        ]
        self.latest: list[dict] = [{} for _ in found]  # each member's latest logged values and step (progress line)
        self.stop_at_return = getattr(spec.config, "stop_at_return", None)
        self.summary: dict[str, Any] = {}

    def ended(self, k: int, summary: dict) -> None:
        status = summary.get("status", "done")
        step = summary.get("global_step")
        reasons = {
            "done": "reached total_steps",
            "solved": f"an evaluation's mean return reached stop_at_return ({self.stop_at_return})",
            "stopped": "its tracker asked it to stop",
        }
        self.members[k].update(
            status=status,
            step=step,
            reason=summary.get("status/reason") or reasons.get(status),
            metrics={key: value for key, value in summary.items() if isinstance(value, int | float | str)},
        )

    def alive(self) -> int:
        return sum(member["status"] == "running" for member in self.members)

    def finish(self) -> dict[str, Any]:
        """The population's summary (written into population.json): members by status, and the mean, median, min
        and max over members of each member's last evaluation."""
        returns = [m["metrics"].get("eval/mean_return") for m in self.members]
        returns = [value for value in returns if _number(value)]
        summary: dict[str, Any] = {"members": len(self.members)}
        for status in ENDED:
            summary[f"members/{status}"] = sum(m["status"] == status for m in self.members)
        if returns:
            summary.update(
                {
                    "eval/mean_return": statistics.fmean(returns),
                    "eval/median_return": statistics.median(returns),
                    "eval/min_return": min(returns),
                    "eval/max_return": max(returns),
                }
            )
        self.summary = summary
        self.write()
        return summary

    def write(self) -> None:
        document = {"name": self.name, "kind": self.kind, "members": self.members, "summary": self.summary}
        io.atomic_write_text(self.path, json.dumps(document, indent=2))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class MemberTracker:
    """One member's tracker as the trainer sees it: the inner tracker (LocalTracker, or the factory's), which also
    feeds the progress line, and which is closed as soon as the member ends, its status recorded in
    population.json."""

    def __init__(self, inner, index: int, record: Record, progress: Progress | None):
        self.inner, self.index, self.record, self.progress = inner, index, record, progress
        self.closed = False

    def log(self, metrics: dict[str, Any], step: int) -> None:
        self.inner.log(metrics, step)
        latest = self.record.latest[self.index]
        latest.update({key: value for key, value in metrics.items() if _number(value)}, step=step)
        if self.progress is not None:
            self.progress.update()

    def image(self, *args, **kwargs):
        return self.inner.image(*args, **kwargs)

    def video(self, *args, **kwargs):
        return self.inner.video(*args, **kwargs)

    def checkpoint(self, *args, **kwargs):
        return self.inner.checkpoint(*args, **kwargs)

    def should_stop(self) -> bool:
        return self.inner.should_stop()

    def summary(self, metrics: dict[str, Any]) -> None:
        """The member's summary; one that names a status (the member ended) closes its tracker now."""
        self.inner.summary(metrics)
        if metrics.get("status") in ENDED:
            self.record.ended(self.index, metrics)
            self.record.write()
            self.close(failed=metrics["status"] == "diverged")
            if self.progress is not None:
                self.progress.update()

    def close(self, failed: bool = False) -> None:
        if not self.closed:
            self.closed = True
            self.inner.close(failed=failed)


class _Ended:
    """The tracker of a member that had ended before a resume: the trainer never calls it."""

    def log(self, metrics, step):  # pragma: no cover - never called
        raise AssertionError("a member that had ended does not train")

    image = video = checkpoint = summary = log

    def should_stop(self) -> bool:
        return True


ENDED_TRACKER = _Ended()  # stands in for a member that had ended before a resume


class Progress:
    """The population's progress line: members alive, env steps per second summed over members, and the best and
    median of the members' latest episodic returns."""

    def __init__(self, record: Record, total_steps: int):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.record = record
        self._bar = Progress(
            TextColumn("[bold]train"),
            BarColumn(bar_width=24),
            TextColumn("{task.fields[alive]} alive"),
            TextColumn("{task.fields[sps]} steps/s"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[returns]}"),
            transient=False,
        )
        size = len(record.members)
        self._task = self._bar.add_task("train", total=size * total_steps, alive=f"{size}/{size}", sps="-", returns="")
        self._start = time.perf_counter()
        self._first: dict[int, int] = {}  # member -> the first step it logged in this process
        self._last = 0.0
        self._bar.start()

    def update(self) -> None:
        now = time.perf_counter()
        if now - self._last < 0.2:  # the bar redraws a few times a second; logging is more frequent
            return
        self._last = now
        self._bar.update(self._task, **self.fields(now - self._start))

    def fields(self, elapsed: float) -> dict[str, Any]:
        """What the line shows after `elapsed` seconds: steps of all members, members alive, steps/s summed over
        members, and the best and median of the members' latest episodic returns."""
        record = self.record
        steps = [latest.get("step", 0) for latest in record.latest]
        for k, latest in enumerate(record.latest):  # a resumed member counts from its first step logged here
            if "step" in latest:
                self._first.setdefault(k, latest["step"])
        sps = sum(steps[k] - first for k, first in self._first.items())
        returns = [latest["charts/episodic_return"] for latest in record.latest if "charts/episodic_return" in latest]
        return {
            "completed": sum(steps),
            "alive": f"{record.alive()}/{len(record.members)}",
            "sps": f"{sps / elapsed:,.0f}" if elapsed > 0 else "-",
            "returns": f"return best={max(returns):.4g} median={statistics.median(returns):.4g}" if returns else "",
        }

    def close(self) -> None:
        self._last = 0.0
        self.update()
        self._bar.stop()
