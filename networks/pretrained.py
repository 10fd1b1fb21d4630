"""Reuse part of a trained model: `{init_from: CHECKPOINT, part: encoder, freeze: true}` as a network spec.

A trainer that wants its parts reusable stores, in its checkpoint tree, the part's weights under
`tree["model"][part]` and how to rebuild it under `tree["specs"][part]`: the `networks.build` spec, the
input shape and the output size (the convolutional autoencoder does this for its encoder). `init_from`
names the checkpoint stem (launch/ turns a run folder into its newest checkpoint before training).

A run keeps its own copy of that checkpoint in `<run>/pretrained/<stem name>`, and its config records
`init_from` (where the weights came from) and `sha256` (the checkpoint's checksum, which the copy shares),
so the run never reads another run's files again. `kept_copy` finds the copy, `use_kept_copy` points a loaded
run's config at it (launch, agents.load and generative.load all read runs through it); a spec with `sha256` only
builds from a checkpoint with that checksum.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from networks import io
from networks.errors import CheckpointError, ConfigError
from networks.spec import check_fields

FIELDS = ("type", "init_from", "part", "freeze", "sha256")  # type: "pretrained", set by resolve()
COPIES = "pretrained"  # the folder in a run that holds the checkpoints its parts came from


def kept_copy(spec: Mapping[str, Any], run_dir: str | Path) -> Path | None:
    """The stem of `run_dir`'s own copy of the checkpoint `spec["init_from"]` names, when the run keeps one
    (its config recorded the checksum and the copy is there); else None."""
    init_from, pinned = spec.get("init_from"), spec.get("sha256")
    if not isinstance(init_from, str) or not isinstance(pinned, str):
        return None
    stem = Path(run_dir) / COPIES / Path(init_from).name
    return stem if stem.with_name(stem.name + ".json").is_file() else None


def use_kept_copy(config: Any, run_dir: str | Path) -> None:
    """Point `config.network`, when it takes a part from another run's checkpoint, at `run_dir`'s own copy of that
    checkpoint (in place), so the run builds the same network wherever its folder is: a run folder whose source
    run is gone, or a downloaded artifact (config.yaml, checkpoints/, pretrained/) on another machine."""
    network = getattr(config, "network", None)
    kept = kept_copy(network, run_dir) if isinstance(network, dict) else None
    if kept is not None:
        network["init_from"] = str(kept)


def check_checksum(init_from: str | Path, pinned: Any, field: str = "network") -> str:
    """The SHA-256 of checkpoint `init_from`; a ConfigError when a pinned one (from a config) differs."""
    if pinned is not None and not (isinstance(pinned, str) and re.fullmatch(r"[0-9a-f]{64}", pinned)):
        raise ConfigError(f"{field}.sha256", f"expected 64 lowercase hexadecimal digits, got {pinned!r}")
    try:
        checksum = io.read_sidecar(init_from)["sha256"]
    except CheckpointError as e:
        raise ConfigError(f"{field}.init_from", str(e)) from None
    if pinned is not None and pinned != checksum:
        raise ConfigError(
            f"{field}.sha256",
            f"{init_from} has SHA-256 {checksum[:12]}..., not the {pinned[:12]}... this config records: "
            "it is not the checkpoint the weights came from",
        )
    return checksum


def build_pretrained(spec: Mapping[str, Any], input_shape: Sequence[int], *, field: str = "network") -> nn.Module:
    """The stored part, rebuilt and loaded; its parameters frozen when `freeze` is true."""
    check_fields(field, spec, FIELDS, "a pretrained network")
    part, freeze = spec.get("part", "encoder"), spec.get("freeze", True)
    if not isinstance(freeze, bool):
        raise ConfigError(f"{field}.freeze", f"expected true or false, got {freeze!r}")
    check_checksum(spec["init_from"], spec.get("sha256"), field)
    try:
        tree, _ = io.load(spec["init_from"])  # checks the tensor file against the sidecar's checksum
    except CheckpointError as e:
        raise ConfigError(f"{field}.init_from", str(e)) from None
    stored = tree.get("specs", {}).get(part) if isinstance(tree.get("specs"), dict) else None
    weights = tree.get("model", {}).get(part) if isinstance(tree.get("model"), dict) else None
    if not isinstance(stored, dict) or weights is None:
        parts = sorted(tree.get("specs", {})) if isinstance(tree.get("specs"), dict) else []
        raise ConfigError(
            f"{field}.part",
            f"checkpoint {spec['init_from']} holds no reusable part '{part}'; it has: {', '.join(parts) or 'none'}",
        )
    trained_on, observed = tuple(stored["input_shape"]), tuple(input_shape)
    if trained_on != observed:
        raise ConfigError(
            f"{field}.init_from",
            f"the {part} was trained on inputs of shape {trained_on}, but this observation has shape {observed}",
        )
    from networks.builder import build

    module = build(stored["spec"], trained_on, stored.get("output_dim"), field=field)
    io.load_module_state(module, weights, f"{field}.init_from {part}")
    if freeze:
        module.requires_grad_(False)
    return module
