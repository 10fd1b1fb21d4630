"""A population's run folder: every member trained at once (agents/population.py), each recorded as a normal run.

    runs/<name>/config.yaml              the population's config, `population:` included
    runs/<name>/population.json          members, seeds, hyperparameters, status (running, done, solved, stopped,
                                         diverged; with the reason and step), final metrics
    runs/<name>/members/<member>/        a complete run folder: config.yaml (the member's equivalent single-run
                                         config), metrics.jsonl, checkpoints/, summary.json and its own W&B run,
                                         grouped under the population's name

So `dlforge eval`, `report` and `--resume` work on a member folder as on any run, and `dlforge report runs/<name>`
finds the members as seeds of one config. Each member has its own tracker; a member that ends (its summary says
why) closes its tracker and its W&B run at once, while the others go on.

Crash safety: the loop checkpoints every running member on the same vector step (agents/offpolicy.py), so
`dlforge train --resume runs/<name>` resumes every member that had not ended from the newest vector step that
all of them saved (`counters.vec_steps`), cuts each member's metrics.jsonl back to that point, sets aside its
cut-off W&B runs and removes its checkpoints from beyond that point. A member that had ended (its summary.json
names its status) stays as it ended.

population.json, each member's tracker and the progress line are launch/population_record.py's.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from agents import population
from launch.config import RunSpec, to_dict
from launch.population_record import ENDED, ENDED_TRACKER, MemberTracker, Progress, Record
from launch.registry import trainer_module
from launch.tracking import LocalTracker, clear_interrupted_writes, read_metrics
from launch.wandb_recovery import has_cut_off_runs
from networks import io
from networks.errors import CheckpointError, ConfigError
from networks.run_folder import CONFIG_FILE, MEMBERS, checkpoint_stems


def is_population(spec: RunSpec) -> bool:
    return getattr(spec.config, "population", None) is not None


def member_spec(spec: RunSpec, member: population.Member, group: str) -> RunSpec:
    """Member `member`'s equivalent single-run spec; its W&B runs are grouped under `group` (the tracking
    section's own group, when it names one)."""
    config = population.member_config(spec.config, member)
    tracking = dataclasses.replace(spec.tracking, group=spec.tracking.group or group)
    resolved = {"kind": spec.kind, "tracking": to_dict(tracking), **to_dict(config)}
    return RunSpec(kind=spec.kind, config=config, tracking=tracking, resolved=resolved, source=spec.source)


def train_population(
    spec: RunSpec, run_dir: Path, *, resume: bool = False, progress: bool = False, tracker_factory=LocalTracker
) -> tuple[dict[str, Any], list[dict]]:
    """Train the population of `spec` into `run_dir` (see the module docstring); `tracker_factory` is called once
    per member that trains, as LocalTracker is: (member folder, tracking, config=, total_steps=, progress=False,
    resume_step=). Returns the population's summary and each member's. Bad input removes a folder this call created,
    then re-raises."""
    found = population.members(spec.config)
    specs = [member_spec(spec, member, run_dir.name) for member in found]
    folders = [run_dir / MEMBERS / member.name for member in found]
    created = not run_dir.exists()
    starts = resume_points(folders) if resume else [(None, None, None)] * len(found)
    record = Record(run_dir, spec, found)
    trackers: list[MemberTracker | None] = []
    try:
        try:
            for folder, member_run in zip(folders, specs):
                folder.mkdir(parents=True, exist_ok=True)
                io.atomic_write_text(folder / CONFIG_FILE, yaml.safe_dump(member_run.resolved, sort_keys=False))
            io.atomic_write_text(run_dir / CONFIG_FILE, yaml.safe_dump(spec.resolved, sort_keys=False))
        except OSError as e:
            raise ConfigError(
                "--resume" if resume else "--out", f"cannot write the run folder {run_dir} ({e.strerror})"
            ) from None
        for k, (folder, (_, _, ended)) in enumerate(zip(folders, starts)):
            if ended is not None:
                record.ended(k, ended)
                close_cut_off(folder, specs[k])
        record.write()
        shown = Progress(record, spec.config.total_steps) if progress else None
        for k, (folder, member_run, (_, step, ended)) in enumerate(zip(folders, specs, starts)):
            if ended is not None:
                trackers.append(None)
                continue
            inner = tracker_factory(
                folder,
                member_run.tracking,
                config=member_run.resolved,
                total_steps=member_run.config.total_steps,
                progress=False,
                resume_step=step,
            )
            trackers.append(MemberTracker(inner, k, record, shown))
        summaries = trainer_module(spec.kind).train(
            spec.config,
            [tracker if tracker is not None else ENDED_TRACKER for tracker in trackers],
            resume=[tree for tree, _, _ in starts],
            finished=[ended is not None for _, _, ended in starts],
        )
        for tracker in trackers:
            if tracker is not None:
                tracker.close()
        if shown is not None:
            shown.close()
        summaries = [s if s is not None else record.members[k]["metrics"] for k, s in enumerate(summaries)]
        return record.finish(), summaries
    except (ConfigError, CheckpointError):
        _close_all(trackers)
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    except BaseException:
        _close_all(trackers)
        raise


