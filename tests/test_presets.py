"""Presets: published parameter counts, layouts, and inputs of other sizes."""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from networks import PRESETS, ConfigError, build, count_params
from networks.resnet import BasicBlock

# (preset, canonical input, classes, published parameter count)
PUBLISHED = [
    ("lenet5", (1, 32, 32), 10, 61_706),  # LeCun et al. 1998, tanh + average pooling
    ("alexnet", (3, 224, 224), 1000, 61_100_840),  # torchvision alexnet
    ("vgg16", (3, 224, 224), 1000, 138_357_544),  # torchvision vgg16
    ("resnet18", (3, 224, 224), 1000, 11_689_512),  # torchvision resnet18
]


@pytest.mark.parametrize(("name", "shape", "classes", "expected"), PUBLISHED)
def test_published_parameter_counts(name: str, shape: tuple, classes: int, expected: int) -> None:
    # The big ones are built on the meta device: same code path, no 0.5 GB of weights to initialise.
    device = "meta" if expected > 50_000_000 else "cpu"
    with torch.device(device):
        net = build(name, shape, output_dim=classes)
    assert count_params(net) == expected
    assert net.output_dim == classes


def test_alexnet_really_builds_and_runs_on_small_images() -> None:
    start = time.perf_counter()
    net = build("alexnet", (3, 64, 64), output_dim=5).eval()
    assert time.perf_counter() - start < 10
    assert count_params(net) == 61_100_840 - 4096 * 995 - 995  # same body, 5 classes
    with torch.no_grad():
        assert net(torch.rand(2, 3, 64, 64)).shape == (2, 5)


def test_classic_nets_are_encoders_without_their_classifier() -> None:
    assert build("lenet5", (1, 32, 32)).output_dim == 84
    with torch.device("meta"):
        assert build("alexnet", (3, 224, 224)).output_dim == 4096
        assert build("vgg16", (3, 224, 224)).output_dim == 4096
    assert build("resnet18", (3, 32, 32)).output_dim == 512


def test_lenet5_layout() -> None:
    net = build("lenet5", (1, 32, 32), output_dim=10)
    convs = [m for m in net.conv if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size) for c in convs] == [(6, (5, 5)), (16, (5, 5))]
    assert sum(isinstance(m, nn.AvgPool2d) for m in net.conv) == 2
    assert sum(isinstance(m, nn.Tanh) for m in net.modules()) == 4
    assert [m.out_features for m in net.modules() if isinstance(m, nn.Linear)] == [120, 84, 10]
    assert net(torch.zeros(3, 1, 32, 32)).shape == (3, 10)


def test_preset_fields_can_be_overridden() -> None:
    net = build({"type": "lenet5", "activation": "relu"}, (1, 28, 28), output_dim=10)  # MNIST size, no padding
    assert not any(isinstance(m, nn.Tanh) for m in net.modules())
    assert sum(isinstance(m, nn.ReLU) for m in net.modules()) == 4
    assert net.mlp[0].in_features == 16 * 4 * 4  # 28 -> 24 -> 12 -> 8 -> 4
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    wider = build({"type": "nature_cnn", "hidden": [256]}, (4, 84, 84))
    assert wider.output_dim == 256


def test_nature_cnn_matches_sb3() -> None:
    from stable_baselines3.common.torch_layers import NatureCNN

    net = build("nature_cnn", (4, 84, 84))
    assert net.output_dim == 512
    assert net(torch.zeros(2, 4, 84, 84)).shape == (2, 512)
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert count_params(net) == count_params(NatureCNN(space, features_dim=512)) == 1_684_128
    head = build("nature_cnn", (4, 84, 84), output_dim=6)
    assert head.output_dim == 6 and count_params(head) == 1_684_128 + 512 * 6 + 6


def test_resnet18_has_real_residual_blocks() -> None:
    net = build("resnet18", (3, 32, 32))
    blocks = [m for m in net.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 8
    assert sum(not isinstance(b.shortcut, nn.Identity) for b in blocks) == 3  # 1x1 conv where shape changes
    # With its last batch norm zeroed, an identity block passes (non-negative) input straight through:
    block = blocks[1].eval()
    nn.init.zeros_(block.bn2.weight)
    nn.init.zeros_(block.bn2.bias)
    x = torch.rand(2, 64, 8, 8)
    with torch.no_grad():
        assert torch.allclose(block(x), x)


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 8, 8), (3, 40, 24)])
def test_resnet18_takes_small_and_rectangular_inputs(shape: tuple) -> None:
    net = build("resnet18", shape, output_dim=10).eval()
    with torch.no_grad():
        assert net(torch.rand(2, *shape)).shape == (2, 10)


def test_vgg16_shapes_at_other_sizes_on_meta() -> None:
    with torch.device("meta"):
        net = build("vgg16", (3, 32, 32), output_dim=10)  # 32 / 2^5 = 1, adaptive pool -> 7 x 7
        assert net(torch.empty(2, 3, 32, 32)).shape == (2, 10)
        assert count_params(net) == 138_357_544 - 4096 * 990 - 990


@pytest.mark.parametrize(("name", "shape"), [("alexnet", (3, 32, 32)), ("vgg16", (3, 16, 16)), ("lenet5", (1, 12, 12))])
def test_too_small_for_a_classic_net(name: str, shape: tuple) -> None:
    with torch.device("meta"), pytest.raises(ConfigError) as info:
        build(name, shape)
    assert str(info.value).startswith(f"network: input shape {shape} is too small for this network: layer ")


def test_preset_registry_names() -> None:
    names = {"mlp", "nature_cnn", "lenet5", "alexnet", "vgg16", "resnet18", "lstm", "gru"}
    assert names == set(PRESETS)
