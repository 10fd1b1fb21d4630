"""One training run in its folder: create, train, resume, evaluate, generate.

The CLI and the sweep trials call the same `train_run`, so a trial is exactly a `dlforge train`.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from launch.config import RunSpec, apply_overrides, parse_config, read_yaml
from launch.registry import trainer_module, with_env_factory
from launch.tracking import LocalTracker, checkpoint_stems, clear_interrupted_writes, load_latest
from networks import io
from networks.errors import CheckpointError, ConfigError

CONFIG_FILE = "config.yaml"


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any]


def default_name(source: Path | None, kind: str) -> str:
    stem = source.stem if source else kind
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def new_run_dir(out: str | Path, name: str) -> Path:
    """The folder for a new run; refuses to reuse one so nothing existing is overwritten."""
    if not name or "/" in name or name in (".", ".."):
        raise ConfigError("--name", f"expected a plain folder name, got '{name}'")
    run_dir = Path(out) / name
    if run_dir.exists():
        raise ConfigError(
            "--name",
            f"run folder {run_dir} already exists; pick another --name, or continue it with --resume {run_dir}",
        )
    return run_dir


def load_run_spec(run_dir: str | Path, overrides: list[str] | tuple = ()) -> RunSpec:
    """The config a run was started with (its config.yaml), with optional overrides."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise ConfigError("run", f"{run_dir} holds no dlforge run (no {CONFIG_FILE})")
    return parse_config(apply_overrides(read_yaml(run_dir / CONFIG_FILE), overrides), source=run_dir)


def train_run(
    spec: RunSpec,
    run_dir: Path,
    *,
    resume: bool = False,
    progress: bool = False,
    tracker_factory=LocalTracker,
) -> RunResult:
    """Train `spec` into `run_dir`. Bad input removes a folder this call created (or, when resuming, puts
    back the config.yaml and metrics.jsonl it found), then re-raises."""
    resolve_pretrained(spec)
    created = not run_dir.exists()
    tree, step = None, None
    kept: dict[str, bytes] = {}
    if resume:
        latest = load_latest(run_dir, prefix="any")
        if latest is not None:
            tree, meta = latest
            step = meta.get("step", 0)
            if isinstance(step, bool) or not isinstance(step, int) or step < 0:
                raise CheckpointError(
                    f"{run_dir}/checkpoints: sidecar 'meta.step' must be a whole number >= 0, got {step!r}"
                )
        kept = {
            name: (run_dir / name).read_bytes() for name in (CONFIG_FILE, "metrics.jsonl") if (run_dir / name).is_file()
        }
        clear_interrupted_writes(run_dir)
    tracker = None
    try:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            io.atomic_write_text(run_dir / CONFIG_FILE, yaml.safe_dump(spec.resolved, sort_keys=False))
        except OSError as e:
            raise ConfigError(
                "--resume" if resume else "--out", f"cannot write the run folder {run_dir} ({e.strerror})"
            ) from None
        tracker = tracker_factory(
            run_dir,
            spec.tracking,
            config=spec.resolved,
            total_steps=getattr(spec.config, "total_steps", None),
            progress=progress,
            resume_step=step,
        )
        summary = with_env_factory(trainer_module(spec.kind).train)(spec.config, tracker, resume=tree) or {}
        tracker.summary(summary)
        tracker.close()
        return RunResult(run_dir, summary)
    except (ConfigError, CheckpointError):
        if tracker is not None:
            tracker.close(failed=True)
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        for name, data in kept.items():  # a refused resume leaves the run as it was
            with contextlib.suppress(OSError):
                io.atomic_write_bytes(run_dir / name, data)
        raise
    except BaseException:
        if tracker is not None:
            tracker.close(failed=True)
        raise


def resolve_pretrained(spec: RunSpec) -> None:
    """`network.init_from: RUN_DIR` -> that run's newest checkpoint, recorded as such in config.yaml."""
    network = getattr(spec.config, "network", None)
    if not isinstance(network, dict) or not isinstance(network.get("init_from"), str):
        return
    source = Path(network["init_from"]).expanduser()
    if source.is_dir():
        stems = checkpoint_stems(source)
        if not stems:
            raise ConfigError("network.init_from", f"{source} holds no checkpoint to take the network from")
        network["init_from"] = str(stems[0].resolve())
    elif not source.with_suffix(".json").is_file():
        raise ConfigError("network.init_from", f"{source} is neither a run folder nor a checkpoint")
    spec.resolved["network"] = dict(network)