def _close_all(trackers: list) -> None:
    for tracker in trackers:
        if tracker is not None:
            tracker.close(failed=True)


# --- resuming -------------------------------------------------------------------------------------------------


def resume_points(folders: list[Path]) -> list[tuple[dict | None, int | None, dict | None]]:
    """Per member: (checkpoint tree, step, None) for a member that trains on, or (None, None, summary) for one that
    had ended. Members that train on resume from the newest vector step that all of them saved; with none, they
    start again (step 0: their records and checkpoints are cleared)."""
    ended = [_ended_summary(folder) for folder in folders]
    saved: list[dict[int, list[Path]]] = []
    for folder, summary in zip(folders, ended):
        if summary is None:
            clear_interrupted_writes(folder)
            saved.append(_stems_by_vector_step(folder))
    loaded = iter(_load_newest_common(saved))
    starts = []
    for folder, summary in zip(folders, ended):
        if summary is not None:
            starts.append((None, None, summary))
            continue
        found = next(loaded, None)
        if found is None:
            _remove_checkpoints(folder, after=-1)
            starts.append((None, 0, None))
            continue
        tree, meta = found
        step = int(meta.get("step", 0))
        _remove_checkpoints(folder, after=step)
        starts.append((tree, step, None))
    return starts


def _ended_summary(folder: Path) -> dict | None:
    """A member's summary.json when it names an ended status (written after its final checkpoint), else None."""
    try:
        summary = json.loads((folder / "summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return summary if isinstance(summary, dict) and summary.get("status") in ENDED else None


def _stems_by_vector_step(folder: Path) -> dict[int, list[Path]]:
    """A member's checkpoints by the vector step they were taken at, read from their JSON sidecars alone (no
    tensors): at one step, newest kind first (a step checkpoint before a best one)."""
    found: dict[int, list[Path]] = {}
    for stem in checkpoint_stems(folder, "any"):
        try:
            counters = io.read_sidecar(stem)["tree"].get("counters")
        except CheckpointError:
            continue
        vec_steps = counters.get("vec_steps") if isinstance(counters, dict) else None
        if isinstance(vec_steps, int):
            found.setdefault(vec_steps, []).append(stem)
    return found


def _load_newest_common(saved: list[dict[int, list[Path]]]) -> list[tuple[dict, dict]]:
    """(tree, meta) per member at the newest vector step where every member holds a checkpoint that loads; [] when
    there is none. Only that step's checkpoints are loaded: one that fails (its tensors damaged) drops that step for
    its member, and the next newest common step is tried."""
    saved = [dict(stems) for stems in saved]
    while saved:
        common = set.intersection(*(set(stems) for stems in saved))
        if not common:
            return []
        point = max(common)
        loaded = []
        for stems in saved:
            found = _load_first(stems[point])
            if found is None:
                del stems[point]
                break
            loaded.append(found)
        else:
            return loaded
    return []


def _load_first(stems: list[Path]) -> tuple[dict, dict] | None:
    """The first of `stems` that loads, as (tree, meta)."""
    for stem in stems:
        try:
            return io.load(stem)
        except CheckpointError:
            continue
    return None


def _remove_checkpoints(folder: Path, *, after: int) -> None:
    """Remove a member's checkpoints taken after step `after`: they belong to the training a crash cut off, and a
    resumed member must not find them newer than its own."""
    for stem in checkpoint_stems(folder, "any"):
        if int(stem.name.rsplit("-", 1)[1]) > after:
            for suffix in (".json", ".safetensors"):
                stem.with_name(stem.name + suffix).unlink(missing_ok=True)


def close_cut_off(folder: Path, member_run: RunSpec) -> None:
    """A member that ended but whose W&B run a crash cut off before it finished: its records go to a new W&B run
    (launch/wandb_recovery.py), which finishes at once."""
    if member_run.tracking.wandb != "offline" or not has_cut_off_runs(folder):
        return
    steps = [record["step"] for record in read_metrics(folder / "metrics.jsonl")]
    tracker = LocalTracker(folder, member_run.tracking, config=member_run.resolved, resume_step=max(steps, default=0))
    tracker.summary(_ended_summary(folder) or {})
    tracker.close()
