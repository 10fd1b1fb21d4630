"""One training run in its folder: create, train, resume, evaluate, generate.

The CLI and the sweep trials call the same `train_run`, so a trial is exactly a `dlforge train`.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import shutil
import time
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from agents.population import members as population_members
from launch.config import RunSpec, apply_overrides, parse_config, read_yaml
from launch.population import is_population, train_population
from launch.registry import trainer_module, with_env_factory
from launch.tracking import LocalTracker, checkpoint_stems, clear_interrupted_writes, load_latest
from networks import io, pretrained
from networks.errors import CheckpointError, ConfigError
from networks.run_folder import CONFIG_FILE, MEMBERS, load_checkpoint  # noqa: F401 (launch.run.load_checkpoint)


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any]
    members: list[dict] | None = None  # a population: each member's summary


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
    """The config a run was started with (its config.yaml), with optional overrides. A network taken from
    another run builds from the copy this run keeps (see `copy_pretrained`)."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise ConfigError("run", f"{run_dir} holds no dlforge run (no {CONFIG_FILE})")
    spec = parse_config(apply_overrides(read_yaml(run_dir / CONFIG_FILE), overrides), source=run_dir)
    pretrained.use_kept_copy(spec.config, run_dir)
    return spec


def train_run(
    spec: RunSpec,
    run_dir: Path,
    *,
    resume: bool = False,
    progress: bool = False,
    tracker_factory=LocalTracker,
) -> RunResult:
    """Train `spec` into `run_dir`. Bad input removes a folder this call created (or, when resuming, puts
    back the config.yaml and metrics.jsonl it found), then re-raises.

    A spec whose config has `population:` trains the whole population in this one process into `run_dir`
    (launch/population.py): `run_dir/population.json` and one complete run folder per member under
    `run_dir/members/<member>/`. `tracker_factory` is then called once per member that trains, with the same
    arguments as `LocalTracker(member_dir, tracking, config=, total_steps=, progress=False, resume_step=)`, so a
    caller passes its own tracker class (or a function building one per member, e.g. one that reports the mean
    over members); each member's tracker is closed as soon as that member ends. `resume=True` resumes every
    member that had not ended from the newest step all of them saved. The result's `summary` is the population's
    (members by status; mean, median, min and max of the members' last evaluations) and `members` holds each
    member's own summary, in the order of `agents.population.members(spec.config)`."""
    if is_population(spec):
        summary, members = train_population(
            spec, run_dir, resume=resume, progress=progress, tracker_factory=tracker_factory
        )
        return RunResult(run_dir, summary, members)
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
            copy_pretrained(spec, run_dir, resume=resume)
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


def copy_pretrained(spec: RunSpec, run_dir: Path, *, resume: bool) -> None:
    """A run that starts from `network.init_from` keeps a copy of that checkpoint in run_dir/pretrained/, and
    config.yaml records where it came from (`init_from`: RUN_DIR becomes that run's newest checkpoint) and its
    SHA-256. The network builds from the copy, so a resume never reads the source run again, even once the
    source has pruned that checkpoint or been deleted."""
    network = _pretrained_network(spec)
    if network is None:
        return
    recorded = _recorded_network(run_dir) if resume else {}
    origin = {**network, **{key: recorded[key] for key in ("init_from", "sha256") if key in recorded}}
    kept = pretrained.kept_copy(origin, run_dir)
    if kept is None:
        source = _source_checkpoint(origin["init_from"])
        pretrained.check_checksum(source, origin.get("sha256"))  # a recorded checksum admits only that checkpoint
        kept = run_dir / pretrained.COPIES / source.name
        try:
            checksum = io.copy(source, kept)
        except CheckpointError as e:
            raise ConfigError("network.init_from", str(e)) from None
        origin = {**origin, "init_from": str(source), "sha256": checksum}
    spec.resolved["network"] = origin
    network.update(init_from=str(kept), sha256=origin["sha256"])


def _pretrained_network(spec: RunSpec) -> dict | None:
    network = getattr(spec.config, "network", None)
    return network if isinstance(network, dict) and isinstance(network.get("init_from"), str) else None


def _recorded_network(run_dir: Path) -> dict:
    """The network section of the config.yaml a run folder already holds ({} when there is none)."""
    try:
        network = read_yaml(run_dir / CONFIG_FILE).get("network")
    except ConfigError:
        return {}
    return network if isinstance(network, dict) else {}


def _source_checkpoint(init_from: str) -> Path:
    """`init_from` as a checkpoint stem: a run folder's newest step checkpoint, or the stem it names."""
    source = Path(init_from).expanduser()
    if source.suffix in (".json", ".safetensors"):  # a checkpoint named by one of its two files
        source = source.with_suffix("")
    if source.is_dir():
        stems = checkpoint_stems(source)
        if not stems:
            raise ConfigError("network.init_from", f"{source} holds no checkpoint to take the network from")
        return stems[0].resolve()
    if not source.with_name(source.name + ".json").is_file():
        raise ConfigError("network.init_from", f"{source} is neither a run folder nor a checkpoint")
    return source.resolve()


