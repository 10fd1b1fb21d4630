"""Reading a run folder: its config.yaml and its checkpoints, for launch/ and for agents.load / generative.load.

The layout every reader relies on, whether the folder is a training run or a downloaded W&B model artifact:

    config.yaml                            the resolved config: `kind`, `tracking`, and the trainer's fields
    checkpoints/<stem>.safetensors         tensors (networks/io.py)
    checkpoints/<stem>.json                its sidecar; `meta` holds the step and the evaluation

Training names the stems `step-<step:09d>` (the last few saves) and `best-<step:09d>` (the best evaluation).
A folder whose stems are named otherwise (an artifact) still loads: its newest sidecar by `meta.step` is used.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from networks import io
from networks.errors import CheckpointError, ConfigError
from networks.typed_config import read_yaml

CONFIG_FILE = "config.yaml"
CHECKPOINTS = "checkpoints"
MEMBERS = "members"  # a population's folder holds one run folder per member under it
_STEM_RE = re.compile(r"(?P<prefix>step|best)-(?P<step>\d+)")


def read_run_config(run_dir: str | Path) -> dict:
    """The run's config.yaml as a mapping; ConfigError when the folder holds no dlforge run."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise ConfigError("run", f"{run_dir} holds no dlforge run (no {CONFIG_FILE})")
    return read_yaml(run_dir / CONFIG_FILE)


def checkpoint_stems(run_dir: Path, prefix: str = "step") -> list[Path]:
    """Checkpoint stems of one kind (`step`, `best`, or `any` for both), newest step first; at equal steps
    a step checkpoint comes before a best one (it may hold more, e.g. the replay). Other names are ignored."""
    folder = Path(run_dir) / CHECKPOINTS
    prefixes = ("step", "best") if prefix == "any" else (prefix,)
    found = []
    for path in folder.glob("*.json"):
        match = _STEM_RE.fullmatch(path.name[: -len(".json")])
        if match and match["prefix"] in prefixes:
            found.append((int(match["step"]), match["prefix"] == "step", path.with_suffix("")))
    return [stem for *_, stem in sorted(found, reverse=True)]


def load_latest(run_dir: Path, prefix: str = "step") -> tuple[dict, dict] | None:
    """The newest checkpoint that loads, as (tree, meta); a damaged newer one is skipped (and named on stderr).
    `prefix="any"` considers best checkpoints too: a run whose newest save was a best one resumes from it."""
    found = newest_checkpoint(run_dir, prefix)
    return None if found is None else found[1:]


def newest_checkpoint(run_dir: Path, prefix: str = "step") -> tuple[Path, dict, dict] | None:
    """`load_latest` with the checkpoint's stem: (stem, tree, meta)."""
    errors = []
    for stem in checkpoint_stems(run_dir, prefix):
        try:
            tree, meta = io.load(stem)
        except CheckpointError as e:
            errors.append(str(e))
            continue
        if errors:
            print(f"warning: skipped {len(errors)} damaged checkpoint(s), the newest: {errors[0]}", file=sys.stderr)
        return stem, tree, meta
    if errors:
        raise CheckpointError(f"no loadable checkpoint in {run_dir}/{CHECKPOINTS}: {errors[0]}")
    return None


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
        found = _load_other_stem(Path(run_dir))
    if found is None:
        raise ConfigError("run", f"{run_dir} holds no checkpoint yet")
    return (*found, "last")


def _load_other_stem(run_dir: Path) -> tuple[dict, dict] | None:
    """A folder without step-/best- stems (a downloaded artifact): the sidecar with the highest `meta.step`."""
    ranked = []
    for path in (run_dir / CHECKPOINTS).glob("*.json"):
        try:
            step = json.loads(path.read_text()).get("meta", {}).get("step", 0)
        except (OSError, ValueError, AttributeError):
            step = -1  # unreadable: tried last, so its error is the one reported when nothing else loads
        ranked.append((step if isinstance(step, int) else -1, path.with_suffix("")))
    if not ranked:
        return None
    return io.load(max(ranked)[1])
