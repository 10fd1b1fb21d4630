"""Fixtures for the robustness tests: one tiny finished run per kind, trained once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from robustkit import write_config


@pytest.fixture(scope="session")
def finished_runs(tmp_path_factory):
    """kind -> a finished tiny run folder (trained in-process through the CLI, once). Treat as read-only:
    tests that change a run take `run_copy(kind)`."""
    from launch.cli import main

    root = tmp_path_factory.mktemp("finished")
    runs: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in runs:
            config = write_config(root, kind)
            code = main(["train", str(config), "--out", str(root / "runs"), "--name", kind])
            assert code == 0, f"tiny {kind} run failed"
            runs[kind] = root / "runs" / kind
        return runs[kind]

    return get


@pytest.fixture
def run_copy(finished_runs, tmp_path):
    """A private copy of a finished tiny run, free to damage."""

    def copy(kind: str, name: str | None = None) -> Path:
        target = tmp_path / "runs" / (name or kind)
        shutil.copytree(finished_runs(kind), target)
        return target

    return copy
