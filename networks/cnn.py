"""Convolutional encoders from a list of conv layers, then an MLP on the flattened features."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from networks.errors import ConfigError
from networks.mlp import Encoder, LayerOptions, apply_init, mlp_layers
from networks.shapes import output_shape
from networks.spec import check_fields, choice, int_list, positive_int

CNN_FIELDS = ("type", "conv", "hidden", "activation", "dropout", "norm", "init", "adaptive_pool")
CONV_FIELDS = ("filters", "kernel", "stride", "padding", "pool", "pool_size", "pool_stride")
COMPACT_ORDER = ("filters", "kernel", "stride", "padding")  # [32, 8, 4] or [32, 3, 1, "same"]
POOLS = ("none", "max", "avg")


@dataclass(frozen=True)
class ConvLayer:
    filters: int
    kernel: int  # square kernel side
    stride: int = 1
    padding: int | str = "valid"  # nn.Conv2d's default: no padding
    pool: str = "none"  # pooling after the activation
    pool_size: int = 2  # the classic 2x2 window (LeNet, VGG)
    pool_stride: int | None = None  # None: same as pool_size, non-overlapping windows

    @classmethod
    def parse(cls, raw: Any, field: str) -> ConvLayer:
        if isinstance(raw, list | tuple):
            if not 2 <= len(raw) <= 4:
                raise ConfigError(field, f"a compact conv layer is [filters, kernel, stride, padding], got {raw!r}")
            raw = dict(zip(COMPACT_ORDER, raw))
        if not isinstance(raw, Mapping):
            raise ConfigError(field, f"a conv layer is a mapping or [filters, kernel, stride, padding], got {raw!r}")
        check_fields(field, raw, CONV_FIELDS, "a conv layer")
        for required in ("filters", "kernel"):
            if required not in raw:
                raise ConfigError(f"{field}.{required}", "is required for every conv layer")
        padding = raw.get("padding", "valid")
        is_int = isinstance(padding, int) and not isinstance(padding, bool)
        if not (is_int and padding >= 0) and padding not in ("same", "valid"):
            raise ConfigError(f"{field}.padding", f"unknown padding {padding!r}; allowed: same, valid, or an int >= 0")
        pool_stride = raw.get("pool_stride")
        return cls(
            filters=positive_int(f"{field}.filters", raw["filters"]),
            kernel=positive_int(f"{field}.kernel", raw["kernel"]),
            stride=positive_int(f"{field}.stride", raw.get("stride", 1)),
            padding=padding,
            pool=choice(f"{field}.pool", raw.get("pool", "none"), POOLS, what="pool"),
            pool_size=positive_int(f"{field}.pool_size", raw.get("pool_size", 2)),
            pool_stride=None if pool_stride is None else positive_int(f"{field}.pool_stride", pool_stride),
        )

    def torch_padding(self, field: str) -> int | str:
        """'same' keeps H x W at stride 1 (p = (f - 1) / 2, seed notes); at stride s it gives ceil(H / s)."""
        if self.padding == "valid":
            return 0
        if self.padding != "same":
            return self.padding
        if self.stride == 1:
            return "same"  # torch pads even kernels asymmetrically itself
        if self.kernel % 2 == 0:
            raise ConfigError(f"{field}.padding", f"'same' needs an odd kernel when stride > 1, got {self.kernel}")
        return (self.kernel - 1) // 2


def conv_stack(in_channels: int, layers: Sequence[ConvLayer], options: LayerOptions) -> nn.Sequential:
    """Conv -> norm -> activation -> pool per layer. (B, C, H, W) -> (B, filters[-1], H', W')."""
    modules: list[nn.Module] = []
    for i, layer in enumerate(layers):
        modules.append(
            nn.Conv2d(
                in_channels,
                layer.filters,
                layer.kernel,
                stride=layer.stride,
                padding=layer.torch_padding(f"{options.field}.conv[{i}]"),
            )
        )
        if options.norm == "batch":
            modules.append(nn.BatchNorm2d(layer.filters))
        elif options.norm == "layer":  # layer norm over (C, H, W) that does not fix H and W
            modules.append(nn.GroupNorm(1, layer.filters))
        modules.append(options.make_activation())
        if layer.pool != "none":
            pool = nn.MaxPool2d if layer.pool == "max" else nn.AvgPool2d
            modules.append(pool(layer.pool_size, layer.pool_stride or layer.pool_size))
        in_channels = layer.filters
    return nn.Sequential(*modules)


def build_cnn(spec: Mapping[str, Any], input_shape: Sequence[int], *, field: str) -> Encoder:
    """{type: cnn, conv: [...], hidden: [...]}: input (C, H, W) float, images scaled to [0, 1]."""
    check_fields(field, spec, CNN_FIELDS, "type cnn")
    require_image(input_shape, field, "cnn")
    raw_conv = spec.get("conv")
    if not isinstance(raw_conv, list) or not raw_conv:
        raise ConfigError(f"{field}.conv", f"must be a non-empty list of conv layers, got {raw_conv!r}")
    options = LayerOptions.parse(spec, field)
    layers = [ConvLayer.parse(raw, f"{field}.conv[{i}]") for i, raw in enumerate(raw_conv)]
    hidden = int_list(f"{field}.hidden", spec.get("hidden", []))

    stages: OrderedDict[str, nn.Module] = OrderedDict(conv=conv_stack(input_shape[0], layers, options))
    if spec.get("adaptive_pool") is not None:  # torchvision AlexNet / VGG: any input size -> a fixed grid
        side = spec["adaptive_pool"]
        size = int_list(f"{field}.adaptive_pool", side if isinstance(side, list) else [side])
        if len(size) not in (1, 2):
            raise ConfigError(f"{field}.adaptive_pool", f"must be an int or [height, width], got {side!r}")
        stages["adaptive_pool"] = nn.AdaptiveAvgPool2d(tuple(size) if len(size) == 2 else size[0])
    flat_dim = math.prod(output_shape(nn.Sequential(stages), input_shape, field=field))  # dummy forward
    stages["flatten"] = nn.Flatten()
    stages["mlp"] = mlp_layers(flat_dim, hidden, options)
    encoder = Encoder(stages, input_shape=input_shape, output_dim=hidden[-1] if hidden else flat_dim)
    apply_init(encoder, options)
    return encoder


def require_image(input_shape: Sequence[int], field: str, kind: str) -> None:
    if len(input_shape) != 3:
        raise ConfigError(
            field,
            f"a {kind} needs an image input shape (C, H, W), got {tuple(input_shape)} "
            "(use type mlp for flat observations)",
        )
