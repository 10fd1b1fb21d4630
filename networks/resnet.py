"""Residual networks (He et al. 2016) with BasicBlocks, laid out like torchvision's ResNet-18."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from networks.cnn import require_image
from networks.errors import ConfigError
from networks.mlp import Encoder, LayerOptions, apply_init, mlp_layers
from networks.shapes import output_shape
from networks.spec import check_fields, int_list

RESNET_FIELDS = ("type", "blocks", "widths", "hidden", "activation", "dropout", "init")


class BasicBlock(nn.Module):
    """y = act(BN(conv3x3(act(BN(conv3x3(x))))) + shortcut(x)); the shortcut is a 1x1 conv when shapes change."""

    def __init__(self, *, in_channels: int, out_channels: int, stride: int, make_activation: Callable[[], nn.Module]):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.act1 = make_activation()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act2 = make_activation()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C', H / stride, W / stride)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


def build_resnet(spec: Mapping[str, Any], input_shape: Sequence[int], *, field: str) -> Encoder:
    """{type: resnet, blocks: [2, 2, 2, 2], widths: [64, 128, 256, 512]} is ResNet-18's body."""
    check_fields(field, spec, RESNET_FIELDS, "type resnet")
    require_image(input_shape, field, "resnet")
    options = LayerOptions.parse(spec, field)
    blocks = int_list(f"{field}.blocks", spec.get("blocks", [2, 2, 2, 2]))
    widths = int_list(f"{field}.widths", spec.get("widths", [64, 128, 256, 512]))
    if len(blocks) != len(widths):
        raise ConfigError(f"{field}.widths", f"needs one width per stage of blocks {blocks}, got {widths}")
    hidden = int_list(f"{field}.hidden", spec.get("hidden", []))

    stages: OrderedDict[str, nn.Module] = OrderedDict()
    stages["stem"] = nn.Sequential(  # ImageNet stem: (B, C, H, W) -> (B, w0, H / 4, W / 4)
        nn.Conv2d(input_shape[0], widths[0], 7, stride=2, padding=3, bias=False),
        nn.BatchNorm2d(widths[0]),
        options.make_activation(),
        nn.MaxPool2d(3, stride=2, padding=1),
    )
    in_channels = widths[0]
    for stage, (count, width) in enumerate(zip(blocks, widths), start=1):
        stride = 1 if stage == 1 else 2  # each later stage halves H and W
        stages[f"layer{stage}"] = nn.Sequential(
            *(
                BasicBlock(
                    in_channels=in_channels if i == 0 else width,
                    out_channels=width,
                    stride=stride if i == 0 else 1,
                    make_activation=options.make_activation,
                )
                for i in range(count)
            )
        )
        in_channels = width
    stages["pool"] = nn.AdaptiveAvgPool2d(1)  # any input size -> (B, widths[-1], 1, 1)
    output_shape(nn.Sequential(stages), input_shape, field=field)  # dummy forward: can it take the input?
    stages["flatten"] = nn.Flatten()
    stages["mlp"] = mlp_layers(widths[-1], hidden, options)
    encoder = Encoder(stages, input_shape=input_shape, output_dim=hidden[-1] if hidden else widths[-1])
    apply_init(encoder, options)
    return encoder
