"""`build(spec, input_shape, output_dim)`: the one way to make a network from a config.

Spec fields by type (defaults in brackets; presets in presets.py fill in their own):
    mlp     hidden [[]], activation [relu], dropout [0], norm none|batch|layer, init default|orthogonal|
            xavier|kaiming. Flattens any input shape.
    cnn     conv: list of {filters, kernel, stride [1], padding same|valid|int [valid], pool none|max|avg,
            pool_size [2], pool_stride [pool_size]} or compact [filters, kernel, stride, padding];
            adaptive_pool [none]; then the mlp fields for the layers after flattening. Input (C, H, W).
    resnet  blocks [[2, 2, 2, 2]], widths [[64, 128, 256, 512]], hidden, activation, dropout, init.
    lstm, gru  hidden_size [256], num_layers [1], pre: a feed-forward spec run on every step.
Flatten sizes come from a dummy forward pass on the meta device (shapes.output_shape).

`norm: layer` puts layer normalisation (Ba et al. 2016) after every hidden layer's affine map, before its
activation: nn.LayerNorm on each hidden Linear, and on each conv layer a normalisation over (C, H, W) with a
per-channel scale and shift (GroupNorm with one group, so H and W are not fixed). The output Linear is never
normalised. PQN (Gallici et al. 2025) relies on it to keep TD learning stable without a target network or a
replay buffer; its MinAtar and Atari Q-networks normalise the conv layers as well as the hidden Linear (purejaxql
pqn_minatar.py, CleanRL pqn_atari_envpool.py). Off by default (`norm: none`), so presets keep their published
parameter counts. It applies to mlp and cnn, and to lstm / gru through their `pre` network; resnet keeps
torchvision's batch norm inside its blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from torch import nn

from networks.cnn import build_cnn
from networks.errors import ConfigError
from networks.mlp import Encoder, build_mlp, init_layer
from networks.presets import PRESETS
from networks.recurrent import build_recurrent
from networks.resnet import build_resnet
from networks.spec import did_you_mean, positive_int

FEED_FORWARD: dict[str, Callable[..., Encoder]] = {"mlp": build_mlp, "cnn": build_cnn, "resnet": build_resnet}
RECURRENT = ("lstm", "gru")
TYPES = (*FEED_FORWARD, *RECURRENT)


def build(
    spec: str | Mapping[str, Any],
    input_shape: int | Sequence[int],
    output_dim: int | None = None,
    *,
    field: str = "network",
) -> nn.Module:
    """Build the network `spec` describes for inputs of `input_shape` (no batch dimension).

    spec: a preset name ("nature_cnn") or a mapping with `type` (mlp, cnn, resnet, lstm, gru, or a
    preset name whose fields it overrides). The module takes (B, *input_shape) and has an int
    `output_dim`: `output_dim` when given (a final Linear maps the features to it), else the feature
    size. `field` is the config path used in error messages. Bad specs raise ConfigError.
    """
    shape = _input_shape(input_shape, field)
    if isinstance(spec, Mapping) and "init_from" in spec:  # a part of a trained model, e.g. an AE's encoder
        from networks.pretrained import build_pretrained

        encoder = build_pretrained(spec, shape, field=field)
        if output_dim is not None:
            encoder = nn.Sequential(encoder, nn.Linear(encoder.output_dim, output_dim))
            encoder.output_dim = output_dim
        return encoder
    resolved = resolve(spec, field)
    if output_dim is not None:
        output_dim = positive_int("output_dim", output_dim)
    if resolved["type"] in RECURRENT:
        return build_recurrent(resolved, shape, field=field, output_dim=output_dim)

    encoder = FEED_FORWARD[resolved["type"]](resolved, shape, field=field)
    if output_dim is not None:
        out = nn.Linear(encoder.output_dim, output_dim)  # (B, features) -> (B, output_dim)
        init_layer(out, resolved.get("init", "default"), gain=1.0)  # no activation follows: gain 1
        encoder.add_module("out", out)
        encoder.output_dim = output_dim
    return encoder


def resolve(spec: str | Mapping[str, Any], field: str = "network") -> dict[str, Any]:
    """The full spec dict: a preset name or {type: <preset>, ...} becomes the preset with overrides."""
    if isinstance(spec, str):
        spec = {"type": spec}
    if isinstance(spec, Mapping) and "init_from" in spec:
        return {**spec, "type": "pretrained"}
    if not isinstance(spec, Mapping):
        raise ConfigError(field, f"must be a preset name or a mapping with a 'type', got {spec!r}")
    if "type" not in spec:
        raise ConfigError(f"{field}.type", f"is required; allowed: {', '.join(_all_types())}")
    kind = spec["type"]
    if kind in PRESETS:
        return {**PRESETS[kind], **{k: v for k, v in spec.items() if k != "type"}}
    if kind in TYPES:
        return dict(spec)
    raise ConfigError(
        f"{field}.type",
        f"unknown network type or preset {kind!r}{did_you_mean(str(kind), _all_types())}; "
        f"allowed: {', '.join(_all_types())}",
    )


def _all_types() -> list[str]:
    return [*TYPES, *(name for name in PRESETS if name not in TYPES)]


def _input_shape(input_shape: int | Sequence[int], field: str) -> tuple[int, ...]:
    shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    if not shape or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape):
        raise ConfigError(field, f"input shape must be positive integers, got {input_shape!r}")
    return shape
