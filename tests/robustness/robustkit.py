"""Shared pieces of the robustness tests: tiny per-kind budgets, run helpers and run-folder checks.

Tests parametrize over `launch.registry.TRAINERS`, so a kind that lands later is covered as soon as it has a
tiny config here; a kind without one is skipped with that reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from launch.registry import TRAINERS, trainer_module

REPO = Path(__file__).resolve().parents[2]
DLFORGE = str(Path(sys.executable).parent / "dlforge")
TIMING_KEYS = ("charts/sps", "charts/images_per_s", "time/")  # wall-clock fields: never compared between runs

# Tiny budgets per kind: a few seconds of CPU, several checkpoints, every metric family logged at least once.
TINY: dict[str, dict] = {
    "classify": {"total_steps": 30, "eval_every": 10, "batch_size": 16, "network": {"type": "mlp", "hidden": [16]}},
    "dqn": {
        "env_id": "CartPole-v1",
        "total_steps": 600,
        "learning_starts": 100,
        "buffer_size": 1000,
        "batch_size": 16,
        "train_freq": 4,
        "target_update_interval": 100,
        "network": {"type": "mlp", "hidden": [16]},
        "eval_every": 300,
        "eval_episodes": 2,
        "checkpoint_every": 100,
        "log_every": 50,
        "torch_threads": 1,
    },
    "drqn": {
        "env_id": "dlforge/CartPoleNoVel-v1",
        "total_steps": 600,
        "learning_starts": 100,
        "buffer_size": 1000,
        "batch_size": 4,
        "seq_len": 8,
        "burn_in": 2,
        "train_freq": 4,
        "target_update_interval": 100,
        "network": {"type": "lstm", "hidden_size": 16},
        "eval_every": 300,
        "eval_episodes": 2,
        "checkpoint_every": 100,
        "log_every": 50,
        "torch_threads": 1,
    },
    "qlearning": {"env_id": "FrozenLake-v1", "total_steps": 500, "checkpoint_every": 100, "log_every": 50},
    "pqn": {  # one env, so the last rollout stops exactly at total_steps
        "env_id": "CartPole-v1",
        "num_envs": 1,
        "num_steps": 50,
        "num_minibatches": 5,
        "update_epochs": 2,
        "total_steps": 600,
        "network": {"type": "mlp", "hidden": [16], "norm": "layer"},
        "eval_every": 300,
        "eval_episodes": 2,
        "checkpoint_every": 100,
        "log_every": 50,
        "torch_threads": 1,
    },
    "gan": {
        "data": "digits",
        "total_steps": 100,
        "batch_size": 16,
        "eval_every": 50,
        "eval_samples": 32,
        "judge_steps": 20,
        "generator": {"type": "mlp", "hidden": [32]},
        "torch_threads": 1,
        "discriminator": {"type": "mlp", "hidden": [32]},
    },
    "dcgan": {
        "data": "digits",
        "image_size": 16,
        "latent_dim": 8,
        "ngf": 8,
        "ndf": 8,
        "total_steps": 50,
        "batch_size": 8,
        "eval_every": 25,
        "eval_samples": 16,
        "judge_steps": 20,
        "torch_threads": 1,
    },
    "ae": {
        "data": "digits",
        "arch": "dense",
        "code_dim": 4,
        "decoder_hidden": [16],
        "total_steps": 30,
        "batch_size": 16,
        "eval_every": 10,
        "torch_threads": 1,
    },
    "vae": {
        "data": "digits",
        "latent_dim": 4,
        "decoder_hidden": [16],
        "total_steps": 30,
        "batch_size": 16,
        "eval_every": 10,
        "torch_threads": 1,
    },
    "seq2seq_ae": {
        "seq_len": 10,
        "n_sequences": 40,
        "code_dim": 4,
        "total_steps": 30,
        "batch_size": 8,
        "eval_every": 10,
        "encoder": {"type": "lstm", "hidden_size": 8},
        "decoder": {"type": "lstm", "hidden_size": 8},
        "torch_threads": 1,
    },
}

KINDS = sorted(TRAINERS)


def kind_params(kinds=None, *, needs: str | None = None) -> list:
    """pytest params over registered kinds; skipped (with the reason) when no tiny config or no `needs` hook."""
    params = []
    for kind in kinds or KINDS:
        marks = []
        if kind not in TRAINERS:
            marks.append(pytest.mark.skip(reason=f"kind '{kind}' is not registered in launch.registry yet"))
        elif kind not in TINY:
            marks.append(pytest.mark.skip(reason=f"no tiny config for kind '{kind}' in robustkit.TINY yet"))
        elif needs and not hasattr(_module(kind), needs):
            marks.append(pytest.mark.skip(reason=f"kind '{kind}' has no {needs}()"))
        params.append(pytest.param(kind, marks=marks, id=kind))
    return params


def _module(kind: str):
    try:
        return trainer_module(kind)
    except Exception:  # a half-landed trainer: its own tests report it
        return None


def has_field(kind: str, name: str) -> bool:
    import dataclasses

    return any(f.name == name for f in dataclasses.fields(trainer_module(kind).Config))


def tiny_document(kind: str, **extra) -> dict:
    """A tiny, valid config mapping for `kind` (W&B off unless `tracking` is given)."""
    document = {"kind": kind, "tracking": {"wandb": "disabled"}, "device": "cpu", "seed": 0, **TINY[kind]}
    document.update(extra)
    return document


def write_config(folder: Path, kind: str, name: str | None = None, **extra) -> Path:
    path = Path(folder) / f"{name or kind}.yaml"
    path.write_text(yaml.safe_dump(tiny_document(kind, **extra), sort_keys=False))
    return path


def env(**extra: str) -> dict[str, str]:
    """The subprocess environment: offline, quiet, one thread, and no W&B key from the host (only where W&B
    stages artifact files is kept)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_") or k == "WANDB_DATA_DIR"}
    base.update(
        {
            "WANDB_SILENT": "true",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "MPLBACKEND": "Agg",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "PYTHONUNBUFFERED": "1",
        }
    )
    base.update(extra)
    return base