def load_checkpoint(run_dir: Path, which: str = "best") -> tuple[dict, dict, str]:
    """(tree, meta, which) for `best` (falling back to the last when no best exists) or `last`."""
    if which not in ("best", "last"):
        raise ConfigError("--checkpoint", f"expected best or last, got '{which}'")
    if which == "best":
        found = load_latest(run_dir, prefix="best")
        if found is not None:
            return (*found, "best")
    found = load_latest(run_dir, prefix="any")  # the newest save, best or not
    if found is None:
        raise ConfigError("run", f"{run_dir} holds no checkpoint yet")
    return (*found, "last")


def evaluate_run(run_dir: Path, *, episodes: int, which: str, seed: int, video: bool) -> dict:
    spec = load_run_spec(run_dir)
    module = trainer_module(spec.kind)
    # Agents' evaluate(config, tree, *, episodes, ...); generative modules may have an unrelated `evaluate` helper.
    if "episodes" not in inspect.signature(getattr(module, "evaluate", lambda: None)).parameters:
        raise ConfigError(
            "run",
            f"{run_dir} is a '{spec.kind}' run, which has no evaluation; "
            "eval works on agent runs (dqn, drqn, qlearning)",
        )
    tree, meta, which = load_checkpoint(run_dir, which)
    video_path = run_dir / "videos" / f"eval-{which}-step{meta.get('step', 0)}.mp4" if video else None
    result = module.evaluate(spec.config, tree, episodes=episodes, seed=seed, video_path=video_path)
    result = {**result, "checkpoint": which, "step": meta.get("step"), "seed": seed}
    io.atomic_write_text(run_dir / "eval.json", json.dumps(result, indent=2))
    if video_path is not None and video_path.exists() and spec.tracking.wandb != "disabled":
        tracker = LocalTracker(run_dir, spec.tracking, config=spec.resolved, resume_step=10**18)
        tracker.video("eval/video", video_path, step=int(meta.get("step", 0)))
        tracker.summary({"eval/mean_return": result.get("mean_return")})
        tracker.close()
    return result


def generate_run(run_dir: Path, *, n: int, out: str | None, seed: int, label: int | None = None) -> Path:
    """Samples (or reconstructions) as a grid PNG, or raw (N, C, H, W) in [0, 1] as `samples` in an npz.
    `label` draws one class from a class-conditional generator; without it such a grid has one row per class."""
    import numpy as np

    from launch.tracking import save_png

    spec = load_run_spec(run_dir)
    module = trainer_module(spec.kind)
    if not hasattr(module, "generate"):
        raise ConfigError(
            "run",
            f"{run_dir} is a '{spec.kind}' run, which holds no generator; generate works "
            "on gan, dcgan, vae and autoencoder runs",
        )
    drawn_by_class = {} if label is None else {"label": label}
    if drawn_by_class and "label" not in inspect.signature(module.generate).parameters:
        raise ConfigError("--label", f"a '{spec.kind}' run does not draw by class (conditional dcgan runs do)")
    tree, _, _ = load_checkpoint(run_dir, "last")
    path = Path(out) if out else run_dir / "generated.png"
    if path.suffix not in (".png", ".npz"):
        raise ConfigError("--out", f"expected a .png (grid) or .npz (samples) path, got '{path}'")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError("--out", f"cannot create the folder for {path} ({e.strerror})") from None
    samples = with_env_factory(module.generate)(spec.config, tree, n=n, seed=seed, **drawn_by_class)
    samples = np.asarray(samples, dtype=np.float32)
    if path.suffix == ".npz":
        np.savez_compressed(path, samples=samples)
    else:
        from generative.images import grid

        classes = tree.get("specs", {}).get("generator", {}).get("num_classes", 0)  # conditional generators
        save_png(grid(samples, nrow=len(samples) // classes if classes and label is None else None), path)
    return path
