"""Reuse part of a trained model: `{init_from: CHECKPOINT, part: encoder, freeze: true}` as a network spec.

A trainer that wants its parts reusable stores, in its checkpoint tree, the part's weights under
`tree["model"][part]` and how to rebuild it under `tree["specs"][part]`: the `networks.build` spec, the
input shape and the output size (the convolutional autoencoder does this for its encoder). `init_from`
names the checkpoint stem (launch/ turns a run folder into its newest checkpoint before training).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from networks import io
from networks.errors import CheckpointError, ConfigError
from networks.spec import check_fields

FIELDS = ("type", "init_from", "part", "freeze")  # type: "pretrained", set by resolve()


def build_pretrained(spec: Mapping[str, Any], input_shape: Sequence[int], *, field: str = "network") -> nn.Module:
    """The stored part, rebuilt and loaded; its parameters frozen when `freeze` is true."""
    check_fields(field, spec, FIELDS, "a pretrained network")
    part, freeze = spec.get("part", "encoder"), spec.get("freeze", True)
    if not isinstance(freeze, bool):
        raise ConfigError(f"{field}.freeze", f"expected true or false, got {freeze!r}")
    try:
        tree, _ = io.load(spec["init_from"])
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