def dlforge(
    *args: str,
    timeout: float = 120,
    prefix: tuple[str, ...] = (),
    env_extra: dict | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    """Run the real `dlforge` console script (optionally under `prefix`, e.g. unshare -n)."""
    return subprocess.run(
        [*prefix, DLFORGE, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env(**(env_extra or {})),
        cwd=cwd or REPO,
    )


def spawn(
    *args: str, prefix: tuple[str, ...] = (), env_extra: dict | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    """Start `dlforge ARGS` without waiting (text pipes for stdout and stderr)."""
    return subprocess.Popen(
        [*prefix, DLFORGE, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(**(env_extra or {})),
        cwd=cwd or REPO,
    )


def assert_one_line_error(stderr: str, *expected: str) -> str:
    """stderr is exactly one `error: ...` line holding every expected fragment, and no traceback."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    line = lines[0]
    assert line.startswith("error: "), line
    assert "Traceback" not in stderr
    for fragment in expected:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


def metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def comparable(records: list[dict]) -> list[dict]:
    """Metrics records without wall-clock fields (and records left empty by dropping them)."""
    out = []
    for record in records:
        kept = {k: v for k, v in record.items() if not k.startswith(TIMING_KEYS)}
        if set(kept) - {"step"}:
            out.append(kept)
    return out


def snapshot_files(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` (relative path -> bytes), to prove nothing was touched."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def checkpoint_steps(run_dir: Path, prefix: str = "step") -> list[int]:
    return sorted(int(p.stem.split("-")[1]) for p in (Path(run_dir) / "checkpoints").glob(f"{prefix}-*.json"))
