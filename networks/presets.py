"""Named network specs. A preset is a plain spec dict; a spec {type: <preset>, ...} overrides its fields.

    build("lenet5", (1, 32, 32), output_dim=10)                  # LeNet-5, 61,706 parameters
    build({"type": "lenet5", "activation": "relu"}, (1, 28, 28))  # same layers, ReLU, MNIST size

Classic classifiers (lenet5, alexnet, vgg16, resnet18) are built *without* their last classification
layer: they are encoders whose features (84, 4096, 4096, 512) feed whatever head the caller adds,
and `output_dim=<classes>` adds exactly that last Linear, which gives the published counts.
"""

from __future__ import annotations

from typing import Any


def _vgg_conv(blocks: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """VGG blocks of (width, convs): 3x3 convs with padding 1, then a 2x2 max pool, per block."""
    layers = []
    for width, convs in blocks:
        layers += [{"filters": width, "kernel": 3, "padding": 1} for _ in range(convs)]
        layers[-1]["pool"] = "max"
    return layers


def _max_pool_3s2(filters: int, kernel: int, stride: int, padding: int) -> dict[str, Any]:
    """AlexNet's overlapping 3x3 stride-2 max pool after a conv (Krizhevsky et al. 2012)."""
    return {"filters": filters, "kernel": kernel, "stride": stride, "padding": padding,
            "pool": "max", "pool_size": 3, "pool_stride": 2}  # fmt: skip


PRESETS: dict[str, dict[str, Any]] = {
    # SB3's default policy net_arch for MlpPolicy.
    "mlp": {"type": "mlp", "hidden": [64, 64], "activation": "relu"},
    # Mnih et al. 2015 (DQN), as SB3's NatureCNN: input (4, 84, 84) -> 512 features.
    "nature_cnn": {
        "type": "cnn",
        "conv": [[32, 8, 4], [64, 4, 2], [64, 3, 1]],
        "hidden": [512],
        "activation": "relu",
    },
    # LeCun et al. 1998 as usually reimplemented: tanh, 2x2 average pooling; C5 is the Linear 400 -> 120.
    "lenet5": {
        "type": "cnn",
        "conv": [{"filters": 6, "kernel": 5, "pool": "avg"}, {"filters": 16, "kernel": 5, "pool": "avg"}],
        "hidden": [120, 84],
        "activation": "tanh",
    },
    # torchvision's AlexNet (the one-GPU variant, 61.1M parameters with 1000 classes).
    "alexnet": {
        "type": "cnn",
        "conv": [
            _max_pool_3s2(64, 11, 4, 2),
            _max_pool_3s2(192, 5, 1, 2),
            [384, 3, 1, 1],
            [256, 3, 1, 1],
            _max_pool_3s2(256, 3, 1, 1),
        ],
        "adaptive_pool": 6,  # torchvision: any input size -> 256 x 6 x 6
        "hidden": [4096, 4096],
        "dropout": 0.5,  # the paper's dropout in the two hidden FC layers
        "activation": "relu",
    },
    # Simonyan & Zisserman 2014, configuration D, as torchvision's vgg16 (no batch norm).
    "vgg16": {
        "type": "cnn",
        "conv": _vgg_conv([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]),
        "adaptive_pool": 7,  # torchvision: any input size -> 512 x 7 x 7
        "hidden": [4096, 4096],
        "dropout": 0.5,
        "activation": "relu",
    },
    # He et al. 2016, torchvision's resnet18 body (BasicBlocks, batch norm).
    "resnet18": {"type": "resnet", "blocks": [2, 2, 2, 2], "widths": [64, 128, 256, 512], "activation": "relu"},
    # sb3-contrib RecurrentPPO's default: one layer of 256 units.
    "lstm": {"type": "lstm", "hidden_size": 256, "num_layers": 1},
    "gru": {"type": "gru", "hidden_size": 256, "num_layers": 1},
}
