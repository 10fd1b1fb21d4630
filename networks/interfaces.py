"""Interfaces the trainers of agents/ and generative/ are written against (they live here, the shared bottom room).

`Tracker` is what launch/ hands every trainer (launch/tracking.py's LocalTracker, a sweep trial's tracker, a
benchmark's in-memory one): a trainer reports through it and never imports W&B, Ray or the CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Tracker(Protocol):
    """Where a trainer sends what it measures and saves."""

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Scalars at an env (or optimizer) step; steps never go backwards within a run."""

    def image(self, key: str, image: Any, step: int, caption: str | None = None) -> Any:
        """An (H, W[, C]) array, or the path of a PNG already written."""

    def video(self, key: str, path: str | Path, step: int) -> None:
        """An mp4 already written."""

    def checkpoint(self, tree: dict, step: int, *, best: bool = False, metric: float | None = None) -> Any:
        """Save a tree of tensors, arrays and JSON values (networks/io.py). `best`: the best-so-far checkpoint,
        ranked by `metric`. A tree holding NaN or inf is refused (TrainingDiverged)."""

    def summary(self, metrics: dict[str, Any]) -> None:
        """The run's final figures."""

    def should_stop(self) -> bool:
        """True when the run should checkpoint and stop now (a sweep's scheduler stopped it)."""
