"""The installable wheel: built from this tree, installed into a fresh venv, run from another folder.

The fresh venv gets the wheel alone (`--no-deps`); its dependencies come from the test's own environment through a
.pth file naming that environment's site-packages, so the test needs no network and does not reinstall torch.
A path line in a .pth file is only added to sys.path (the .pth files found there are not run), so an editable
install of the checkout in that environment cannot shadow the wheel's own packages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "README.md", "configs", "networks", "agents", "envs", "generative", "launch"]
pytestmark = pytest.mark.slow


def run(argv: list, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["WANDB_MODE"] = "disabled"
    done = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{argv}: {done.stderr[-2000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """(the fresh venv, seconds per stage)."""
    root = tmp_path_factory.mktemp("wheel")
    timings, start = {}, time.perf_counter()
    source = root / "source"  # a copy, so the build's scratch folders stay out of the checkout
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip"]
    run([*pip, "wheel", source, "--no-deps", "--no-build-isolation", "-q", "-w", root / "dist"], cwd=root)
    (wheel,) = (root / "dist").glob("dlforge-*.whl")
    timings["build"] = time.perf_counter() - start

    start = time.perf_counter()
    venv = root / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=root)
    python = venv / "bin" / "python"
    run([*pip, "--python", python, "install", "--no-deps", "--no-index", "-q", wheel], cwd=root)
    site = Path(
        run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root).stdout.strip()
    )
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    timings["install"] = time.perf_counter() - start
    return venv, timings


def test_the_wheel_carries_the_bundled_configs_and_trains_from_anywhere(installed, tmp_path):
    venv, timings = installed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run([venv / "bin/python", "-c", "import launch; print(launch.__file__)"], cwd=elsewhere).stdout
    assert where.startswith(str(venv)), where  # the wheel's code, not the checkout's

    dlforge = venv / "bin" / "dlforge"
    listing = run([dlforge, "list"], cwd=elsewhere).stdout
    for name in ("dqn/cartpole", "sweeps/cartpole-lr", "vae/mnist5k"):
        assert name in listing

    start = time.perf_counter()
    tiny = ["total_steps=500", "learning_starts=100", "eval_every=500", "eval_episodes=2", "tracking.wandb=disabled"]
    trained = run([dlforge, "train", "dqn/cartpole", *tiny, "--out", "runs", "--name", "bundled"], elsewhere)
    assert trained.stdout.strip().splitlines()[-1] == "run: runs/bundled"
    assert (elsewhere / "runs/bundled/checkpoints").is_dir()
    timings["train"] = time.perf_counter() - start

    mine = elsewhere / "mine.yaml"  # a YAML path still works
    mine.write_text((REPO / "configs/dqn/cartpole.yaml").read_text().replace("seed: 0", "seed: 3"))
    run([dlforge, "train", mine, *tiny, "--out", "runs", "--name", "mine"], elsewhere)
    assert (elsewhere / "runs/mine/summary.json").is_file()
    print("wheel timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
