"""Kind `dcgan`: the DCGAN recipe (Radford et al. 2016, as pytorch/examples implements it).

Transposed-convolution generator and convolutional discriminator; N(0, 0.02) init; BatchNorm in both (not on the
discriminator's input layer); ReLU in G, LeakyReLU(0.2) in D; Tanh output; Adam 2e-4, betas (0.5, 0.999); D gives
logits and the losses use BCEWithLogitsLoss (safe under autocast). The generator grows a base x base map (4, or 7
for MNIST's 28) by doubling, so it makes 4*2^k or 7*2^k pixels: 8, 14, 16, 28, 32, 56, 64, 128...
Training is gan.py's two-phase loop; only the networks differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

import networks
from generative.common import normal_init
from generative.gan import AdversarialConfig, sample_images, train_adversarial
from networks.errors import ConfigError


@dataclass
class Config(AdversarialConfig):
    data: str = "mnist5k"  # digits | mnist5k | npz:<path> | folder:<path> | env:<env_id>
    image_size: int | None = field(default=64, metadata={"ge": 8})  # DCGAN paper: 64x64 (28, 32 fit too)
    latent_dim: int = field(default=100, metadata={"ge": 1})  # DCGAN paper
    ngf: int = field(default=64, metadata={"ge": 1})  # generator width (pytorch/examples)
    ndf: int = field(default=64, metadata={"ge": 1})  # discriminator width (pytorch/examples)

    def validate(self) -> None:
        super().validate()
        if self.image_size is not None:
            plan(self.image_size)


def plan(image_size: int) -> tuple[int, int]:
    """(base, doublings) with base * 2**doublings == image_size, base 4 or 7, doublings >= 1."""
    for base in (4, 7):
        size, doublings = image_size, 0
        while size > base and size % 2 == 0:
            size, doublings = size // 2, doublings + 1
        if size == base and doublings >= 1:
            return base, doublings
    raise ConfigError(
        "image_size",
        f"a DCGAN generator makes 4*2^k or 7*2^k pixels (8, 14, 16, 28, 32, 56, 64, ...), got {image_size}",
    )


class Generator(nn.Module):
    def __init__(self, latent_dim: int, image_shape: tuple[int, int, int], ngf: int):
        super().__init__()
        channels, size, _ = image_shape
        base, doublings = plan(size)
        width = ngf * 2 ** (doublings - 1)
        layers: list[nn.Module] = [  # (B, latent, 1, 1) -> (B, width, base, base)
            nn.ConvTranspose2d(latent_dim, width, base, 1, 0, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(True),
        ]
        for _ in range(doublings - 1):  # each: (B, w, s, s) -> (B, w/2, 2s, 2s)
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width // 2)]
            layers.append(nn.ReLU(True))
            width //= 2
        layers += [nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False), nn.Tanh()]  # (B, C, size, size)
        self.net = nn.Sequential(*layers)
        normal_init(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    def __init__(self, image_shape: tuple[int, int, int], ndf: int):
        super().__init__()
        channels, size, width = image_shape
        if size != width:
            raise ConfigError("image_size", f"DCGAN takes square images, the data are {tuple(image_shape)}")
        base, doublings = plan(size)
        layers: list[nn.Module] = [  # (B, C, size, size) -> (B, ndf, size/2, size/2); no norm on the input
            nn.Conv2d(channels, ndf, 4, 2, 1, bias=False),
            networks.activation("leaky_relu", negative_slope=0.2),
        ]
        width = ndf
        for _ in range(doublings - 1):  # each: (B, w, s, s) -> (B, 2w, s/2, s/2)
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width * 2)]
            layers.append(networks.activation("leaky_relu", negative_slope=0.2))
            width *= 2
        layers += [nn.Conv2d(width, 1, base, 1, 0, bias=False), nn.Flatten()]  # (B, 1) logits
        self.net = nn.Sequential(*layers)
        normal_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_networks(config: Config, image_shape: tuple[int, int, int]) -> tuple[nn.Module, nn.Module]:
    return Generator(config.latent_dim, image_shape, config.ngf), Discriminator(image_shape, config.ndf)


def train(config: Config, tracker, *, resume: dict | None = None, make_env: Callable | None = None) -> dict[str, float]:
    return train_adversarial(config, tracker, build_networks, resume=resume, make_env=make_env)


def generate(config: Config, tree: dict, *, n: int, seed: int) -> np.ndarray:
    return sample_images(config, tree, build_networks, n=n, seed=seed)