def evaluate_run(
    run_dir: Path, *, episodes: int, which: str, seed: int, video: bool, trajectories: str | Path | None = None
) -> dict:
    """Evaluate a run's checkpoint into run_dir/eval.json. With `trajectories` (a .npz path), also write the
    evaluated episodes' steps there: `obs`, `actions`, `rewards`, `dones` (envs/evaluation.py), the trajectory
    file that seq2seq_ae reads (`data=npz:PATH`). A population's folder: every member, see `_evaluate_population`."""
    spec = load_run_spec(run_dir)
    if is_population(spec):
        options = {"episodes": episodes, "which": which, "seed": seed, "video": video}
        return _evaluate_population(spec, run_dir, trajectories=trajectories, **options)
    module = trainer_module(spec.kind)
    # Agents' evaluate(config, tree, *, episodes, ...); generative modules may have an unrelated `evaluate` helper.
    parameters = inspect.signature(getattr(module, "evaluate", lambda: None)).parameters
    if "episodes" not in parameters:
        raise ConfigError(
            "run",
            f"{run_dir} is a '{spec.kind}' run, which has no evaluation; "
            "eval works on agent runs (dqn, drqn, qlearning, pqn)",
        )
    if trajectories is not None:
        trajectories = _trajectories_path(trajectories)
        if "trajectories" not in parameters:
            raise ConfigError("--save-trajectories", f"a '{spec.kind}' run's evaluation does not record trajectories")
    tree, meta, which = load_checkpoint(run_dir, which)
    video_path = run_dir / "videos" / f"eval-{which}-step{meta.get('step', 0)}.mp4" if video else None
    options = {"trajectories": True} if trajectories is not None else {}
    result = module.evaluate(spec.config, tree, episodes=episodes, seed=seed, video_path=video_path, **options)
    result = {**result, "checkpoint": which, "step": meta.get("step"), "seed": seed}
    if trajectories is not None:
        _write_npz(trajectories, result.pop("trajectories"), "--save-trajectories")
        result["trajectories"] = str(trajectories)
    io.atomic_write_text(run_dir / "eval.json", json.dumps(result, indent=2))
    if video_path is not None and video_path.exists() and spec.tracking.wandb != "disabled":
        tracker = LocalTracker(run_dir, spec.tracking, config=spec.resolved, resume_step=10**18)
        tracker.video("eval/video", video_path, step=int(meta.get("step", 0)))
        tracker.summary({"eval/mean_return": result.get("mean_return")})
        tracker.close()
    return result


def _evaluate_population(spec: RunSpec, run_dir: Path, *, trajectories: str | Path | None, **options) -> dict:
    """Each member evaluated as any run is (its own eval.json), on the same episode seeds; the population's
    eval.json holds every member's result, and the mean and standard deviation over members of their mean returns.
    A member without a checkpoint (one that diverged before its first) is listed under `skipped`. With
    `trajectories` (PATH.npz), member NAME's episodes go to PATH-NAME.npz (`member_trajectories`)."""
    path = None if trajectories is None else _trajectories_path(trajectories)  # checked before any member runs
    results, skipped = {}, []
    for member in population_members(spec.config):
        member_dir = run_dir / MEMBERS / member.name
        if not checkpoint_stems(member_dir, "any"):
            skipped.append(member.name)
            continue
        member_path = None if path is None else member_trajectories(path, member.name)
        results[member.name] = evaluate_run(member_dir, trajectories=member_path, **options)
    if not results:
        raise ConfigError("run", f"{run_dir}: no member of this population holds a checkpoint yet")
    means = np.array([result["mean_return"] for result in results.values()])
    result = {
        "mean_return": float(means.mean()),
        "std_return": float(means.std()),
        "episodes": options["episodes"],
        "members": results,
        "skipped": skipped,
    }
    io.atomic_write_text(run_dir / "eval.json", json.dumps(result, indent=2))
    return result


def member_trajectories(path: Path, member: str) -> Path:
    """Where a population member's trajectories go when the population's are asked for at `path`:
    traj.npz -> traj-seed0.npz."""
    return path.with_name(f"{path.stem}-{member}{path.suffix}")


def _trajectories_path(path: str | Path) -> Path:
    """A .npz path that can be written: checked before evaluating, so a refusal writes nothing."""
    path = Path(path).expanduser()
    if path.suffix != ".npz":
        raise ConfigError("--save-trajectories", f"expected a .npz path, got '{path}'")
    nearest = next(folder for folder in path.parents if folder.exists())  # the folder to write in, or to create it in
    if path.is_dir() or not nearest.is_dir() or not os.access(nearest, os.W_OK | os.X_OK):
        raise ConfigError("--save-trajectories", f"cannot write '{path}': {nearest} is not a writable folder")
    return path


def _write_npz(path: Path, arrays: dict, field: str) -> None:
    """`arrays` as a compressed npz at `path`, written atomically (its folder created)."""
    buffer = BytesIO()
    np.savez_compressed(buffer, **arrays)
    try:
        io.atomic_write_bytes(path, buffer.getvalue())
    except OSError as e:
        raise ConfigError(field, f"cannot write '{path}' ({e.strerror})") from None


def generate_run(run_dir: Path, *, n: int, out: str | None, seed: int, label: int | None = None) -> Path:
    """Samples (or reconstructions) as a grid PNG, or raw (N, C, H, W) in [0, 1] as `samples` in an npz.
    `label` draws one class from a class-conditional generator; without it such a grid has one row per class."""
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
        _write_npz(path, {"samples": samples}, "--out")
    else:
        from generative.images import grid

        classes = tree.get("specs", {}).get("generator", {}).get("num_classes", 0)  # conditional generators
        save_png(grid(samples, nrow=len(samples) // classes if classes and label is None else None), path)
    return path
